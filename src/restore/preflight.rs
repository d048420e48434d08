//! The checks before a restore: the backup complete, every file present
//! with its size, every data node and HopsFS node of the backup in
//! `[[nodes]]`, every agent the plan needs answering, and every node that
//! runs `ndb_restore` able to decrypt a backup RonDB encrypted.

use std::collections::BTreeMap;

use anyhow::Result;

use super::Restore;
use crate::config::{NodeSpec, Role};
use crate::exit::HwdrError;
use crate::job::JobRequest;
use crate::repo::manifest::BackupStatus;
use crate::repo::store::ObjectKey;
use crate::repo::Repository;
use crate::rondb::password;

impl Restore<'_> {
    /// Refuses, naming every problem, unless the backup can be restored here:
    /// complete, every file present with its size and checksum, every block
    /// in the store, every data node id and HopsFS node in `[[nodes]]`, and
    /// every agent the plan needs answering.
    pub fn preflight(&self) -> Result<()> {
        let m = &self.manifest;
        let id = m.backup_id;
        if m.status != BackupStatus::Complete {
            return Err(HwdrError::Refused(format!(
                "backup {id} is {}, not complete (failed at {}: {}): it cannot be restored",
                m.status,
                m.failed_step.as_deref().unwrap_or("?"),
                m.error.as_deref().unwrap_or("?")
            ))
            .into());
        }
        let mut problems = Vec::new();
        if !self.leader().has(Role::Head) {
            problems.push(format!(
                "node {} is not a head node: run hwdr restore on the leader head node",
                self.leader().name
            ));
        }
        // Present with their size: a stat each. Their checksums, and the
        // blocks, are checked as the stage step copies them (no extra pass);
        // the SQL files, replayed last, are read through here.
        let backend = Repository::of(self.config).shared_backend();
        for f in m.files() {
            match ObjectKey::backup_file(id, &f.path).and_then(|key| backend.head(&key)) {
                Ok(Some(meta)) if meta.size == f.size => {}
                Ok(Some(meta)) => {
                    problems.push(format!("{}: {} bytes, the manifest says {}", f.path, meta.size, f.size))
                }
                Ok(None) => problems.push(format!("{}: missing from the repository", f.path)),
                Err(e) => problems.push(format!("{}: {e:#}", f.path)),
            }
        }
        problems.extend(self.sql_problems(&problems));
        let all = self.config.rondb_data_nodes();
        for data_node in &m.rondb.data_node_ids {
            if !all.contains_key(data_node) {
                problems.push(format!(
                    "RonDB data node {data_node} of the backup is in no [[nodes]] rondb_node_ids"
                ));
            }
        }
        if let Some(h) = &m.hopsfs {
            for node in &h.nodes {
                if !self
                    .config
                    .nodes
                    .iter()
                    .any(|n| n.name.as_str() == node && n.has(Role::Hopsfs))
                {
                    problems.push(format!(
                        "HopsFS node {node} of the backup is not a [[nodes]] entry with the hopsfs role"
                    ));
                }
            }
        }
        problems.extend(self.node_problems()?);
        if problems.is_empty() {
            return Ok(());
        }
        Err(HwdrError::Refused(format!(
            "backup {id} cannot be restored:\n  - {}",
            problems.join("\n  - ")
        ))
        .into())
    }

    /// The agents of the plan's other nodes that do not answer, and (when
    /// they all do) the nodes that could not decrypt the backup.
    fn node_problems(&self) -> Result<Vec<String>> {
        let mut remote: BTreeMap<String, NodeSpec> = BTreeMap::new();
        for step in self.steps()? {
            for p in step.parts {
                if p.node.name != self.leader().name {
                    remote.insert(p.node.name.to_string(), p.node);
                }
            }
        }
        let mut problems = self.fleet.check_agents(&remote.values().collect::<Vec<_>>());
        let answered = problems.is_empty();
        problems.extend(self.decrypt_problems(answered));
        Ok(problems)
    }

    /// Why a node that runs `ndb_restore` could not decrypt the backup, if
    /// RonDB encrypted it: the leader's own password file, read here, and
    /// (with `ask_agents`: they answered) the password file of every other
    /// node hosting a data node, read by its agent as it renders its
    /// `rondb-data` job.
    fn decrypt_problems(&self, ask_agents: bool) -> Vec<String> {
        if !self.manifest.rondb.encrypted {
            return Vec::new();
        }
        let mut problems = Vec::new();
        if let Err(e) = password::for_restore(self.config, &self.manifest) {
            problems.push(format!("{e:#}"));
        }
        if !ask_agents {
            return problems;
        }
        let mut asked: BTreeMap<String, (NodeSpec, JobRequest)> = BTreeMap::new();
        for (data_node, node) in self.hosts() {
            if node.name != self.leader().name {
                let request = JobRequest::RestoreRondbData {
                    node: node.name.clone(),
                    backup_id: self.manifest.backup_id,
                    data_node,
                };
                asked.entry(node.name.to_string()).or_insert((node.clone(), request));
            }
        }
        let jobs: Vec<(NodeSpec, JobRequest)> = asked.into_values().collect();
        for answer in self.fleet.plan(&jobs) {
            if let Err(e) = answer {
                problems.push(format!("{e:#}"));
            }
        }
        problems
    }
}
