//! The RonDB steps: users and schemas (side by side: two independent reads
//! of RonDB), RonDB's own backup, and every `rondb` node's part.

use anyhow::anyhow;
use tracing::info;

use super::checks::check_parts;
use super::record::{timed_step, OnNodes, Ran};
use super::{Run, Step};
use crate::config::Config;
use crate::job::{JobRequest, JobResult};
use crate::repo::backup::BackupWriter;
use crate::rondb::{dump, mgm};
use crate::runner::RunAs;

impl Run<'_> {
    /// [`Step::Users`] and [`Step::Schemas`]: dumped side by side, each
    /// recorded with its own times.
    pub(super) fn dump_users_and_schemas(&mut self) {
        let head = self.steps.head();
        if head.failed() {
            head.skip(Step::Users.name());
            head.skip(Step::Schemas.name());
            return;
        }
        let (config, mysql, dir) = (self.config, &self.mysql, &self.dir);
        let parent = tracing::Span::current();
        let (users, schemas) = std::thread::scope(|scope| {
            let users = scope.spawn(|| {
                let _entered = parent.enter();
                dump_users(config, mysql, dir)
            });
            let schemas = dump_schemas(config, mysql, dir);
            let users = users.join().unwrap_or_else(|_| Ran::panicked("the users dump"));
            (users, schemas)
        });
        let head = self.steps.head();
        head.add(Step::Users.name(), users);
        head.add(Step::Schemas.name(), schemas);
    }

    /// [`Step::NdbBackup`]: `START BACKUP`, and its report for the manifest.
    pub(super) fn ndb_backup(&mut self) {
        let (config, mysql, ndb) = (self.config, &self.mysql, self.rondb.ndb_backup_id);
        let password = self.rondb_password.as_ref();
        self.rondb.result = self.steps.head().run(Step::NdbBackup.name(), |_| {
            let start = mgm::start_backup_cmd(&config.rondb, &config.backup, mysql.clone(), ndb, password);
            let outcome = crate::runner::run(start).inspect_err(|_| {
                // Killed (a stop or its timeout): the data nodes must not go on with it.
                mgm::abort_backup(&config.rondb, mysql.clone(), ndb);
            })?;
            let result = mgm::judge_start_backup(&outcome, ndb)?;
            info!(
                master_node = result.master_node,
                records = result.records,
                encrypted = password.is_some(),
                data_bytes = result.data_bytes,
                "RonDB backup {ndb} completed (StartGCP {}, StopGCP {})",
                result.start_gcp,
                result.stop_gcp
            );
            Ok(result)
        });
    }

    /// [`Step::RondbParts`]: every `rondb` node ships its own part,
    /// concurrently, once the leader's own steps worked.
    pub(super) fn collect_parts(&mut self) {
        let (id, step) = (self.id, Step::RondbParts.name());
        let mut shown = (!self.steps.head().failed()).then(|| OnNodes::start(step, "files"));
        let shipped = if shown.is_none() {
            Vec::new()
        } else {
            self.fleet
                .run_on(&self.rondb_nodes, |node| JobRequest::CollectRondbParts {
                    node: node.name.clone(),
                    backup_id: id,
                })
        };
        for node in &self.rondb_nodes {
            let Some(s) = shipped.iter().find(|s| s.node == node.name.as_str()) else {
                self.steps.of(node).skip(step);
                continue;
            };
            let files = match &s.result {
                Ok(JobResult::RondbParts { files, parts }) => check_parts(node, parts).map(|_| {
                    self.rondb.data_node_ids.extend(parts.keys());
                    self.rondb.parts.extend(parts.clone());
                    files.clone()
                }),
                Ok(other) => Err(anyhow!("node {} answered the collection with {other:?}", node.name)),
                Err(e) => Err(anyhow!("{e:#}")),
            };
            if let Some(shown) = &mut shown {
                shown.count_files(node.name.as_str(), &files);
            }
            self.steps.of(node).record(step, s.started, s.finished, files);
        }
        if let Some(shown) = shown {
            shown.end();
        }
    }
}

/// Dumps users and grants into the backup, as a step of its own thread.
fn dump_users(config: &Config, mysql: &RunAs, dir: &BackupWriter) -> Ran<()> {
    timed_step(Step::Users.name(), |files| {
        let spool = &config.restore.state_dir;
        files.push(dump::dump_users(
            &config.rondb,
            &config.backup,
            mysql.clone(),
            spool,
            dir,
        )?);
        Ok(())
    })
}

/// Dumps the schemas NDB does not hold into the backup.
fn dump_schemas(config: &Config, mysql: &RunAs, dir: &BackupWriter) -> Ran<()> {
    timed_step(Step::Schemas.name(), |files| {
        let databases = dump::databases_to_dump(&config.rondb, &config.backup, mysql.clone())?;
        info!(
            "dumping the schemas of {} databases: {}",
            databases.len(),
            databases.join(", ")
        );
        let spool = &config.restore.state_dir;
        files.push(dump::dump_schemas(
            &config.rondb,
            &config.backup,
            mysql.clone(),
            spool,
            dir,
            &databases,
        )?);
        Ok(())
    })
}
