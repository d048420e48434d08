//! The `[config_backup]` step: the cluster definition and any other files
//! listed are copied into `config/<absolute path>` of the backup.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::job::JobControl;
use crate::repo::backup::BackupWriter;
use crate::repo::manifest::FileEntry;
use crate::repo::store::Access;

/// Copies every path (file or folder, recursively) into `config/` of the backup.
pub fn copy_paths(paths: &[impl AsRef<Path>], backup: &BackupWriter) -> Result<Vec<FileEntry>> {
    let mut entries = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let meta =
            fs::metadata(path).with_context(|| format!("[config_backup] paths: cannot read {}", path.display()))?;
        if meta.is_dir() {
            copy_dir(path, backup, &mut entries)?;
        } else if meta.is_file() {
            entries.push(copy_one(path, backup)?);
        } else {
            bail!(
                "[config_backup] paths: {} is neither a file nor a folder",
                path.display()
            );
        }
    }
    Ok(entries)
}

fn copy_dir(dir: &Path, backup: &BackupWriter, entries: &mut Vec<FileEntry>) -> Result<()> {
    let mut items: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    items.sort_by_key(|e| e.file_name());
    for item in items {
        let kind = item.file_type()?;
        if kind.is_dir() {
            copy_dir(&item.path(), backup, entries)?;
        } else if kind.is_file() {
            entries.push(copy_one(&item.path(), backup)?);
        }
    }
    Ok(())
}

fn copy_one(path: &Path, backup: &BackupWriter) -> Result<FileEntry> {
    let rel = format!("config/{}", path.display().to_string().trim_start_matches('/'));
    backup.put_file(&rel, path, Access::Group, &JobControl::default())
}
