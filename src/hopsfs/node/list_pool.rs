//! Listing one `finalized/` folder of a block pool: its subtrees read by a
//! few threads as `hdfs`, each folder's blocks paired with their `.meta`,
//! unchanged folders taken from the listing cache.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use tracing::warn;

use crate::hopsfs::fsuser::FsUser;
use crate::hopsfs::inventory::{self, BlockLine, Line};
use crate::hopsfs::layout;
use crate::hopsfs::listcache::{self, Folder, Stamp};
use crate::job::JobControl;
use crate::runner::RunAs;

/// How many threads list one `finalized/` folder. Cold listings wait on one
/// small read per folder and file; several in flight keep the disks busy.
const LIST_THREADS: usize = 4;

/// How one `finalized/` folder is listed.
pub(super) struct PoolScan<'a> {
    pub(super) finalized: &'a Path,
    /// Storage folder and pool index of its blocks in the inventory.
    pub(super) ids: (u16, u16),
    pub(super) hdfs: &'a RunAs,
    /// The listing cache's folder for it, if the cache is on.
    pub(super) cache_dir: Option<PathBuf>,
    /// When this listing started (ns since the epoch).
    pub(super) started_ns: i128,
}

/// Folders listed: read from the disk, and taken from the cache.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct FolderCount {
    pub(super) read: u64,
    pub(super) cached: u64,
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
pub(super) fn scan_pool<W: std::io::Write>(
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
        let store = std::sync::Arc::new(crate::repo::store::memory::Memory::new());
        let mut w = inventory::Writer::new(Vec::new(), "n", inventory::PieceWriter::new(store.clone())).unwrap();
        w.write(&Line::Pool(inventory::PoolLine {
            dir: 0,
            index: 0,
            id: "BP-1".into(),
            version: inventory::VersionLine {
                dir: 0,
                mode: 0o644,
                size: 1,
                sha256: "ab".into(),
                stored: "hopsfs/n/0/BP-1/VERSION".into(),
            },
        }))
        .unwrap();
        let mut skipped = Vec::new();
        let count = scan_pool(&scan, &mut w, &mut skipped, &JobControl::default()).unwrap();
        let (bytes, _, _, _) = w.finish().unwrap();
        let mut blocks = Vec::new();
        let mut input = inventory::Opened::new(std::io::Cursor::new(bytes), inventory::PieceReader::new(store));
        inventory::read(&mut input, |line| {
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
