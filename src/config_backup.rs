//! The `[config_backup]` step: the cluster definition and any other files
//! listed are copied into `config/<absolute path>` of the backup.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::repo::fsutil::{self, FileEntry};
use crate::repo::mkdir;

/// Copies every path (file or folder, recursively) into `backup_dir/config/`.
pub fn copy_paths(paths: &[impl AsRef<Path>], backup_dir: &Path) -> Result<Vec<FileEntry>> {
    let mut entries = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let meta =
            fs::metadata(path).with_context(|| format!("[config_backup] paths: cannot read {}", path.display()))?;
        if meta.is_dir() {
            copy_dir(path, backup_dir, &mut entries)?;
        } else if meta.is_file() {
            entries.push(copy_one(path, backup_dir)?);
        } else {
            bail!(
                "[config_backup] paths: {} is neither a file nor a folder",
                path.display()
            );
        }
    }
    Ok(entries)
}

fn copy_dir(dir: &Path, backup_dir: &Path, entries: &mut Vec<FileEntry>) -> Result<()> {
    let mut items: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    items.sort_by_key(|e| e.file_name());
    for item in items {
        let kind = item.file_type()?;
        if kind.is_dir() {
            copy_dir(&item.path(), backup_dir, entries)?;
        } else if kind.is_file() {
            entries.push(copy_one(&item.path(), backup_dir)?);
        }
    }
    Ok(())
}

fn copy_one(path: &Path, backup_dir: &Path) -> Result<FileEntry> {
    let rel = format!("config/{}", path.display().to_string().trim_start_matches('/'));
    let dst = backup_dir.join(&rel);
    mkdir(dst.parent().unwrap_or(backup_dir), 0o750)?;
    fsutil::copy_hashed(path, &dst, 0o640, rel, &crate::job::JobControl::default())
}
