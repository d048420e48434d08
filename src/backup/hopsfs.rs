//! The HopsFS steps, once every RonDB part is in (the metadata backup
//! dictates the consistency of HopsFS): every node lists its blocks
//! (`hopsfs-list`), the leader gives each block the repository lacks to one
//! node holding it (`hopsfs-plan`), the nodes upload them (`hopsfs-upload`),
//! and a block whose replica fails its CRCs goes to another holder in the
//! next round (`hopsfs-retry-<round>`, then `hopsfs-upload-<round>`).

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, bail, Result};
use tracing::{info, warn};

use super::record::OnNodes;
use super::{Run, Step};
use crate::config::{BlockStorage, Config, NodeSpec};
use crate::hopsfs::node::Uploaded;
use crate::hopsfs::plan::{self, Key};
use crate::job::{JobRequest, JobResult};
use crate::progress::Meter;
use crate::repo::backup::BackupWriter;
use crate::repo::manifest::{FileEntry, HopsfsInfo};
use crate::repo::Repository;

/// How far the HopsFS part of a backup got: what each step leaves the next.
#[derive(Default)]
pub(super) enum Part {
    /// Not begun, or a step failed: the next steps have nothing to do.
    #[default]
    Nothing,
    /// Every node listed its blocks: their inventories, as each node stored it.
    Listed(Vec<FileEntry>),
    /// The blocks to upload are given out.
    Planned(Box<Uploads>),
    /// Done: what the manifest records.
    Done(HopsfsInfo),
}

impl Part {
    /// The inventories, if every node listed its blocks (the part is left
    /// as it is otherwise).
    fn take_listed(&mut self) -> Option<Vec<FileEntry>> {
        match std::mem::take(self) {
            Part::Listed(inventories) => Some(inventories),
            other => {
                *self = other;
                None
            }
        }
    }

    /// The uploads, if the blocks were given out (the part is left as it
    /// is otherwise).
    fn take_planned(&mut self) -> Option<Box<Uploads>> {
        match std::mem::take(self) {
            Part::Planned(uploads) => Some(uploads),
            other => {
                *self = other;
                None
            }
        }
    }

    /// The manifest's HopsFS part, when HopsFS is done.
    pub(super) fn into_info(self) -> Option<HopsfsInfo> {
        match self {
            Part::Done(info) => Some(info),
            _ => None,
        }
    }
}

/// The uploads between their rounds.
pub(super) struct Uploads {
    /// The HopsFS nodes, by name, in config order.
    names: Vec<String>,
    distinct: plan::Distinct,
    /// The blocks each node uploads in this round.
    assignment: plan::Assignment,
    round: u32,
    /// Which nodes a block came back bad from (bit `i`: node `i`).
    tried: HashMap<Key, u64>,
    /// Why each of them was bad.
    reasons: HashMap<Key, Vec<String>>,
    /// Which of a block's disputed lengths is tried ([`plan::take_length`]).
    length_choice: HashMap<Key, usize>,
    bad_replicas: Vec<String>,
    new_blocks: u64,
    new_bytes: u64,
    /// `None` once a node did not report it (an older agent).
    new_stored_bytes: Option<u64>,
}

impl Run<'_> {
    /// [`Step::Hopsfs`]: blocks in cloud storage are not backed up; the
    /// manifest says so.
    pub(super) fn hopsfs_in_cloud(&mut self) {
        if self.hopsfs_nodes.is_empty() || self.config.hopsfs.block_storage != BlockStorage::Cloud {
            return;
        }
        info!("HopsFS blocks are in cloud storage: no blocks are backed up");
        self.hopsfs = Part::Done(HopsfsInfo {
            block_storage: BlockStorage::Cloud,
            nodes: Vec::new(),
            distinct_blocks: 0,
            distinct_bytes: 0,
            replicas: 0,
            replica_bytes: 0,
            new_blocks: 0,
            new_bytes: 0,
            new_stored_bytes: Some(0),
            bad_replicas: Vec::new(),
            lengths: BTreeMap::new(),
        });
    }

    /// [`Step::HopsfsList`]: every HopsFS node lists its blocks and VERSION
    /// files into the backup, once every RonDB part is in.
    pub(super) fn hopsfs_list(&mut self) {
        if self.hopsfs_nodes.is_empty() || self.config.hopsfs.block_storage != BlockStorage::Local {
            return;
        }
        let step = Step::HopsfsList.name();
        if !self.steps.all_ok() {
            for node in &self.hopsfs_nodes {
                self.steps.of(node).skip(step);
            }
            return;
        }
        let id = self.id;
        let mut shown = OnNodes::start(step, "files");
        let listed = self
            .fleet
            .run_on(&self.hopsfs_nodes, |node| JobRequest::HopsfsInventory {
                node: node.name.clone(),
                backup_id: id,
            });
        let mut all_listed = true;
        let mut inventories = Vec::new();
        for s in listed {
            let node = self.hopsfs_nodes[s.index];
            let files = inventory(node, s.result).map(|(entry, files)| {
                inventories.push(entry);
                files
            });
            all_listed &= files.is_ok();
            shown.count_files(node.name.as_str(), &files);
            self.steps.of(node).record(step, s.started, s.finished, files);
        }
        shown.end();
        if all_listed {
            self.hopsfs = Part::Listed(inventories);
        }
    }

    /// [`Step::HopsfsPlan`]: merges the inventories and gives each block the
    /// repository lacks to one node holding it (round 1).
    pub(super) fn hopsfs_plan(&mut self) {
        let Some(inventories) = self.hopsfs.take_listed() else {
            return;
        };
        let names: Vec<String> = self.hopsfs_nodes.iter().map(|n| n.name.to_string()).collect();
        let (config, id, check_store, dir) = (self.config, self.id, self.opts.check_store, &self.dir);
        let planned = self.steps.head().run(Step::HopsfsPlan.name(), |files| {
            let reader = Repository::of(config).reader(id);
            let mut distinct = plan::merge(&reader, &names, &inventories)?;
            if !check_store {
                trust_latest_complete(config, &mut distinct);
            }
            let assignment = assign_missing(config, dir, &distinct, &names, check_store, files)?;
            Ok((distinct, assignment))
        });
        if let Some((distinct, assignment)) = planned {
            self.hopsfs = Part::Planned(Box::new(Uploads::new(names, distinct, assignment)));
        }
    }

    /// [`Step::HopsfsUpload`]: the upload rounds, with [`Step::HopsfsRetry`]
    /// between them, until no replica came back bad or a node failed.
    pub(super) fn hopsfs_upload(&mut self) {
        let Some(mut uploads) = self.hopsfs.take_planned() else {
            return;
        };
        loop {
            let retry = self.upload_round(&mut uploads);
            if retry.is_empty() || !self.retry(&mut uploads, retry) {
                break;
            }
        }
        if self.steps.all_ok() {
            self.hopsfs = Part::Done(uploads.into_info());
        }
    }

    /// Upload round `uploads.round` on every node given blocks in it;
    /// returns the blocks whose replica came back bad (none when a node
    /// failed: the uploads stop).
    fn upload_round(&mut self, uploads: &mut Uploads) -> Vec<Key> {
        let busy: Vec<&NodeSpec> = self
            .hopsfs_nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !uploads.assignment.per_node[*i].is_empty())
            .map(|(_, n)| *n)
            .collect();
        let (id, round) = (self.id, uploads.round);
        let step = Step::HopsfsUpload.in_round(round);
        let mut shown = OnNodes::start(&step, "blocks");
        let a = &uploads.assignment;
        let meter = Meter::with_totals("uploading blocks", "blocks", a.blocks() as u64, a.bytes.iter().sum());
        let jobs = busy
            .iter()
            .map(|node| {
                let request = JobRequest::HopsfsUpload {
                    node: node.name.clone(),
                    backup_id: id,
                    round,
                };
                ((*node).clone(), request)
            })
            .collect();
        let shipped = self
            .fleet
            .run_metered(jobs, self.config.backup.parallelism, Some(&meter));
        drop(meter);
        let mut retry = Vec::new();
        let mut failed = false;
        for s in shipped {
            let node = busy[s.index];
            let (mut blocks, mut bytes) = (0, 0);
            let outcome = match s.result {
                Ok(JobResult::HopsfsUploaded(u)) => {
                    (blocks, bytes) = (u.blocks, u.bytes);
                    retry.extend(uploads.count(&self.hopsfs_nodes, node, u));
                    Ok(Vec::new())
                }
                Ok(other) => Err(anyhow!("node {} answered the upload with {other:?}", node.name)),
                Err(e) => Err(e),
            };
            failed |= outcome.is_err();
            shown.count(node.name.as_str(), &outcome, blocks, bytes);
            self.steps.of(node).record(&step, s.started, s.finished, outcome);
        }
        shown.end();
        if failed {
            Vec::new()
        } else {
            retry
        }
    }

    /// [`Step::HopsfsRetry`]: gives each block of `retry` to a holder not
    /// tried yet, for the next round; returns whether that round runs (not
    /// when a block is bad on every replica, which fails the step).
    fn retry(&mut self, uploads: &mut Uploads, retry: Vec<Key>) -> bool {
        uploads.round += 1;
        let round = uploads.round;
        let step = Step::HopsfsRetry.in_round(round);
        let (next, orphans) = assign_retry(
            &mut uploads.distinct,
            retry,
            uploads.names.len(),
            &uploads.tried,
            &mut uploads.length_choice,
        );
        if !orphans.is_empty() {
            let list = uploads.orphan_list(&orphans);
            self.steps.head().run(&step, |_| -> Result<()> {
                bail!(
                    "{} block(s) are bad on every replica: {}",
                    orphans.len(),
                    list.join(", ")
                )
            });
            return false;
        }
        let dir = &self.dir;
        let written = self.steps.head().run(&step, |files| {
            for (i, node) in uploads.names.iter().enumerate() {
                if !next.per_node[i].is_empty() {
                    files.push(plan::write_assignment(
                        dir,
                        &uploads.distinct,
                        node,
                        round,
                        &next.per_node[i],
                    )?);
                }
            }
            info!("taking {} block(s) from other replicas", next.blocks());
            Ok(())
        });
        uploads.assignment = next;
        written.is_some()
    }
}

impl Uploads {
    fn new(names: Vec<String>, distinct: plan::Distinct, assignment: plan::Assignment) -> Uploads {
        Uploads {
            names,
            distinct,
            assignment,
            round: 1,
            tried: HashMap::new(),
            reasons: HashMap::new(),
            length_choice: HashMap::new(),
            bad_replicas: Vec::new(),
            new_blocks: 0,
            new_bytes: 0,
            new_stored_bytes: Some(0),
        }
    }

    /// Counts what `node` uploaded in this round; returns the blocks whose
    /// replica on it came back bad, remembering that it was tried.
    fn count(&mut self, nodes: &[&NodeSpec], node: &NodeSpec, uploaded: Uploaded) -> Vec<Key> {
        self.new_blocks += uploaded.blocks;
        self.new_bytes += uploaded.bytes;
        self.new_stored_bytes = self.new_stored_bytes.zip(uploaded.stored).map(|(a, b)| a + b);
        let mut retry = Vec::new();
        for bad in uploaded.bad {
            let text = format!("{} on {}: {}", bad.key(), node.name, bad.error);
            warn!(hwdr_node = %node.name, "bad replica: {text}");
            self.bad_replicas.push(text);
            let Some(k) = plan::compact(&self.distinct, &bad.key()) else {
                warn!("node {} reported {} which no inventory lists", node.name, bad.key());
                continue;
            };
            // Only blocks that came back bad remember who tried them.
            let bit = nodes.iter().position(|n| n.name == node.name).unwrap_or(0);
            *self.tried.entry(k).or_default() |= 1 << bit;
            let reason = format!("{}: {}", node.name, bad.error);
            self.reasons.entry(k).or_default().push(reason);
            retry.push(k);
        }
        retry
    }

    /// The blocks no replica is left for, each with why every replica failed.
    fn orphan_list(&self, orphans: &[Key]) -> Vec<String> {
        orphans
            .iter()
            .map(|k| {
                let why = self.reasons.get(k).map(|r| r.join("; ")).unwrap_or_default();
                format!("{} ({why})", self.distinct.key(k))
            })
            .collect()
    }

    /// The manifest's HopsFS part: with one line per replica whose length
    /// differs from its block's good one (instead of its CRC failure).
    fn into_info(mut self) -> HopsfsInfo {
        let mut lengths = BTreeMap::new();
        for (k, node, len, good) in plan::bad_lengths(&self.distinct) {
            let key = self.distinct.key(&k);
            lengths.insert(key.to_string(), good);
            // One line per replica: the length says more than the CRC failure it also caused.
            let name = &self.names[node];
            let prefix = format!("{key} on {name}: ");
            self.bad_replicas.retain(|t: &String| !t.starts_with(&prefix));
            let text =
                format!("{key} on {name}: {len} bytes, the good replica has {good} (truncated or with bytes appended)");
            warn!(hwdr_node = %name, "bad replica: {text}");
            self.bad_replicas.push(text);
        }
        HopsfsInfo {
            block_storage: BlockStorage::Local,
            distinct_blocks: self.distinct.blocks.len() as u64,
            distinct_bytes: self.distinct.bytes(),
            replicas: self.distinct.replicas,
            replica_bytes: self.distinct.replica_bytes,
            nodes: self.names,
            new_blocks: self.new_blocks,
            new_bytes: self.new_bytes,
            new_stored_bytes: self.new_stored_bytes,
            bad_replicas: self.bad_replicas,
            lengths,
        }
    }
}

/// The inventory entry of `node`'s listing, and the files it stored.
fn inventory(node: &NodeSpec, result: Result<JobResult>) -> Result<(FileEntry, Vec<FileEntry>)> {
    let listed = match result? {
        JobResult::HopsfsListed(listed) => listed,
        other => bail!("node {} answered the listing with {other:?}", node.name),
    };
    for skipped in &listed.skipped {
        warn!(hwdr_node = %node.name, "left out on {}: {skipped}", node.name);
    }
    let rel = crate::hopsfs::node::inventory_rel(node.name.as_str());
    match listed.files.iter().find(|f| f.path == rel) {
        Some(entry) => Ok((entry.clone(), listed.files)),
        None => Err(anyhow!("node {} listed its blocks but stored no {rel}", node.name)),
    }
}

/// Finds the blocks the repository lacks (or holds damaged), gives each to
/// one node holding it, and writes each node's share of round 1 into `files`.
fn assign_missing(
    config: &Config,
    dir: &BackupWriter,
    distinct: &plan::Distinct,
    names: &[String],
    check_store: bool,
    files: &mut Vec<FileEntry>,
) -> Result<plan::Assignment> {
    let store = Repository::of(config).blocks();
    let (missing, damaged) = plan::missing(distinct, &store, check_store)?;
    if damaged > 0 {
        warn!(
            damaged,
            "{damaged} stored block(s) failed their CRC check: they are taken again from the data nodes"
        );
    }
    let n_missing = missing.len();
    let (assignment, orphans) = plan::assign(distinct, missing, names.len(), &HashMap::new());
    if !orphans.is_empty() {
        bail!("{} blocks have no holder", orphans.len());
    }
    for (i, node) in names.iter().enumerate() {
        files.push(plan::write_assignment(dir, distinct, node, 1, &assignment.per_node[i])?);
    }
    info!(
        distinct = distinct.blocks.len(),
        replicas = distinct.replicas,
        missing = n_missing,
        "{} distinct blocks ({} replicas), {} not in the repository yet",
        distinct.blocks.len(),
        distinct.replicas,
        n_missing
    );
    Ok(assignment)
}

/// Marks the blocks the latest complete backup lists as stored
/// ([`plan::mark_known`]), so only the others are looked for in the store.
/// Anything odd about that backup only costs the shortcut.
fn trust_latest_complete(config: &Config, distinct: &mut plan::Distinct) {
    let repo = Repository::of(config);
    let prev = match repo.latest_complete() {
        Ok(Some(prev)) => prev,
        Ok(None) => return,
        Err(e) => {
            warn!("looking every block up in the store: {e:#}");
            return;
        }
    };
    let Some(hopsfs) = prev.hopsfs.as_ref().filter(|h| h.block_storage == BlockStorage::Local) else {
        return;
    };
    let mut inventories: Vec<FileEntry> = Vec::new();
    for node in &hopsfs.nodes {
        let rel = crate::hopsfs::node::inventory_rel(node);
        let Some(entry) = prev.files().find(|f| f.path == rel) else {
            warn!(
                "looking every block up in the store: backup {} does not list {rel}",
                prev.backup_id
            );
            return;
        };
        inventories.push(entry.clone());
    }
    match plan::mark_known(distinct, &repo.reader(prev.backup_id), &inventories) {
        Ok(known) => info!(
            known,
            "{known} blocks are listed by backup {}, the latest complete one: not looked up in the store",
            prev.backup_id
        ),
        Err(e) => {
            warn!(
                "looking every block up in the store: the inventories of backup {} do not read: {e:#}",
                prev.backup_id
            );
            plan::forget_known(distinct);
        }
    }
}

/// Gives each block of `retry` to a holder not tried yet. A block whose
/// replicas disagree on its length and whose replicas of the length tried so
/// far all failed is tried with the next length ([`plan::take_length`]).
/// Returns the assignment and the blocks no replica is left for.
fn assign_retry(
    distinct: &mut plan::Distinct,
    retry: Vec<Key>,
    nodes: usize,
    tried: &HashMap<Key, u64>,
    choice: &mut HashMap<Key, usize>,
) -> (plan::Assignment, Vec<Key>) {
    let (mut assigned, mut orphans) = plan::assign(distinct, plan::with_lengths(distinct, retry), nodes, tried);
    loop {
        let (switched, left): (Vec<Key>, Vec<Key>) = orphans.into_iter().partition(|k| {
            let n = choice.entry(*k).or_insert(0);
            *n += 1;
            distinct.disputed.contains_key(k) && plan::take_length(distinct, k, *n)
        });
        if switched.is_empty() {
            return (assigned, left);
        }
        let (more, still) = plan::assign(distinct, plan::with_lengths(distinct, switched), nodes, tried);
        for (i, keys) in more.per_node.into_iter().enumerate() {
            assigned.per_node[i].extend(keys);
            assigned.bytes[i] += more.bytes[i];
        }
        orphans = left.into_iter().chain(still).collect();
    }
}
