//! The node-local HopsFS steps of a backup, called in-process by the leader
//! for its own node or by an agent for a remote leader: list this node's
//! blocks into an inventory, and upload the blocks the leader assigned.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::fsuser::FsUser;
use super::inventory::{self, BlockLine, DirLine, Line, PoolLine, VersionLine};
use super::layout;
use super::listcache::{self, Folder, Stamp};
use super::store::{BlockBatch, BlockKey, PutError};
use crate::backup_id::BackupId;
use crate::config::Config;
use crate::fsutil;
use crate::job::JobControl;
use crate::repo::manifest::FileEntry;
use crate::repo::store::Access;
use crate::repo::Repository;
use crate::runner::RunAs;

/// Folder of a node's HopsFS files inside a backup folder.
pub fn node_rel_dir(node: &str) -> String {
    format!("hopsfs/{node}")
}

/// A node's inventory inside a backup folder.
pub fn inventory_rel(node: &str) -> String {
    format!("{}/inventory.tsv", node_rel_dir(node))
}

/// The list of blocks assigned to `node` in upload round `round`.
pub fn assignment_rel(node: &str, round: u32) -> String {
    format!("{}/assign-{round}.tsv", node_rel_dir(node))
}

/// What listing a node stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The inventory and the VERSION files.
    pub files: Vec<FileEntry>,
    pub blocks: u64,
    pub bytes: u64,
    /// Block files without their `.meta` (or the reverse), left out.
    pub skipped: Vec<String>,
}

/// A replica that could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadReplica {
    pub pool: String,
    pub id: u64,
    pub genstamp: u64,
    pub error: String,
}

impl BadReplica {
    /// The block's identity.
    pub fn key(&self) -> BlockKey {
        BlockKey {
            pool: self.pool.clone(),
            id: self.id,
            genstamp: self.genstamp,
        }
    }
}

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub blocks: u64,
    pub bytes: u64,
    /// Replicas that failed their CRC check or could not be read.
    pub bad: Vec<BadReplica>,
}

/// A small file read as `hdfs`, to be stored in the backup.
struct Captured {
    stored: String,
    bytes: Vec<u8>,
    mode: u32,
}

impl Captured {
    fn read(path: &Path, stored: String) -> Result<Captured> {
        let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Captured {
            stored,
            bytes,
            mode: meta.permissions().mode() & 0o7777,
        })
    }

    fn line(&self, dir: u16) -> VersionLine {
        VersionLine {
            dir,
            mode: self.mode,
            size: self.bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&self.bytes)),
            stored: self.stored.clone(),
        }
    }
}

/// Lists this node's finalized blocks and VERSION files, reading as
/// `[hopsfs] user`, into `hopsfs/<node>/` of backup `id`.
pub fn take_inventory(config: &Config, id: BackupId, control: &JobControl) -> Result<Listed> {
    let hdfs = config.hdfs_user()?;
    let writer = Repository::of(config).backup_in_progress(id)?;
    let node = config.this_node.as_str();
    let rel_root = node_rel_dir(node);
    // Written as it is scanned, stored once whole.
    let spool = fsutil::spool(&config.restore.state_dir)?;
    let (mut file, blocks, bytes, captured, skipped) = scan_all(config, &hdfs, node, &rel_root, spool, control)?;
    file.rewind().context("rereading the inventory")?;
    let mut files = vec![writer.put(&inventory_rel(node), &mut BufReader::new(file), Access::Group)?];
    for c in captured {
        files.push(writer.put_bytes(&c.stored, &c.bytes, Access::Group)?);
    }
    for s in &skipped {
        warn!("left out of the backup: {s}");
    }
    info!(blocks, bytes, "listed {blocks} finalized blocks ({bytes} bytes)");
    Ok(Listed {
        files,
        blocks,
        bytes,
        skipped,
    })
}

type Scanned = (File, u64, u64, Vec<Captured>, Vec<String>);

fn scan_all(
    config: &Config,
    hdfs: &RunAs,
    node: &str,
    rel_root: &str,
    file: File,
    control: &JobControl,
) -> Result<Scanned> {
    let mut w = inventory::Writer::new(BufWriter::new(file), node)?;
    let mut captured = Vec::new();
    let mut skipped = Vec::new();
    let mut pool_index = 0u16;
    let started_ns = listcache::now_ns();
    let mut folders = FolderCount::default();
    // Everything below is read with hdfs's permissions.
    let _as_hdfs = FsUser::switch(hdfs.uid, hdfs.gid)?;
    for (di, dir) in config.hopsfs.data_dirs.iter().enumerate() {
        let di = u16::try_from(di).map_err(|_| anyhow!("too many data folders"))?;
        let meta = fs::metadata(dir).with_context(|| format!("[hopsfs] data_dirs: {}", dir.display()))?;
        let path = dir.to_str().ok_or_else(|| anyhow!("{} is not UTF-8", dir.display()))?;
        w.write(&Line::Dir(DirLine {
            index: di,
            mode: meta.permissions().mode() & 0o7777,
            path: path.into(),
        }))?;
        let version = Captured::read(
            &layout::current(dir).join("VERSION"),
            format!("{rel_root}/{di}/VERSION"),
        )
        .context("a data folder without current/VERSION is not a HopsFS storage folder")?;
        w.write(&Line::Version(version.line(di)))?;
        captured.push(version);
        let mut pools = Vec::new();
        for e in
            fs::read_dir(layout::current(dir)).with_context(|| format!("listing {}", layout::current(dir).display()))?
        {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type()?.is_dir() && name.starts_with("BP-") {
                if !layout::is_pool_name(&name) {
                    bail!("{}: unexpected block pool name {name:?}", dir.display());
                }
                pools.push(name);
            }
        }
        pools.sort();
        for pool in pools {
            let version = Captured::read(
                &layout::pool_version(dir, &pool),
                format!("{rel_root}/{di}/{pool}/VERSION"),
            )?;
            w.write(&Line::Pool(PoolLine {
                dir: di,
                index: pool_index,
                id: pool.clone(),
                version: version.line(di),
            }))?;
            captured.push(version);
            let finalized = layout::finalized(dir, &pool);
            let scan = PoolScan {
                finalized: &finalized,
                ids: (di, pool_index),
                hdfs,
                cache_dir: config
                    .hopsfs
                    .list_cache
                    .then(|| listcache::dir_for(&config.restore.state_dir, &finalized)),
                started_ns,
            };
            let counted = scan_pool(&scan, &mut w, &mut skipped, control)?;
            folders.read += counted.read;
            folders.cached += counted.cached;
            pool_index = pool_index
                .checked_add(1)
                .ok_or_else(|| anyhow!("too many block pools"))?;
        }
    }
    info!(
        folders_read = folders.read,
        folders_cached = folders.cached,
        "{} block folders read, {} unchanged ones taken from the listing cache",
        folders.read,
        folders.cached
    );
    let (out, blocks, bytes) = w.finish()?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .context("writing the inventory")?;
    Ok((file, blocks, bytes, captured, skipped))
}

/// How many threads list one `finalized/` folder. Cold listings wait on one
/// small read per folder and file; several in flight keep the disks busy.
const LIST_THREADS: usize = 4;

/// How one `finalized/` folder is listed.
struct PoolScan<'a> {
    finalized: &'a Path,
    /// Storage folder and pool index of its blocks in the inventory.
    ids: (u16, u16),
    hdfs: &'a RunAs,
    /// The listing cache's folder for it, if the cache is on.
    cache_dir: Option<PathBuf>,
    /// When this listing started (ns since the epoch).
    started_ns: i128,
}

/// Folders listed: read from the disk, and taken from the cache.
#[derive(Debug, Default, Clone, Copy)]
struct FolderCount {
    read: u64,
    cached: u64,
}

/// One folder of a subtree as listed: path below `finalized/`, stamp, content.
type Listed1 = (PathBuf, Stamp, Folder);

/// A subtree's folders, or why it could not be listed.
type Tree = Result<(Vec<Listed1>, FolderCount)>;

/// Walks a `finalized/` folder, pairing every `blk_<id>` with its one
/// `blk_<id>_<gs>.meta` in the same folder. The folder's own files come
/// first, then each subtree in name order, folders before their subfolders;
/// the subtrees are listed by [`LIST_THREADS`] threads, each reading as
/// `hdfs`, and written in that order. With the listing cache, a folder whose
/// stamp did not change is taken from the cache (see [`listcache`]).
fn scan_pool<W: std::io::Write>(
    scan: &PoolScan<'_>,
    w: &mut inventory::Writer<W>,
    skipped: &mut Vec<String>,
    control: &JobControl,
) -> Result<FolderCount> {
    let mut count = FolderCount::default();
    if !scan.finalized.is_dir() {
        return Ok(count);
    }
    let top = scan_dir(scan.finalized, Path::new(""), scan.ids)?;
    count.read += 1;
    for b in top.blocks {
        w.write(&Line::Block(b))?;
    }
    skipped.extend(top.skipped);
    // Batches of subtrees, each batch listed concurrently and written in order:
    // at most one batch of lines (and of caches) is held in memory.
    for batch in top.subdirs.chunks(LIST_THREADS * 2) {
        control.check()?;
        crate::fault::point("hopsfs-list-batch", Some(control))?;
        let caches: Vec<Option<listcache::Cache>> = match &scan.cache_dir {
            Some(dir) => as_myself(|| Ok(batch.iter().map(|name| load_cache(dir, name)).collect()))?,
            None => batch.iter().map(|_| None).collect(),
        };
        let next = AtomicUsize::new(0);
        let mut results: Vec<(usize, Tree)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..LIST_THREADS.min(batch.len()))
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        // The filesystem identity is per thread.
                        let as_hdfs = FsUser::switch(scan.hdfs.uid, scan.hdfs.gid);
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= batch.len() {
                                break done;
                            }
                            let tree = match &as_hdfs {
                                Ok(_) => scan_tree(scan, Path::new(&batch[i]), caches[i].as_ref(), control),
                                Err(e) => Err(anyhow!("{e:#}")),
                            };
                            done.push((i, tree));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|h| {
                    h.join()
                        .unwrap_or_else(|_| vec![(usize::MAX, Err(anyhow!("a listing thread panicked")))])
                })
                .collect()
        });
        results.sort_by_key(|(i, _)| *i);
        if results.len() != batch.len() {
            bail!("a listing thread ended early");
        }
        for (i, result) in results {
            let (tree, counted) = result?;
            count.read += counted.read;
            count.cached += counted.cached;
            for (_, _, folder) in &tree {
                for b in &folder.blocks {
                    w.write(&Line::Block(b.clone()))?;
                }
                skipped.extend(folder.skipped.iter().cloned());
            }
            if let Some(dir) = &scan.cache_dir {
                let path = listcache::file_for(dir, &batch[i]);
                let saved = as_myself(|| {
                    let mut cw = listcache::CacheWriter::create(&path, scan.started_ns)?;
                    for (rel, stamp, folder) in &tree {
                        cw.folder(rel, stamp, folder)?;
                    }
                    cw.commit()
                });
                if let Err(e) = saved {
                    warn!("could not save the listing cache {}: {e:#}", path.display());
                }
            }
        }
    }
    if let Some(dir) = &scan.cache_dir {
        if let Err(e) = as_myself(|| listcache::remove_others(dir, &top.subdirs)) {
            warn!("could not tidy the listing cache {}: {e:#}", dir.display());
        }
    }
    Ok(count)
}

/// Runs `f` with this process's own filesystem identity (to read and write
/// hwdr's state while the thread otherwise reads as `hdfs`).
fn as_myself<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let _me = FsUser::switch(nix::unistd::Uid::effective(), nix::unistd::Gid::effective())?;
    f()
}

fn load_cache(dir: &Path, name: &str) -> Option<listcache::Cache> {
    let path = listcache::file_for(dir, name);
    match listcache::load(&path) {
        Ok(cache) => cache,
        Err(e) => {
            warn!("listing {name} in full: the listing cache does not read: {e:#}");
            None
        }
    }
}

/// Lists the subtree `rel` of `finalized/`, depth first in name order.
fn scan_tree(scan: &PoolScan<'_>, rel: &Path, cache: Option<&listcache::Cache>, control: &JobControl) -> Tree {
    let mut out = Vec::new();
    let mut count = FolderCount::default();
    let mut stack = vec![rel.to_path_buf()];
    while let Some(rel) = stack.pop() {
        control.check()?;
        // The stamp is taken first: a change during the read makes it stale.
        let stamp = Stamp::of(&scan.finalized.join(&rel))?;
        let folder = match cache.and_then(|c| c.get(&rel, &stamp)) {
            Some(cached) => {
                count.cached += 1;
                let mut folder = cached.clone();
                for b in &mut folder.blocks {
                    (b.dir, b.pool) = scan.ids;
                }
                folder
            }
            None => {
                count.read += 1;
                scan_dir(scan.finalized, &rel, scan.ids)?
            }
        };
        stack.extend(folder.subdirs.iter().rev().map(|name| rel.join(name)));
        out.push((rel, stamp, folder));
    }
    Ok((out, count))
}

/// Lists one folder `rel` of `finalized/`: its blocks, what it leaves out,
/// and its subfolders (names, sorted).
fn scan_dir(finalized: &Path, rel: &Path, (dir, pool): (u16, u16)) -> Result<Folder> {
    let here = finalized.join(rel);
    let mut out = Folder::default();
    let mut blocks: BTreeMap<u64, (u64, u32)> = BTreeMap::new();
    let mut metas: HashMap<u64, Vec<(u64, u64, u32)>> = HashMap::new();
    for e in fs::read_dir(&here).with_context(|| format!("listing {}", here.display()))? {
        let e = e.with_context(|| format!("listing {}", here.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let kind = e.file_type()?;
        if kind.is_dir() {
            out.subdirs.push(name);
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let m = e
            .metadata()
            .with_context(|| format!("stat {}", here.join(&name).display()))?;
        let mode = m.permissions().mode() & 0o7777;
        if let Some(id) = layout::parse_block_name(&name) {
            blocks.insert(id, (m.len(), mode));
        } else if let Some((id, gs)) = layout::parse_meta_name(&name) {
            metas.entry(id).or_default().push((gs, m.len(), mode));
        }
    }
    out.subdirs.sort();
    for (id, (len, mode)) in blocks {
        let rel_file = rel.join(format!("blk_{id}"));
        let rel_str = rel_file.to_string_lossy().into_owned();
        match metas.remove(&id).as_deref() {
            Some([(gs, meta_len, meta_mode)]) => {
                let canonical = layout::canonical_rel_path(id);
                out.blocks.push(BlockLine {
                    dir,
                    pool,
                    id,
                    genstamp: *gs,
                    len,
                    mode,
                    meta_len: *meta_len,
                    meta_mode: *meta_mode,
                    path: (rel_str != canonical).then_some(rel_str),
                });
            }
            Some(several) => out.skipped.push(format!(
                "{}: block {id} has {} .meta files",
                here.display(),
                several.len()
            )),
            None => out.skipped.push(format!("{}: blk_{id} has no .meta", here.display())),
        }
    }
    let mut orphans: Vec<u64> = metas.into_keys().collect();
    orphans.sort_unstable();
    for id in orphans {
        out.skipped
            .push(format!("{}: a .meta of block {id} without its block", here.display()));
    }
    Ok(out)
}

/// Uploads the blocks of assignment round `round` of backup `id` from this
/// node into the block store, each checked against its CRCs. Replicas that
/// fail are reported, not fatal: the leader takes them from another node.
pub fn upload(config: &Config, id: BackupId, round: u32, control: &JobControl) -> Result<Uploaded> {
    let hdfs = config.hdfs_user()?;
    let repo = Repository::of(config);
    repo.backup_in_progress(id)?;
    let backup = repo.reader(id);
    let node = config.this_node.as_str();
    let store = repo.blocks();

    // The assignment: pool, id, genstamp per line.
    let assign_rel = assignment_rel(node, round);
    let text = BufReader::new(
        backup
            .open(&assign_rel)
            .with_context(|| format!("opening {assign_rel}"))?,
    );
    let mut pools: Vec<String> = Vec::new();
    let mut wanted: HashSet<(usize, u64, u64)> = HashSet::new();
    for line in text.lines() {
        let line = line?;
        let mut f = line.split('\t');
        let (Some(pool), Some(bid), Some(gs), None) = (f.next(), f.next(), f.next(), f.next()) else {
            bail!("{assign_rel}: bad line {line:?}");
        };
        let pi = match pools.iter().position(|p| p == pool) {
            Some(i) => i,
            None => {
                pools.push(pool.to_owned());
                pools.len() - 1
            }
        };
        wanted.insert((pi, bid.parse()?, gs.parse()?));
    }
    let total = wanted.len();

    // Walk this node's inventory and upload what was assigned.
    let inv_rel = inventory_rel(node);
    let inv = BufReader::new(backup.open(&inv_rel).with_context(|| format!("opening {inv_rel}"))?);
    let mut dirs: HashMap<u16, PathBuf> = HashMap::new();
    let mut inv_pools: HashMap<u16, (u16, String)> = HashMap::new();
    let mut done = Uploaded {
        blocks: 0,
        bytes: 0,
        bad: Vec::new(),
    };
    let mut batch = store.batch();
    inventory::read(inv, |line| {
        match line {
            Line::Dir(d) => {
                dirs.insert(d.index, PathBuf::from(d.path));
            }
            Line::Pool(p) => {
                inv_pools.insert(p.index, (p.dir, p.id));
            }
            Line::Block(b) => {
                let Some((_, pool)) = inv_pools.get(&b.pool) else {
                    bail!("inventory names pool {} before listing it", b.pool);
                };
                let Some(pi) = pools.iter().position(|p| p == pool) else {
                    return Ok(());
                };
                if !wanted.remove(&(pi, b.id, b.genstamp)) {
                    return Ok(());
                }
                control.check()?;
                let dir = dirs
                    .get(&b.dir)
                    .ok_or_else(|| anyhow!("inventory names data folder {}", b.dir))?;
                let key = BlockKey {
                    pool: pool.clone(),
                    id: b.id,
                    genstamp: b.genstamp,
                };
                crate::fault::point("hopsfs-upload-block", Some(control))?;
                match upload_one(&mut batch, &hdfs, dir, &key, &b, control) {
                    Ok(()) => {
                        done.blocks += 1;
                        done.bytes += b.len;
                        control.file_done(b.len);
                    }
                    Err(PutError::Corrupt(error)) => {
                        warn!("replica of {key} on this node is bad: {error}");
                        done.bad.push(BadReplica {
                            pool: key.pool,
                            id: key.id,
                            genstamp: key.genstamp,
                            error,
                        });
                    }
                    Err(PutError::Io(e)) => return Err(e.context(format!("storing {key}"))),
                }
            }
            Line::Node(_) | Line::Version(_) | Line::End { .. } => {}
        }
        Ok(())
    })?;
    if let Some((pi, bid, gs)) = wanted.iter().next() {
        bail!(
            "{} of {total} assigned blocks are not in this node's inventory, e.g. {}/blk_{bid}_{gs}",
            wanted.len(),
            pools[*pi]
        );
    }
    // Durable and visible before the job reports success.
    batch.commit()?;
    info!(
        blocks = done.blocks,
        bytes = done.bytes,
        bad = done.bad.len(),
        "uploaded {} blocks ({} bytes)",
        done.blocks,
        done.bytes
    );
    Ok(done)
}

fn upload_one(
    batch: &mut BlockBatch<'_>,
    hdfs: &RunAs,
    dir: &Path,
    key: &BlockKey,
    b: &BlockLine,
    control: &JobControl,
) -> Result<(), PutError> {
    let finalized = layout::finalized(dir, &key.pool);
    let rel = b.path.clone().unwrap_or_else(|| layout::canonical_rel_path(b.id));
    let block_path = finalized.join(&rel);
    let meta_path = block_path.with_file_name(format!("blk_{}_{}.meta", b.id, b.genstamp));
    let (mut block, mut meta) = {
        let _as_hdfs = FsUser::switch(hdfs.uid, hdfs.gid)?;
        let open = |p: &Path| File::open(p).map_err(|e| PutError::Corrupt(format!("cannot read {}: {e}", p.display())));
        (open(&block_path)?, open(&meta_path)?)
    };
    let mut meta_bytes = Vec::new();
    meta.read_to_end(&mut meta_bytes)
        .map_err(|e| PutError::Corrupt(format!("cannot read {}: {e}", meta_path.display())))?;
    batch.put(key, &mut block, &meta_bytes, b.len, control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::{Gid, Uid};

    fn put(finalized: &Path, rel: &str, id: u64, with_meta: bool) {
        let dir = finalized.join(rel);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("blk_{id}")), vec![1u8; id as usize % 700]).unwrap();
        if with_meta {
            fs::write(dir.join(format!("blk_{id}_1001.meta")), b"meta").unwrap();
        }
    }

    type Blocks = Vec<(u64, u64, Option<String>)>;

    /// The blocks and skipped files of a listing of `finalized`, and how many
    /// folders it read and took from the cache.
    fn listing_with(
        finalized: &Path,
        cache_dir: Option<&Path>,
        started_ns: i128,
    ) -> (Blocks, Vec<String>, FolderCount) {
        let me = RunAs {
            name: "me".into(),
            uid: Uid::effective(),
            gid: Gid::effective(),
            groups: Vec::new(),
            home: PathBuf::from("/"),
        };
        let scan = PoolScan {
            finalized,
            ids: (0, 0),
            hdfs: &me,
            cache_dir: cache_dir.map(Path::to_owned),
            started_ns,
        };
        let mut w = inventory::Writer::new(Vec::new(), "n").unwrap();
        let mut skipped = Vec::new();
        let count = scan_pool(&scan, &mut w, &mut skipped, &JobControl::default()).unwrap();
        let (bytes, _, _) = w.finish().unwrap();
        let mut blocks = Vec::new();
        inventory::read(&bytes[..], |line| {
            if let Line::Block(b) = line {
                blocks.push((b.id, b.len, b.path));
            }
            Ok(())
        })
        .unwrap();
        skipped.sort();
        (blocks, skipped, count)
    }

    fn listing(finalized: &Path) -> (Blocks, Vec<String>) {
        let (blocks, skipped, _) = listing_with(finalized, None, listcache::now_ns());
        (blocks, skipped)
    }

    #[test]
    fn listing_is_in_folder_order_whatever_the_threads_and_names_what_it_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        let finalized = tmp.path().join("finalized");
        // More subtrees than one batch of listing threads, at canonical places.
        let mut expected = Vec::new();
        for d1 in 0..21u64 {
            for d2 in [3u64, 0] {
                for low in [7u64, 2] {
                    let id = (d1 << 16) | (d2 << 8) | low;
                    put(&finalized, &format!("subdir{d1}/subdir{d2}"), id, true);
                }
            }
        }
        // One block at the top and one deeper than HopsFS puts blocks.
        put(&finalized, "", 999, true);
        put(&finalized, "subdir4/subdir3/extra", 5, true);
        // A block without its .meta, and a .meta without its block.
        put(&finalized, "subdir2/subdir0", 0x20001, false);
        fs::write(finalized.join("subdir9/subdir3/blk_42_7.meta"), b"m").unwrap();

        // Reference order: the folder's files by id, then subfolders by name.
        expected.push((999, 999 % 700, Some("blk_999".to_owned())));
        let mut names: Vec<u64> = (0..21).collect();
        names.sort_by_key(|d| format!("subdir{d}"));
        for d1 in names {
            for d2 in [0u64, 3] {
                for low in [2u64, 7] {
                    let id = (d1 << 16) | (d2 << 8) | low;
                    expected.push((id, id % 700, None));
                }
                if (d1, d2) == (4, 3) {
                    expected.push((5, 5, Some("subdir4/subdir3/extra/blk_5".to_owned())));
                }
            }
        }
        let (blocks, skipped) = listing(&finalized);
        assert_eq!(blocks, expected);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(
            skipped[0].ends_with("subdir2/subdir0: blk_131073 has no .meta"),
            "{skipped:?}"
        );
        assert!(
            skipped[1].ends_with("subdir9/subdir3: a .meta of block 42 without its block"),
            "{skipped:?}"
        );
        // Listing again gives the same inventory.
        assert_eq!(listing(&finalized).0, expected);

        // With the listing cache. Folders changed within SETTLE of a listing are
        // not trusted by the next: these were all just made.
        let cache = tmp.path().join("cache");
        let now = listcache::now_ns();
        let (blocks, _, count) = listing_with(&finalized, Some(&cache), now);
        assert_eq!(blocks, expected);
        assert_eq!(count.cached, 0);
        let folders = count.read;
        let (blocks, _, count) = listing_with(&finalized, Some(&cache), now);
        assert_eq!((blocks, count.read, count.cached), (expected.clone(), folders, 0));
        // A listing a minute later: everything but the top folder from the cache.
        let later = now + 60_000_000_000;
        listing_with(&finalized, Some(&cache), later);
        let (blocks, skipped, count) = listing_with(&finalized, Some(&cache), later);
        assert_eq!(
            (blocks, skipped.len(), count.read, count.cached),
            (expected.clone(), 2, 1, folders - 1)
        );

        // A new block changes its folder: that folder is read again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        put(&finalized, "subdir4/subdir3", (4 << 16) | (3 << 8) | 9, true);
        let (blocks, _, count) = listing_with(&finalized, Some(&cache), later + 60_000_000_000);
        let mut with_new = expected.clone();
        let at = with_new.iter().position(|b| b.0 == 5).unwrap();
        let id = (4 << 16) | (3 << 8) | 9;
        with_new.insert(at, (id, id % 700, None));
        assert_eq!(blocks, with_new);
        assert_eq!((count.read, count.cached), (2, folders - 2));
        // So does a removed one; and a damaged cache file costs a full listing of its subtree.
        fs::remove_file(finalized.join(format!("subdir4/subdir3/blk_{id}"))).unwrap();
        fs::remove_file(finalized.join(format!("subdir4/subdir3/blk_{id}_1001.meta"))).unwrap();
        fs::write(listcache::file_for(&cache, "subdir7"), "junk").unwrap();
        let (blocks, _, count) = listing_with(&finalized, Some(&cache), later + 120_000_000_000);
        assert_eq!(blocks, expected);
        assert_eq!((count.read, count.cached), (1 + 1 + 3, folders - 5));
    }
}
