//! Phase 2 of a node restore, placing: with the data node stopped, every
//! staged file is renamed into place, blocks already there are kept, and
//! with `clean` block files the backup does not name are removed.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::fsops::{make_dir, owner, set_owner_mode, sync_fs, Owner};
use super::stage::{refuse_damage, stage_node, staged_for};
use super::walk::{inventory_dirs, walk_inventory, BlockPlace, Item};
use super::{prepare, staged_block, staged_meta, staged_pool_version, staging_dir};
use crate::backup_id::BackupId;
use crate::config::Config;
use crate::hopsfs::inventory::VersionLine;
use crate::hopsfs::layout;
use crate::job::JobControl;

/// What a node restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    pub blocks_written: u64,
    pub bytes_written: u64,
    /// Blocks already in place and intact.
    pub blocks_kept: u64,
    /// Files removed by `clean`.
    pub removed: Vec<String>,
}

/// Puts this node's HopsFS storage of backup `id` in place from its staging
/// folders (staging first if that was not done), see the text of
/// [`crate::hopsfs::restore`].
pub fn place_node(config: &Config, id: BackupId, clean: bool, control: &JobControl) -> Result<Restored> {
    let p = prepare(config, id)?;
    if !staged_for(&inventory_dirs(&p)?, id) {
        let staged = stage_node(config, id, control)?;
        refuse_damage(id, &staged)?;
    }
    let owner = owner(config)?;
    // Every block is moved (or found) in place: counted first, for the progress.
    let mut blocks = (0, 0);
    walk_inventory(&p, config, |_, item| {
        if let Item::Block(place) = item {
            blocks = (blocks.0 + 1, blocks.1 + place.len);
        }
        Ok(())
    })?;
    control.add_total(blocks.0, blocks.1);
    let mut done = Restored::default();
    let mut wanted: HashSet<(u16, String)> = HashSet::new();
    let walk = walk_inventory(&p, config, |walk, item| {
        control.check()?;
        match item {
            Item::Dir(dir, mode) => {
                make_dir(&dir, mode, owner)?;
                make_dir(&layout::current(&dir), 0o755, owner)
            }
            Item::Version(v) => {
                let dir = walk.dir(v.dir)?;
                place_small(
                    &staging_dir(dir).join("VERSION"),
                    &layout::current(dir).join("VERSION"),
                    &v,
                )
            }
            Item::Pool(pool) => {
                let dir = walk.dir(pool.dir)?;
                let pool_dir = layout::current(dir).join(&pool.id);
                for d in [
                    pool_dir.clone(),
                    pool_dir.join("current"),
                    pool_dir.join("tmp"),
                    pool_dir.join("current/rbw"),
                    layout::finalized(dir, &pool.id),
                ] {
                    make_dir(&d, 0o755, owner)?;
                }
                place_small(
                    &staged_pool_version(&staging_dir(dir), &pool.id),
                    &layout::pool_version(dir, &pool.id),
                    &pool.version,
                )
            }
            Item::Block(place) => {
                crate::fault::point("hopsfs-place-block", Some(control))?;
                let staging = staging_dir(walk.dir(place.dir)?);
                place_block(&place, &staging, owner, &mut done).with_context(|| format!("restoring {}", place.key))?;
                control.file_done(place.len);
                wanted.insert((place.dir, format!("{}/{}", place.key.pool, place.rel)));
                let meta_rel = rel_meta(&place.rel, place.key.id, place.key.genstamp);
                wanted.insert((place.dir, format!("{}/{meta_rel}", place.key.pool)));
                Ok(())
            }
        }
    })?;
    if clean {
        for (index, dir) in &walk.dirs {
            for (_, (dir_index, pool)) in walk.pools.iter().filter(|(_, (d, _))| d == index) {
                remove_unlisted(
                    &layout::finalized(dir, pool),
                    pool,
                    *dir_index,
                    &wanted,
                    &mut done.removed,
                )?;
            }
        }
    }
    for dir in walk.dirs.values() {
        sync_fs(dir)?;
        let staging = staging_dir(dir);
        match fs::remove_dir_all(&staging) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", staging.display()))
            }
            _ => {}
        }
    }
    info!(
        written = done.blocks_written,
        kept = done.blocks_kept,
        removed = done.removed.len(),
        "restored the HopsFS storage of {} from backup {id}",
        config.this_node
    );
    Ok(done)
}

/// Moves a staged block and its `.meta` into place; a block already in place
/// with its length is kept (it was checked when the stage found it there).
fn place_block(place: &BlockPlace, staging: &Path, owner: Owner, done: &mut Restored) -> Result<()> {
    let (staged, staged_m) = (staged_block(staging, &place.key), staged_meta(staging, &place.key));
    let (block, meta_path) = (place.block(), place.meta());
    if staged.is_file() {
        make_dirs_below(&place.finalized, &place.rel, owner)?;
        if staged_m.is_file() {
            fs::rename(&staged_m, &meta_path).with_context(|| format!("moving {} into place", staged_m.display()))?;
        }
        fs::rename(&staged, &block).with_context(|| format!("moving {} into place", staged.display()))?;
        done.blocks_written += 1;
        done.bytes_written += place.len;
        return Ok(());
    }
    let in_place = fs::metadata(&block).is_ok_and(|m| m.len() == place.len) && meta_path.is_file();
    if !in_place {
        bail!(
            "it is neither staged in {} nor in place: stage it again (hwdr restore --from stage)",
            staging.display()
        );
    }
    set_owner_mode(&block, place.line.mode, owner)?;
    set_owner_mode(&meta_path, place.line.meta_mode, owner)?;
    done.blocks_kept += 1;
    Ok(())
}

/// Moves a staged VERSION file into place; one already in place with the
/// recorded checksum is kept.
fn place_small(staged: &Path, dst: &Path, v: &VersionLine) -> Result<()> {
    if staged.is_file() {
        return fs::rename(staged, dst).with_context(|| format!("moving {} into place", staged.display()));
    }
    let ok = fs::read(dst).is_ok_and(|b| hex::encode(Sha256::digest(&b)) == v.sha256);
    if !ok {
        bail!(
            "{} is neither staged in {} nor in place: stage it again (hwdr restore --from stage)",
            dst.display(),
            staged.display()
        );
    }
    Ok(())
}

fn rel_meta(rel: &str, id: u64, genstamp: u64) -> String {
    match rel.rsplit_once('/') {
        Some((dirs, _)) => format!("{dirs}/blk_{id}_{genstamp}.meta"),
        None => format!("blk_{id}_{genstamp}.meta"),
    }
}

/// Creates the `subdir` folders of `rel` below `finalized`.
fn make_dirs_below(finalized: &Path, rel: &str, owner: Owner) -> Result<()> {
    let mut dir = finalized.to_path_buf();
    if let Some((dirs, _)) = rel.rsplit_once('/') {
        for part in dirs.split('/') {
            dir.push(part);
            if !dir.is_dir() {
                make_dir(&dir, 0o755, owner)?;
            }
        }
    }
    Ok(())
}

/// Removes block and meta files below `finalized` that the inventory does not name.
fn remove_unlisted(
    finalized: &Path,
    pool: &str,
    dir: u16,
    wanted: &HashSet<(u16, String)>,
    removed: &mut Vec<String>,
) -> Result<()> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = finalized.join(&rel);
        for e in fs::read_dir(&here).with_context(|| format!("listing {}", here.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let rel_file = rel.join(&name);
            if e.file_type()?.is_dir() {
                stack.push(rel_file);
                continue;
            }
            let is_block_file = layout::parse_block_name(&name).is_some() || layout::parse_meta_name(&name).is_some();
            let key = (dir, format!("{pool}/{}", rel_file.to_string_lossy()));
            if is_block_file && !wanted.contains(&key) {
                fs::remove_file(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
                warn!("removed {} (not in the backup)", e.path().display());
                removed.push(e.path().display().to_string());
            }
        }
    }
    Ok(())
}
