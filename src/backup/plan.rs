//! `hwdr backup --dry-run`: every step of [`STEPS`], in order, with its
//! node, user and exact argv. Each step describes itself here from the same
//! list the run follows, so the two cannot drift apart. What runs on the
//! nodes (collecting RonDB parts, listing and uploading HopsFS blocks) is
//! rendered by each node from its own config ([`Fleet::plan`]): this node
//! in-process, the others by their agents.
//!
//! [`Fleet::plan`]: crate::fleet::Fleet::plan

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;

use super::steps::{Step, STEPS};
use crate::backup_id::BackupId;
use crate::config::{BlockStorage, Config, NodeSpec, Role};
use crate::job::{JobRequest, PlanLine, RenderedPlan};
use crate::repo::Repository;
use crate::rondb::{dump, mgm};
use crate::runner::RunAs;

/// Renders what each `(node, job)` would run on that node (the fleet asks
/// each node; a test renders in-process).
pub type RenderJobs<'r> = &'r dyn Fn(&[(NodeSpec, JobRequest)]) -> Vec<Result<Vec<PlanLine>>>;

/// One line of the plan: a step on a node, and what it does there as whom
/// (or why that node could not say).
#[derive(Debug, Clone)]
struct PlannedStep {
    step: Step,
    node: String,
    shown: Result<PlanLine, String>,
}

/// A step's line before the nodes rendered their jobs.
enum Planned {
    /// Rendered here: what the leader does itself.
    Here(PlannedStep),
    /// A job its node renders.
    Job(Step, NodeSpec, JobRequest),
}

/// Every step of backup `id`, in order, as `--dry-run` prints it, the jobs
/// rendered by `render_jobs`.
fn planned_steps(config: &Config, id: BackupId, render_jobs: RenderJobs<'_>) -> Vec<PlannedStep> {
    let planning = Planning::new(config, id);
    let planned: Vec<Planned> = STEPS.iter().flat_map(|step| planning.lines(*step)).collect();
    let jobs: Vec<(NodeSpec, JobRequest)> = planned
        .iter()
        .filter_map(|p| match p {
            Planned::Job(_, node, request) => Some((node.clone(), request.clone())),
            Planned::Here(_) => None,
        })
        .collect();
    let mut rendered = render_jobs(&jobs).into_iter();
    let mut lines = Vec::new();
    for p in planned {
        match p {
            Planned::Here(line) => lines.push(line),
            Planned::Job(step, node, _) => {
                let node = node.name.to_string();
                match rendered
                    .next()
                    .unwrap_or_else(|| Err(anyhow::anyhow!("no node rendered this job")))
                {
                    Ok(shown) => lines.extend(shown.into_iter().map(|l| PlannedStep {
                        step,
                        node: node.clone(),
                        shown: Ok(l),
                    })),
                    Err(e) => lines.push(PlannedStep {
                        step,
                        node,
                        shown: Err(format!("{e:#}")),
                    }),
                }
            }
        }
    }
    lines
}

/// The plan as text, with the lines no node could show.
pub fn render_plan(config: &Config, id: BackupId, render_jobs: RenderJobs<'_>) -> RenderedPlan {
    let mut plan = RenderedPlan {
        text: format!(
            "backup {id} (RonDB backup id {}) of cluster {} into {}\n",
            id.ndb_id(),
            config.cluster,
            Repository::of(config).location()
        ),
        missing: Vec::new(),
    };
    for (i, s) in planned_steps(config, id, render_jobs).iter().enumerate() {
        let _ = match &s.shown {
            Ok(l) => writeln!(
                plan.text,
                "{:>3}. {:<12} on {} as {}: {}",
                i + 1,
                s.step,
                s.node,
                l.user,
                l.action
            ),
            Err(e) => {
                plan.missing.push(format!("{}: {e}", s.node));
                writeln!(plan.text, "{:>3}. {:<12} on {}: NOT SHOWN: {e}", i + 1, s.step, s.node)
            }
        };
    }
    plan
}

/// What the steps' descriptions share.
struct Planning<'a> {
    config: &'a Config,
    id: BackupId,
    /// This node, the leader.
    me: String,
    /// `[rondb] user`, as named (the dry run does not look it up).
    mysql: String,
    /// The backup's folder in the repository.
    dir: PathBuf,
    /// The HopsFS nodes, when their blocks are backed up (local storage).
    local_hopsfs: Vec<&'a NodeSpec>,
    /// There are HopsFS nodes, and their blocks are in cloud storage.
    cloud_hopsfs: bool,
}

impl<'a> Planning<'a> {
    fn new(config: &'a Config, id: BackupId) -> Planning<'a> {
        let local = config.hopsfs.block_storage == BlockStorage::Local;
        let any_hopsfs = hopsfs_nodes(config).next().is_some();
        Planning {
            config,
            id,
            me: config.this_node.to_string(),
            mysql: config.rondb.user.clone(),
            dir: PathBuf::from(format!("{}/backups/{id}", Repository::of(config).location())),
            local_hopsfs: hopsfs_nodes(config).filter(|_| local).collect(),
            cloud_hopsfs: any_hopsfs && config.hopsfs.block_storage == BlockStorage::Cloud,
        }
    }

    /// The lines of `step`; none for the steps the dry run has never shown
    /// (they ask, check or tidy up: `agents`, `hopsfs-retry` after a bad
    /// replica, `check`, `prune-local`).
    fn lines(&self, step: Step) -> Vec<Planned> {
        let repo = Repository::of(self.config).location();
        let (node, id) = (|n: &NodeSpec| n.name.clone(), self.id);
        match step {
            Step::Lock => vec![self.here(step, "root", format!("create {repo}/lock"))],
            Step::Config => self.config_lines(),
            Step::Users => self.users_lines(),
            Step::Schemas => self.schemas_lines(),
            Step::NdbBackup => vec![self.here(step, &self.mysql, self.start_backup_line())],
            Step::RondbParts => {
                let rondb: Vec<&NodeSpec> = self.config.nodes.iter().filter(|n| n.has(Role::Rondb)).collect();
                jobs(step, &rondb, |n| JobRequest::CollectRondbParts {
                    node: node(n),
                    backup_id: id,
                })
            }
            Step::Hopsfs if self.cloud_hopsfs => {
                vec![self.here(step, "root", "nothing: [hopsfs] block_storage is cloud".into())]
            }
            Step::HopsfsList => jobs(step, &self.local_hopsfs, |n| JobRequest::HopsfsInventory {
                node: node(n),
                backup_id: id,
            }),
            Step::HopsfsPlan if !self.local_hopsfs.is_empty() => {
                let what = "merge the inventories; give each block the repository lacks to one node holding it";
                vec![self.here(step, "root", what.into())]
            }
            Step::HopsfsUpload => jobs(step, &self.local_hopsfs, |n| JobRequest::HopsfsUpload {
                node: node(n),
                backup_id: id,
                round: 1,
            }),
            Step::Manifest => {
                let what = format!("write {}", self.dir.join("manifest.json").display());
                vec![self.here(step, "root", what)]
            }
            Step::Hopsfs | Step::HopsfsPlan | Step::Agents | Step::HopsfsRetry | Step::Check | Step::PruneLocal => {
                Vec::new()
            }
        }
    }

    /// A line of what the leader does itself.
    fn here(&self, step: Step, user: &str, action: String) -> Planned {
        Planned::Here(PlannedStep {
            step,
            node: self.me.clone(),
            shown: Ok(PlanLine {
                user: user.into(),
                action,
            }),
        })
    }

    /// The user of the RonDB commands, named only: a dry run looks no user up.
    /// `START BACKUP` as it runs: in the argv, or (RonDB encrypting the
    /// backup) on the wrapper's standard input, its password never shown.
    fn start_backup_line(&self) -> String {
        let rondb = &self.config.rondb;
        let ndb = self.id.ndb_id();
        if rondb.backup_password_file.is_some() {
            return format!(
                "{} {}",
                crate::runner::quote(&rondb.mgm_client.to_string_lossy()),
                mgm::encrypted_start_backup_display(ndb)
            );
        }
        mgm::start_backup_cmd(rondb, &self.config.backup, self.run_as(), ndb, None).argv_display()
    }

    fn run_as(&self) -> RunAs {
        RunAs {
            name: self.mysql.clone(),
            ..RunAs::root()
        }
    }

    fn config_lines(&self) -> Vec<Planned> {
        let paths = &self.config.config_paths;
        if paths.is_empty() {
            let what = "nothing to copy: [config_backup] paths is empty";
            return vec![self.here(Step::Config, "root", what.into())];
        }
        let into = format!("{}/config/", self.dir.display());
        paths
            .iter()
            .map(|path| self.here(Step::Config, "root", format!("copy {} into {into}", path.display())))
            .collect()
    }

    fn users_lines(&self) -> Vec<Planned> {
        let users = dump::mysqlpump_cmd(&self.config.rondb, &self.config.backup, self.run_as());
        let what = format!(
            "{} > {}",
            users.argv_display(),
            self.dir.join(dump::USERS_FILE).display()
        );
        vec![self.here(Step::Users, &self.mysql, what)]
    }

    fn schemas_lines(&self) -> Vec<Planned> {
        let (rondb, backup) = (&self.config.rondb, &self.config.backup);
        let show = dump::show_databases_cmd(rondb, backup, self.run_as());
        let excluded = rondb.exclude_databases.join(",");
        let every = [format!("<every database listed except {excluded}>")];
        let dump_cmd = dump::mysqldump_cmd(rondb, backup, self.run_as(), &every);
        let what = format!(
            "{} > {} (CREATE TABLE made IF NOT EXISTS)",
            dump_cmd.argv_display(),
            self.dir.join(dump::SCHEMAS_FILE).display()
        );
        vec![
            self.here(Step::Schemas, &self.mysql, show.argv_display()),
            self.here(Step::Schemas, &self.mysql, what),
        ]
    }
}

/// One job of `step` on each of `nodes`, for its node to render.
fn jobs(step: Step, nodes: &[&NodeSpec], request: impl Fn(&NodeSpec) -> JobRequest) -> Vec<Planned> {
    nodes
        .iter()
        .map(|n| Planned::Job(step, (*n).clone(), request(n)))
        .collect()
}

/// The nodes with the HopsFS role.
fn hopsfs_nodes(config: &Config) -> impl Iterator<Item = &NodeSpec> {
    config.nodes.iter().filter(|n| n.has(Role::Hopsfs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `head1` (head, rondb, hopsfs), `head2` (head), `ndb1` (rondb, hopsfs).
    const CLUSTER: &str = r#"
[cluster]
name = "prod"
[[nodes]]
name = "head1"
address = "127.0.0.1:7878"
roles = ["head", "rondb", "hopsfs"]
rondb_node_ids = [1]
[[nodes]]
name = "head2"
address = "127.0.0.3:7878"
roles = ["head"]
[[nodes]]
name = "ndb1"
address = "127.0.0.2:7878"
roles = ["rondb", "hopsfs"]
rondb_node_ids = [2, 3]
[node]
name = "head1"
[repository]
path = "/mnt/hwdr"
"#;

    fn plan_with(dropin: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("hwdr.d")).unwrap();
        std::fs::write(dir.path().join("hwdr.d/50-test.toml"), dropin).unwrap();
        std::fs::write(dir.path().join("hwdr.toml"), CLUSTER).unwrap();
        let config = Config::load(&dir.path().join("hwdr.toml")).unwrap();
        // Each node renders its jobs from its own config: here, this one's
        // with the node's name.
        let in_process = |jobs: &[(NodeSpec, JobRequest)]| -> Vec<Result<Vec<PlanLine>>> {
            jobs.iter()
                .map(|(node, request)| {
                    let mut theirs = config.clone();
                    theirs.this_node = node.name.clone();
                    crate::agent::render::render(&theirs, request)
                })
                .collect()
        };
        let plan = render_plan(&config, "2611231819".parse().unwrap(), &in_process);
        assert!(plan.missing.is_empty(), "{:?}", plan.missing);
        plan.text
    }

    #[test]
    fn the_dry_run_of_a_cluster_lists_every_step_in_order() {
        let plan =
            plan_with("[config_backup]\npaths = [\"/etc/a\", \"/etc/b\"]\n[hopsfs]\ndata_dirs = [\"/d1\", \"/d2\"]\n");
        let dir = "/mnt/hwdr/backups/2611231819";
        let sock = "-S /srv/hops/mysql-cluster/mysql.sock";
        let parts = "from /srv/hops/mysql-cluster/ndb/backups/BACKUP/BACKUP-263271819 into \
                     /mnt/hwdr/backups/2611231819/rondb/BACKUP-263271819";
        let excluded = "mysql,information_schema,performance_schema,sys,ndbinfo,glassfish_timers";
        let expected = [
            "backup 2611231819 (RonDB backup id 263271819) of cluster prod into /mnt/hwdr".to_owned(),
            "  1. lock         on head1 as root: create /mnt/hwdr/lock".into(),
            format!("  2. config       on head1 as root: copy /etc/a into {dir}/config/"),
            format!("  3. config       on head1 as root: copy /etc/b into {dir}/config/"),
            format!(
                "  4. users        on head1 as mysql: /srv/hops/mysql/bin/mysqlpump {sock} --exclude-databases=% \
                 --exclude-users=root,mysql.sys,mysql.session,mysql.infoschema --users > {dir}/rondb/users.sql"
            ),
            format!(
                "  5. schemas      on head1 as mysql: /srv/hops/mysql/bin/mysql {sock} --batch --skip-column-names \
                 -e 'SHOW DATABASES'"
            ),
            format!(
                "  6. schemas      on head1 as mysql: /srv/hops/mysql/bin/mysqldump {sock} --no-data \
                 --skip-add-drop-table --triggers --routines --events --databases '<every database listed except \
                 {excluded}>' > {dir}/rondb/schemas.sql (CREATE TABLE made IF NOT EXISTS)"
            ),
            "  7. ndb-backup   on head1 as mysql: /srv/hops/mysql-cluster/ndb/scripts/mgm-client.sh -e 'START BACKUP \
             263271819 SNAPSHOTEND WAIT COMPLETED'"
                .into(),
            format!("  8. rondb-parts  on head1 as root: collect the parts of data nodes [1] {parts}"),
            format!("  9. rondb-parts  on ndb1 as root: collect the parts of data nodes [2, 3] {parts}"),
            format!(
                " 10. hopsfs-list  on head1 as hdfs: list the finalized blocks and VERSION files of /d1, /d2 into \
                 {dir}/hopsfs/head1/"
            ),
            format!(
                " 11. hopsfs-list  on ndb1 as hdfs: list the finalized blocks and VERSION files of /d1, /d2 into \
                 {dir}/hopsfs/ndb1/"
            ),
            " 12. hopsfs-plan  on head1 as root: merge the inventories; give each block the repository lacks to one \
             node holding it"
                .into(),
            " 13. hopsfs-upload on head1 as hdfs: copy the assigned blocks into /mnt/hwdr/blocks/, each checked \
             against its .meta CRCs"
                .into(),
            " 14. hopsfs-upload on ndb1 as hdfs: copy the assigned blocks into /mnt/hwdr/blocks/, each checked \
             against its .meta CRCs"
                .into(),
            format!(" 15. manifest     on head1 as root: write {dir}/manifest.json"),
        ];
        assert_eq!(plan.lines().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn the_dry_run_with_cloud_storage_backs_no_block_up() {
        let plan = plan_with("[hopsfs]\nblock_storage = \"cloud\"\n");
        let steps: Vec<&str> = plan
            .lines()
            .skip(1)
            .map(|l| l[5..].split(' ').next().unwrap())
            .collect();
        assert_eq!(
            steps,
            [
                "lock",
                "config",
                "users",
                "schemas",
                "schemas",
                "ndb-backup",
                "rondb-parts",
                "rondb-parts",
                "hopsfs",
                "manifest"
            ]
        );
        assert!(plan.contains("  2. config       on head1 as root: nothing to copy: [config_backup] paths is empty\n"));
        assert!(plan.contains("  9. hopsfs       on head1 as root: nothing: [hopsfs] block_storage is cloud\n"));
    }
}
