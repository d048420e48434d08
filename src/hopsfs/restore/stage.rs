//! Phase 1 of a node restore, staging: every block not already in place and
//! intact is copied from the block store into the staging folder, checked
//! against its CRCs; missing or damaged stored blocks are reported as damage.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::fchown;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::fsops::{as_owner, make_dir, owner, sync_fs, Owner, Writeback};
use super::walk::{inventory_dirs, walk_inventory, BlockPlace, Item};
use super::{entry, prepare, staged_block, staged_meta, staged_pool_version, staging_dir, Prepared};
use crate::backup_id::BackupId;
use crate::config::Config;
use crate::fsutil;
use crate::hopsfs::inventory::VersionLine;
use crate::hopsfs::meta;
use crate::hopsfs::store::{BlockKey, BlockStore, Corrupt};
use crate::job::JobControl;
use crate::parallel::{self, Worker};
use crate::repo::store::sealed::Tampered;
use crate::repo::store::StoreError;

/// The marker of a finished stage, inside the staging folder.
const MARKER: &str = "staged.json";
/// The most damaged files a report names one by one.
const NAMED: usize = 20;

/// What staging a node's blocks found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagedBlocks {
    /// Blocks copied into the staging folder (or found there from an
    /// interrupted stage).
    pub blocks: u64,
    pub bytes: u64,
    /// Blocks already in place and intact.
    pub kept: u64,
    /// Stored blocks (or files of the backup) that are missing or damaged:
    /// the restore is refused. At most [`NAMED`] are named; `damaged_count`
    /// counts them all.
    pub damaged: Vec<String>,
    pub damaged_count: u64,
}

/// The marker written when a stage is complete.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Marker {
    backup_id: BackupId,
    blocks: u64,
    bytes: u64,
}

/// Whether every storage folder of the node holds a finished stage of `id`.
pub(super) fn staged_for(walk_dirs: &[PathBuf], id: BackupId) -> bool {
    !walk_dirs.is_empty()
        && walk_dirs.iter().all(|dir| {
            fs::read(staging_dir(dir).join(MARKER))
                .ok()
                .and_then(|b| serde_json::from_slice::<Marker>(&b).ok())
                .is_some_and(|m| m.backup_id == id)
        })
}

/// Stages this node's blocks and VERSION files of backup `id` (see the text
/// of [`crate::hopsfs::restore`]), `[repository] upload_parallelism` blocks
/// at once. Damage is reported in the result, not as an error: the leader
/// refuses the restore naming it. A stage already finished for `id` is not
/// done again.
pub fn stage_node(config: &Config, id: BackupId, control: &JobControl) -> Result<StagedBlocks> {
    let p = prepare(config, id)?;
    if staged_for(&inventory_dirs(&p)?, id) {
        info!("the blocks of backup {id} are already staged on this node");
        return Ok(StagedBlocks::default());
    }
    let owner = owner(config)?;
    let (blocks, bytes) = check_space(&p, config)?;
    control.add_total(blocks, bytes);
    let new_worker = || {
        Ok(Stager {
            store: &p.store,
            owner,
            control,
            out: StagedBlocks::default(),
            damaged: Vec::new(),
        })
    };
    // This thread walks the inventory, makes the folders and stages the
    // small files; the workers stage the blocks.
    let mut dirs = Vec::new();
    let threads = config.repository.upload_parallelism;
    let staged = parallel::run(threads, control, new_worker, |feed| {
        let mut seq = 0;
        let walk = walk_inventory(&p, config, |walk, item| {
            control.check()?;
            match item {
                Item::Dir(dir, mode) => {
                    make_dir(&dir, mode, owner)?;
                    let staging = staging_dir(&dir);
                    make_dir(&staging, 0o700, owner)?;
                    remove_temps(&staging)
                }
                Item::Version(v) => {
                    let dir = walk.dir(v.dir)?;
                    stage_small(&p, &v, &staging_dir(dir).join("VERSION"), owner)
                }
                Item::Pool(pool) => {
                    let dir = walk.dir(pool.dir)?;
                    let dst = staged_pool_version(&staging_dir(dir), &pool.id);
                    make_dir(dst.parent().unwrap_or(dir), 0o700, owner)?;
                    stage_small(&p, &pool.version, &dst, owner)
                }
                Item::Block(place) => {
                    let staging = staging_dir(walk.dir(place.dir)?);
                    seq += 1;
                    feed.send((seq, place, staging))
                }
            }
        })?;
        dirs.extend(walk.dirs.into_values());
        Ok(())
    })?;
    let out = Stager::merge(staged);
    if out.damaged_count > 0 {
        return Ok(out);
    }
    for dir in &dirs {
        sync_fs(dir)?;
    }
    let marker = Marker {
        backup_id: id,
        blocks: out.blocks,
        bytes: out.bytes,
    };
    for dir in &dirs {
        fsutil::write_atomic(&staging_dir(dir).join(MARKER), &serde_json::to_vec(&marker)?, 0o600)?;
    }
    info!(
        staged = out.blocks,
        bytes = out.bytes,
        kept = out.kept,
        threads,
        "staged the HopsFS blocks of backup {id}: {} blocks ({}) staged, {} already in place",
        out.blocks,
        crate::progress::text::size(out.bytes),
        out.kept
    );
    Ok(out)
}

/// One worker of a stage: what it staged, the damage it found with the
/// place of each block in the inventory (the first [`NAMED`]).
struct Stager<'a> {
    store: &'a BlockStore,
    owner: Owner,
    control: &'a JobControl,
    out: StagedBlocks,
    damaged: Vec<(u64, String)>,
}

impl Worker<(u64, BlockPlace, PathBuf)> for Stager<'_> {
    type Done = (StagedBlocks, Vec<(u64, String)>);

    /// Stages block `place` (the `seq`th of the inventory) into `staging`;
    /// an error names the block (the first one is the job's).
    fn take(&mut self, (seq, place, staging): (u64, BlockPlace, PathBuf)) -> Result<()> {
        let staged = crate::fault::point("hopsfs-stage-block", Some(self.control))
            .and_then(|()| stage_block(self.store, &place, &staging, self.owner, self.control))
            .with_context(|| format!("staging block {}", place.key))?;
        match staged {
            BlockStage::InPlace => self.out.kept += 1,
            BlockStage::Staged => {
                self.out.blocks += 1;
                self.out.bytes += place.len;
                self.control.file_done(place.len);
            }
            BlockStage::Damaged(why) => {
                let what = format!("blocks/{}: {why}", place.key);
                warn!("{what}");
                self.out.damaged_count += 1;
                if self.damaged.len() < NAMED {
                    self.damaged.push((seq, what));
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Self::Done> {
        Ok((self.out, self.damaged))
    }
}

impl Stager<'_> {
    /// What the workers staged together, naming the first damaged blocks
    /// of the inventory.
    fn merge(parts: Vec<(StagedBlocks, Vec<(u64, String)>)>) -> StagedBlocks {
        let mut all = StagedBlocks::default();
        let mut damaged = Vec::new();
        for (part, named) in parts {
            all.blocks += part.blocks;
            all.bytes += part.bytes;
            all.kept += part.kept;
            all.damaged_count += part.damaged_count;
            damaged.extend(named);
        }
        damaged.sort();
        all.damaged = damaged.into_iter().take(NAMED).map(|(_, what)| what).collect();
        all
    }
}

/// How one block was staged.
enum BlockStage {
    /// It is in place and intact: nothing to do.
    InPlace,
    /// It is in the staging folder, checked.
    Staged,
    /// The stored copy is missing or damaged.
    Damaged(String),
}

fn stage_block(
    store: &BlockStore,
    place: &BlockPlace,
    staging: &Path,
    owner: Owner,
    control: &JobControl,
) -> Result<BlockStage> {
    if intact(&place.block(), &place.meta(), place.len) {
        return Ok(BlockStage::InPlace);
    }
    let (block, meta_path) = (staged_block(staging, &place.key), staged_meta(staging, &place.key));
    if intact(&block, &meta_path, place.len) {
        return Ok(BlockStage::Staged);
    }
    as_owner(owner, || fsutil::mkdir(block.parent().unwrap_or(staging), 0o700))?;
    let modes = (place.line.mode, place.line.meta_mode);
    match copy_from_store(store, &place.key, &block, &meta_path, modes, owner, control)? {
        Some(why) => Ok(BlockStage::Damaged(why)),
        None => Ok(BlockStage::Staged),
    }
}

/// Fails unless every storage folder's file system has room for what is not
/// yet in place or staged (block and `.meta` lengths). Returns the blocks
/// not in place, and their bytes: what the stage will go through.
fn check_space(p: &Prepared, config: &Config) -> Result<(u64, u64)> {
    let mut need: HashMap<u16, u64> = HashMap::new();
    let mut to_stage = (0, 0);
    let walk = walk_inventory(p, config, |walk, item| {
        if let Item::Block(place) = item {
            let has = |block: &Path| fs::metadata(block).is_ok_and(|m| m.len() == place.len);
            if !has(&place.block()) {
                to_stage = (to_stage.0 + 1, to_stage.1 + place.len);
            }
            // Staged by an interrupted stage: that space is taken already.
            let staged = has(&staged_block(&staging_dir(walk.dir(place.dir)?), &place.key));
            if !has(&place.block()) && !staged {
                *need.entry(place.dir).or_default() += place.len + place.line.meta_len;
            }
        }
        Ok(())
    })?;
    for (index, bytes) in need {
        let dir = walk.dir(index)?;
        // The folder may not exist yet: its nearest existing parent is on its file system.
        let probe = dir.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
        let free = free_bytes(probe)?;
        if bytes > free {
            bail!(
                "not enough space to stage the blocks of {}: they need {bytes} bytes, {} has {free} free; nothing was changed",
                dir.display(),
                probe.display()
            );
        }
    }
    Ok(to_stage)
}

fn free_bytes(path: &Path) -> Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

/// Copies a small file of the backup (a VERSION file), checked against its
/// inventory line, into the staging folder.
fn stage_small(p: &Prepared, v: &VersionLine, dst: &Path, owner: Owner) -> Result<()> {
    let bytes = p.backup.read_checked(&entry(&p.manifest, &v.stored)?)?;
    if hex::encode(Sha256::digest(&bytes)) != v.sha256 {
        bail!("{} does not match its inventory line: it is damaged", v.stored);
    }
    let (tmp, mut file) = as_owner(owner, || fsutil::create_temp(dst, v.mode))?;
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

/// Copies stored block `key` and its `.meta` to `block` and `meta_path`,
/// checking the CRCs on the way. Returns why, when the stored copy is missing
/// or damaged (nothing is left behind then).
fn copy_from_store(
    store: &BlockStore,
    key: &BlockKey,
    block: &Path,
    meta_path: &Path,
    (mode, meta_mode): (u32, u32),
    owner: Owner,
    control: &JobControl,
) -> Result<Option<String>> {
    let meta_bytes = match store.meta(key) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(Some("its .meta is not in the store".into())),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading the stored .meta of {key}"))),
    };
    let mut input = match store.open(key) {
        Ok(input) => input,
        Err(e)
            if e.chain()
                .any(|c| c.downcast_ref::<StoreError>().is_some_and(StoreError::is_not_found)) =>
        {
            return Ok(Some("it is not in the store".into()))
        }
        Err(e) if Corrupt::of(e.as_ref()).is_some() || Tampered::is_in(e.as_ref()) => {
            return Ok(Some(format!("the stored .meta is damaged: {e:#}")))
        }
        Err(e) => return Err(e.context(format!("reading the stored block {key}"))),
    };
    let (tmp, mut out) = as_owner(owner, || fsutil::create_temp(block, mode))?;
    let (tmp_meta, mut meta_out) = as_owner(owner, || fsutil::create_temp(meta_path, meta_mode))?;
    let result = (|| -> Result<Option<String>> {
        let mut buf = vec![0u8; 1 << 20];
        let mut writeback = Writeback::default();
        loop {
            control.check()?;
            let n = match input.read(&mut buf) {
                Ok(n) => n,
                Err(e) if Corrupt::of(&e).is_some() => {
                    return Ok(Some(format!("the stored block fails its CRC check: {e}")))
                }
                Err(e) if Tampered::is_in(&e) => return Ok(Some(format!("the stored block is {e}"))),
                Err(e) => return Err(anyhow::Error::new(e).context("reading the stored block")),
            };
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).context("writing the block")?;
            writeback.wrote(&out, n)?;
        }
        writeback.finish(&out)?;
        meta_out.write_all(&meta_bytes).context("writing the .meta")?;
        // Between the bytes and the renames: an interrupted copy is not visible.
        crate::fault::point("hopsfs-stage-copy", Some(control))?;
        for f in [&out, &meta_out] {
            fchown(f, Some(owner.uid), Some(owner.gid)).context("chown")?;
        }
        fs::rename(&tmp_meta, meta_path).context("renaming the staged .meta")?;
        fs::rename(&tmp, block).context("renaming the staged block")?;
        Ok(None)
    })();
    if !matches!(result, Ok(None)) {
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_file(&tmp_meta);
    }
    result
}

/// Removes the temp files an interrupted stage left in a staging folder.
fn remove_temps(staging: &Path) -> Result<()> {
    let mut stack = vec![staging.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else if is_temp_name(&e.file_name().to_string_lossy()) {
                fs::remove_file(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
            }
        }
    }
    Ok(())
}

/// hwdr's temp names: `.<name>.tmp-<pid>`.
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// An error naming the damage a stage found, if any.
pub fn refuse_damage(id: BackupId, staged: &StagedBlocks) -> Result<()> {
    if staged.damaged_count == 0 {
        return Ok(());
    }
    bail!(
        "backup {id} cannot be restored on this node: {} stored block(s) are missing or damaged: {}",
        staged.damaged_count,
        staged.damaged.join("; ")
    )
}

/// Whether a block and its `.meta` are in place and pass the CRC check.
fn intact(block: &Path, meta_path: &Path, len: u64) -> bool {
    fs::metadata(block).is_ok_and(|m| m.len() == len) && meta::verify_file(block, meta_path).is_ok_and(|n| n == len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hwdrs_only() {
        assert!(is_temp_name(".blk_5_1001.tmp-1234"));
        assert!(is_temp_name(".blk_5_1001.meta.tmp-7"));
        assert!(!is_temp_name("blk_5_1001"));
        assert!(!is_temp_name(".blk_5.tmp-"));
        assert!(!is_temp_name(".x.tmp-12a"));
    }
}
