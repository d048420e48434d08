//! When a backup is complete: every node delivered the parts the config
//! places on it, every data node id of the cluster is in the repository, no
//! step failed and no signal stopped it. Decides its status.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Result};
use tracing::error;

use super::record::Recorder;
use super::steps::INTERRUPTED_STEP;
use super::{Run, Step};
use crate::config::{Config, NodeSpec};
use crate::repo::manifest::{BackupStatus, RondbInfo};

impl Run<'_> {
    /// [`Step::Check`]: closes every node's record, checks that RonDB is
    /// complete, and decides the status: complete, partial (the leader's own
    /// steps worked, and other nodes failed their share) or failed.
    pub(super) fn check(&mut self) {
        // The steps are over: the records go into the manifest.
        let steps = std::mem::replace(&mut self.steps, Recorder::new(self.this, &[]));
        let (records, mut failures) = steps.finish();
        let this = &self.this.name;
        // The backup is complete only if every data node id is in the repository.
        if failures.is_empty() {
            if let Err(e) = check_rondb_complete(self.config, &self.rondb) {
                error!("{e:#}");
                failures.push((format!("{this}/{}", Step::Check.name()), e));
            }
        }
        // A signal (or the lost lock) at any point means the backup is not
        // complete, whatever the steps after it managed: it is failed,
        // "interrupted", saying why.
        let stop = crate::cancel::reason();
        let interrupted = stop.is_some();
        if let Some(why) = stop {
            let says_so = failures.first().is_some_and(|(_, e)| {
                let e = format!("{e:#}");
                e.contains("interrupted") || e.contains(&why)
            });
            if !says_so {
                failures.insert(0, (format!("{this}/{INTERRUPTED_STEP}"), anyhow!(why)));
            }
        }
        let leader_failed = failures.iter().any(|(step, _)| step.starts_with(&format!("{this}/")));
        self.status = match (&failures[..], leader_failed || interrupted) {
            ([], _) => BackupStatus::Complete,
            (_, false) => BackupStatus::Partial,
            (_, true) => BackupStatus::Failed,
        };
        self.records = records;
        self.failures = failures;
    }
}

/// A node delivered the parts of exactly the data nodes the config places on it.
pub(super) fn check_parts(node: &NodeSpec, parts: &BTreeMap<u32, u32>) -> Result<()> {
    let expected: BTreeSet<u32> = node.rondb_node_ids.iter().copied().collect();
    let got: BTreeSet<u32> = parts.keys().copied().collect();
    if got != expected {
        bail!(
            "node {} delivered the parts of data nodes {got:?}, expected {expected:?}",
            node.name
        );
    }
    Ok(())
}

/// Every data node id of the cluster delivered a complete part, and the
/// master node RonDB named is one of them.
pub(super) fn check_rondb_complete(config: &Config, rondb: &RondbInfo) -> Result<()> {
    let expected: BTreeSet<u32> = config.rondb_data_nodes().keys().copied().collect();
    let missing: Vec<_> = expected.difference(&rondb.data_node_ids).collect();
    if !missing.is_empty() {
        bail!("data node(s) {missing:?} have no complete part in the repository");
    }
    if let Some(result) = &rondb.result {
        if !rondb.data_node_ids.contains(&result.master_node) {
            bail!(
                "RonDB named data node {} as master, but no node delivered its part",
                result.master_node
            );
        }
    }
    Ok(())
}
