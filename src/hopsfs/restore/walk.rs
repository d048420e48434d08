//! Streaming this node's inventory for a restore: its storage folders,
//! VERSION files and pools, and every block with the place it goes.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};

use super::Prepared;
use crate::config::Config;
use crate::hopsfs::inventory::{self, BlockLine, Line, PoolLine, VersionLine};
use crate::hopsfs::layout;
use crate::hopsfs::store::BlockKey;
use crate::repo::manifest::HopsfsInfo;

/// The folders, pools and blocks of one inventory, read as a stream.
#[derive(Default)]
pub(super) struct Walk {
    pub(super) dirs: HashMap<u16, PathBuf>,
    pub(super) pools: HashMap<u16, (u16, String)>,
}

/// One block of the inventory with where it goes.
pub(super) struct BlockPlace {
    pub(super) key: BlockKey,
    pub(super) dir: u16,
    /// The good length (the inventory's, unless the manifest corrects it).
    pub(super) len: u64,
    pub(super) line: BlockLine,
    pub(super) finalized: PathBuf,
    /// Path below `finalized/`.
    pub(super) rel: String,
}

impl BlockPlace {
    pub(super) fn block(&self) -> PathBuf {
        self.finalized.join(&self.rel)
    }

    pub(super) fn meta(&self) -> PathBuf {
        self.block()
            .with_file_name(format!("blk_{}_{}.meta", self.key.id, self.key.genstamp))
    }
}

impl Walk {
    pub(super) fn dir(&self, index: u16) -> Result<&PathBuf> {
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
pub(super) fn walk_inventory(
    p: &Prepared,
    config: &Config,
    mut each: impl FnMut(&Walk, Item) -> Result<()>,
) -> Result<Walk> {
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
pub(super) enum Item {
    Dir(PathBuf, u32),
    Version(VersionLine),
    Pool(PoolLine),
    Block(BlockPlace),
}

/// The storage folders this node's inventory names.
pub(super) fn inventory_dirs(p: &Prepared) -> Result<Vec<PathBuf>> {
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
