//! The checks before a restore: the backup complete, every file present
//! with its size, every data node and HopsFS node of the backup in
//! `[[nodes]]`, every agent the plan needs answering.

use std::collections::BTreeMap;

use anyhow::Result;

use super::Restore;
use crate::config::{NodeSpec, Role};
use crate::exit::HwdrError;
use crate::repo::manifest::BackupStatus;
use crate::repo::store::ObjectKey;
use crate::repo::Repository;

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
        let mut remote: BTreeMap<String, NodeSpec> = BTreeMap::new();
        for step in self.steps()? {
            for p in step.parts {
                if p.node.name != self.leader().name {
                    remote.insert(p.node.name.to_string(), p.node);
                }
            }
        }
        problems.extend(self.fleet.check_agents(&remote.values().collect::<Vec<_>>()));
        if problems.is_empty() {
            return Ok(());
        }
        Err(HwdrError::Refused(format!(
            "backup {id} cannot be restored:\n  - {}",
            problems.join("\n  - ")
        ))
        .into())
    }
}
