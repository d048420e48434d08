//! `hwdr restore --plan`: every step, where it runs, as whom, the exact
//! argv, and what it waits for. The leader renders its own actions here;
//! every job is rendered by the node that will run it ([`Fleet::plan`]):
//! this node in-process, the others by their agents, each from its own
//! config, so the plan shows each node's paths, users and programs.
//!
//! [`Fleet::plan`]: crate::fleet::Fleet::plan

use std::fmt::Write as _;

use anyhow::{anyhow, Result};

use super::{Action, Options, Part, Restore, Step};
use crate::config::NodeSpec;
use crate::job::{JobRequest, PlanLine, RenderedPlan};
use crate::repo::Repository;
use crate::rondb::restore as rr;
use crate::runner::{self, RunAs};

impl Restore<'_> {
    /// `--plan`: the plan of this restore (see the module's text), of the
    /// steps `opts` picks (`--from`, `--only`; numbered as in the whole plan).
    pub fn render_plan(&self, opts: &Options) -> Result<RenderedPlan> {
        let all = self.steps()?;
        let names: Vec<&str> = all.iter().map(|s| s.name).collect();
        opts.check_picked(&names)?;
        let steps: Vec<(usize, &Step)> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| opts.selects(&names, *i))
            .collect();
        let jobs: Vec<(NodeSpec, JobRequest)> = steps
            .iter()
            .flat_map(|(_, s)| &s.parts)
            .filter_map(|p| match &p.action {
                Action::Job(request) => Some((p.node.clone(), request.clone())),
                _ => None,
            })
            .collect();
        let mut by_nodes = self.fleet.plan(&jobs).into_iter();
        let mut plan = RenderedPlan {
            text: format!(
                "restore of backup {} (RonDB backup id {}) of cluster {} from {}{}\n",
                self.manifest.backup_id,
                self.ndb(),
                self.manifest.cluster,
                Repository::of(self.config).location(),
                picked(opts)
            ),
            missing: Vec::new(),
        };
        let mut previous: Option<&str> = None;
        for (i, step) in steps {
            heading(&mut plan.text, i, step, previous);
            for part in &step.parts {
                let lines = match &part.action {
                    Action::Job(_) => by_nodes
                        .next()
                        .unwrap_or_else(|| Err(anyhow!("no node rendered this part"))),
                    local => Ok(vec![self.local_line(local)]),
                };
                show_part(&mut plan, part, lines);
            }
            if step.parts.is_empty() {
                let _ = writeln!(plan.text, "      nothing to do (no HopsFS blocks in this backup)");
            }
            previous = Some(step.name);
        }
        Ok(plan)
    }

    /// What one of the leader's own actions runs.
    fn local_line(&self, action: &Action) -> PlanLine {
        let c = self.config;
        let mysql = c.rondb.user.as_str();
        let named = RunAs {
            name: mysql.into(),
            ..RunAs::root()
        };
        let staged = rr::staged_dir(&c.restore, self.ndb());
        let source = |file: &str| rr::mysql_source_cmd(&c.rondb, &c.restore, named.clone(), &staged.join(file));
        let line = |user: &str, action: String| PlanLine {
            user: user.into(),
            action,
        };
        match action {
            Action::StageLeader => line(
                "root",
                format!(
                    "copy the parts of data node {} and users.sql, schemas.sql into {} (checked against the manifest, \
                     owned by {mysql})",
                    self.meta_node_id(),
                    staged.display()
                ),
            ),
            Action::Ndb(action) => {
                let cmd = rr::ndb_restore_cmd(
                    &c.rondb,
                    &c.restore,
                    named.clone(),
                    self.ndb(),
                    self.meta_node_id(),
                    *action,
                );
                // Shown, not read: the password file is the preflight's to check.
                line(mysql, rr::shown(cmd, self.manifest.rondb.encrypted))
            }
            Action::Sql => line(
                mysql,
                format!(
                    "{} ; then {} (users.sql with CREATE USER IF NOT EXISTS)",
                    source("users.sql").argv_display(),
                    source("schemas.sql").argv_display()
                ),
            ),
            Action::Safemode => line(
                &c.hopsfs.user,
                format!(
                    "{} every {}s until it prints 'Safe mode is OFF' (at most {}s)",
                    c.hopsfs
                        .safemode_command
                        .iter()
                        .map(|a| runner::quote(a))
                        .collect::<Vec<_>>()
                        .join(" "),
                    c.restore.safemode_poll.as_secs(),
                    c.restore.safemode_timeout.as_secs()
                ),
            ),
            Action::Job(request) => line("root", request.describe()),
        }
    }
}

/// What the plan's first line adds when `--from`/`--only` pick steps.
fn picked(opts: &Options) -> String {
    match (&opts.from, &opts.only) {
        (_, Some(only)) => format!(", only step {only}"),
        (Some(from), None) => format!(", from step {from} on"),
        (None, None) => String::new(),
    }
}

/// A step's heading: its number, name, what it waits for and its parts.
fn heading(out: &mut String, i: usize, step: &Step, previous: Option<&str>) {
    let waits = previous
        .map(|p| format!("after {p}"))
        .unwrap_or_else(|| "checks passed".into());
    let parts = if step.parts.len() > 1 {
        format!("; {} parts, {} at once", step.parts.len(), step.parallelism)
    } else {
        String::new()
    };
    let _ = writeln!(out, "{:>2}. {} ({waits}{parts})", i + 1, step.name);
}

/// A part's lines as its node rendered them, or why they are missing.
fn show_part(plan: &mut RenderedPlan, part: &Part, lines: Result<Vec<PlanLine>>) {
    let node = &part.node.name;
    match lines {
        Ok(lines) if lines.is_empty() => {
            let _ = writeln!(plan.text, "      on {node}: nothing to do");
        }
        Ok(lines) => {
            for l in lines {
                let _ = writeln!(plan.text, "      on {node} as {}: {}", l.user, l.action);
            }
        }
        Err(e) => {
            let _ = writeln!(plan.text, "      on {node}: NOT SHOWN: {e:#}");
            plan.missing.push(format!("{node}: {e:#}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_no_node_rendered_is_shown_missing_and_counted() {
        let part = Part {
            name: "node 3".into(),
            node: NodeSpec {
                name: "ndb2".parse().unwrap(),
                address: "10.0.0.2:7878".into(),
                roles: Default::default(),
                rondb_node_ids: vec![3],
            },
            action: Action::Sql,
        };
        let mut plan = RenderedPlan {
            text: String::new(),
            missing: Vec::new(),
        };
        show_part(
            &mut plan,
            &part,
            Err(anyhow!("agent of ndb2 (10.0.0.2:7878) does not answer")),
        );
        show_part(
            &mut plan,
            &part,
            Ok(vec![PlanLine {
                user: "mysql".into(),
                action: "ndb_restore -n 3".into(),
            }]),
        );
        assert_eq!(
            plan.text,
            "      on ndb2: NOT SHOWN: agent of ndb2 (10.0.0.2:7878) does not answer\n      on ndb2 as mysql: \
             ndb_restore -n 3\n"
        );
        assert_eq!(plan.missing, ["ndb2: agent of ndb2 (10.0.0.2:7878) does not answer"]);
    }
}
