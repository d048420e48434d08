//! A generator of realistic HopsFS data node trees, for tests and benchmarks.
//!
//! `generate` writes `<root>/node<i>/dn/` for every node, laid out as a data
//! node does (facts, section 4): `in_use.lock`, `current/VERSION`, and per block
//! pool its `VERSION`, `dfsUsed`, `finalized/subdir<d1>/subdir<d2>/` blocks with
//! CRC32C `.meta` files, `rbw/` blocks being written and an empty `tmp/`. Every
//! finalized block has identical bytes on each of its replicas. Everything is
//! derived from the seed, so the same spec gives the same tree.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use anyhow::{anyhow, bail, ensure, Context, Result};
use chrono::DateTime;
use tracing::debug;

use hwdr::hopsfs::meta::{self, ChecksumType, MetaHeader, META_VERSION};

/// The first block id HDFS hands out (`LAST_RESERVED_BLOCK_ID + 1`).
const FIRST_BLOCK_ID: u64 = 1_073_741_825;
const FIRST_GENSTAMP: u64 = 1001;
const LAYOUT_VERSION: i32 = -57;
const CHECKSUM: ChecksumType = ChecksumType::Crc32c;
const BYTES_PER_CHECKSUM: u32 = meta::DEFAULT_BYTES_PER_CHECKSUM;
/// Write buffer; a multiple of the checksum chunk so chunks never straddle two.
const BUF_LEN: usize = 1 << 20;
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;
/// The generated clock starts here (2024-01-10), so trees are reproducible.
const EPOCH_MS: i64 = 1_704_880_953_000;
const MAX_THREADS: usize = 8;
/// Leaf folders per block pool: 256 `subdir<d1>` × 256 `subdir<d2>`.
const LEAVES: usize = 1 << 16;

/// What tree to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSpec {
    /// Data nodes, `node1` to `node<nodes>`.
    pub nodes: usize,
    /// Block pools (one per namespace), the same on every node.
    pub block_pools: usize,
    /// Distinct finalized blocks.
    pub blocks: usize,
    /// Replicas per block; all nodes if there are fewer.
    pub replication: usize,
    /// Smallest block; with 0, about 1% of the blocks are empty.
    pub min_size: u64,
    /// Largest block. About 10% of the sizes are multiples of 512.
    pub max_size: u64,
    pub seed: u64,
    /// uid and gid given to every file and folder below `<root>/node<i>`.
    pub owner: Option<(u32, u32)>,
    /// Blocks in `rbw/` on each node, not finalized and not replicated.
    pub rbw_blocks_per_node: usize,
}

impl Default for GenSpec {
    fn default() -> Self {
        Self {
            nodes: 3,
            block_pools: 2,
            blocks: 300,
            replication: 3,
            min_size: 0,
            max_size: 256 << 10,
            seed: 1,
            owner: None,
            rbw_blocks_per_node: 1,
        }
    }
}

impl GenSpec {
    fn validate(&self) -> Result<()> {
        ensure!(self.nodes >= 1, "at least one node is needed");
        ensure!(
            (1..=254).contains(&self.block_pools),
            "block pools must be 1 to 254, not {}",
            self.block_pools
        );
        ensure!(self.replication >= 1, "replication must be at least 1");
        ensure!(
            self.min_size <= self.max_size,
            "min size {} is above max size {}",
            self.min_size,
            self.max_size
        );
        Ok(())
    }
}

/// One block: `pool` indexes [`Generated::pools`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GenBlock {
    pub pool: u32,
    pub id: u64,
    pub genstamp: u64,
    pub len: u64,
}

impl GenBlock {
    /// `blk_<id>`.
    pub fn file_name(&self) -> String {
        format!("blk_{}", self.id)
    }

    /// `blk_<id>_<genstamp>.meta`.
    pub fn meta_file_name(&self) -> String {
        format!("blk_{}_{}.meta", self.id, self.genstamp)
    }

    /// Size of the block's `.meta` file.
    pub fn meta_len(&self) -> u64 {
        meta::meta_len(self.len, CHECKSUM, BYTES_PER_CHECKSUM)
    }
}

/// The `subdir<d1>/subdir<d2>` numbers HopsFS files block `id` under.
pub fn block_subdirs(id: u64) -> (u32, u32) {
    (((id >> 16) & 0xff) as u32, ((id >> 8) & 0xff) as u32)
}

/// The folder, relative to a data dir (`dn/`), holding finalized block `id` of `pool`.
pub fn finalized_rel_dir(pool: &str, id: u64) -> PathBuf {
    let (d1, d2) = block_subdirs(id);
    pool_current(pool).join(format!("finalized/subdir{d1}/subdir{d2}"))
}

/// `current/<pool>/current`, relative to a data dir.
fn pool_current(pool: &str) -> PathBuf {
    Path::new("current").join(pool).join("current")
}

/// One generated data node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenNode {
    /// `node<i>`.
    pub name: String,
    /// `<root>/node<i>/dn`.
    pub data_dir: PathBuf,
    /// Its finalized replicas: indexes into [`Generated::blocks`], ascending.
    pub blocks: Vec<u32>,
    /// Its blocks in `rbw/`, sorted.
    pub rbw: Vec<GenBlock>,
}

/// What a generated tree holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// `CID-<uuid>`, the same on every node.
    pub cluster_id: String,
    /// Block pool ids (`BP-<n>-<ip>-<ms>`), sorted.
    pub pools: Vec<String>,
    pub nodes: Vec<GenNode>,
    /// The distinct finalized blocks, sorted by pool and id.
    pub blocks: Vec<GenBlock>,
    /// Bytes of the distinct finalized block files (their `.meta` files not included).
    pub unique_bytes: u64,
    /// Bytes of the finalized block files on all nodes (`.meta` files not included).
    pub replica_bytes: u64,
}

impl Generated {
    /// The block pool id of `block`.
    pub fn pool_name(&self, block: &GenBlock) -> &str {
        &self.pools[block.pool as usize]
    }

    /// Path of finalized `block` relative to a data dir.
    pub fn block_rel_path(&self, block: &GenBlock) -> PathBuf {
        finalized_rel_dir(self.pool_name(block), block.id).join(block.file_name())
    }

    /// Path of finalized `block`'s `.meta` file relative to a data dir.
    pub fn meta_rel_path(&self, block: &GenBlock) -> PathBuf {
        finalized_rel_dir(self.pool_name(block), block.id).join(block.meta_file_name())
    }

    /// Paths of `rbw` block `block` and its `.meta` file relative to a data dir.
    pub fn rbw_rel_paths(&self, block: &GenBlock) -> (PathBuf, PathBuf) {
        let dir = pool_current(self.pool_name(block)).join("rbw");
        (dir.join(block.file_name()), dir.join(block.meta_file_name()))
    }

    /// The finalized blocks of node `node` (an index into [`Self::nodes`]).
    pub fn node_blocks(&self, node: usize) -> impl Iterator<Item = &GenBlock> + '_ {
        self.nodes[node].blocks.iter().map(|&i| &self.blocks[i as usize])
    }

    /// Sorts the blocks by pool and id, renumbers the nodes' lists, and
    /// recomputes the totals.
    fn normalize(&mut self) {
        let mut order: Vec<u32> = (0..self.blocks.len() as u32).collect();
        order.sort_unstable_by_key(|&i| self.blocks[i as usize]);
        let mut rank = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            rank[old as usize] = new as u32;
        }
        self.blocks = order.iter().map(|&i| self.blocks[i as usize]).collect();
        self.replica_bytes = 0;
        for node in &mut self.nodes {
            for i in &mut node.blocks {
                *i = rank[*i as usize];
                self.replica_bytes += self.blocks[*i as usize].len;
            }
            node.blocks.sort_unstable();
            node.rbw.sort_unstable();
        }
        self.unique_bytes = self.blocks.iter().map(|b| b.len).sum();
    }
}

/// Writes a new tree for `spec` below `root` (created if missing); fails if a
/// node's folder already exists.
pub fn generate(root: &Path, spec: &GenSpec) -> Result<Generated> {
    spec.validate()?;
    ensure!(
        spec.blocks <= u32::MAX as usize,
        "at most {} blocks can be generated",
        u32::MAX
    );
    let mut rng = Rng::new(spec.seed);
    let cluster_id = format!("CID-{}", uuid(&mut rng));
    let mut pools: Vec<(String, u32)> = (0..spec.block_pools)
        .map(|p| {
            let created = EPOCH_MS - 86_400_000 - rng.below(30 * 86_400_000) as i64;
            let name = format!("BP-{}-10.0.0.{}-{created}", rng.int31(), p + 1);
            (name, rng.int31())
        })
        .collect();
    pools.sort();

    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let mut nodes = Vec::with_capacity(spec.nodes);
    for i in 1..=spec.nodes {
        let name = format!("node{i}");
        let data_dir = root.join(&name).join("dn");
        write_node_skeleton(&root.join(&name), i, &cluster_id, &pools, spec.owner, &mut rng)?;
        nodes.push(GenNode {
            name,
            data_dir,
            blocks: Vec::new(),
            rbw: Vec::new(),
        });
    }
    let mut generated = Generated {
        cluster_id,
        pools: pools.into_iter().map(|(name, _)| name).collect(),
        nodes,
        blocks: Vec::new(),
        unique_bytes: 0,
        replica_bytes: 0,
    };

    let mut alloc = IdAllocator::fresh(spec.block_pools, &mut rng);
    let plan = plan_blocks(spec, spec.nodes, spec.blocks, &mut alloc, &mut rng);
    write_planned(&generated, &plan, spec.seed, spec.owner)?;
    for node in 0..spec.nodes {
        for _ in 0..spec.rbw_blocks_per_node {
            let block = next_block(spec, &mut alloc, &mut rng);
            let (block_rel, meta_rel) = generated.rbw_rel_paths(&block);
            let dir = &generated.nodes[node].data_dir;
            let pool = generated.pool_name(&block);
            write_block(
                &block,
                pool,
                spec.seed,
                &[(dir.join(block_rel), dir.join(meta_rel))],
                spec.owner,
                &mut Scratch::new(),
            )?;
            generated.nodes[node].rbw.push(block);
        }
    }
    record_plan(&mut generated, &plan);
    write_dfs_used(&generated, spec.owner)?;
    debug!(
        root = %root.display(),
        nodes = generated.nodes.len(),
        blocks = generated.blocks.len(),
        unique_bytes = generated.unique_bytes,
        "generated data node tree"
    );
    Ok(generated)
}

/// Adds `count` new finalized blocks, with ids above every id in the tree and
/// replicated as `spec` says, to the tree `generated` describes.
pub fn add_blocks(root: &Path, spec: &GenSpec, generated: &mut Generated, count: usize, seed: u64) -> Result<()> {
    spec.validate()?;
    ensure!(
        spec.nodes == generated.nodes.len(),
        "the spec has {} nodes, the tree at {} has {}",
        spec.nodes,
        root.display(),
        generated.nodes.len()
    );
    ensure!(
        generated.blocks.len() + count <= u32::MAX as usize,
        "at most {} blocks can be generated",
        u32::MAX
    );
    let mut rng = Rng::new(seed);
    let mut alloc = IdAllocator::after(generated, &mut rng);
    let plan = plan_blocks(spec, generated.nodes.len(), count, &mut alloc, &mut rng);
    write_planned(generated, &plan, seed, spec.owner)?;
    record_plan(generated, &plan);
    write_dfs_used(generated, spec.owner)?;
    debug!(root = %root.display(), added = count, blocks = generated.blocks.len(), "added blocks");
    Ok(())
}

/// Reads back a tree [`generate`] wrote below `root`: nodes, pools, and every
/// block in `finalized/` and `rbw/`.
pub fn scan(root: &Path) -> Result<Generated> {
    let mut numbered = Vec::new();
    for entry in fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("node").and_then(|n| n.parse::<u32>().ok()) {
            numbered.push((n, name));
        }
    }
    numbered.sort();
    ensure!(!numbered.is_empty(), "no node<i> folders in {}", root.display());

    let mut cluster_id: Option<String> = None;
    let mut pools: Option<Vec<String>> = None;
    let mut found: Vec<ScannedNode> = Vec::new();
    for (_, name) in numbered {
        let data_dir = root.join(&name).join("dn");
        let version = data_dir.join("current/VERSION");
        let props = read_properties(&version)?;
        let cid = props
            .get("clusterID")
            .with_context(|| format!("{}: no clusterID", version.display()))?;
        match &cluster_id {
            None => cluster_id = Some(cid.clone()),
            Some(c) if c != cid => bail!("{}: clusterID {cid} differs from {c}", version.display()),
            Some(_) => {}
        }
        let current = data_dir.join("current");
        let mut node_pools = Vec::new();
        for entry in fs::read_dir(&current).with_context(|| format!("listing {}", current.display()))? {
            let entry = entry.with_context(|| format!("listing {}", current.display()))?;
            let pool = entry.file_name().to_string_lossy().into_owned();
            if pool.starts_with("BP-") {
                node_pools.push(pool);
            }
        }
        node_pools.sort();
        match &pools {
            None => pools = Some(node_pools.clone()),
            Some(p) if *p != node_pools => bail!("{}: block pools differ from the other nodes'", current.display()),
            Some(_) => {}
        }
        let mut blocks = Vec::new();
        for (p, pool) in node_pools.iter().enumerate() {
            let pool_dir = data_dir.join(pool_current(pool));
            let finalized = pool_dir.join("finalized");
            for d1 in list_dirs(&finalized)? {
                for d2 in list_dirs(&d1)? {
                    scan_block_dir(&d2, p as u32, false, &mut blocks)?;
                }
            }
            scan_block_dir(&pool_dir.join("rbw"), p as u32, true, &mut blocks)?;
        }
        found.push(ScannedNode { name, data_dir, blocks });
    }

    let mut distinct: BTreeMap<(u32, u64, u64), u64> = BTreeMap::new();
    for ScannedNode { name, blocks, .. } in &found {
        for (b, rbw) in blocks {
            if *rbw {
                continue;
            }
            let len = *distinct.entry((b.pool, b.id, b.genstamp)).or_insert(b.len);
            ensure!(
                len == b.len,
                "{name}: block {} is {} bytes, another replica is {len}",
                b.id,
                b.len
            );
        }
    }
    let blocks: Vec<GenBlock> = distinct
        .iter()
        .map(|(&(pool, id, genstamp), &len)| GenBlock {
            pool,
            id,
            genstamp,
            len,
        })
        .collect();
    let nodes = found
        .into_iter()
        .map(|scanned| {
            let mut node = GenNode {
                name: scanned.name,
                data_dir: scanned.data_dir,
                blocks: Vec::new(),
                rbw: Vec::new(),
            };
            for (b, rbw) in scanned.blocks {
                if rbw {
                    node.rbw.push(b);
                } else if let Ok(i) = blocks.binary_search(&b) {
                    node.blocks.push(i as u32);
                }
            }
            node
        })
        .collect();
    let mut generated = Generated {
        cluster_id: cluster_id.unwrap_or_default(),
        pools: pools.unwrap_or_default(),
        nodes,
        blocks,
        unique_bytes: 0,
        replica_bytes: 0,
    };
    generated.normalize();
    Ok(generated)
}

/// A node's blocks as found on disk, each with whether it is in `rbw/`.
struct ScannedNode {
    name: String,
    data_dir: PathBuf,
    blocks: Vec<(GenBlock, bool)>,
}

/// Sub-folders of `dir`.
fn list_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        if kind.is_dir() {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// Adds the blocks in `dir` (pairs of `blk_<id>` and `blk_<id>_<gs>.meta`) to `out`.
fn scan_block_dir(dir: &Path, pool: u32, rbw: bool, out: &mut Vec<(GenBlock, bool)>) -> Result<()> {
    let mut lens = BTreeMap::new();
    let mut metas = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("blk_") else {
            continue;
        };
        if let Some(stem) = rest.strip_suffix(".meta") {
            let parsed = stem
                .split_once('_')
                .and_then(|(id, gs)| Some((id.parse::<u64>().ok()?, gs.parse::<u64>().ok()?)));
            let (id, gs) = parsed.with_context(|| format!("{}: not a meta file name", entry.path().display()))?;
            metas.push((id, gs));
        } else if let Ok(id) = rest.parse::<u64>() {
            let len = entry
                .metadata()
                .with_context(|| format!("reading {}", entry.path().display()))?
                .size();
            lens.insert(id, len);
        }
    }
    for (id, genstamp) in metas {
        let len = lens
            .remove(&id)
            .with_context(|| format!("{}: blk_{id}_{genstamp}.meta has no block file", dir.display()))?;
        out.push((
            GenBlock {
                pool,
                id,
                genstamp,
                len,
            },
            rbw,
        ));
    }
    if let Some(id) = lens.keys().next() {
        bail!("{}: blk_{id} has no meta file", dir.display());
    }
    Ok(())
}

/// Java properties (`key=value` lines, `#` comments) read from `path`.
fn read_properties(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// Blocks to write: `replicas` holds `per_block` node indexes per block.
struct Plan {
    blocks: Vec<GenBlock>,
    replicas: Vec<u32>,
    per_block: usize,
}

/// Next block id and generation stamp of every pool.
struct IdAllocator {
    next: Vec<(u64, u64)>,
}

impl IdAllocator {
    fn fresh(pools: usize, rng: &mut Rng) -> Self {
        Self {
            next: (0..pools)
                .map(|_| (FIRST_BLOCK_ID + rng.below(4096), FIRST_GENSTAMP))
                .collect(),
        }
    }

    /// Continues above every block, finalized or not, already in `generated`.
    fn after(generated: &Generated, rng: &mut Rng) -> Self {
        let mut max = vec![(FIRST_BLOCK_ID, FIRST_GENSTAMP); generated.pools.len()];
        let rbw = generated.nodes.iter().flat_map(|n| n.rbw.iter());
        for b in generated.blocks.iter().chain(rbw) {
            let m = &mut max[b.pool as usize];
            *m = (m.0.max(b.id), m.1.max(b.genstamp));
        }
        Self {
            next: max
                .into_iter()
                .map(|(id, gs)| (id + 1 + rng.below(2048), gs + 1))
                .collect(),
        }
    }

    fn take(&mut self, pool: usize, rng: &mut Rng) -> (u64, u64) {
        let (id, gs) = self.next[pool];
        // Mostly consecutive ids (the blocks of one file), else a jump: many
        // subdirs get used, some hold several blocks.
        let id_step = if rng.below(10) < 7 { 1 } else { 1 + rng.below(2048) };
        // Appends and recoveries bump the stamp now and then.
        let gs_step = if rng.below(16) == 0 { 1 + rng.below(4) } else { 1 };
        self.next[pool] = (id + id_step, gs + gs_step);
        (id, gs)
    }
}

/// A block size in `min..=max`: a few empty ones, some multiples of 512.
fn pick_size(rng: &mut Rng, min: u64, max: u64) -> u64 {
    let roll = rng.below(100);
    if roll == 0 && min == 0 {
        return 0;
    }
    if roll < 11 {
        let lo = min.div_ceil(512).max(1) * 512;
        let hi = max / 512 * 512;
        if lo <= hi {
            return lo + 512 * rng.below((hi - lo) / 512 + 1);
        }
    }
    let lo = min.max(1).min(max);
    lo + rng.below(max - lo + 1)
}

fn next_block(spec: &GenSpec, alloc: &mut IdAllocator, rng: &mut Rng) -> GenBlock {
    let pool = rng.below(alloc.next.len() as u64) as usize;
    let (id, genstamp) = alloc.take(pool, rng);
    GenBlock {
        pool: pool as u32,
        id,
        genstamp,
        len: pick_size(rng, spec.min_size, spec.max_size),
    }
}

fn plan_blocks(spec: &GenSpec, nodes: usize, count: usize, alloc: &mut IdAllocator, rng: &mut Rng) -> Plan {
    let per_block = spec.replication.min(nodes);
    let mut plan = Plan {
        blocks: Vec::with_capacity(count),
        replicas: Vec::with_capacity(count * per_block),
        per_block,
    };
    let mut order: Vec<u32> = (0..nodes as u32).collect();
    for _ in 0..count {
        plan.blocks.push(next_block(spec, alloc, rng));
        // A partial Fisher-Yates shuffle picks distinct nodes.
        for j in 0..per_block {
            let k = j + rng.below((nodes - j) as u64) as usize;
            order.swap(j, k);
        }
        let start = plan.replicas.len();
        plan.replicas.extend_from_slice(&order[..per_block]);
        plan.replicas[start..].sort_unstable();
    }
    plan
}

/// Adds the planned blocks to `generated`'s lists and totals.
fn record_plan(generated: &mut Generated, plan: &Plan) {
    let first = generated.blocks.len() as u32;
    generated.blocks.extend_from_slice(&plan.blocks);
    for (k, nodes) in plan.replicas.chunks(plan.per_block.max(1)).enumerate() {
        for &n in nodes {
            generated.nodes[n as usize].blocks.push(first + k as u32);
        }
    }
    generated.normalize();
}

/// Creates the `subdir` folders the plan needs, then writes its blocks.
fn write_planned(generated: &Generated, plan: &Plan, seed: u64, owner: Option<(u32, u32)>) -> Result<()> {
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
        let written = write_block(block, generated.pool_name(block), seed, &paths, owner, scratch);
        scratch.paths = paths;
        written
    })
}

/// Per-thread buffers for writing blocks.
struct Scratch {
    buf: Vec<u8>,
    sums: Vec<u8>,
    paths: Vec<(PathBuf, PathBuf)>,
    files: Vec<(File, File)>,
}

impl Scratch {
    fn new() -> Self {
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
fn write_block(
    block: &GenBlock,
    pool: &str,
    seed: u64,
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
    let mut content = Content::new(seed, pool, block.id);
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
fn write_dfs_used(generated: &Generated, owner: Option<(u32, u32)>) -> Result<()> {
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
fn write_node_skeleton(
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

/// SplitMix64: seeds, sizes, ids and replica choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform enough in `0..n` for a generator (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// A positive Java int, as `Random.nextInt(Integer.MAX_VALUE)`.
    fn int31(&mut self) -> u32 {
        self.below(i32::MAX as u64) as u32
    }
}

/// The SplitMix64 finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random (version 4) UUID in its usual text form.
fn uuid(rng: &mut Rng) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&rng.next().to_be_bytes());
    b[8..].copy_from_slice(&rng.next().to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Block content: an xorshift64* stream seeded from (seed, pool, id).
struct Content(u64);

impl Content {
    fn new(seed: u64, pool: &str, id: u64) -> Self {
        // FNV-1a of the pool name.
        let pool_hash = pool.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
        });
        Self(mix(seed ^ mix(pool_hash ^ mix(id))) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf` with the next bytes; only the last call for a block may
    /// have a length that is not a multiple of 8.
    fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = words.into_remainder();
        if !rest.is_empty() {
            let last = self.next().to_le_bytes();
            rest.copy_from_slice(&last[..rest.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn small_spec() -> GenSpec {
        GenSpec {
            nodes: 4,
            block_pools: 2,
            blocks: 60,
            replication: 3,
            min_size: 0,
            max_size: 3000,
            seed: 7,
            owner: None,
            rbw_blocks_per_node: 1,
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Every finalized replica exists where HopsFS puts it, verifies, and is
    /// byte-identical to the other replicas.
    fn check_blocks(g: &Generated) {
        // Block and meta bytes of every replica.
        type Copies = Vec<(Vec<u8>, Vec<u8>)>;
        let mut replicas: BTreeMap<GenBlock, Copies> = BTreeMap::new();
        for (n, node) in g.nodes.iter().enumerate() {
            for b in g.node_blocks(n) {
                let rel = g.block_rel_path(b);
                let want = format!(
                    "current/{}/current/finalized/subdir{}/subdir{}/blk_{}",
                    g.pool_name(b),
                    (b.id >> 16) & 0xff,
                    (b.id >> 8) & 0xff,
                    b.id
                );
                assert_eq!(rel, Path::new(&want));
                let path = node.data_dir.join(&rel);
                let meta_path = node.data_dir.join(g.meta_rel_path(b));
                assert_eq!(meta::verify_file(&path, &meta_path).unwrap(), b.len);
                assert_eq!(fs::metadata(&meta_path).unwrap().len(), b.meta_len());
                assert_eq!(mode(&path), 0o644);
                assert_eq!(mode(path.parent().unwrap()), 0o755);
                replicas
                    .entry(*b)
                    .or_default()
                    .push((fs::read(&path).unwrap(), fs::read(&meta_path).unwrap()));
            }
        }
        assert_eq!(replicas.len(), g.blocks.len());
        for (b, copies) in &replicas {
            assert_eq!(copies.len(), 3, "{b:?}");
            assert!(copies.iter().all(|c| *c == copies[0]), "{b:?}");
        }
    }

    #[test]
    fn small_tree_has_the_data_node_layout() {
        let dir = tempfile::tempdir().unwrap();
        let spec = small_spec();
        let g = generate(dir.path(), &spec).unwrap();
        assert_eq!(g.nodes.len(), 4);
        assert_eq!(g.blocks.len(), 60);
        assert_eq!(g.pools.len(), 2);
        check_blocks(&g);
        assert_eq!(g.unique_bytes, g.blocks.iter().map(|b| b.len).sum::<u64>());
        assert_eq!(
            g.replica_bytes,
            (0..4).flat_map(|n| g.node_blocks(n)).map(|b| b.len).sum::<u64>()
        );
        assert_eq!((0..4).map(|n| g.nodes[n].blocks.len()).sum::<usize>(), 180);
        let ids: BTreeSet<u64> = g.blocks.iter().map(|b| b.id).collect();
        assert!(ids.iter().all(|&id| id >= FIRST_BLOCK_ID));
        assert!(g.blocks.iter().all(|b| b.genstamp >= FIRST_GENSTAMP));
        let leaves: BTreeSet<(u32, u32)> = ids.iter().map(|&id| block_subdirs(id)).collect();
        assert!(leaves.len() >= 10, "only {} subdirs used", leaves.len());

        for (n, node) in g.nodes.iter().enumerate() {
            assert_eq!(node.data_dir, dir.path().join(format!("node{}/dn", n + 1)));
            let lock = fs::read_to_string(node.data_dir.join("in_use.lock")).unwrap();
            assert!(lock.contains('@'), "{lock}");
            assert_eq!(mode(&node.data_dir), 0o755);
            for pool in &g.pools {
                let bp = node.data_dir.join("current").join(pool);
                assert_eq!(fs::read_dir(bp.join("tmp")).unwrap().count(), 0);
                let used = fs::read_to_string(bp.join("current/dfsUsed")).unwrap();
                let bytes: u64 = used.split(' ').next().unwrap().parse().unwrap();
                assert!(bytes > 0, "{used}");
            }
            assert_eq!(node.rbw.len(), 1);
            let (rbw, rbw_meta) = g.rbw_rel_paths(&node.rbw[0]);
            assert!(rbw.starts_with(format!("current/{}/current/rbw", g.pool_name(&node.rbw[0]))));
            meta::verify_file(&node.data_dir.join(rbw), &node.data_dir.join(rbw_meta)).unwrap();
            assert!(!ids.contains(&node.rbw[0].id));
        }

        // Content is not zeros, and blocks differ.
        let big: Vec<&GenBlock> = g.blocks.iter().filter(|b| b.len > 64).take(2).collect();
        let read = |b: &GenBlock| {
            let n = (0..4).find(|&n| g.node_blocks(n).any(|x| x == b)).unwrap();
            fs::read(g.nodes[n].data_dir.join(g.block_rel_path(b))).unwrap()
        };
        assert!(read(big[0]).iter().any(|&x| x != 0));
        assert_ne!(read(big[0])[..64], read(big[1])[..64]);

        // What is on disk is what was reported.
        assert_eq!(scan(dir.path()).unwrap(), g);
    }

    #[test]
    fn version_files_are_properties_with_one_cluster_id() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(dir.path(), &small_spec()).unwrap();
        let mut storage_ids = BTreeSet::new();
        for node in &g.nodes {
            let path = node.data_dir.join("current/VERSION");
            let text = fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("#") && text.lines().next().unwrap().ends_with("UTC 2024"),
                "{text}"
            );
            let props = read_properties(&path).unwrap();
            assert_eq!(props["clusterID"], g.cluster_id);
            assert!(g.cluster_id.starts_with("CID-") && g.cluster_id.len() == 40);
            assert!(props["storageID"].starts_with("DS-"));
            storage_ids.insert(props["storageID"].clone());
            assert_eq!(props["datanodeUuid"].len(), 36);
            assert_eq!(props["storageType"], "DATA_NODE");
            assert_eq!(props["layoutVersion"], "-57");
            assert_eq!(props["cTime"], "0");
            for pool in &g.pools {
                let props = read_properties(&node.data_dir.join("current").join(pool).join("current/VERSION")).unwrap();
                assert_eq!(&props["blockpoolID"], pool);
                assert!(props["namespaceID"].parse::<u32>().is_ok());
                assert_eq!(props["layoutVersion"], "-57");
                let parts: Vec<&str> = pool.split('-').collect();
                assert_eq!(parts.len(), 4, "{pool}");
                assert!(parts[2].starts_with("10.0.0."));
            }
        }
        assert_eq!(storage_ids.len(), g.nodes.len());
    }

    #[test]
    fn add_blocks_adds_only_new_ids() {
        let dir = tempfile::tempdir().unwrap();
        let spec = small_spec();
        let mut g = generate(dir.path(), &spec).unwrap();
        let before = g.clone();
        let old: BTreeSet<(u32, u64)> = before.blocks.iter().map(|b| (b.pool, b.id)).collect();
        let rbw: BTreeSet<u64> = before.nodes.iter().flat_map(|n| n.rbw.iter().map(|b| b.id)).collect();
        add_blocks(dir.path(), &spec, &mut g, 25, 99).unwrap();
        assert_eq!(g.blocks.len(), 85);
        let now: BTreeSet<(u32, u64)> = g.blocks.iter().map(|b| (b.pool, b.id)).collect();
        assert!(old.is_subset(&now));
        assert!(now.difference(&old).all(|(_, id)| !rbw.contains(id)));
        for b in &before.blocks {
            assert!(g.blocks.contains(b));
        }
        check_blocks(&g);
        assert_eq!(g.unique_bytes, g.blocks.iter().map(|b| b.len).sum::<u64>());
        assert_eq!(scan(dir.path()).unwrap(), g);

        // Adding to what was scanned works the same.
        let mut scanned = scan(dir.path()).unwrap();
        add_blocks(dir.path(), &spec, &mut scanned, 5, 100).unwrap();
        assert_eq!(scanned.blocks.len(), 90);
        check_blocks(&scanned);
    }

    #[test]
    fn same_spec_gives_the_same_tree() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ga = generate(a.path(), &small_spec()).unwrap();
        let gb = generate(b.path(), &small_spec()).unwrap();
        assert_eq!(ga.blocks, gb.blocks);
        assert_eq!(ga.cluster_id, gb.cluster_id);
        let blk = &ga.blocks[5];
        let n = (0..4).find(|&n| ga.node_blocks(n).any(|x| x == blk)).unwrap();
        let rel = ga.block_rel_path(blk);
        assert_eq!(
            fs::read(a.path().join(format!("node{}/dn", n + 1)).join(&rel)).unwrap(),
            fs::read(b.path().join(format!("node{}/dn", n + 1)).join(&rel)).unwrap()
        );
        let other = generate(
            tempfile::tempdir().unwrap().path(),
            &GenSpec {
                seed: 8,
                ..small_spec()
            },
        )
        .unwrap();
        assert_ne!(other.blocks, ga.blocks);
    }

    #[test]
    fn fewer_nodes_than_replicas_puts_blocks_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let spec = GenSpec {
            nodes: 2,
            blocks: 20,
            rbw_blocks_per_node: 0,
            ..GenSpec::default()
        };
        let g = generate(dir.path(), &spec).unwrap();
        assert!(g.nodes.iter().all(|n| n.blocks.len() == 20 && n.rbw.is_empty()));
        assert_eq!(g.replica_bytes, 2 * g.unique_bytes);
    }

    #[test]
    fn sizes_include_empty_and_whole_chunks() {
        let mut rng = Rng::new(3);
        let sizes: Vec<u64> = (0..10_000).map(|_| pick_size(&mut rng, 0, 256 << 10)).collect();
        assert!(sizes.iter().all(|&s| s <= 256 << 10));
        assert!(sizes.contains(&0));
        assert!(sizes.iter().filter(|&&s| s > 0 && s % 512 == 0).count() > 500);
        let mut rng = Rng::new(3);
        assert!((0..1000).all(|_| (1024..=2048).contains(&pick_size(&mut rng, 1024, 2048))));
        assert_eq!(pick_size(&mut rng, 0, 0), 0);
        assert_eq!(pick_size(&mut rng, 7, 7), 7);
    }

    #[test]
    fn owner_is_applied_and_existing_trees_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let me = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        let spec = GenSpec {
            blocks: 10,
            owner: Some(me),
            ..GenSpec::default()
        };
        let g = generate(dir.path(), &spec).unwrap();
        let b = g.node_blocks(0).next().unwrap();
        let meta = fs::metadata(g.nodes[0].data_dir.join(g.block_rel_path(b))).unwrap();
        assert_eq!((meta.uid(), meta.gid()), me);
        let err = format!("{:#}", generate(dir.path(), &spec).unwrap_err());
        assert!(err.contains("node1 already exists"), "{err}");
    }
}
