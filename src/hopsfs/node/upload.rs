//! Uploading the blocks the leader assigned to this node: the assignment is
//! read, this node's inventory walked, and every assigned replica stored in
//! the block store by one of `[repository] upload_parallelism` workers,
//! checked against its CRCs on the way.

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
use crate::parallel::{self, Feed, Worker};
use crate::repo::backup::BackupReader;
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
    /// The bytes those blocks take in the store (compressed and sealed in
    /// an encrypted repository); `None` from an agent that did not report it.
    pub stored: Option<u64>,
    /// Replicas that failed their CRC check or could not be read.
    pub bad: Vec<BadReplica>,
}

impl Default for Uploaded {
    /// Nothing stored yet (zero stored bytes, known).
    fn default() -> Uploaded {
        Uploaded {
            blocks: 0,
            bytes: 0,
            stored: Some(0),
            bad: Vec::new(),
        }
    }
}

impl Uploaded {
    /// What several workers stored together, the bad replicas in block order.
    fn merge(parts: Vec<Uploaded>) -> Uploaded {
        let mut all = Uploaded::default();
        for part in parts {
            all.blocks += part.blocks;
            all.bytes += part.bytes;
            all.stored = all.stored.zip(part.stored).map(|(a, b)| a + b);
            all.bad.extend(part.bad);
        }
        all.bad.sort_by_key(BadReplica::key);
        all
    }
}

/// Uploads the blocks of assignment round `round` of backup `id` from this
/// node into the block store, each checked against its CRCs, `[repository]
/// upload_parallelism` at once. Replicas that fail are reported, not fatal:
/// the leader takes them from another node.
pub fn upload(config: &Config, id: BackupId, round: u32, control: &JobControl) -> Result<Uploaded> {
    let hdfs = config.hdfs_user()?;
    let repo = Repository::of(config);
    repo.backup_in_progress(id)?;
    let backup = repo.reader(id);
    let node = config.this_node.as_str();
    let store = repo.blocks();
    let mut assigned = Assignment::read(&backup, &assignment_rel(node, round))?;
    // The blocks are known here, their bytes only to the leader.
    control.add_total(assigned.total as u64, 0);
    let inv_rel = inventory_rel(node);
    let mut inv = inventory::open_unchecked(&backup, &inv_rel)?;

    // This thread walks the inventory and hands the assigned replicas to the
    // workers, each storing into its own batch; the batches are committed
    // (durable, visible) once all is stored, before the job reports success.
    let threads = config.repository.upload_parallelism;
    let new_worker = || {
        Ok(Uploader {
            batch: store.batch(),
            hdfs: &hdfs,
            control,
            meta: Vec::new(),
            done: Uploaded::default(),
        })
    };
    let done = parallel::run(threads, control, new_worker, |feed| {
        let mut walk = Walk::default();
        inventory::read(&mut inv, |line| walk.line(line, &mut assigned, feed))?;
        assigned.check_all_found()
    })?;
    let done = Uploaded::merge(done);
    info!(
        blocks = done.blocks,
        bytes = done.bytes,
        stored = done.stored,
        bad = done.bad.len(),
        threads,
        "uploaded {} blocks ({})",
        done.blocks,
        crate::progress::text::size(done.bytes)
    );
    Ok(done)
}

/// The blocks assigned to this node in one round, as (pool, id, genstamp),
/// taken off as the inventory walk finds them.
struct Assignment {
    /// The pools the assignment names, in order of first mention.
    pools: Vec<String>,
    /// Blocks not found yet: index into `pools`, id, genstamp.
    wanted: HashSet<(usize, u64, u64)>,
    /// How many blocks were assigned.
    total: usize,
}

impl Assignment {
    /// Reads the assignment `rel` of `backup`: pool, id, genstamp per line.
    fn read(backup: &BackupReader, rel: &str) -> Result<Assignment> {
        let text = BufReader::new(backup.open(rel).with_context(|| format!("opening {rel}"))?);
        let mut pools: Vec<String> = Vec::new();
        let mut wanted = HashSet::new();
        for line in text.lines() {
            let line = line?;
            let mut f = line.split('\t');
            let (Some(pool), Some(bid), Some(gs), None) = (f.next(), f.next(), f.next(), f.next()) else {
                bail!("{rel}: bad line {line:?}");
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
        Ok(Assignment { pools, wanted, total })
    }

    /// Whether block `id` with `genstamp` of `pool` is assigned and not yet
    /// taken; takes it.
    fn take(&mut self, pool: &str, id: u64, genstamp: u64) -> bool {
        let Some(pi) = self.pools.iter().position(|p| p == pool) else {
            return false;
        };
        self.wanted.remove(&(pi, id, genstamp))
    }

    /// Fails, naming one, if some assigned blocks were not in the inventory.
    fn check_all_found(&self) -> Result<()> {
        if let Some((pi, bid, gs)) = self.wanted.iter().next() {
            bail!(
                "{} of {} assigned blocks are not in this node's inventory, e.g. {}/blk_{bid}_{gs}",
                self.wanted.len(),
                self.total,
                self.pools[*pi]
            );
        }
        Ok(())
    }
}

/// An inventory walk that hands the assigned replicas on: the storage
/// folders and pools seen so far.
#[derive(Default)]
struct Walk {
    dirs: HashMap<u16, PathBuf>,
    /// Pool index in the inventory: storage folder index, pool id.
    pools: HashMap<u16, (u16, String)>,
}

/// A replica to store: the block, its storage folder, its inventory line.
struct Replica {
    key: BlockKey,
    dir: PathBuf,
    line: BlockLine,
}

impl Walk {
    /// Takes one inventory line: folders and pools are noted, assigned
    /// blocks fed to the workers.
    fn line(&mut self, line: Line, assigned: &mut Assignment, feed: &Feed<'_, Replica>) -> Result<()> {
        match line {
            Line::Dir(d) => {
                self.dirs.insert(d.index, PathBuf::from(d.path));
            }
            Line::Pool(p) => {
                self.pools.insert(p.index, (p.dir, p.id));
            }
            Line::Block(b) => {
                let Some((_, pool)) = self.pools.get(&b.pool) else {
                    bail!("inventory names pool {} before listing it", b.pool);
                };
                if assigned.take(pool, b.id, b.genstamp) {
                    let dir = self
                        .dirs
                        .get(&b.dir)
                        .ok_or_else(|| anyhow!("inventory names data folder {}", b.dir))?;
                    let key = BlockKey {
                        pool: pool.clone(),
                        id: b.id,
                        genstamp: b.genstamp,
                    };
                    feed.send(Replica {
                        key,
                        dir: dir.clone(),
                        line: b,
                    })?;
                }
            }
            Line::Node(_) | Line::Version(_) | Line::End { .. } => {}
        }
        Ok(())
    }
}

/// One worker of an upload: its batch and what it stored.
struct Uploader<'a> {
    batch: BlockBatch<'a>,
    hdfs: &'a RunAs,
    control: &'a JobControl,
    /// The `.meta` being stored (kept: one allocation per worker).
    meta: Vec<u8>,
    done: Uploaded,
}

impl Worker<Replica> for Uploader<'_> {
    type Done = Uploaded;

    /// Uploads an assigned replica; a bad replica is noted, not fatal.
    fn take(&mut self, r: Replica) -> Result<()> {
        crate::fault::point("hopsfs-upload-block", Some(self.control))?;
        let (key, b) = (r.key, &r.line);
        match upload_one(
            &mut self.batch,
            self.hdfs,
            &r.dir,
            &key,
            b,
            &mut self.meta,
            self.control,
        ) {
            Ok(stored) => {
                self.done.blocks += 1;
                self.done.bytes += b.len;
                self.done.stored = self.done.stored.map(|s| s + stored);
                self.control.file_done(b.len);
            }
            Err(PutError::Corrupt(error)) => {
                warn!("replica of {key} on this node is bad: {error}");
                self.done.bad.push(BadReplica {
                    pool: key.pool,
                    id: key.id,
                    genstamp: key.genstamp,
                    error,
                });
            }
            Err(PutError::Io(e)) => return Err(e.context(format!("storing {key}"))),
        }
        Ok(())
    }

    /// Makes what this worker stored durable and visible.
    fn finish(mut self) -> Result<Uploaded> {
        self.batch.commit()?;
        Ok(self.done)
    }
}

/// Stores one replica of block `key`, read as `hdfs` from storage folder
/// `dir` (its `.meta` read into `meta`); a replica that cannot be read is
/// [`PutError::Corrupt`]. Returns the bytes the block takes in the store.
fn upload_one(
    batch: &mut BlockBatch<'_>,
    hdfs: &RunAs,
    dir: &Path,
    key: &BlockKey,
    b: &BlockLine,
    meta_bytes: &mut Vec<u8>,
    control: &JobControl,
) -> Result<u64, PutError> {
    let finalized = layout::finalized(dir, &key.pool);
    let rel = b.path.clone().unwrap_or_else(|| layout::canonical_rel_path(b.id));
    let block_path = finalized.join(&rel);
    let meta_path = block_path.with_file_name(format!("blk_{}_{}.meta", b.id, b.genstamp));
    let (mut block, mut meta) = {
        let _as_hdfs = FsUser::switch(hdfs.uid, hdfs.gid)?;
        let open = |p: &Path| File::open(p).map_err(|e| PutError::Corrupt(format!("cannot read {}: {e}", p.display())));
        (open(&block_path)?, open(&meta_path)?)
    };
    meta_bytes.clear();
    // Through `take`: `File::read_to_end` would first `fstat` the file for
    // its size, a call per block that the reused buffer makes useless.
    meta.by_ref()
        .take(u64::MAX)
        .read_to_end(meta_bytes)
        .map_err(|e| PutError::Corrupt(format!("cannot read {}: {e}", meta_path.display())))?;
    batch.put(key, &mut block, meta_bytes, b.len, control)
}
