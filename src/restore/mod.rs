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
pub mod progress;
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

/// The names of the restore's steps, in the order they run (see the
/// module's text). `--from` and `--only` take these, and `hwdr restore
/// --help` lists them; a restore has all of them but `rondb-epoch`, which
/// runs only with `[restore] restore_epoch`.
pub const STEP_NAMES: [&str; 10] = [
    "stage",
    "rondb-meta",
    "rondb-data",
    "rondb-indexes",
    EPOCH_STEP,
    "users",
    "hopsfs",
    "safemode",
    "opensearch",
    "kafka",
];

/// The one step a restore may lack (see [`STEP_NAMES`]).
const EPOCH_STEP: &str = "rondb-epoch";

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

impl Options {
    /// Fails unless every step `--from`/`--only` names is one of `names`,
    /// this restore's steps.
    fn check_picked(&self, names: &[&str]) -> Result<()> {
        for wanted in self.from.iter().chain(self.only.iter()) {
            if !names.contains(&wanted.as_str()) {
                let why = if wanted == EPOCH_STEP {
                    " (it runs only with `[restore] restore_epoch = true`)"
                } else {
                    ""
                };
                anyhow::bail!(
                    "no step '{wanted}' in this restore{why}; the steps are: {}",
                    names.join(", ")
                );
            }
        }
        Ok(())
    }

    /// Whether `--from`/`--only` pick or leave out some steps.
    fn picks(&self) -> bool {
        self.from.is_some() || self.only.is_some()
    }

    /// Whether the `i`th of `names` is among the steps asked for: every
    /// step without `--from`/`--only`.
    fn selects(&self, names: &[&str], i: usize) -> bool {
        match (&self.from, &self.only) {
            (_, Some(only)) => names[i] == only,
            (Some(from), None) => i >= names.iter().position(|n| n == from).unwrap_or(0),
            (None, None) => true,
        }
    }
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

/// A part named `name` that runs `action` on `node`.
fn part(name: String, node: &NodeSpec, action: Action) -> Part {
    Part {
        name,
        node: node.clone(),
        action,
    }
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
            ManifestState::Missing => return Err(crate::repo::no_manifest(id).into()),
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
        let leader = self.leader();
        let meta = self.meta_node_id();
        let once = |name: &'static str, action| Step {
            name,
            parts: vec![part(format!("node {meta}"), leader, action)],
            parallelism: 1,
        };
        let mut steps = vec![
            self.stage_step(),
            once("rondb-meta", Action::Ndb(NdbAction::Meta)),
            self.rondb_data_step(),
            once("rondb-indexes", Action::Ndb(NdbAction::Indexes)),
        ];
        if self.config.restore.restore_epoch {
            steps.push(once(EPOCH_STEP, Action::Ndb(NdbAction::Epoch)));
        }
        steps.push(Step {
            name: "users",
            parts: vec![part("users.sql, schemas.sql".into(), leader, Action::Sql)],
            parallelism: 1,
        });
        steps.push(self.hopsfs_step());
        steps.push(Step {
            name: "safemode",
            parts: vec![part("namenode".into(), leader, Action::Safemode)],
            parallelism: 1,
        });
        for kind in [CommandKind::Opensearch, CommandKind::Kafka] {
            steps.push(self.command_step(kind)?);
        }
        // `--help` lists STEP_NAMES: a step named otherwise could not be picked.
        debug_assert!(steps.iter().all(|s| STEP_NAMES.contains(&s.name)));
        Ok(steps)
    }

    /// `stage`: the leader stages the metadata node's parts and the SQL
    /// files; every node that restores something stages its own.
    fn stage_step(&self) -> Step {
        let leader = self.leader();
        let mut parts = vec![part(leader.name.to_string(), leader, Action::StageLeader)];
        for node in self.staging_nodes().values() {
            let job = JobRequest::RestoreStage {
                node: node.name.clone(),
                backup_id: self.manifest.backup_id,
            };
            parts.push(part(format!("{}/stage", node.name), node, Action::Job(job)));
        }
        Step {
            name: "stage",
            parts,
            parallelism: self.config.backup.parallelism,
        }
    }

    /// `rondb-data`: every data node id of the backup, on the node hosting it.
    fn rondb_data_step(&self) -> Step {
        let parts = self
            .hosts()
            .into_iter()
            .map(|(data_node, node)| {
                let job = JobRequest::RestoreRondbData {
                    node: node.name.clone(),
                    backup_id: self.manifest.backup_id,
                    data_node,
                };
                part(format!("node {data_node}"), node, Action::Job(job))
            })
            .collect();
        Step {
            name: "rondb-data",
            parts,
            parallelism: self.config.restore.ndb_restore_parallelism,
        }
    }

    /// `hopsfs`: every HopsFS node's restore job (none without local blocks).
    fn hopsfs_step(&self) -> Step {
        let parts = self
            .hopsfs_nodes()
            .into_iter()
            .map(|node| {
                let job = JobRequest::HopsfsRestore {
                    node: node.name.clone(),
                    backup_id: self.manifest.backup_id,
                    clean: self.clean_hopsfs,
                };
                part(node.name.to_string(), node, Action::Job(job))
            })
            .collect();
        Step {
            name: "hopsfs",
            parts,
            parallelism: self.config.backup.parallelism,
        }
    }

    /// `opensearch` or `kafka`: the configured command, on its node.
    fn command_step(&self, kind: CommandKind) -> Result<Step> {
        let command = match kind {
            CommandKind::Opensearch => &self.config.opensearch,
            CommandKind::Kafka => &self.config.kafka,
        };
        let node = self.node_named(&command.node)?;
        let job = JobRequest::RestoreCommand {
            node: node.name.clone(),
            backup_id: self.manifest.backup_id,
            step: kind,
        };
        Ok(Step {
            name: kind.step(),
            parts: vec![part(node.name.to_string(), node, Action::Job(job))],
            parallelism: 1,
        })
    }
}
