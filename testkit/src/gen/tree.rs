//! What a generated tree holds: its blocks, nodes and pools, and where a
//! data node keeps each block.

use std::path::{Path, PathBuf};

use hwdr::hopsfs::meta;

use super::{BYTES_PER_CHECKSUM, CHECKSUM};

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
pub(super) fn pool_current(pool: &str) -> PathBuf {
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
    pub(super) fn normalize(&mut self) {
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
