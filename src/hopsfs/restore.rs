//! Restoring one HopsFS data node from a backup, in two phases, so that
//! nothing on the node changes before everything it needs was read and
//! checked:
//!
//! 1. **stage** ([`stage_node`]): every block of the node's inventory that is
//!    not already in place and intact is copied from the block store into
//!    `<data dir>/.hwdr-staging/` (inside the storage folder, so on the same
//!    file system), checked against its CRCs on the way, owned by `[hopsfs]
//!    user:group` with the mode it had; the VERSION files likewise. A stored
//!    block that is missing or fails its CRCs is reported as damage, naming
//!    it; the free space is checked first. Once all is staged and synced, a
//!    marker `staged.json` names the backup. The data node keeps running.
//! 2. **place** ([`place_node`]): the data node's unit stopped (by the
//!    caller, [`crate::agent::jobs`]), the folders are made and every staged
//!    file is renamed into place: no copy, no temp file in `current/`. Blocks
//!    already in place are kept; with `clean`, block files the backup does not
//!    name are removed. The staging folder goes, the file system is synced.
//!
//! Both are idempotent and resumable after a crash at any point: a staged or
//! placed block is not copied again, temp files of an interrupted stage are
//! removed by the next one, and the placement continues from where it was.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{fchown, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::inventory::{self, BlockLine, Line, PoolLine, VersionLine};
use super::layout;
use super::meta;
use super::node::inventory_rel;
use super::store::{BlockKey, BlockStore, Corrupt};
use crate::backup_id::BackupId;
use crate::config::Config;
use crate::fsutil;
use crate::job::JobControl;
use crate::repo::backup::BackupReader;
use crate::repo::manifest::{FileEntry, HopsfsInfo, Manifest};
use crate::repo::store::StoreError;
use crate::repo::Repository;

/// The staging folder's name inside a storage folder.
pub const STAGING: &str = ".hwdr-staging";
/// The marker of a finished stage, inside the staging folder.
const MARKER: &str = "staged.json";
/// The most damaged files a report names one by one.
const NAMED: usize = 20;

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

/// Owner of everything restored.
#[derive(Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

/// This node's part of a complete backup: the manifest, its HopsFS part, the
/// backup folder and the inventory path, checked against the manifest.
struct Prepared {
    manifest: Manifest,
    hopsfs: HopsfsInfo,
    backup: BackupReader,
    store: BlockStore,
    /// The node's inventory, as the manifest lists it.
    inventory: FileEntry,
}

/// Whether backup `id` holds HopsFS blocks of this node.
pub fn holds_this_node(manifest: &Manifest, config: &Config) -> bool {
    manifest
        .hopsfs
        .as_ref()
        .is_some_and(|h| h.nodes.iter().any(|n| n == config.this_node.as_str()))
}

fn prepare(config: &Config, id: BackupId) -> Result<Prepared> {
    let node = config.this_node.as_str();
    let repo = Repository::of(config);
    let manifest = repo.complete_manifest(id)?;
    let hopsfs = manifest
        .hopsfs
        .clone()
        .ok_or_else(|| anyhow!("backup {id} holds no HopsFS data"))?;
    if !hopsfs.nodes.iter().any(|n| n == node) {
        bail!("backup {id} holds no HopsFS inventory of node {node}");
    }
    let inventory = entry(&manifest, &inventory_rel(node))?;
    Ok(Prepared {
        manifest,
        hopsfs,
        backup: repo.reader(id),
        store: repo.blocks(),
        inventory,
    })
}

/// The manifest's entry of file `rel`.
fn entry(manifest: &Manifest, rel: &str) -> Result<FileEntry> {
    manifest
        .files()
        .find(|f| f.path == rel)
        .cloned()
        .ok_or_else(|| anyhow!("{rel} is not in the manifest of backup {}", manifest.backup_id))
}

fn owner(config: &Config) -> Result<Owner> {
    let hdfs = config.hdfs_user()?;
    let group = config.hopsfs_group()?;
    Ok(Owner {
        uid: hdfs.uid.as_raw(),
        gid: group.gid(),
    })
}

/// The staging folder of storage folder `dir`.
pub fn staging_dir(dir: &Path) -> PathBuf {
    dir.join(STAGING)
}

/// Where block `key` is staged below a staging folder (the store's layout).
fn staged_block(staging: &Path, key: &BlockKey) -> PathBuf {
    staging.join(&key.pool).join(format!(
        "subdir{}/subdir{}/blk_{}_{}",
        (key.id >> 16) & 0xff,
        (key.id >> 8) & 0xff,
        key.id,
        key.genstamp
    ))
}

fn staged_meta(staging: &Path, key: &BlockKey) -> PathBuf {
    let mut p = staged_block(staging, key).into_os_string();
    p.push(".meta");
    PathBuf::from(p)
}

/// Where a pool's VERSION is staged; the storage folder's is `staging/VERSION`.
fn staged_pool_version(staging: &Path, pool: &str) -> PathBuf {
    staging.join(pool).join("VERSION")
}

/// The folders, pools and blocks of one inventory, read as a stream.
#[derive(Default)]
struct Walk {
    dirs: HashMap<u16, PathBuf>,
    pools: HashMap<u16, (u16, String)>,
}

/// One block of the inventory with where it goes.
struct BlockPlace {
    key: BlockKey,
    dir: u16,
    /// The good length (the inventory's, unless the manifest corrects it).
    len: u64,
    line: BlockLine,
    finalized: PathBuf,
    /// Path below `finalized/`.
    rel: String,
}

impl BlockPlace {
    fn block(&self) -> PathBuf {
        self.finalized.join(&self.rel)
    }

    fn meta(&self) -> PathBuf {
        self.block()
            .with_file_name(format!("blk_{}_{}.meta", self.key.id, self.key.genstamp))
    }
}

impl Walk {
    fn dir(&self, index: u16) -> Result<&PathBuf> {
        self.dirs
            .get(&index)
            .ok_or_else(|| anyhow!("the inventory names unknown storage folder {index}"))
    }

    /// Where block line `b` goes.
    fn place(&self, b: BlockLine, hopsfs: &HopsfsInfo) -> Result<BlockPlace> {
        let (dir_index, pool) = self
            .pools
            .get(&b.pool)
            .ok_or_else(|| anyhow!("block of unknown pool {}", b.pool))?;
        let dir = self.dir(*dir_index)?;
        let rel = b.path.clone().unwrap_or_else(|| layout::canonical_rel_path(b.id));
        if !layout::is_safe_rel_path(&rel) {
            bail!("unsafe block path {rel:?} in the inventory");
        }
        let key = BlockKey {
            pool: pool.clone(),
            id: b.id,
            genstamp: b.genstamp,
        };
        Ok(BlockPlace {
            len: hopsfs.good_len(&key, b.len),
            key,
            dir: *dir_index,
            finalized: layout::finalized(dir, pool),
            rel,
            line: b,
        })
    }
}

/// Streams this node's inventory: storage folders and pools are recorded in
/// the walk (and given to `each`), blocks given with their place.
fn walk_inventory(p: &Prepared, config: &Config, mut each: impl FnMut(&Walk, Item) -> Result<()>) -> Result<Walk> {
    let mut walk = Walk::default();
    let mut input = inventory::open(&p.backup, &p.inventory)?;
    inventory::read(&mut input, |line| match line {
        Line::Dir(d) => {
            let path = PathBuf::from(&d.path);
            if !config.hopsfs.data_dirs.contains(&path) {
                bail!(
                    "the backup's data folder {} is not in [hopsfs] data_dirs",
                    path.display()
                );
            }
            walk.dirs.insert(d.index, path.clone());
            each(&walk, Item::Dir(path, d.mode))
        }
        Line::Version(v) => each(&walk, Item::Version(v)),
        Line::Pool(pool) => {
            if !layout::is_pool_name(&pool.id) {
                bail!("unexpected block pool name {:?}", pool.id);
            }
            walk.pools.insert(pool.index, (pool.dir, pool.id.clone()));
            each(&walk, Item::Pool(pool))
        }
        Line::Block(b) => {
            let place = walk.place(b, &p.hopsfs)?;
            each(&walk, Item::Block(place))
        }
        Line::Node(_) | Line::End { .. } => Ok(()),
    })?;
    inventory::drain(&mut input, &p.inventory)?;
    Ok(walk)
}

/// One item of the inventory walk.
enum Item {
    Dir(PathBuf, u32),
    Version(VersionLine),
    Pool(PoolLine),
    Block(BlockPlace),
}

/// Whether every storage folder of the node holds a finished stage of `id`.
fn staged_for(walk_dirs: &[PathBuf], id: BackupId) -> bool {
    !walk_dirs.is_empty()
        && walk_dirs.iter().all(|dir| {
            fs::read(staging_dir(dir).join(MARKER))
                .ok()
                .and_then(|b| serde_json::from_slice::<Marker>(&b).ok())
                .is_some_and(|m| m.backup_id == id)
        })
}

/// The storage folders this node's inventory names.
fn inventory_dirs(p: &Prepared) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let mut input = inventory::open(&p.backup, &p.inventory)?;
    inventory::read(&mut input, |line| {
        if let Line::Dir(d) = line {
            dirs.push(PathBuf::from(d.path));
        }
        Ok(())
    })?;
    inventory::drain(&mut input, &p.inventory)?;
    Ok(dirs)
}

/// Stages this node's blocks and VERSION files of backup `id` (see the
/// module's text). Damage is reported in the result, not as an error: the
/// leader refuses the restore naming it. A stage already finished for `id`
/// is not done again.
pub fn stage_node(config: &Config, id: BackupId, control: &JobControl) -> Result<StagedBlocks> {
    let p = prepare(config, id)?;
    if staged_for(&inventory_dirs(&p)?, id) {
        info!("the blocks of backup {id} are already staged on this node");
        return Ok(StagedBlocks::default());
    }
    let owner = owner(config)?;
    let store = p.store.clone();
    check_space(&p, config)?;
    let mut out = StagedBlocks::default();
    let damage = |what: String, out: &mut StagedBlocks| {
        warn!("{what}");
        out.damaged_count += 1;
        if out.damaged.len() < NAMED {
            out.damaged.push(what);
        }
    };
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
                crate::fault::point("hopsfs-stage-block", Some(control))?;
                let staging = staging_dir(walk.dir(place.dir)?);
                match stage_block(&store, &place, &staging, owner, control)? {
                    BlockStage::InPlace => out.kept += 1,
                    BlockStage::Staged => {
                        out.blocks += 1;
                        out.bytes += place.len;
                        control.file_done(place.len);
                    }
                    BlockStage::Damaged(why) => damage(format!("blocks/{}: {why}", place.key), &mut out),
                }
                Ok(())
            }
        }
    })?;
    if out.damaged_count > 0 {
        return Ok(out);
    }
    for dir in walk.dirs.values() {
        sync_fs(dir)?;
    }
    let marker = Marker {
        backup_id: id,
        blocks: out.blocks,
        bytes: out.bytes,
    };
    for dir in walk.dirs.values() {
        fsutil::write_atomic(&staging_dir(dir).join(MARKER), &serde_json::to_vec(&marker)?, 0o600)?;
    }
    info!(
        staged = out.blocks,
        bytes = out.bytes,
        kept = out.kept,
        "staged the HopsFS blocks of backup {id}: {} blocks ({} bytes) staged, {} already in place",
        out.blocks,
        out.bytes,
        out.kept
    );
    Ok(out)
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
    crate::fsutil::mkdir(block.parent().unwrap_or(staging), 0o700)?;
    let modes = (place.line.mode, place.line.meta_mode);
    match copy_from_store(store, &place.key, &block, &meta_path, modes, owner, control)? {
        Some(why) => Ok(BlockStage::Damaged(why)),
        None => Ok(BlockStage::Staged),
    }
}

/// Fails unless every storage folder's file system has room for what is not
/// yet in place or staged (block and `.meta` lengths).
fn check_space(p: &Prepared, config: &Config) -> Result<()> {
    let mut need: HashMap<u16, u64> = HashMap::new();
    let walk = walk_inventory(p, config, |walk, item| {
        if let Item::Block(place) = item {
            let has = |block: &Path| fs::metadata(block).is_ok_and(|m| m.len() == place.len);
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
    Ok(())
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
    let (tmp, mut file) = fsutil::create_temp(dst, v.mode)?;
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
        Err(e) if Corrupt::of(e.as_ref()).is_some() => return Ok(Some(format!("the stored .meta is damaged: {e:#}"))),
        Err(e) => return Err(e.context(format!("reading the stored block {key}"))),
    };
    let (tmp, mut out) = fsutil::create_temp(block, mode)?;
    let (tmp_meta, mut meta_out) = fsutil::create_temp(meta_path, meta_mode)?;
    let result = (|| -> Result<Option<String>> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            control.check()?;
            let n = match input.read(&mut buf) {
                Ok(n) => n,
                Err(e) if Corrupt::of(&e).is_some() => {
                    return Ok(Some(format!("the stored block fails its CRC check: {e}")))
                }
                Err(e) => return Err(anyhow::Error::new(e).context("reading the stored block")),
            };
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).context("writing the block")?;
        }
        meta_out.write_all(&meta_bytes).context("writing the .meta")?;
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

/// Puts this node's HopsFS storage of backup `id` in place from its staging
/// folders (staging first if that was not done), see the module's text.
pub fn place_node(config: &Config, id: BackupId, clean: bool, control: &JobControl) -> Result<Restored> {
    let p = prepare(config, id)?;
    if !staged_for(&inventory_dirs(&p)?, id) {
        let staged = stage_node(config, id, control)?;
        refuse_damage(id, &staged)?;
    }
    let owner = owner(config)?;
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
