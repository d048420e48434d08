//! Uploading the blocks the leader assigned to this node: the assignment is
//! read, this node's inventory walked, and every assigned replica stored in
//! the block store, checked against its CRCs on the way.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tracing::{info, warn};

use super::{assignment_rel, inventory_rel};
use crate::backup_id::BackupId;
use crate::config::Config;
use crate::hopsfs::fsuser::FsUser;
use crate::hopsfs::inventory::{self, BlockLine, Line};
use crate::hopsfs::layout;
use crate::hopsfs::store::{BlockBatch, BlockKey, PutError};
use crate::job::JobControl;
use crate::repo::Repository;
use crate::runner::RunAs;

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
