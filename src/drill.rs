//! `hwdr drill`: a restore drill. When `[drill] connectstring` names a spare
//! RonDB cluster, the backup's RonDB part is restored into it (schemas, the
//! data of every data node, indexes, users and schemas) and `[drill]
//! check_command` runs; every HopsFS block of the backup is always re-read
//! against its CRCs. The report is a pass, or the first failure with its step.

use std::collections::BTreeSet;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use tracing::{error, info, info_span};

use crate::agent::jobs::complete_manifest;
use crate::backup_id::BackupId;
use crate::config::Config;
use crate::job::JobControl;
use crate::repo::manifest::Manifest;
use crate::repo::Repository;
use crate::rondb::restore::{self as rr, NdbAction};
use crate::runner::{self, Cmd, RunAs};
use crate::verify;

/// What a drill found.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub backup_id: String,
    pub passed: bool,
    /// Each step that ran, with what it did.
    pub steps: Vec<(String, String)>,
    /// The first failing step and why.
    pub failure: Option<(String, String)>,
}

/// The configuration pointed at the spare cluster: its management server,
/// its client, and a staging folder of its own.
fn spare_config(config: &Config, connectstring: &str) -> Config {
    let mut spare = config.clone();
    spare.rondb.connectstring = connectstring.to_owned();
    spare.rondb.ndb_restore = config.drill.ndb_restore.clone();
    if let Some(client) = &config.drill.mysql_client {
        spare.rondb.mysql_client = client.clone();
    }
    // A sibling of the staging folder (its parent exists and lets mysql through).
    let mut name = config.restore.staging_dir.file_name().unwrap_or_default().to_owned();
    name.push("-drill");
    spare.restore.staging_dir = config.restore.staging_dir.with_file_name(name);
    spare
}

/// Runs the drill of backup `id`.
pub fn drill(config: &Config, id: BackupId) -> Result<DrillReport> {
    let manifest = complete_manifest(config, id)?;
    let mut steps = Steps(DrillReport {
        backup_id: id.to_string(),
        passed: false,
        steps: Vec::new(),
        failure: None,
    });
    if let Some(cs) = &config.drill.connectstring {
        rondb_on_spare(config, &manifest, cs, &mut steps);
    } else {
        info!("no [drill] connectstring: the RonDB part is not restored, only read through");
    }
    steps.run("hopsfs-blocks", || {
        let r = verify::verify(&Repository::of(config), id, true, config.repository.upload_parallelism)?;
        if !r.ok() {
            bail!("{} problem(s), first: {}", r.damage.len(), r.damage[0]);
        }
        Ok(format!(
            "{} files read through, {} blocks re-read against their CRCs",
            r.files_checked, r.blocks_checked
        ))
    });
    let mut report = steps.0;
    report.passed = report.failure.is_none();
    Ok(report)
}

/// The drill's steps as they run: after the first failure none runs.
struct Steps(DrillReport);

impl Steps {
    /// Runs step `name` unless one failed before; records what it did.
    fn run(&mut self, name: &str, f: impl FnOnce() -> Result<String>) {
        if self.0.failure.is_some() {
            return;
        }
        let _span = info_span!("step", hwdr_step = name).entered();
        let line = crate::progress::step(name);
        match f() {
            Ok(what) => {
                info!("drill step {name}: {what}");
                line.done(&what);
                self.0.steps.push((name.to_owned(), what));
            }
            Err(e) => {
                error!("drill step {name} failed: {e:#}");
                line.failed(&format!("{e:#}"));
                self.0.failure = Some((name.to_owned(), format!("{e:#}")));
            }
        }
    }
}

/// The RonDB part of the backup restored into the spare cluster at `cs`, as
/// the restore does it (stage, metadata, data, indexes, users), then
/// `[drill] check_command`. The staged copies are removed after.
fn rondb_on_spare(config: &Config, manifest: &Manifest, cs: &str, steps: &mut Steps) {
    let spare = spare_config(config, cs);
    let mysql = config.rondb_user().map_err(|e| format!("{e:#}"));
    let user = || mysql.clone().map_err(|e| anyhow!(e));
    let ndb = manifest.rondb.ndb_backup_id;
    let ids: BTreeSet<u32> = manifest.rondb.data_node_ids.clone();
    let meta_id = ids.iter().next().copied().unwrap_or(0);
    let key = config.origins.key("rondb", "backup_password_file");
    let run_ndb = |node: u32, action: NdbAction| -> Result<String> {
        let password = crate::rondb::password::for_restore(config, manifest)?;
        let cmd = rr::ndb_restore_cmd(&spare.rondb, &spare.restore, user()?, ndb, node, action);
        let outcome = rr::run_ndb_restore(rr::decrypting(cmd, password.as_ref()), ndb, &key)?;
        Ok(outcome.tail.last().cloned().unwrap_or_default())
    };
    steps.run("stage", || {
        let staged = rr::stage_parts(&spare, manifest, &ids, &JobControl::default())?;
        if !staged.damaged.is_empty() {
            bail!("damaged in the repository: {}", staged.damaged.join("; "));
        }
        rr::stage_sql(&spare, manifest)?;
        Ok(format!("{} part files and the SQL files", staged.files.len()))
    });
    steps.run("rondb-meta", || run_ndb(meta_id, NdbAction::Meta));
    for node in &ids {
        steps.run("rondb-data", || {
            run_ndb(*node, NdbAction::Data).map(|t| format!("data node {node}: {t}"))
        });
    }
    steps.run("rondb-indexes", || run_ndb(meta_id, NdbAction::Indexes));
    steps.run("users", || replay_sql(config, &spare, ndb, user));
    if !config.drill.check_command.is_empty() {
        steps.run("check", || run_check(config));
    }
    let _ = std::fs::remove_dir_all(&spare.restore.staging_dir);
}

/// users.sql, then schemas.sql, through the spare cluster's client.
fn replay_sql(config: &Config, spare: &Config, ndb: u32, user: impl Fn() -> Result<RunAs>) -> Result<String> {
    if config.drill.mysql_client.is_none() {
        bail!(
            "{} is not set: hwdr needs the spare cluster's client to restore users",
            config.origins.key("drill", "mysql_client")
        );
    }
    let user = user()?;
    let staged = rr::staged_dir(&spare.restore, ndb);
    for file in ["users.sql", "schemas.sql"] {
        let outcome = runner::run(rr::mysql_source_cmd(
            &spare.rondb,
            &spare.restore,
            user.clone(),
            &staged.join(file),
        ))?;
        rr::judge_mysql(&outcome)?;
    }
    Ok("users, grants and schemas replayed".into())
}

/// `[drill] check_command`, as `[drill] user`.
fn run_check(config: &Config) -> Result<String> {
    let user = config.drill_user()?;
    let (program, args) = config
        .drill
        .check_command
        .split_first()
        .ok_or_else(|| anyhow!("empty"))?;
    let outcome = runner::run(Cmd::new(program, user, config.restore.command_timeout).args(args))?;
    outcome.check(program)?;
    Ok(outcome.tail.last().cloned().unwrap_or_else(|| "passed".into()))
}
