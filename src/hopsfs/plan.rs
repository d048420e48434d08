//! The leader's side of a HopsFS backup: merge every node's inventory into
//! the set of distinct blocks, find which ones the repository lacks, and give
//! each missing block to one node holding it, spreading the bytes evenly.
//!
//! Memory stays small: inventories are streamed, and the leader keeps one
//! compact entry per distinct block (pool index, id, genstamp, length, a
//! bitmask of holders).

use std::collections::HashMap;
use std::io::Write;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use tracing::warn;

use super::inventory::{self, Line};
use super::node::assignment_rel;
use super::store::{BlockKey, BlockStore};
use crate::job::JobControl;
use crate::repo::backup::{BackupReader, BackupWriter};
use crate::repo::manifest::FileEntry;
use crate::repo::store::Access;

/// The most nodes a bitmask of holders can name (bit 63 is [`KNOWN`]).
pub const MAX_NODES: usize = 63;

/// Bit of [`Holding::holders`] set for a block the latest complete backup
/// already lists: it is in the store (see [`mark_known`]).
const KNOWN: u64 = 1 << 63;

/// Compact identity of a block: pool index, id, genstamp.
pub type Key = (u16, u64, u64);

/// Length and holders of one distinct block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    pub len: u64,
    /// Bit `i` set: node `i` holds a replica (bit 63: [`KNOWN`]).
    pub holders: u64,
}

impl Holding {
    /// The nodes holding a replica, without the [`KNOWN`] bit.
    pub fn nodes(&self) -> u64 {
        self.holders & !KNOWN
    }
}

/// Every distinct block of the cluster.
#[derive(Debug, Default)]
pub struct Distinct {
    pub pools: Vec<String>,
    pub blocks: HashMap<Key, Holding>,
    pub replicas: u64,
    pub replica_bytes: u64,
    /// Blocks whose replicas do not all have the same length (one truncated,
    /// or with bytes appended): every replica's (node, length). Rare. The
    /// block's [`Holding`] is the length group tried first (see [`merge`]).
    pub disputed: HashMap<Key, Vec<(usize, u64)>>,
}

impl Distinct {
    /// The full identity of a compact key.
    pub fn key(&self, k: &Key) -> BlockKey {
        BlockKey {
            pool: self.pools[k.0 as usize].clone(),
            id: k.1,
            genstamp: k.2,
        }
    }

    /// Bytes of all distinct blocks.
    pub fn bytes(&self) -> u64 {
        self.blocks.values().map(|h| h.len).sum()
    }
}

/// Reads the inventories of `nodes` (in this order: bit i is `nodes[i]`)
/// from the backup, each checked against `inventories[i]` (its size and
/// SHA-256 as the node reported it).
pub fn merge(backup: &BackupReader, nodes: &[String], inventories: &[FileEntry]) -> Result<Distinct> {
    if nodes.len() > MAX_NODES {
        bail!("hwdr handles at most {MAX_NODES} HopsFS nodes");
    }
    let mut d = Distinct::default();
    let mut pool_ids: HashMap<String, u16> = HashMap::new();
    if nodes.len() != inventories.len() {
        bail!("{} nodes but {} inventories", nodes.len(), inventories.len());
    }
    for (i, (node, expected)) in nodes.iter().zip(inventories).enumerate() {
        let mut input = inventory::open(backup, expected)?;
        let mut local: HashMap<u16, u16> = HashMap::new();
        let read = inventory::read(&mut input, |line| {
            match line {
                Line::Pool(p) => {
                    let next = d.pools.len() as u16;
                    let global = *pool_ids.entry(p.id.clone()).or_insert_with(|| {
                        d.pools.push(p.id);
                        next
                    });
                    local.insert(p.index, global);
                }
                Line::Block(b) => {
                    let pool = *local.get(&b.pool).context("block of an unlisted pool")?;
                    let key = (pool, b.id, b.genstamp);
                    let h = d.blocks.entry(key).or_insert(Holding { len: b.len, holders: 0 });
                    let first = (h.len, h.holders);
                    h.holders |= 1 << i;
                    if first.0 != b.len || d.disputed.contains_key(&key) {
                        // Replicas of one block disagree on its length: sorted out below.
                        let all = d.disputed.entry(key).or_insert_with(|| {
                            (0..MAX_NODES)
                                .filter(|n| first.1 & (1 << n) != 0)
                                .map(|n| (n, first.0))
                                .collect()
                        });
                        all.push((i, b.len));
                    }
                    d.replicas += 1;
                    d.replica_bytes += b.len;
                }
                _ => {}
            }
            Ok(())
        });
        inventory::drain(&mut input, expected)?;
        read.with_context(|| format!("reading the inventory of {node} ({})", expected.path))?;
    }
    let disputed: Vec<Key> = d.disputed.keys().copied().collect();
    for k in disputed {
        take_length(&mut d, &k, 0);
    }
    Ok(d)
}

/// The lengths the replicas of a disputed block have, best first: the length
/// most replicas agree on, then the longer one (a truncated replica is the
/// commoner fault). A replica is good only if it also passes its CRCs, which
/// the upload checks.
pub fn lengths(d: &Distinct, k: &Key) -> Vec<u64> {
    let Some(all) = d.disputed.get(k) else {
        return d.blocks.get(k).map(|h| vec![h.len]).unwrap_or_default();
    };
    let mut counted: Vec<(usize, u64)> = Vec::new();
    for (_, len) in all {
        match counted.iter_mut().find(|(_, l)| l == len) {
            Some(c) => c.0 += 1,
            None => counted.push((1, *len)),
        }
    }
    counted.sort_by(|a, b| b.cmp(a));
    counted.into_iter().map(|(_, len)| len).collect()
}

/// Makes the `nth` length of [`lengths`] the one a disputed block is taken
/// with: its holders are the replicas of that length. Returns whether there
/// is such a length.
pub fn take_length(d: &mut Distinct, k: &Key, nth: usize) -> bool {
    let Some(len) = lengths(d, k).get(nth).copied() else {
        return false;
    };
    let holders = d.disputed.get(k).map_or(0, |all| {
        all.iter()
            .filter(|(_, l)| *l == len)
            .fold(0u64, |m, (n, _)| m | (1 << n))
    });
    if let Some(h) = d.blocks.get_mut(k) {
        h.len = len;
        h.holders = holders | (h.holders & KNOWN);
    }
    true
}

/// The replicas of disputed blocks whose length differs from the one the
/// block was stored with: (key, node index, their length, the good length).
pub fn bad_lengths(d: &Distinct) -> Vec<(Key, usize, u64, u64)> {
    let mut out: Vec<(Key, usize, u64, u64)> = d
        .disputed
        .iter()
        .flat_map(|(k, all)| {
            let good = d.blocks.get(k).map_or(0, |h| h.len);
            all.iter()
                .filter(move |(_, len)| *len != good)
                .map(move |(n, len)| (*k, *n, *len, good))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Which node uploads which block in one round.
#[derive(Debug, Default)]
pub struct Assignment {
    /// Per node (same order as the inventories), the blocks it uploads.
    pub per_node: Vec<Vec<Key>>,
    /// Bytes per node.
    pub bytes: Vec<u64>,
}

impl Assignment {
    /// Blocks assigned in all.
    pub fn blocks(&self) -> usize {
        self.per_node.iter().map(Vec::len).sum()
    }
}

/// Marks the blocks that the `inventories` of `backup` (the latest
/// complete backup, each checked against its manifest entry while it is
/// read) list with the same length. A complete backup's blocks
/// were stored, synced before its manifest was written, and pruning keeps
/// them while its manifest exists, so [`missing`] need not look for them in
/// the store. Returns how many blocks were marked. The inventories are
/// streamed; nothing but the marks is kept.
pub fn mark_known(d: &mut Distinct, backup: &BackupReader, inventories: &[FileEntry]) -> Result<u64> {
    let mut marked = 0;
    for expected in inventories {
        inventory::for_each_block(backup, expected, |key, len| {
            if let Some(h) = compact(d, &key).and_then(|k| d.blocks.get_mut(&k)) {
                if h.len == len && h.holders & KNOWN == 0 {
                    h.holders |= KNOWN;
                    marked += 1;
                }
            }
            Ok(())
        })?;
    }
    Ok(marked)
}

/// Clears every mark of [`mark_known`] (after it failed half-way).
pub fn forget_known(d: &mut Distinct) {
    for h in d.blocks.values_mut() {
        h.holders &= !KNOWN;
    }
}

/// A block to give out: its length and key.
pub type Wanted = (u64, Key);

/// The distinct blocks the store does not hold yet, with their lengths:
/// every block not marked by [`mark_known`] is looked for in the store
/// (block with its length, and `.meta`). With `check_crcs` (`hwdr backup
/// --check-store`) a block found is also re-read against its CRCs, and a
/// damaged one counts as missing, so the upload replaces it from a data
/// node. Returns the missing blocks and how many of them were present but
/// damaged. The blocks looked for are filtered in place (one byte each on
/// the side), so a million of them are not held twice.
pub fn missing(d: &Distinct, store: &BlockStore, check_crcs: bool) -> Result<(Vec<Wanted>, u64)> {
    let mut unknown: Vec<Wanted> = d
        .blocks
        .iter()
        .filter(|(_, h)| h.holders & KNOWN == 0)
        .map(|(k, h)| (h.len, *k))
        .collect();
    let stored: Vec<AtomicBool> = unknown.iter().map(|_| AtomicBool::new(false)).collect();
    let damaged = AtomicU64::new(0);
    let next = AtomicUsize::new(0);
    let checked: Vec<Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CHECK_THREADS)
            .map(|_| {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((len, k)) = unknown.get(i) else { return Ok(()) };
                    crate::cancel::check()?;
                    let key = d.key(k);
                    if !store.has(&key, *len)? {
                        continue;
                    }
                    if check_crcs {
                        if let Err(e) = store.verify(&key, &JobControl::default()) {
                            crate::cancel::check()?;
                            warn!("stored block {key} is damaged, taking it again: {e:#}");
                            damaged.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                    stored[i].store(true, Ordering::Relaxed);
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a store check thread panicked")))
            })
            .collect()
    });
    for result in checked {
        result?;
    }
    let mut flags = stored.iter();
    unknown.retain(|_| flags.next().is_some_and(|f| !f.load(Ordering::Relaxed)));
    unknown.shrink_to_fit();
    Ok((unknown, damaged.into_inner()))
}

/// `keys` with their lengths, for [`assign`].
pub fn with_lengths(d: &Distinct, keys: Vec<Key>) -> Vec<Wanted> {
    keys.into_iter().map(|k| (d.blocks[&k].len, k)).collect()
}

/// Threads looking blocks up in the store (each lookup waits on the disk or
/// the network file system).
const CHECK_THREADS: usize = 4;

/// Gives each of `blocks` (with their lengths) to one holder not in
/// `tried[block]`, largest blocks first, each to the holder with the fewest
/// bytes so far. A block with no holder left is returned in the second
/// list. `blocks` is sorted in place and each node's list made at its exact
/// size, so a million keys are not held twice over.
pub fn assign(
    d: &Distinct,
    mut blocks: Vec<Wanted>,
    nodes: usize,
    tried: &HashMap<Key, u64>,
) -> (Assignment, Vec<Key>) {
    blocks.sort_unstable_by(|a, b| b.cmp(a));
    let mut bytes = vec![0; nodes];
    let mut counts = vec![0usize; nodes];
    // The node of each block, in order; `NONE` for an orphan.
    const NONE: u8 = u8::MAX;
    let chosen: Vec<u8> = blocks
        .iter()
        .map(|(len, key)| {
            let free = d.blocks[key].nodes() & !tried.get(key).copied().unwrap_or(0);
            let best = (0..nodes)
                .filter(|i| free & (1 << i) != 0)
                .min_by_key(|i| (bytes[*i], *i));
            match best {
                Some(i) => {
                    bytes[i] += len;
                    counts[i] += 1;
                    i as u8
                }
                None => NONE,
            }
        })
        .collect();
    let mut a = Assignment {
        per_node: counts.iter().map(|n| Vec::with_capacity(*n)).collect(),
        bytes,
    };
    let mut orphans = Vec::new();
    for ((_, key), node) in blocks.into_iter().zip(chosen) {
        match a.per_node.get_mut(node as usize) {
            Some(keys) => keys.push(key),
            None => orphans.push(key),
        }
    }
    (a, orphans)
}

/// Writes `node`'s part of an assignment into the backup.
pub fn write_assignment(
    backup: &BackupWriter,
    d: &Distinct,
    node: &str,
    round: u32,
    keys: &[Key],
) -> Result<FileEntry> {
    let mut text = Vec::with_capacity(keys.len() * 40);
    for k in keys {
        writeln!(text, "{}\t{}\t{}", d.pools[k.0 as usize], k.1, k.2)?;
    }
    backup.put_bytes(&assignment_rel(node, round), &text, Access::Group)
}

/// Compact keys of reported replicas.
pub fn compact(d: &Distinct, key: &BlockKey) -> Option<Key> {
    let pool = d.pools.iter().position(|p| *p == key.pool)? as u16;
    let k = (pool, key.id, key.genstamp);
    d.blocks.contains_key(&k).then_some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_spreads_bytes_and_respects_holders_and_tries() {
        let mut d = Distinct {
            pools: vec!["BP-1".into()],
            ..Default::default()
        };
        // Ten blocks of 100 bytes on nodes 0 and 1; one of 50 on node 2 only.
        for id in 0..10 {
            d.blocks.insert(
                (0, id, 1),
                Holding {
                    len: 100,
                    holders: 0b011,
                },
            );
        }
        d.blocks.insert(
            (0, 99, 1),
            Holding {
                len: 50,
                holders: 0b100,
            },
        );
        let keys: Vec<Key> = d.blocks.keys().copied().collect();
        let (a, orphans) = assign(&d, with_lengths(&d, keys), 3, &HashMap::new());
        assert!(orphans.is_empty());
        assert_eq!(a.bytes, vec![500, 500, 50]);
        assert_eq!(a.blocks(), 11);

        // Node 2's replica was bad: nobody else holds it.
        let tried = HashMap::from([((0, 99, 1), 0b100), ((0, 3, 1), 0b001)]);
        let (a, orphans) = assign(&d, with_lengths(&d, vec![(0, 99, 1), (0, 3, 1)]), 3, &tried);
        assert_eq!(orphans, vec![(0, 99, 1)]);
        assert_eq!(a.per_node[1], vec![(0, 3, 1)]);
    }
}
