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

pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use tracing::{error, info, info_span, warn};

use crate::agent::client::JobFailed;
use crate::backup_id::BackupId;
use crate::config::{BlockStorage, Config, NodeSpec, Role};
use crate::exit::HwdrError;
use crate::fleet::Fleet;
use crate::job::{CommandKind, JobRequest, JobResult};
use crate::repo::manifest::{BackupStatus, Manifest};
use crate::repo::store::ObjectKey;
use crate::repo::{ManifestState, Repository};
use crate::rondb::restore::{self as rr, NdbAction};
use crate::runner::{self, Cmd, ProgramFailed, RunAs};
use state::{PartState, RestoreState, Status, StepState};

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

    /// `--plan`: every step, where it runs, as whom, the exact argv, and what
    /// it waits for.
    pub fn render_plan(&self) -> Result<String> {
        let c = self.config;
        let ndb = self.ndb();
        let placeholder = |name: &str| RunAs {
            name: name.into(),
            ..RunAs::root()
        };
        let mysql = c.rondb.user.as_str();
        let staged = rr::staged_dir(&c.restore, ndb);
        let ndb_restore = |node: u32, action: NdbAction| {
            rr::ndb_restore_cmd(&c.rondb, &c.restore, placeholder(mysql), ndb, node, action).argv_display()
        };
        let source = |file: &str| {
            rr::mysql_source_cmd(&c.rondb, &c.restore, placeholder(mysql), &staged.join(file)).argv_display()
        };
        let mut out = format!(
            "restore of backup {} (RonDB backup id {ndb}) of cluster {} from {}\n",
            self.manifest.backup_id,
            self.manifest.cluster,
            crate::repo::Repository::of(c).location()
        );
        let mut previous: Option<&str> = None;
        for (i, step) in self.steps()?.iter().enumerate() {
            let waits = previous
                .map(|p| format!("after {p}"))
                .unwrap_or_else(|| "checks passed".into());
            let _ = writeln!(
                out,
                "{:>2}. {} ({waits}{})",
                i + 1,
                step.name,
                if step.parts.len() > 1 {
                    format!("; {} parts, {} at once", step.parts.len(), step.parallelism)
                } else {
                    String::new()
                }
            );
            for p in &step.parts {
                let (user, action) = match &p.action {
                    Action::StageLeader => (
                        "root".to_owned(),
                        format!(
                            "copy the parts of data node {} and users.sql, schemas.sql into {} (checked against the manifest, owned by {mysql})",
                            self.meta_node_id(),
                            staged.display()
                        ),
                    ),
                    Action::Job(JobRequest::RestoreStage { .. }) => ("root".into(), self.stage_text(&p.node, &staged)),
                    Action::Ndb(action) => (mysql.into(), ndb_restore(self.meta_node_id(), *action)),
                    Action::Job(JobRequest::RestoreRondbData { data_node, .. }) => {
                        (mysql.into(), ndb_restore(*data_node, NdbAction::Data))
                    }
                    Action::Sql => (
                        mysql.into(),
                        format!(
                            "{} ; then {} (users.sql with CREATE USER IF NOT EXISTS)",
                            source("users.sql"),
                            source("schemas.sql")
                        ),
                    ),
                    Action::Job(JobRequest::HopsfsRestore { .. }) => (
                        "root".into(),
                        format!(
                            "stop {}, move the staged VERSION files and blocks into place (owned by {}:{}), start it again",
                            if c.hopsfs.datanode_unit.is_empty() { "nothing (no datanode_unit)" } else { &c.hopsfs.datanode_unit },
                            c.hopsfs.user,
                            c.hopsfs.group
                        ),
                    ),
                    Action::Safemode => (
                        c.hopsfs.user.clone(),
                        format!(
                            "{} every {}s until it prints 'Safe mode is OFF' (at most {}s)",
                            c.hopsfs.safemode_command.iter().map(|a| runner::quote(a)).collect::<Vec<_>>().join(" "),
                            c.restore.safemode_poll.as_secs(),
                            c.restore.safemode_timeout.as_secs()
                        ),
                    ),
                    Action::Job(JobRequest::RestoreCommand { step, .. }) => {
                        let command = if *step == CommandKind::Kafka { &c.kafka } else { &c.opensearch };
                        (command.user.clone(), command.argv.iter().map(|a| runner::quote(a)).collect::<Vec<_>>().join(" "))
                    }
                    Action::Job(other) => ("root".into(), other.describe()),
                };
                let _ = writeln!(out, "      on {} as {user}: {action}", p.node.name);
            }
            if step.parts.is_empty() {
                let _ = writeln!(out, "      nothing to do (no HopsFS blocks in this backup)");
            }
            previous = Some(step.name);
        }
        Ok(out)
    }

    /// What the stage step does on `node`, for `--plan`.
    fn stage_text(&self, node: &NodeSpec, staged: &std::path::Path) -> String {
        let ids: Vec<u32> = self
            .hosts()
            .iter()
            .filter(|(_, n)| n.name == node.name)
            .map(|(i, _)| *i)
            .collect();
        let mut what = Vec::new();
        if !ids.is_empty() {
            what.push(format!(
                "copy the parts of data nodes {ids:?} into {} (checked against the manifest)",
                staged.display()
            ));
        }
        if self.hopsfs_nodes().iter().any(|n| n.name == node.name) {
            what.push(format!(
                "copy the node's VERSION files and blocks from {}/blocks into {} inside each of its data folders (CRC-checked, owned by {}); the data node keeps running",
                crate::repo::Repository::of(self.config).location(),
                crate::hopsfs::restore::STAGING,
                self.config.hopsfs.user
            ));
        }
        what.join("; ")
    }

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
        // blocks, are checked as the stage step copies them (no extra pass).
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

    /// Runs the restore (after [`Restore::preflight`]).
    pub fn run(mut self, opts: &Options) -> Result<RestoreState> {
        self.clean_hopsfs = opts.clean_hopsfs;
        let id = self.manifest.backup_id;
        let steps = self.steps()?;
        let names: Vec<&str> = steps.iter().map(|s| s.name).collect();
        for wanted in opts.from.iter().chain(opts.only.iter()) {
            if !names.contains(&wanted.as_str()) {
                bail!(
                    "no step '{wanted}' in this restore; the steps are: {}",
                    names.join(", ")
                );
            }
        }
        let path = RestoreState::path(&self.config.restore.state_dir, id);
        let previous = RestoreState::load(&path)?;
        let fresh = previous.is_none();
        let picked = opts.from.is_some() || opts.only.is_some();
        let mut state = match previous {
            None if opts.resume => {
                bail!("there is no restore of backup {id} to resume ({} does not exist)", path.display())
            }
            Some(prev) if !opts.resume && !picked && prev.steps.iter().any(|s| s.status != Status::Pending) => bail!(
                "a restore of backup {id} was started before ({}): continue it with --resume, or pick a step with --from or --only",
                path.display()
            ),
            Some(prev) => merge_state(prev, &steps),
            None => fresh_state(id, &steps),
        };
        for (i, step) in steps.iter().enumerate() {
            let selected = match (&opts.from, &opts.only) {
                (_, Some(only)) => step.name == only,
                (Some(from), None) => i >= names.iter().position(|n| n == from).unwrap_or(0),
                (None, None) => true,
            };
            let st = state
                .step_mut(step.name)
                .ok_or_else(|| anyhow!("state lacks step {}", step.name))?;
            if picked && selected {
                *st = fresh_step(step);
            } else if picked && st.status != Status::Done {
                st.status = Status::Skipped;
            }
        }
        state.save(&path)?;

        let _lock = Repository::of(self.config).lock("restore", Some(id))?;
        for step in &steps {
            let st = state
                .step_mut(step.name)
                .ok_or_else(|| anyhow!("state lacks step {}", step.name))?;
            // --resume runs every step not done, also those --from/--only left out.
            if st.status == Status::Done || (st.status == Status::Skipped && !opts.resume) {
                info!("step {} is {}: not run", step.name, st.status);
                continue;
            }
            let span = info_span!("step", hwdr_step = step.name);
            let _entered = span.enter();
            st.status = Status::Running;
            st.started_at = Some(Utc::now());
            st.error = None;
            state.save(&path)?;
            info!("step {} started", step.name);
            let result = self.run_step(step, &mut state, &path);
            let st = state
                .step_mut(step.name)
                .ok_or_else(|| anyhow!("state lacks step {}", step.name))?;
            st.finished_at = Some(Utc::now());
            match result {
                Ok(()) => {
                    st.status = Status::Done;
                    state.save(&path)?;
                    info!("step {} done", step.name);
                }
                Err(e) if fresh && matches!(e.downcast_ref::<HwdrError>(), Some(HwdrError::Refused(_))) => {
                    // Refused before anything changed: no restore was started.
                    error!("{e:#}");
                    let _ = std::fs::remove_file(&path);
                    return Err(e);
                }
                Err(e) => {
                    st.status = Status::Failed;
                    st.error = Some(format!("{e:#}"));
                    let tail: Vec<String> = st
                        .parts
                        .iter()
                        .filter(|p| p.status == Status::Failed)
                        .flat_map(|p| p.output_tail.iter().map(move |l| format!("{}: {l}", p.node)))
                        .collect();
                    state.save(&path)?;
                    error!("step {} failed: {e:#}", step.name);
                    for line in &tail {
                        error!("  | {line}");
                    }
                    return Err(e.context(format!(
                        "restore of backup {id} stopped at step {}; fix the cause, then run hwdr restore {id} --resume",
                        step.name
                    )));
                }
            }
        }
        if opts.only.is_none() {
            self.unstage_everywhere();
        }
        info!("restore of backup {id} finished");
        Ok(state)
    }

    /// The staged RonDB copies are no longer needed: every node that staged
    /// removes its own. Best effort: a failure is logged.
    fn unstage_everywhere(&self) {
        let id = self.manifest.backup_id;
        if let Err(e) = rr::unstage(&self.config.restore, self.ndb()) {
            warn!("{e:#}");
        }
        let mut hosts: BTreeMap<String, NodeSpec> = BTreeMap::new();
        for node in self.hosts().values() {
            if node.name != self.leader().name {
                hosts.insert(node.name.to_string(), (*node).clone());
            }
        }
        let jobs = hosts
            .into_values()
            .map(|n| {
                (
                    n.clone(),
                    JobRequest::RestoreUnstage {
                        node: n.name.clone(),
                        backup_id: id,
                    },
                )
            })
            .collect();
        for s in self.fleet.run(jobs, self.config.backup.parallelism) {
            if let Err(e) = s.result {
                warn!("node {} kept its staged RonDB copies: {e:#}", s.node);
            }
        }
    }

    /// Runs the pending parts of a step: jobs at once (up to the step's
    /// parallelism), the leader's own actions in order.
    fn run_step(&self, step: &Step, state: &mut RestoreState, path: &std::path::Path) -> Result<()> {
        let pending: Vec<&Part> = {
            let st = state.step_mut(step.name).ok_or_else(|| anyhow!("no state"))?;
            step.parts
                .iter()
                .filter(|p| {
                    st.parts
                        .iter()
                        .find(|s| s.name == p.name)
                        .is_none_or(|s| s.status != Status::Done)
                })
                .collect()
        };
        let mut jobs_to_run = Vec::new();
        let mut failures = Vec::new();
        // Files and blocks of the backup found missing or damaged by the stage.
        let mut damaged: Vec<String> = Vec::new();
        for part in &pending {
            set_part(state, step.name, &part.name, Status::Running, None, Vec::new());
            match &part.action {
                Action::Job(request) => jobs_to_run.push((part.node.clone(), request.clone())),
                local => {
                    state.save(path)?;
                    let outcome = self.run_local(local);
                    let (status, err, tail) = match outcome {
                        Ok(tail) => (Status::Done, None, tail),
                        Err((e, tail)) => {
                            if let Some(d) = e.downcast_ref::<rr::Damaged>() {
                                damaged.push(d.0.clone());
                            }
                            failures.push(format!("{}: {e:#}", part.name));
                            (Status::Failed, Some(format!("{e:#}")), tail)
                        }
                    };
                    set_part(state, step.name, &part.name, status, err, tail);
                    state.save(path)?;
                    if !failures.is_empty() {
                        break;
                    }
                }
            }
        }
        if !jobs_to_run.is_empty() && failures.is_empty() {
            let job_parts: Vec<&str> = pending
                .iter()
                .filter(|p| matches!(p.action, Action::Job(_)))
                .map(|p| p.name.as_str())
                .collect();
            let mut ran = Findings {
                failures: &mut failures,
                damaged: &mut damaged,
            };
            self.run_jobs(step, &job_parts, jobs_to_run, state, path, &mut ran)?;
        }
        self.step_result(&failures, &damaged)
    }

    /// A step's result from its parts' `failures`: refused when the backup
    /// is `damaged` (nothing was changed).
    fn step_result(&self, failures: &[String], damaged: &[String]) -> Result<()> {
        if !damaged.is_empty() {
            return Err(HwdrError::Refused(format!(
                "backup {} cannot be restored: files or blocks of it are missing or damaged in the repository; nothing was changed:\n  - {}",
                self.manifest.backup_id,
                damaged.join("\n  - ")
            ))
            .into());
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("{}", failures.join("; "))
        }
    }

    /// Runs the jobs of a step's pending parts `job_parts` (in their order) on
    /// their nodes, and records each in the state as it ends.
    fn run_jobs(
        &self,
        step: &Step,
        job_parts: &[&str],
        jobs: Vec<(NodeSpec, JobRequest)>,
        state: &mut RestoreState,
        path: &std::path::Path,
        ran: &mut Findings<'_>,
    ) -> Result<()> {
        state.save(path)?;
        for s in self.fleet.run(jobs, step.parallelism) {
            let part_name = job_parts.get(s.index).copied().unwrap_or(s.node.as_str()).to_owned();
            let found = damage_found(&s.result, &s.node);
            if !found.is_empty() {
                let text = format!("missing or damaged in the repository: {}", found.join("; "));
                ran.failures.push(format!("{}: {text}", s.node));
                ran.damaged.extend(found);
                set_part(state, step.name, &part_name, Status::Failed, Some(text), Vec::new());
                state.save(path)?;
                continue;
            }
            match s.result {
                Ok(result) => {
                    let tail = match result {
                        JobResult::Ran { tail } => tail,
                        other => vec![summary(&other)],
                    };
                    set_part(state, step.name, &part_name, Status::Done, None, tail);
                }
                Err(e) => {
                    ran.failures.push(format!("{}: {e:#}", s.node));
                    let tail = error_tail(&e);
                    set_part(
                        state,
                        step.name,
                        &part_name,
                        Status::Failed,
                        Some(format!("{e:#}")),
                        tail,
                    );
                }
            }
            state.save(path)?;
        }
        Ok(())
    }

    /// Runs one of the leader's own actions; on failure, the error with the
    /// program's last output lines.
    fn run_local(&self, action: &Action) -> std::result::Result<Vec<String>, (anyhow::Error, Vec<String>)> {
        let c = self.config;
        let fail = |e: anyhow::Error| {
            let tail = error_tail(&e);
            (e, tail)
        };
        let mysql = || c.rondb_user();
        match action {
            Action::StageLeader => {
                let ids = BTreeSet::from([self.meta_node_id()]);
                let staged = rr::stage_parts(c, &self.manifest, &ids, &Default::default()).map_err(fail)?;
                if !staged.damaged.is_empty() {
                    return Err((anyhow!(rr::Damaged(staged.damaged.join("; "))), Vec::new()));
                }
                rr::stage_sql(c, &self.manifest).map_err(|e| {
                    let tail = error_tail(&e);
                    match e.downcast::<rr::Damaged>() {
                        Ok(d) => (anyhow!(d), tail),
                        Err(e) => (e, tail),
                    }
                })?;
                Ok(vec![format!(
                    "staged {} part files and the SQL files",
                    staged.files.len()
                )])
            }
            Action::Ndb(ndb_action) => {
                let user = mysql().map_err(fail)?;
                let cmd = rr::ndb_restore_cmd(&c.rondb, &c.restore, user, self.ndb(), self.meta_node_id(), *ndb_action);
                let outcome = runner::run(cmd).map_err(fail)?;
                rr::judge_ndb_restore(&outcome).map_err(|e| fail(e.into()))?;
                Ok(outcome.tail)
            }
            Action::Sql => {
                let user = mysql().map_err(fail)?;
                let staged = rr::staged_dir(&c.restore, self.ndb());
                let mut tail = Vec::new();
                for file in ["users.sql", "schemas.sql"] {
                    let outcome = runner::run(rr::mysql_source_cmd(
                        &c.rondb,
                        &c.restore,
                        user.clone(),
                        &staged.join(file),
                    ))
                    .map_err(fail)?;
                    rr::judge_mysql(&outcome)
                        .map_err(|e| fail(anyhow::Error::new(e).context(format!("replaying {file}"))))?;
                    tail.extend(outcome.tail);
                }
                Ok(tail)
            }
            Action::Safemode => self.wait_safemode().map_err(fail),
            Action::Job(_) => Err(fail(anyhow!("a job is not a local action"))),
        }
    }

    /// Runs `[hopsfs] safemode_command` as `[hopsfs] user` until it prints
    /// `Safe mode is OFF`, logging progress, failing after
    /// `[restore] safemode_timeout`.
    fn wait_safemode(&self) -> Result<Vec<String>> {
        let c = self.config;
        let user = c.hdfs_user()?;
        let (program, args) = c
            .hopsfs
            .safemode_command
            .split_first()
            .context("[hopsfs] safemode_command is empty")?;
        let start = Instant::now();
        loop {
            crate::cancel::check()?;
            let outcome = runner::run(Cmd::new(program, user.clone(), c.restore.command_timeout).args(args))?;
            outcome.check(program)?;
            if outcome.stdout.contains("Safe mode is OFF") {
                info!("the namenode left safe mode after {}s", start.elapsed().as_secs());
                return Ok(outcome.tail);
            }
            let said = outcome.stdout.lines().last().unwrap_or("").to_owned();
            if start.elapsed() >= c.restore.safemode_timeout {
                bail!(
                    "the namenode is still in safe mode after {}s ({said}): are all data nodes restored and running?",
                    c.restore.safemode_timeout.as_secs()
                );
            }
            info!(
                "waiting for the namenode to leave safe mode ({}s so far): {said}",
                start.elapsed().as_secs()
            );
            crate::cancel::sleep(c.restore.safemode_poll)?;
        }
    }
}

/// What the parts of a step that ran so far found: their failures, and the
/// files and blocks of the backup missing or damaged in the repository.
struct Findings<'a> {
    failures: &'a mut Vec<String>,
    damaged: &'a mut Vec<String>,
}

/// The files and blocks of the backup a stage job on `node` found missing
/// or damaged.
fn damage_found(result: &Result<JobResult>, node: &str) -> Vec<String> {
    let Ok(JobResult::Staged { damaged, blocks, .. }) = result else {
        return Vec::new();
    };
    let mut found = damaged.clone();
    found.extend(blocks.iter().flat_map(|b| b.damaged.iter().cloned()));
    let unnamed = blocks
        .as_ref()
        .map_or(0, |b| b.damaged_count as usize - b.damaged.len());
    if unnamed > 0 {
        found.push(format!("... and {unnamed} more blocks on {node}"));
    }
    found
}

fn summary(result: &JobResult) -> String {
    match result {
        JobResult::Staged { files, blocks, .. } => match blocks {
            Some(b) => format!(
                "staged {} RonDB files, {} blocks ({} bytes); {} blocks already in place",
                files.len(),
                b.blocks,
                b.bytes,
                b.kept
            ),
            None => format!("staged {} RonDB files", files.len()),
        },
        JobResult::HopsfsRestored(r) => format!(
            "{} blocks written ({} bytes), {} kept, {} removed",
            r.blocks_written,
            r.bytes_written,
            r.blocks_kept,
            r.removed.len()
        ),
        other => format!("{other:?}"),
    }
}

/// The last output lines of the program whose failure `e` is, if it is one:
/// run here, or in a job on another node (whose agent sent them).
fn error_tail(e: &anyhow::Error) -> Vec<String> {
    e.chain()
        .find_map(|c| {
            c.downcast_ref::<ProgramFailed>()
                .map(|p| p.tail.clone())
                .or_else(|| c.downcast_ref::<JobFailed>().map(|j| j.tail.clone()))
        })
        .unwrap_or_default()
}

fn set_part(
    state: &mut RestoreState,
    step: &str,
    part: &str,
    status: Status,
    error: Option<String>,
    tail: Vec<String>,
) {
    let Some(st) = state.step_mut(step) else { return };
    let Some(p) = st.parts.iter_mut().find(|p| p.name == part) else {
        return;
    };
    p.status = status;
    match status {
        Status::Running => {
            p.started_at = Some(Utc::now());
            p.finished_at = None;
            p.error = None;
        }
        _ => {
            p.finished_at = Some(Utc::now());
            p.error = error;
            p.output_tail = tail
                .into_iter()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
        }
    }
}

fn fresh_step(step: &Step) -> StepState {
    StepState {
        name: step.name.into(),
        status: Status::Pending,
        started_at: None,
        finished_at: None,
        error: None,
        parts: step
            .parts
            .iter()
            .map(|p| PartState {
                name: p.name.clone(),
                node: p.node.name.to_string(),
                status: Status::Pending,
                started_at: None,
                finished_at: None,
                error: None,
                output_tail: Vec::new(),
            })
            .collect(),
    }
}

/// A saved state matched to the current plan: steps and parts it knows keep
/// their state, new ones start pending.
fn merge_state(prev: RestoreState, steps: &[Step]) -> RestoreState {
    let mut merged = fresh_state(prev.backup_id, steps);
    merged.started_at = prev.started_at;
    for st in &mut merged.steps {
        let Some(old) = prev.steps.iter().find(|o| o.name == st.name) else {
            continue;
        };
        let same_parts = old.parts.len() == st.parts.len()
            && old
                .parts
                .iter()
                .all(|p| st.parts.iter().any(|q| q.name == p.name && q.node == p.node));
        if same_parts {
            *st = old.clone();
        }
    }
    merged
}

fn fresh_state(id: BackupId, steps: &[Step]) -> RestoreState {
    RestoreState {
        backup_id: id,
        started_at: Utc::now(),
        updated_at: Utc::now(),
        steps: steps.iter().map(fresh_step).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Failure;

    #[test]
    fn a_programs_tail_comes_from_its_typed_error() {
        let failed = ProgramFailed {
            program: "ndb_restore".into(),
            status: Failure::Reported("Error 1".into()),
            tail: vec!["  indented".into(), "Error 1".into()],
        };
        let e = anyhow::Error::new(failed).context("restoring the metadata");
        assert_eq!(error_tail(&e), ["  indented", "Error 1"]);
        assert!(error_tail(&anyhow!("no program ran")).is_empty());
    }

    #[test]
    fn a_remote_programs_tail_comes_from_its_agent() {
        let failed = JobFailed {
            node: "ndb2".into(),
            id: "20261123T200157-1".into(),
            state: crate::agent::api::JobState::Failed,
            error: Some("ndb_restore exited with status 1; last output:\n    Failed to find backup".into()),
            tail: vec!["Failed to find backup".into()],
        };
        let e = anyhow::Error::new(failed).context("step rondb-data");
        assert_eq!(error_tail(&e), ["Failed to find backup"]);
        assert_eq!(
            format!("{e:#}"),
            "step rondb-data: node ndb2 job 20261123T200157-1 failed: ndb_restore exited with status 1; last output:\n    Failed to find backup"
        );
    }
}
