//! A generator of realistic HopsFS data node trees, for tests and benchmarks.
//!
//! `generate` writes `<root>/node<i>/dn/` for every node, laid out as a data
//! node does (facts, section 4): `in_use.lock`, `current/VERSION`, and per block
//! pool its `VERSION`, `dfsUsed`, `finalized/subdir<d1>/subdir<d2>/` blocks with
//! CRC32C `.meta` files, `rbw/` blocks being written and an empty `tmp/`. Every
//! finalized block has identical bytes on each of its replicas. Everything is
//! derived from the seed, so the same spec gives the same tree.
//!
//! This file holds the two ways to make a tree, [`generate`] and
//! [`add_blocks`]; `spec` says what to generate, `tree` describes what was,
//! `plan` picks the blocks and their nodes, `write` writes them, `scan`
//! reads a tree back and `random` holds the seeded streams.

mod plan;
pub(crate) mod random;
mod scan;
mod spec;
mod tree;
mod write;

#[cfg(test)]
mod tests;

pub use scan::scan;
pub use spec::{BlockContent, GenSpec};
pub use tree::{block_subdirs, finalized_rel_dir, GenBlock, GenNode, Generated};

use std::fs;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use tracing::debug;

use hwdr::hopsfs::meta::{self, ChecksumType};

use plan::{next_block, plan_blocks, record_plan, IdAllocator};
use random::{uuid, Rng};
use write::{write_block, write_dfs_used, write_node_skeleton, write_planned, Scratch};

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
    write_planned(&generated, &plan, spec.seed, spec.content, spec.owner)?;
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
                spec.content,
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
    write_planned(generated, &plan, seed, spec.content, spec.owner)?;
    record_plan(generated, &plan);
    write_dfs_used(generated, spec.owner)?;
    debug!(root = %root.display(), added = count, blocks = generated.blocks.len(), "added blocks");
    Ok(())
}
