//! What tree to generate: nodes, block pools, blocks, replication, sizes,
//! seed and owner.

use anyhow::{ensure, Result};

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
    /// What the blocks hold.
    pub content: BlockContent,
}

/// What the generated blocks hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BlockContent {
    /// Random bytes: incompressible, as Parquet and ORC files (already
    /// compressed) or encrypted data are.
    #[default]
    Random,
    /// Lines of CSV text (ids, times, amounts, categories): what zstd
    /// shrinks a few times, as uncompressed tables and logs.
    Text,
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
            content: BlockContent::Random,
        }
    }
}

impl GenSpec {
    pub(super) fn validate(&self) -> Result<()> {
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
