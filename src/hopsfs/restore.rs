//! Restoring one HopsFS data node from a backup: its VERSION files and every
//! block of its inventory with the `.meta`, owned by `[hopsfs] user:group`
//! with the modes they had, each block checked against its CRCs as it is
//! written. Blocks the inventory does not name are left alone unless asked to
//! clean. Running it twice gives the same tree: a block already in place is
//! checked, not copied again. Stopping and starting the data node's unit is
//! the caller's (see [`crate::agent::jobs`]).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{fchown, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::inventory::{self, Line};
use super::layout;
use super::meta::{self, BlockVerifier};
use super::node::inventory_rel;
use super::store::{BlockKey, BlockStore};
use crate::backup_id::BackupId;
use crate::config::Config;
use crate::job::JobControl;
use crate::repo::fsutil;
use crate::repo::Repository;
use crate::runner::RunAs;

/// What a node restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    pub blocks_written: u64,
    pub bytes_written: u64,
    /// Blocks already in place and intact.
    pub blocks_kept: u64,
    /// Files removed by `clean`.
    pub removed: Vec<String>,
}

/// Owner of everything restored.
#[derive(Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

/// The checks a restore makes before it touches anything: the backup is
/// complete, holds this node, and its inventory matches the manifest. Cheap,
/// so the data node is not stopped for a restore that cannot run.
pub fn check(config: &Config, id: BackupId) -> Result<()> {
    prepare(config, id).map(|_| ())
}

/// Manifest, backup folder and the checked inventory path of this node.
fn prepare(config: &Config, id: BackupId) -> Result<(crate::repo::manifest::Manifest, PathBuf, PathBuf)> {
    let node = config.this_node.as_str();
    let repo = Repository::new(&config.repository);
    let manifest = repo.complete_manifest(id)?;
    let hopsfs = manifest
        .hopsfs
        .as_ref()
        .ok_or_else(|| anyhow!("backup {id} holds no HopsFS data"))?;
    if !hopsfs.nodes.iter().any(|n| n == node) {
        bail!("backup {id} holds no HopsFS inventory of node {node}");
    }
    let backup_dir = repo.backup_dir(id);
    let inventory = checked_file(&manifest, &backup_dir, &inventory_rel(node))?;
    Ok((manifest, backup_dir, inventory))
}

/// The path of `rel` in the backup, after checking its size and SHA-256
/// against the manifest.
fn checked_file(manifest: &crate::repo::manifest::Manifest, backup_dir: &Path, rel: &str) -> Result<PathBuf> {
    let entry = manifest
        .files()
        .find(|f| f.path == rel)
        .ok_or_else(|| anyhow!("{rel} is not in the manifest of backup {}", manifest.backup_id))?;
    let path = backup_dir.join(rel);
    let (size, sha) = fsutil::hash_file(&path)?;
    if size != entry.size || sha != entry.sha256 {
        bail!(
            "{} does not match the manifest (size {size}, expected {}): it is damaged",
            path.display(),
            entry.size
        );
    }
    Ok(path)
}

/// Restores this node's HopsFS storage from backup `id`.
pub fn restore_node(config: &Config, id: BackupId, clean: bool, control: &JobControl) -> Result<Restored> {
    let node = config.this_node.as_str();
    let (manifest, backup_dir, inv_path) = prepare(config, id)?;
    let checked = |rel: &str| checked_file(&manifest, &backup_dir, rel);

    let hdfs = RunAs::lookup(&config.hopsfs.user, &config.origins.key("hopsfs", "user"))?;
    let group = uzers::get_group_by_name(&config.hopsfs.group).ok_or_else(|| {
        anyhow!(
            "{}: no such group '{}'",
            config.origins.key("hopsfs", "group"),
            config.hopsfs.group
        )
    })?;
    let owner = Owner {
        uid: hdfs.uid.as_raw(),
        gid: group.gid(),
    };
    let store = BlockStore::new(&config.repository);

    let mut dirs: HashMap<u16, PathBuf> = HashMap::new();
    let mut pools: HashMap<u16, (u16, String)> = HashMap::new();
    let mut wanted: HashSet<(u16, String)> = HashSet::new();
    let mut done = Restored::default();
    let file = File::open(&inv_path).with_context(|| format!("opening {}", inv_path.display()))?;
    inventory::read(BufReader::with_capacity(1 << 20, file), |line| {
        control.check()?;
        match line {
            Line::Dir(d) => {
                let path = PathBuf::from(&d.path);
                if !config.hopsfs.data_dirs.contains(&path) {
                    bail!(
                        "the backup's data folder {} is not in [hopsfs] data_dirs",
                        path.display()
                    );
                }
                make_dir(&path, d.mode, owner)?;
                make_dir(&layout::current(&path), 0o755, owner)?;
                dirs.insert(d.index, path);
            }
            Line::Version(v) => {
                let dir = dirs
                    .get(&v.dir)
                    .ok_or_else(|| anyhow!("VERSION of unknown folder {}", v.dir))?;
                put_small(
                    &checked(&v.stored)?,
                    &layout::current(dir).join("VERSION"),
                    v.mode,
                    owner,
                )?;
            }
            Line::Pool(p) => {
                let dir = dirs
                    .get(&p.dir)
                    .ok_or_else(|| anyhow!("pool of unknown folder {}", p.dir))?;
                if !layout::is_pool_name(&p.id) {
                    bail!("unexpected block pool name {:?}", p.id);
                }
                let pool_dir = layout::current(dir).join(&p.id);
                make_dir(&pool_dir, 0o755, owner)?;
                make_dir(&pool_dir.join("current"), 0o755, owner)?;
                make_dir(&pool_dir.join("tmp"), 0o755, owner)?;
                make_dir(&pool_dir.join("current/rbw"), 0o755, owner)?;
                make_dir(&layout::finalized(dir, &p.id), 0o755, owner)?;
                put_small(
                    &checked(&p.version.stored)?,
                    &layout::pool_version(dir, &p.id),
                    p.version.mode,
                    owner,
                )?;
                pools.insert(p.index, (p.dir, p.id));
            }
            Line::Block(b) => {
                let (dir_index, pool) = pools
                    .get(&b.pool)
                    .ok_or_else(|| anyhow!("block of unknown pool {}", b.pool))?;
                let dir = dirs
                    .get(dir_index)
                    .ok_or_else(|| anyhow!("pool of unknown folder {dir_index}"))?;
                let rel = b.path.clone().unwrap_or_else(|| layout::canonical_rel_path(b.id));
                if !layout::is_safe_rel_path(&rel) {
                    bail!("unsafe block path {rel:?} in the inventory");
                }
                let finalized = layout::finalized(dir, pool);
                let block_path = finalized.join(&rel);
                let meta_path = block_path.with_file_name(format!("blk_{}_{}.meta", b.id, b.genstamp));
                let key = BlockKey {
                    pool: pool.clone(),
                    id: b.id,
                    genstamp: b.genstamp,
                };
                if intact(&block_path, &meta_path, b.len) {
                    set_owner_mode(&block_path, b.mode, owner)?;
                    set_owner_mode(&meta_path, b.meta_mode, owner)?;
                    done.blocks_kept += 1;
                } else {
                    make_dirs_below(&finalized, &rel, owner)?;
                    put_block(&store, &key, &block_path, &meta_path, b.mode, b.meta_mode, owner)
                        .with_context(|| format!("restoring {key}"))?;
                    done.blocks_written += 1;
                    done.bytes_written += b.len;
                    control.file_done(b.len);
                }
                wanted.insert((*dir_index, format!("{pool}/{rel}")));
                wanted.insert((*dir_index, format!("{pool}/{}", rel_meta(&rel, b.id, b.genstamp))));
            }
            Line::Node(_) | Line::End { .. } => {}
        }
        Ok(())
    })?;
    if clean {
        for (index, dir) in &dirs {
            for (_, (dir_index, pool)) in pools.iter().filter(|(_, (d, _))| d == index) {
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
    for dir in dirs.values() {
        sync_fs(dir)?;
    }
    info!(
        written = done.blocks_written,
        kept = done.blocks_kept,
        removed = done.removed.len(),
        "restored the HopsFS storage of {node} from backup {id}"
    );
    Ok(done)
}

fn rel_meta(rel: &str, id: u64, genstamp: u64) -> String {
    match rel.rsplit_once('/') {
        Some((dirs, _)) => format!("{dirs}/blk_{id}_{genstamp}.meta"),
        None => format!("blk_{id}_{genstamp}.meta"),
    }
}

/// Whether a block and its `.meta` are in place and pass the CRC check.
fn intact(block: &Path, meta_path: &Path, len: u64) -> bool {
    fs::metadata(block).is_ok_and(|m| m.len() == len) && meta::verify_file(block, meta_path).is_ok_and(|n| n == len)
}

fn make_dir(path: &Path, mode: u32, owner: Owner) -> Result<()> {
    if !path.is_dir() {
        fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    }
    set_owner_mode(path, mode, owner)
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

fn set_owner_mode(path: &Path, mode: u32, owner: Owner) -> Result<()> {
    std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
        .with_context(|| format!("chown {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).with_context(|| format!("chmod {}", path.display()))
}

/// Writes a small file from the backup into place, atomically.
fn put_small(src: &Path, dst: &Path, mode: u32, owner: Owner) -> Result<()> {
    let bytes = fs::read(src).with_context(|| format!("reading {}", src.display()))?;
    let (tmp, mut file) = fsutil::create_temp(dst, mode)?;
    let written = file
        .write_all(&bytes)
        .context("writing")
        .and_then(|_| fchown(&file, Some(owner.uid), Some(owner.gid)).context("chown"));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", dst.display())));
    }
    fs::rename(&tmp, dst).with_context(|| format!("renaming into {}", dst.display()))
}

/// Copies a block and its `.meta` from the store, checking the CRCs on the way.
fn put_block(
    store: &BlockStore,
    key: &BlockKey,
    block: &Path,
    meta_path: &Path,
    mode: u32,
    meta_mode: u32,
    owner: Owner,
) -> Result<()> {
    let meta_bytes =
        fs::read(store.meta_path(key)).with_context(|| format!("reading {}", store.meta_path(key).display()))?;
    let mut verifier = BlockVerifier::new(&meta_bytes).with_context(|| format!("the stored .meta of {key}"))?;
    let mut input = File::open(store.block_path(key)).with_context(|| format!("the stored block {key} is missing"))?;
    let (tmp, mut out) = fsutil::create_temp(block, mode)?;
    let (tmp_meta, mut meta_out) = fsutil::create_temp(meta_path, meta_mode)?;
    let result = (|| -> Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buf).context("reading the stored block")?;
            if n == 0 {
                break;
            }
            verifier
                .update(&buf[..n])
                .context("the stored block fails its CRC check")?;
            out.write_all(&buf[..n]).context("writing the block")?;
        }
        verifier.finish().context("the stored block fails its CRC check")?;
        meta_out.write_all(&meta_bytes).context("writing the .meta")?;
        for f in [&out, &meta_out] {
            fchown(f, Some(owner.uid), Some(owner.gid)).context("chown")?;
        }
        fs::rename(&tmp_meta, meta_path).context("renaming the .meta into place")?;
        fs::rename(&tmp, block).context("renaming the block into place")?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_file(&tmp_meta);
    }
    result
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

fn sync_fs(dir: &Path) -> Result<()> {
    let handle = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    // SAFETY: syncfs only reads the descriptor, which `handle` keeps open.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("syncfs on {}", dir.display()));
    }
    Ok(())
}
