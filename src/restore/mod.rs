//! `hwdr restore`: the runbook's restore as a plan of steps across every
//! node, checked before it starts, run in order, resumable at any step.
//!
//! Steps, in order: `stage` (each node that runs `ndb_restore` gets the part
//! files it needs), `rondb-meta` (schemas and tables, once, on the leader),
//! `rondb-data` (every data node id of the backup, on the node hosting it),
//! `rondb-indexes` (once), `rondb-epoch` (with `[restore] restore_epoch`),
//! `users` (users and grants, then the schemas file), `hopsfs` (every HopsFS
//! node's restore job), `safemode` (wait until the namenode leaves safe
//! mode), `opensearch` (ePipe reindex), `kafka` (topics).

mod authenticate;
mod plan;
mod preflight;
mod run;
pub mod state;

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};

use crate::backup_id::BackupId;
use crate::config::{BlockStorage, Config, NodeSpec};
use crate::exit::HwdrError;
use crate::fleet::Fleet;
use crate::job::{CommandKind, JobRequest};
use crate::repo::manifest::Manifest;
use crate::repo::{ManifestState, Repository};
use crate::rondb::restore::NdbAction;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Continue after the last finished step (and part).
    pub resume: bool,
    /// Run from this step on, whatever the state says.
    pub from: Option<String>,
    /// Run only this step.
    pub only: Option<String>,
    /// Let the HopsFS restore remove block files the backup does not name.
    pub clean_hopsfs: bool,
}

/// What a part of a step does.
#[derive(Debug, Clone)]
enum Action {
    /// A node-local job (in-process on this node, else through its agent).
    Job(JobRequest),
    /// The leader stages the metadata node's parts and the SQL files.
    StageLeader,
    /// `ndb_restore` on the leader.
    Ndb(NdbAction),
    /// Replay users.sql, then schemas.sql.
    Sql,
    /// Wait until the namenode leaves safe mode.
    Safemode,
}

/// One part of a step: where it runs and what it does.
#[derive(Debug, Clone)]
struct Part {
    name: String,
    node: NodeSpec,
    action: Action,
}

/// One step of the plan.
struct Step {
    name: &'static str,
    parts: Vec<Part>,
    /// Parts run at once (jobs only).
    parallelism: usize,
}

/// Everything a restore needs.
pub struct Restore<'a> {
    /// The configuration (the fleet's).
    pub config: &'a Config,
    /// The manifest of the backup restored.
    pub manifest: Manifest,
    fleet: &'a Fleet,
    clean_hopsfs: bool,
}

impl<'a> Restore<'a> {
    /// A restore of backup `id` onto `fleet`; fails if it does not exist
    /// (not found), or has no manifest or a damaged one (refused).
    pub fn new(fleet: &'a Fleet, id: BackupId) -> Result<Self> {
        let config = fleet.config();
        let manifest = match Repository::of(config).read_manifest(id)? {
            ManifestState::Ok(m) => *m,
            ManifestState::Missing => {
                return Err(HwdrError::Refused(format!(
                    "backup {id} has no manifest: it is not a complete backup (unfinished, or being taken)"
                ))
                .into())
            }
            ManifestState::Damaged(why) => {
                return Err(HwdrError::Refused(format!(
                    "backup {id} is damaged: manifest.json: {why}; it cannot be restored"
                ))
                .into())
            }
        };
        Ok(Restore {
            config,
            manifest,
            fleet,
            clean_hopsfs: false,
        })
    }

    fn leader(&self) -> &NodeSpec {
        self.config.this()
    }

    fn ndb(&self) -> u32 {
        self.manifest.rondb.ndb_backup_id
    }

    /// The data node whose files the once-only steps read: the lowest id.
    fn meta_node_id(&self) -> u32 {
        self.manifest.rondb.data_node_ids.iter().next().copied().unwrap_or(0)
    }

    /// The node hosting each data node id of the backup.
    fn hosts(&self) -> BTreeMap<u32, &NodeSpec> {
        let all = self.config.rondb_data_nodes();
        self.manifest
            .rondb
            .data_node_ids
            .iter()
            .filter_map(|id| all.get(id).map(|n| (*id, *n)))
            .collect()
    }

    fn hopsfs_nodes(&self) -> Vec<&NodeSpec> {
        match &self.manifest.hopsfs {
            Some(h) if h.block_storage == BlockStorage::Local => h
                .nodes
                .iter()
                .filter_map(|n| self.config.nodes.iter().find(|c| c.name.as_str() == n))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Every node that stages something: it hosts a RonDB data node of the
    /// backup, or holds HopsFS blocks of it. By name.
    fn staging_nodes(&self) -> BTreeMap<String, &NodeSpec> {
        let mut nodes: BTreeMap<String, &NodeSpec> = BTreeMap::new();
        for node in self.hosts().values().copied().chain(self.hopsfs_nodes()) {
            nodes.insert(node.name.to_string(), node);
        }
        nodes
    }

    fn node_named(&self, name: &crate::config::NodeName) -> Result<&NodeSpec> {
        self.config
            .node(name)
            .ok_or_else(|| anyhow!("node {name} is not in [[nodes]]"))
    }

    /// The steps of this restore with their parts.
    fn steps(&self) -> Result<Vec<Step>> {
        let id = self.manifest.backup_id;
        let leader = self.leader().clone();
        let part = |name: String, node: &NodeSpec, action| Part {
            name,
            node: node.clone(),
            action,
        };
        let mut steps = Vec::new();

        let mut stage = vec![part(leader.name.to_string(), &leader, Action::StageLeader)];
        for node in self.staging_nodes().values() {
            let job = JobRequest::RestoreStage {
                node: node.name.clone(),
                backup_id: id,
            };
            stage.push(part(format!("{}/stage", node.name), node, Action::Job(job)));
        }
        steps.push(Step {
            name: "stage",
            parts: stage,
            parallelism: self.config.backup.parallelism,
        });
        let meta = self.meta_node_id();
        let once = |name: &'static str, action| Step {
            name,
            parts: vec![part(format!("node {meta}"), &leader, action)],
            parallelism: 1,
        };
        steps.push(once("rondb-meta", Action::Ndb(NdbAction::Meta)));
        let data = self
            .hosts()
            .into_iter()
            .map(|(data_node, node)| {
                let job = JobRequest::RestoreRondbData {
                    node: node.name.clone(),
                    backup_id: id,
                    data_node,
                };
                part(format!("node {data_node}"), node, Action::Job(job))
            })
            .collect();
        steps.push(Step {
            name: "rondb-data",
            parts: data,
            parallelism: self.config.restore.ndb_restore_parallelism,
        });
        steps.push(once("rondb-indexes", Action::Ndb(NdbAction::Indexes)));
        if self.config.restore.restore_epoch {
            steps.push(once("rondb-epoch", Action::Ndb(NdbAction::Epoch)));
        }
        steps.push(Step {
            name: "users",
            parts: vec![part("users.sql, schemas.sql".into(), &leader, Action::Sql)],
            parallelism: 1,
        });
        let hopsfs = self
            .hopsfs_nodes()
            .into_iter()
            .map(|node| {
                let job = JobRequest::HopsfsRestore {
                    node: node.name.clone(),
                    backup_id: id,
                    clean: self.clean_hopsfs,
                };
                part(node.name.to_string(), node, Action::Job(job))
            })
            .collect();
        steps.push(Step {
            name: "hopsfs",
            parts: hopsfs,
            parallelism: self.config.backup.parallelism,
        });
        steps.push(Step {
            name: "safemode",
            parts: vec![part("namenode".into(), &leader, Action::Safemode)],
            parallelism: 1,
        });
        for (kind, command) in [
            (CommandKind::Opensearch, &self.config.opensearch),
            (CommandKind::Kafka, &self.config.kafka),
        ] {
            let node = self.node_named(&command.node)?;
            let job = JobRequest::RestoreCommand {
                node: node.name.clone(),
                backup_id: id,
                step: kind,
            };
            steps.push(Step {
                name: kind.step(),
                parts: vec![part(node.name.to_string(), node, Action::Job(job))],
                parallelism: 1,
            });
        }
        Ok(steps)
    }
}
