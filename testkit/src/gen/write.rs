//! Writing a tree: each node's skeleton (lock, VERSION files, pool
//! folders), the planned blocks with their CRC32C `.meta` files on a few
//! threads, and the `dfsUsed` files.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use anyhow::{anyhow, bail, Context, Result};
use chrono::DateTime;

use hwdr::hopsfs::meta::{self, MetaHeader, META_VERSION};

use super::plan::Plan;
use super::random::{uuid, Content, Rng};
use super::tree::{block_subdirs, pool_current};
use super::{BlockContent, GenBlock, Generated};
use super::{
    BUF_LEN, BYTES_PER_CHECKSUM, CHECKSUM, DIR_MODE, EPOCH_MS, FILE_MODE, LAYOUT_VERSION, LEAVES, MAX_THREADS,
};

/// Creates the `subdir` folders the plan needs, then writes its blocks.
pub(super) fn write_planned(
    generated: &Generated,
    plan: &Plan,
    seed: u64,
    kind: BlockContent,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let pools = generated.pools.len();
    // One bit per leaf folder, per node and pool.
    let mut leaves = vec![vec![0u64; LEAVES / 64]; generated.nodes.len() * pools];
    for (block, nodes) in plan.blocks.iter().zip(plan.replicas.chunks(plan.per_block.max(1))) {
        let (d1, d2) = block_subdirs(block.id);
        let leaf = (d1 * 256 + d2) as usize;
        for &n in nodes {
            leaves[n as usize * pools + block.pool as usize][leaf / 64] |= 1 << (leaf % 64);
        }
    }
    // Tasks: one per node, pool and d1.
    parallel(
        leaves.len() * 256,
        16,
        || (),
        |_, task| {
            let (set, d1) = (task / 256, task % 256);
            let bits = &leaves[set][d1 * 4..d1 * 4 + 4];
            if bits.iter().all(|&w| w == 0) {
                return Ok(());
            }
            let node = &generated.nodes[set / pools];
            let d1_dir = node
                .data_dir
                .join(pool_current(&generated.pools[set % pools]))
                .join(format!("finalized/subdir{d1}"));
            make_dir(&d1_dir, owner)?;
            for d2 in 0..256 {
                if bits[d2 / 64] & (1 << (d2 % 64)) != 0 {
                    make_dir(&d1_dir.join(format!("subdir{d2}")), owner)?;
                }
            }
            Ok(())
        },
    )?;

    parallel(plan.blocks.len(), 32, Scratch::new, |scratch, k| {
        let block = &plan.blocks[k];
        let nodes = &plan.replicas[k * plan.per_block..(k + 1) * plan.per_block];
        let block_rel = generated.block_rel_path(block);
        let meta_rel = generated.meta_rel_path(block);
        let mut paths = std::mem::take(&mut scratch.paths);
        paths.clear();
        for &n in nodes {
            let dir = &generated.nodes[n as usize].data_dir;
            paths.push((dir.join(&block_rel), dir.join(&meta_rel)));
        }
        let written = write_block(block, generated.pool_name(block), seed, kind, &paths, owner, scratch);
        scratch.paths = paths;
        written
    })
}

/// Per-thread buffers for writing blocks.
pub(super) struct Scratch {
    buf: Vec<u8>,
    sums: Vec<u8>,
    paths: Vec<(PathBuf, PathBuf)>,
    files: Vec<(File, File)>,
}

impl Scratch {
    pub(super) fn new() -> Self {
        Self {
            buf: vec![0u8; BUF_LEN],
            sums: Vec::with_capacity(BUF_LEN / BYTES_PER_CHECKSUM as usize * 4 + meta::HEADER_LEN),
            paths: Vec::new(),
            files: Vec::new(),
        }
    }
}

/// Writes `block` and its `.meta` file to every (block, meta) path in `paths`,
/// generating its content once.
pub(super) fn write_block(
    block: &GenBlock,
    pool: &str,
    seed: u64,
    kind: BlockContent,
    paths: &[(PathBuf, PathBuf)],
    owner: Option<(u32, u32)>,
    scratch: &mut Scratch,
) -> Result<()> {
    scratch.files.clear();
    for (block_path, meta_path) in paths {
        scratch
            .files
            .push((create_file(block_path, owner)?, create_file(meta_path, owner)?));
    }
    let header = MetaHeader {
        version: META_VERSION,
        checksum: CHECKSUM,
        bytes_per_checksum: BYTES_PER_CHECKSUM,
    }
    .encode();
    let mut content = Content::new(seed, pool, block.id, kind);
    let mut left = block.len;
    let mut first = true;
    loop {
        let n = left.min(BUF_LEN as u64) as usize;
        let data = &mut scratch.buf[..n];
        content.fill(data);
        scratch.sums.clear();
        if first {
            scratch.sums.extend_from_slice(&header);
        }
        meta::append_checksums(&mut scratch.sums, data, CHECKSUM, BYTES_PER_CHECKSUM);
        for ((block_file, meta_file), (block_path, meta_path)) in scratch.files.iter_mut().zip(paths) {
            if n > 0 {
                block_file
                    .write_all(data)
                    .with_context(|| format!("writing {}", block_path.display()))?;
            }
            meta_file
                .write_all(&scratch.sums)
                .with_context(|| format!("writing {}", meta_path.display()))?;
        }
        left -= n as u64;
        first = false;
        if left == 0 {
            break;
        }
    }
    scratch.files.clear();
    Ok(())
}

/// Writes every node's `dfsUsed` files: bytes of block and meta files per pool.
pub(super) fn write_dfs_used(generated: &Generated, owner: Option<(u32, u32)>) -> Result<()> {
    for (n, node) in generated.nodes.iter().enumerate() {
        let mut used = vec![0u64; generated.pools.len()];
        for b in generated.node_blocks(n).chain(node.rbw.iter()) {
            used[b.pool as usize] += b.len + b.meta_len();
        }
        for (pool, used) in generated.pools.iter().zip(used) {
            let path = node.data_dir.join(pool_current(pool)).join("dfsUsed");
            write_file(
                &path,
                format!("{used} {}", EPOCH_MS + 3_600_000).as_bytes(),
                owner,
                true,
            )?;
        }
    }
    Ok(())
}

/// Writes `<node_dir>/dn/` without blocks: lock, VERSION files, pool folders.
pub(super) fn write_node_skeleton(
    node_dir: &Path,
    index: usize,
    cluster_id: &str,
    pools: &[(String, u32)],
    owner: Option<(u32, u32)>,
    rng: &mut Rng,
) -> Result<()> {
    if node_dir.exists() {
        bail!("{} already exists", node_dir.display());
    }
    let dn = node_dir.join("dn");
    let current = dn.join("current");
    for dir in [node_dir, &dn, &current] {
        make_dir(dir, owner)?;
    }
    // The datanode's JVM name, as `ManagementFactory.getRuntimeMXBean().getName()`.
    let lock = format!("{}@dn{index}.hopsworks.internal", 1000 + rng.below(60_000));
    write_file(&dn.join("in_use.lock"), lock.as_bytes(), owner, false)?;
    let date = java_date(EPOCH_MS + index as i64 * 1000)?;
    let version = format!(
        "#{date}\nstorageID=DS-{}\nclusterID={cluster_id}\ncTime=0\ndatanodeUuid={}\nstorageType=DATA_NODE\nlayoutVersion={LAYOUT_VERSION}\n",
        uuid(rng),
        uuid(rng)
    );
    write_file(&current.join("VERSION"), version.as_bytes(), owner, false)?;
    for (pool, namespace_id) in pools {
        let pool_dir = current.join(pool);
        let pool_current = pool_dir.join("current");
        for dir in [
            &pool_dir,
            &pool_current,
            &pool_current.join("finalized"),
            &pool_current.join("rbw"),
            &pool_dir.join("tmp"),
        ] {
            make_dir(dir, owner)?;
        }
        let version = format!(
            "#{date}\nnamespaceID={namespace_id}\ncTime=0\nblockpoolID={pool}\nlayoutVersion={LAYOUT_VERSION}\n"
        );
        write_file(&pool_current.join("VERSION"), version.as_bytes(), owner, false)?;
    }
    Ok(())
}

/// `ms` as Java's `Date.toString()` in UTC, the comment line of a VERSION file.
fn java_date(ms: i64) -> Result<String> {
    let date = DateTime::from_timestamp_millis(ms).ok_or_else(|| anyhow!("timestamp {ms} out of range"))?;
    Ok(date.format("%a %b %d %H:%M:%S UTC %Y").to_string())
}

/// Creates folder `path` (0755, owned by `owner`) unless it exists.
fn make_dir(path: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    // The umask may have narrowed the mode; a datanode's (022) gives 0755.
    fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
        .with_context(|| format!("setting mode of {}", path.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .with_context(|| format!("changing owner of {}", path.display()))?;
    }
    Ok(())
}

/// Creates new file `path` (0644, owned by `owner`).
fn create_file(path: &Path, owner: Option<(u32, u32)>) -> Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .with_context(|| format!("setting mode of {}", path.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .with_context(|| format!("changing owner of {}", path.display()))?;
    }
    Ok(file)
}

/// Writes a small file; `replace` allows it to exist already.
fn write_file(path: &Path, bytes: &[u8], owner: Option<(u32, u32)>, replace: bool) -> Result<()> {
    if replace {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    create_file(path, owner)?
        .write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs `work(state, i)` for every `i` in `0..tasks` on a few threads, taking
/// `batch` tasks at a time; stops at the first error and returns it.
fn parallel<S>(
    tasks: usize,
    batch: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, usize) -> Result<()> + Sync,
) -> Result<()> {
    if tasks == 0 {
        return Ok(());
    }
    let threads = thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS)
        .min(tasks.div_ceil(batch));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    let mut state = init();
                    while !failed.load(Ordering::Relaxed) {
                        let start = next.fetch_add(batch, Ordering::Relaxed);
                        if start >= tasks {
                            break;
                        }
                        for i in start..(start + batch).min(tasks) {
                            if let Err(e) = work(&mut state, i) {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let mut result = Ok(());
        for worker in workers {
            let outcome = worker
                .join()
                .unwrap_or_else(|_| Err(anyhow!("a generator thread panicked")));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    })
}
