//! Running a restore: the state file (`--resume`, `--from`, `--only`), the
//! repository lock, each step's parts (the leader's own actions in order,
//! jobs on their nodes at once) and the cleanup after the last step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use tracing::{error, info, info_span, warn};

use super::progress::{recorded, StepProgress};
use super::state::{PartState, RestoreState, Status, StepState};
use super::{Action, Options, Part, Restore, Step};
use crate::agent::client::JobFailed;
use crate::backup_id::BackupId;
use crate::config::NodeSpec;
use crate::exit::HwdrError;
use crate::job::{JobRequest, JobResult};
use crate::progress::{self, text, Meter};
use crate::repo::Repository;
use crate::rondb::password;
use crate::rondb::restore as rr;
use crate::runner::{self, Cmd, ProgramFailed};

impl Restore<'_> {
    /// Runs the restore (after [`Restore::preflight`]).
    pub fn run(mut self, opts: &Options) -> Result<RestoreState> {
        self.clean_hopsfs = opts.clean_hopsfs;
        let id = self.manifest.backup_id;
        let steps = self.steps()?;
        let path = RestoreState::path(&self.config.restore.state_dir, id);
        let (mut state, fresh) = self.prepare(&steps, opts, &path)?;
        let _lock = Repository::of(self.config).lock("restore", Some(id))?;
        for step in &steps {
            self.run_one(step, &mut state, &path, fresh, opts)?;
        }
        if opts.only.is_none() {
            self.unstage_everywhere();
        }
        info!("restore of backup {id} finished");
        Ok(state)
    }

    /// The state this run starts from, saved: the previous one matched to
    /// the plan (or a fresh one), with the steps `--from`/`--only` pick made
    /// pending again and the others skipped. Also whether it is fresh.
    fn prepare(&self, steps: &[Step], opts: &Options, path: &Path) -> Result<(RestoreState, bool)> {
        let id = self.manifest.backup_id;
        let names: Vec<&str> = steps.iter().map(|s| s.name).collect();
        opts.check_picked(&names)?;
        let previous = RestoreState::load(path)?;
        let fresh = previous.is_none();
        let picked = opts.picks();
        let mut state = match previous {
            None if opts.resume => {
                bail!("there is no restore of backup {id} to resume ({} does not exist)", path.display())
            }
            Some(prev) if !opts.resume && !picked && prev.steps.iter().any(|s| s.status != Status::Pending) => bail!(
                "a restore of backup {id} was started before ({}): continue it with --resume, or pick a step with --from or --only",
                path.display()
            ),
            Some(prev) => merge_state(prev, steps),
            None => fresh_state(id, steps),
        };
        for (i, step) in steps.iter().enumerate() {
            let selected = opts.selects(&names, i);
            let st = step_state(&mut state, step.name)?;
            if picked && selected {
                *st = fresh_step(step);
            } else if picked && st.status != Status::Done {
                st.status = Status::Skipped;
            }
        }
        state.save(path)?;
        Ok((state, fresh))
    }

    /// Runs `step` unless it is done (or skipped, without `--resume`),
    /// recording it in the state. A step refused before anything changed in
    /// a `fresh` restore removes the state: no restore was started.
    fn run_one(&self, step: &Step, state: &mut RestoreState, path: &Path, fresh: bool, opts: &Options) -> Result<()> {
        let id = self.manifest.backup_id;
        let st = step_state(state, step.name)?;
        // --resume runs every step not done, also those --from/--only left out.
        if st.status == Status::Done || (st.status == Status::Skipped && !opts.resume) {
            info!("step {} is {}: not run", step.name, st.status);
            progress::step(step.name).skipped(&st.status.to_string());
            return Ok(());
        }
        let span = info_span!("step", hwdr_step = step.name);
        let _entered = span.enter();
        st.status = Status::Running;
        st.started_at = Some(Utc::now());
        st.error = None;
        state.save(path)?;
        info!("step {} started", step.name);
        let line = progress::step(step.name);
        let result = self.run_step(step, state, path);
        let st = step_state(state, step.name)?;
        st.finished_at = Some(Utc::now());
        match result {
            Ok(()) => {
                st.status = Status::Done;
                state.save(path)?;
                info!("step {} done", step.name);
                line.done("");
                Ok(())
            }
            Err(e) if fresh && matches!(e.downcast_ref::<HwdrError>(), Some(HwdrError::Refused(_))) => {
                error!("{e:#}");
                line.failed("refused");
                let _ = std::fs::remove_file(path);
                Err(e)
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
                state.save(path)?;
                error!("step {} failed: {e:#}", step.name);
                line.failed(&format!("{e:#}"));
                for line in &tail {
                    error!("  | {line}");
                }
                Err(e.context(format!(
                    "restore of backup {id} stopped at step {}; fix the cause, then run hwdr restore {id} --resume",
                    step.name
                )))
            }
        }
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
    fn run_step(&self, step: &Step, state: &mut RestoreState, path: &Path) -> Result<()> {
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
        path: &Path,
        ran: &mut Findings<'_>,
    ) -> Result<()> {
        state.save(path)?;
        // The steps that move a node's data show how far they got; every
        // step's jobs record their progress for --status.
        let meter = match step.name {
            "stage" => Meter::of_jobs("staging", "objects"),
            "hopsfs" => Meter::of_jobs("restoring HopsFS blocks", "blocks"),
            _ => Meter::unshown("files"),
        };
        let progress_file = StepProgress::path(&self.config.restore.state_dir, self.manifest.backup_id);
        let shipped = recorded(&progress_file, step.name, job_parts, &meter, || {
            self.fleet.run_metered(jobs, step.parallelism, Some(&meter))
        });
        drop(meter);
        for s in shipped {
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
                let password = password::for_restore(c, &self.manifest).map_err(fail)?;
                let cmd = rr::ndb_restore_cmd(&c.rondb, &c.restore, user, self.ndb(), self.meta_node_id(), *ndb_action);
                let key = c.origins.key("rondb", "backup_password_file");
                let outcome =
                    rr::run_ndb_restore(rr::decrypting(cmd, password.as_ref()), self.ndb(), &key).map_err(fail)?;
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
                "staged {} RonDB files, {} blocks ({}); {} blocks already in place",
                files.len(),
                b.blocks,
                text::size(b.bytes),
                b.kept
            ),
            None => format!("staged {} RonDB files", files.len()),
        },
        JobResult::HopsfsRestored(r) => format!(
            "{} blocks written ({}), {} kept, {} removed",
            r.blocks_written,
            text::size(r.bytes_written),
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

/// The state of step `name` (every step of the plan has one).
fn step_state<'s>(state: &'s mut RestoreState, name: &str) -> Result<&'s mut StepState> {
    state.step_mut(name).ok_or_else(|| anyhow!("state lacks step {name}"))
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
