//! The backup as the leading head node runs it: plan, lock, head steps, every
//! node's share, checks, and the manifest last.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Local, Utc};
use tracing::{error, info, info_span, warn};

use crate::hopsfs::plan;
use crate::job::{JobRequest, JobResult};

use crate::backup_id::{BackupId, NDB_RESTORE_MAX_ID};
use crate::config::{BlockStorage, Config, NodeSpec, Role};
use crate::exit::HwdrError;
use crate::fleet::Fleet;
use crate::logging::{MSG_BACKUP_COMPLETED, MSG_BACKUP_FAILED, MSG_BACKUP_STARTED};
use crate::repo::backup::BackupWriter;
use crate::repo::lock::{LockInfo, RepoLock};
use crate::repo::manifest::FileEntry;
use crate::repo::manifest::{self, BackupStatus, HopsfsInfo, Manifest, NodeRecord, RondbInfo, StepRecord, StepStatus};
use crate::repo::Repository;
use crate::rondb::{dump, mgm, parts};
use crate::runner::RunAs;

/// What `hwdr backup` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Use this id instead of the current minute.
    pub id: Option<BackupId>,
    /// Look for every block in the store instead of trusting the latest
    /// complete backup's list (`hwdr backup --check-store`).
    pub check_store: bool,
}

/// The backup id for a run at local time `now`, unless one was given.
pub fn choose_id(opts: &BackupOptions, now: DateTime<Local>) -> Result<BackupId> {
    match opts.id {
        Some(id) => Ok(id),
        None => BackupId::from_datetime(now.naive_local())
            .ok_or_else(|| anyhow!("the local time {now} is outside 2000-2099, so it cannot name a backup")),
    }
}

/// One line of the plan: a step on a node, as a user, doing something.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub step: &'static str,
    pub node: String,
    pub user: String,
    /// The exact argv, or what hwdr does itself.
    pub action: String,
}

/// Every step of backup `id`, in order, as `--dry-run` prints it.
pub fn plan(config: &Config, id: BackupId) -> Vec<PlannedStep> {
    let me = config.this_node.to_string();
    let mysql = config.rondb.user.clone();
    let dir = std::path::PathBuf::from(format!("{}/backups/{id}", Repository::of(config).location()));
    let ndb = id.ndb_id();
    let placeholder = RunAs {
        name: mysql.clone(),
        ..RunAs::root()
    };
    let step = |step, node: &str, user: &str, action: String| PlannedStep {
        step,
        node: node.into(),
        user: user.into(),
        action,
    };
    let mut steps = vec![step(
        "lock",
        &me,
        "root",
        format!("create {}/lock", crate::repo::Repository::of(config).location()),
    )];
    if config.config_paths.is_empty() {
        steps.push(step(
            "config",
            &me,
            "root",
            "nothing to copy: [config_backup] paths is empty".into(),
        ));
    }
    for path in &config.config_paths {
        steps.push(step(
            "config",
            &me,
            "root",
            format!("copy {} into {}/config/", path.display(), dir.display()),
        ));
    }
    let users = dump::mysqlpump_cmd(&config.rondb, &config.backup, placeholder.clone());
    steps.push(step(
        "users",
        &me,
        &mysql,
        format!("{} > {}", users.argv_display(), dir.join(dump::USERS_FILE).display()),
    ));
    let show = dump::show_databases_cmd(&config.rondb, &config.backup, placeholder.clone());
    steps.push(step("schemas", &me, &mysql, show.argv_display()));
    let excluded = config.rondb.exclude_databases.join(",");
    let dump_cmd = dump::mysqldump_cmd(
        &config.rondb,
        &config.backup,
        placeholder.clone(),
        &[format!("<every database listed except {excluded}>")],
    );
    steps.push(step(
        "schemas",
        &me,
        &mysql,
        format!(
            "{} > {} (CREATE TABLE made IF NOT EXISTS)",
            dump_cmd.argv_display(),
            dir.join(dump::SCHEMAS_FILE).display()
        ),
    ));
    let start = mgm::start_backup_cmd(&config.rondb, &config.backup, placeholder, ndb);
    steps.push(step("ndb-backup", &me, &mysql, start.argv_display()));
    for node in config.nodes.iter().filter(|n| n.has(Role::Rondb)) {
        steps.push(step(
            "rondb-parts",
            node.name.as_str(),
            "root",
            format!(
                "collect the parts of data nodes {:?} from {} into {}/{}",
                node.rondb_node_ids,
                parts::node_backup_dir(&config.rondb.backup_dir, ndb).display(),
                dir.display(),
                parts::repo_rel_dir(ndb)
            ),
        ));
    }
    let hopsfs_nodes: Vec<&NodeSpec> = config.nodes.iter().filter(|n| n.has(Role::Hopsfs)).collect();
    if !hopsfs_nodes.is_empty() && config.hopsfs.block_storage == BlockStorage::Cloud {
        steps.push(step(
            "hopsfs",
            &me,
            "root",
            "nothing: [hopsfs] block_storage is cloud".into(),
        ));
    } else if !hopsfs_nodes.is_empty() {
        let hdfs = config.hopsfs.user.as_str();
        let dirs: Vec<String> = config
            .hopsfs
            .data_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        for node in &hopsfs_nodes {
            let action = format!(
                "list the finalized blocks and VERSION files of {} into {}/hopsfs/{}/",
                dirs.join(", "),
                dir.display(),
                node.name
            );
            steps.push(step("hopsfs-list", node.name.as_str(), hdfs, action));
        }
        let plan = "merge the inventories; give each block the repository lacks to one node holding it";
        steps.push(step("hopsfs-plan", &me, "root", plan.into()));
        for node in &hopsfs_nodes {
            let action = format!(
                "copy the assigned blocks into {}/blocks/, each checked against its .meta CRCs",
                crate::repo::Repository::of(config).location()
            );
            steps.push(step("hopsfs-upload", node.name.as_str(), hdfs, action));
        }
    }
    steps.push(step(
        "manifest",
        &me,
        "root",
        format!("write {}", dir.join("manifest.json").display()),
    ));
    steps
}

/// The plan as text.
pub fn render_plan(config: &Config, id: BackupId) -> String {
    let mut out = format!(
        "backup {id} (RonDB backup id {}) of cluster {} into {}\n",
        id.ndb_id(),
        config.cluster,
        crate::repo::Repository::of(config).location()
    );
    for (i, s) in plan(config, id).iter().enumerate() {
        let _ = writeln!(
            out,
            "{:>3}. {:<12} on {} as {}: {}",
            i + 1,
            s.step,
            s.node,
            s.user,
            s.action
        );
    }
    out
}

/// Records steps of one node, stops running them after the first failure.
struct NodeSteps {
    record: NodeRecord,
    failure: Option<(String, anyhow::Error)>,
}

/// How a step ran: its times, the files it wrote (also when it failed) and
/// its value or error.
struct Ran<T> {
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    files: Vec<FileEntry>,
    result: Result<T>,
}

/// Runs `f` as step `name` in this thread: its span, its start and end in
/// the log, the cancellation check before it.
fn timed_step<T>(name: &str, f: impl FnOnce(&mut Vec<FileEntry>) -> Result<T>) -> Ran<T> {
    let span = info_span!("step", hwdr_step = name);
    let _entered = span.enter();
    let started = Utc::now();
    info!("step {name} started");
    let mut files = Vec::new();
    let result = crate::cancel::check().and_then(|_| f(&mut files));
    match &result {
        Ok(_) => info!(files = files.len(), "step {name} done"),
        Err(e) => error!("step {name} failed: {e:#}"),
    }
    Ran {
        started,
        finished: Utc::now(),
        files,
        result,
    }
}

impl NodeSteps {
    fn new(node: &NodeSpec) -> NodeSteps {
        NodeSteps {
            record: NodeRecord {
                name: node.name.to_string(),
                roles: node.roles.clone(),
                status: StepStatus::Ok,
                started_at: Some(Utc::now()),
                finished_at: None,
                error: None,
                steps: Vec::new(),
            },
            failure: None,
        }
    }

    /// Runs `f` as step `name` unless an earlier step failed; returns its value.
    fn run<T>(&mut self, name: &str, f: impl FnOnce(&mut Vec<FileEntry>) -> Result<T>) -> Option<T> {
        if self.failure.is_some() {
            self.skip(name);
            return None;
        }
        self.add(name, timed_step(name, f))
    }

    /// Records step `name` that ran elsewhere (concurrently, or on an agent).
    fn record(&mut self, name: &str, started: DateTime<Utc>, finished: DateTime<Utc>, result: Result<Vec<FileEntry>>) {
        let (files, result) = match result {
            Ok(files) => (files, Ok(())),
            Err(e) => (Vec::new(), Err(e)),
        };
        self.add(
            name,
            Ran {
                started,
                finished,
                files,
                result,
            },
        );
    }

    /// Records how step `name` ran; returns its value.
    fn add<T>(&mut self, name: &str, ran: Ran<T>) -> Option<T> {
        let mut rec = StepRecord {
            name: name.into(),
            status: StepStatus::Ok,
            started_at: Some(ran.started),
            finished_at: Some(ran.finished),
            error: None,
            files: ran.files,
        };
        let value = match ran.result {
            Ok(value) => Some(value),
            Err(e) => {
                rec.status = StepStatus::Failed;
                rec.error = Some(format!("{e:#}"));
                // The first failure is the one the manifest names.
                if self.failure.is_none() {
                    self.failure = Some((name.to_owned(), e));
                }
                None
            }
        };
        self.record.steps.push(rec);
        value
    }

    /// Records step `name` as not run.
    fn skip(&mut self, name: &str) {
        self.record.steps.push(StepRecord {
            name: name.into(),
            status: StepStatus::Skipped,
            started_at: None,
            finished_at: None,
            error: None,
            files: Vec::new(),
        });
    }

    fn finish(mut self) -> (NodeRecord, Option<(String, anyhow::Error)>) {
        self.record.finished_at = Some(Utc::now());
        if let Some((_, e)) = &self.failure {
            self.record.status = StepStatus::Failed;
            self.record.error = Some(format!("{e:#}"));
        }
        (self.record, self.failure)
    }
}

/// Runs backup `id` and returns its manifest. A failed or partial backup still
/// writes a manifest and returns the error of the first failing step.
pub fn run_backup(
    config: &Config,
    id: BackupId,
    opts: &BackupOptions,
    now: DateTime<Local>,
    fleet: &Fleet,
) -> Result<Manifest> {
    let mysql = config.rondb_user().map_err(|e| HwdrError::Config(format!("{e:#}")))?;
    let repo = Repository::open(config)?;
    let _lock = RepoLock::acquire(
        repo.shared_backend(),
        LockInfo::for_this_process("backup", Some(id.to_string()), now.with_timezone(&Utc)),
    )?;
    let dir = repo.create_backup(id, &_lock)?;
    let started_at = Utc::now();
    let ndb = id.ndb_id();
    if ndb > NDB_RESTORE_MAX_ID {
        bail!("RonDB backup id {ndb} of backup {id} is above {NDB_RESTORE_MAX_ID}: ndb_restore could not read it");
    }
    info!(
        message_id = MSG_BACKUP_STARTED,
        ndb_backup_id = ndb,
        "backup {id} started (RonDB backup id {ndb})"
    );

    let this = config.this();
    let rondb_nodes: Vec<&NodeSpec> = config.nodes.iter().filter(|n| n.has(Role::Rondb)).collect();
    let hopsfs_nodes: Vec<&NodeSpec> = config.nodes.iter().filter(|n| n.has(Role::Hopsfs)).collect();
    let remote: Vec<&NodeSpec> = config
        .nodes
        .iter()
        .filter(|n| n.name != this.name && (n.has(Role::Rondb) || n.has(Role::Hopsfs)))
        .collect();
    // This node first, then every other node with a share, in config order.
    let mut steps: Vec<NodeSteps> = std::iter::once(this)
        .chain(remote.iter().copied())
        .map(NodeSteps::new)
        .collect();

    let head = &mut steps[0];
    if !remote.is_empty() {
        head.run("agents", |_| {
            let problems = fleet.check_agents(&remote);
            if !problems.is_empty() {
                bail!("{}", problems.join("; "));
            }
            Ok(())
        });
    }
    head.run("config", |files| {
        files.extend(crate::config_backup::copy_paths(&config.config_paths, &dir)?);
        Ok(())
    });
    // Users and schemas are two independent reads of RonDB: dumped side by side.
    if head.failure.is_some() {
        head.skip("users");
        head.skip("schemas");
    } else {
        let parent = tracing::Span::current();
        let (users, schemas) = std::thread::scope(|scope| {
            let users = scope.spawn(|| {
                let _entered = parent.enter();
                timed_step("users", |files| {
                    let spool = &config.restore.state_dir;
                    files.push(dump::dump_users(
                        &config.rondb,
                        &config.backup,
                        mysql.clone(),
                        spool,
                        &dir,
                    )?);
                    Ok(())
                })
            });
            let schemas = timed_step("schemas", |files| {
                let databases = dump::databases_to_dump(&config.rondb, &config.backup, mysql.clone())?;
                info!("dumping the schemas of {} databases", databases.len());
                files.push(dump::dump_schemas(
                    &config.rondb,
                    &config.backup,
                    mysql.clone(),
                    &config.restore.state_dir,
                    &dir,
                    &databases,
                )?);
                Ok(())
            });
            let users = users.join().unwrap_or_else(|_| Ran {
                started: Utc::now(),
                finished: Utc::now(),
                files: Vec::new(),
                result: Err(anyhow!("the users dump panicked")),
            });
            (users, schemas)
        });
        head.add("users", users);
        head.add("schemas", schemas);
    }
    let result = head.run("ndb-backup", |_| {
        let outcome = crate::runner::run(mgm::start_backup_cmd(&config.rondb, &config.backup, mysql.clone(), ndb))
            .inspect_err(|_| {
                // Killed (a stop or its timeout): the data nodes must not go on with it.
                mgm::abort_backup(&config.rondb, mysql.clone(), ndb);
            })?;
        let result = mgm::judge_start_backup(&outcome, ndb)?;
        info!(
            master_node = result.master_node,
            records = result.records,
            data_bytes = result.data_bytes,
            "RonDB backup {ndb} completed (StartGCP {}, StopGCP {})",
            result.start_gcp,
            result.stop_gcp
        );
        Ok(result)
    });
    let head_ok = head.failure.is_none();

    // Every rondb node ships its own part, concurrently.
    let mut rondb = RondbInfo {
        ndb_backup_id: ndb,
        result,
        data_node_ids: BTreeSet::new(),
        parts: Default::default(),
    };
    let shipped = if head_ok {
        fleet.run_on(&rondb_nodes, |node| JobRequest::CollectRondbParts {
            node: node.name.clone(),
            backup_id: id,
        })
    } else {
        Vec::new()
    };
    for node in &rondb_nodes {
        let node_steps = steps_of(&mut steps, node);
        match shipped.iter().position(|s| s.node == node.name.as_str()) {
            None => node_steps.skip("rondb-parts"),
            Some(i) => {
                let s = &shipped[i];
                let files = match &s.result {
                    Ok(JobResult::RondbParts { files, parts }) => check_parts(node, parts).map(|_| {
                        rondb.data_node_ids.extend(parts.keys());
                        rondb.parts.extend(parts.clone());
                        files.clone()
                    }),
                    Ok(other) => Err(anyhow!("node {} answered the collection with {other:?}", node.name)),
                    Err(e) => Err(anyhow!("{e:#}")),
                };
                node_steps.record("rondb-parts", s.started, s.finished, files);
            }
        }
    }

    // HopsFS blocks follow the RonDB metadata backup, which dictates their
    // consistency: only once every RonDB part is in.
    let rondb_ok = steps.iter().all(|s| s.failure.is_none());
    let hopsfs = if hopsfs_nodes.is_empty() {
        None
    } else if config.hopsfs.block_storage == BlockStorage::Cloud {
        info!("HopsFS blocks are in cloud storage: no blocks are backed up");
        Some(HopsfsInfo {
            block_storage: BlockStorage::Cloud,
            nodes: Vec::new(),
            distinct_blocks: 0,
            distinct_bytes: 0,
            replicas: 0,
            replica_bytes: 0,
            new_blocks: 0,
            new_bytes: 0,
            bad_replicas: Vec::new(),
            lengths: BTreeMap::new(),
        })
    } else if rondb_ok {
        backup_hopsfs(config, id, opts, &dir, &hopsfs_nodes, &mut steps, fleet)
    } else {
        for node in &hopsfs_nodes {
            steps_of(&mut steps, node).skip("hopsfs-list");
        }
        None
    };

    let mut records = Vec::new();
    let mut failures: Vec<(String, anyhow::Error)> = Vec::new();
    for node_steps in steps {
        let name = node_steps.record.name.clone();
        let (record, failure) = node_steps.finish();
        records.push(record);
        if let Some((step, e)) = failure {
            error!(hwdr_node = %name, "node {name} failed at {step}: {e:#}");
            failures.push((format!("{name}/{step}"), e));
        }
    }
    // The backup is complete only if every data node id is in the repository.
    if failures.is_empty() {
        if let Err(e) = check_rondb_complete(config, &rondb) {
            error!("{e:#}");
            failures.push((format!("{}/check", this.name), e));
        }
    }

    // A signal at any point means the backup is not complete, whatever the
    // steps after it managed: it is failed, "interrupted".
    let interrupted = crate::cancel::requested();
    let says_so =
        |f: &[(String, anyhow::Error)]| f.first().is_some_and(|(_, e)| format!("{e:#}").contains("interrupted"));
    if interrupted && !says_so(&failures) {
        failures.insert(
            0,
            (
                format!("{}/interrupted", this.name),
                anyhow!(crate::cancel::INTERRUPTED),
            ),
        );
    }
    // Partial: the leader's own steps worked, and other nodes failed their share.
    let leader_failed = failures
        .iter()
        .any(|(step, _)| step.starts_with(&format!("{}/", this.name)));
    let status = match (&failures[..], leader_failed || interrupted) {
        ([], _) => BackupStatus::Complete,
        (_, false) => BackupStatus::Partial,
        (_, true) => BackupStatus::Failed,
    };
    let manifest = Manifest {
        format: manifest::FORMAT,
        backup_id: id,
        cluster: config.cluster.clone(),
        status,
        hwdr_version: env!("CARGO_PKG_VERSION").into(),
        leader: this.name.to_string(),
        started_at,
        finished_at: Utc::now(),
        failed_step: failures.first().map(|(s, _)| s.clone()),
        error: failures.first().map(|(_, e)| format!("{e:#}")),
        rondb,
        hopsfs,
        nodes: records,
        checksum: None,
    };
    dir.write_manifest(&manifest)?;
    let Some((step, e)) = failures.into_iter().next() else {
        info!(
            message_id = MSG_BACKUP_COMPLETED,
            bytes = manifest.size(),
            files = manifest.files().count(),
            "backup {id} complete: {} files, {} bytes",
            manifest.files().count(),
            manifest.size()
        );
        drop(_lock);
        fleet.prune_local(&rondb_nodes);
        return Ok(manifest);
    };
    error!(message_id = MSG_BACKUP_FAILED, failed_step = %step, status = %status, "backup {id} {status} at {step}: {e:#}");
    let err = e.context(format!("backup {id} {status} at step {step}"));
    if status == BackupStatus::Partial {
        return Err(err.context(HwdrError::Partial(format!(
            "backup {id} is partial: not every node delivered its part"
        ))));
    }
    Err(err)
}

/// The steps of `node` (every node with a share has an entry).
fn steps_of<'a>(steps: &'a mut [NodeSteps], node: &NodeSpec) -> &'a mut NodeSteps {
    let i = steps
        .iter()
        .position(|s| s.record.name == node.name.as_str())
        .unwrap_or(0);
    &mut steps[i]
}

/// A node delivered the parts of exactly the data nodes the config places on it.
fn check_parts(node: &NodeSpec, parts: &BTreeMap<u32, u32>) -> Result<()> {
    let expected: BTreeSet<u32> = node.rondb_node_ids.iter().copied().collect();
    let got: BTreeSet<u32> = parts.keys().copied().collect();
    if got != expected {
        bail!(
            "node {} delivered the parts of data nodes {got:?}, expected {expected:?}",
            node.name
        );
    }
    Ok(())
}

/// Marks the blocks the latest complete backup lists as stored
/// ([`plan::mark_known`]), so only the others are looked for in the store.
/// Anything odd about that backup only costs the shortcut.
fn trust_latest_complete(config: &Config, distinct: &mut plan::Distinct) {
    let repo = Repository::of(config);
    let prev = match repo.latest_complete() {
        Ok(Some(prev)) => prev,
        Ok(None) => return,
        Err(e) => {
            warn!("looking every block up in the store: {e:#}");
            return;
        }
    };
    let Some(hopsfs) = prev.hopsfs.as_ref().filter(|h| h.block_storage == BlockStorage::Local) else {
        return;
    };
    let mut inventories: Vec<FileEntry> = Vec::new();
    for node in &hopsfs.nodes {
        let rel = crate::hopsfs::node::inventory_rel(node);
        let Some(entry) = prev.files().find(|f| f.path == rel) else {
            warn!(
                "looking every block up in the store: backup {} does not list {rel}",
                prev.backup_id
            );
            return;
        };
        inventories.push(entry.clone());
    }
    match plan::mark_known(distinct, &repo.reader(prev.backup_id), &inventories) {
        Ok(known) => info!(
            known,
            "{known} blocks are listed by backup {}, the latest complete one: not looked up in the store",
            prev.backup_id
        ),
        Err(e) => {
            warn!(
                "looking every block up in the store: the inventories of backup {} do not read: {e:#}",
                prev.backup_id
            );
            plan::forget_known(distinct);
        }
    }
}

/// Lists every HopsFS node's blocks, uploads each block the repository lacks
/// from one node holding it, and takes a block whose replica fails its CRCs
/// from another node. Returns the manifest's HopsFS part when every block is
/// in; failures are recorded in the nodes' steps.
#[allow(clippy::too_many_arguments)]
fn backup_hopsfs(
    config: &Config,
    id: BackupId,
    opts: &BackupOptions,
    dir: &BackupWriter,
    nodes: &[&NodeSpec],
    steps: &mut [NodeSteps],
    fleet: &Fleet,
) -> Option<HopsfsInfo> {
    let listed = fleet.run_on(nodes, |node| JobRequest::HopsfsInventory {
        node: node.name.clone(),
        backup_id: id,
    });
    let mut all_listed = true;
    // Each node's inventory as it reported it: the plan checks them when it reads them.
    let mut inventories: Vec<FileEntry> = Vec::new();
    for s in listed {
        let node = nodes[s.index];
        let files = match s.result {
            Ok(JobResult::HopsfsListed(l)) => {
                for skipped in &l.skipped {
                    warn!(hwdr_node = %node.name, "left out on {}: {skipped}", node.name);
                }
                let rel = crate::hopsfs::node::inventory_rel(node.name.as_str());
                match l.files.iter().find(|f| f.path == rel) {
                    Some(entry) => {
                        inventories.push(entry.clone());
                        Ok(l.files)
                    }
                    None => Err(anyhow!("node {} listed its blocks but stored no {rel}", node.name)),
                }
            }
            Ok(other) => Err(anyhow!("node {} answered the listing with {other:?}", node.name)),
            Err(e) => Err(e),
        };
        all_listed &= files.is_ok();
        steps_of(steps, node).record("hopsfs-list", s.started, s.finished, files);
    }
    if !all_listed {
        return None;
    }

    let names: Vec<String> = nodes.iter().map(|n| n.name.to_string()).collect();
    let store = Repository::of(config).blocks();
    let planned = steps[0].run("hopsfs-plan", |files| {
        let mut distinct = plan::merge(&Repository::of(config).reader(id), &names, &inventories)?;
        if !opts.check_store {
            trust_latest_complete(config, &mut distinct);
        }
        let (missing, damaged) = plan::missing(&distinct, &store, opts.check_store)?;
        if damaged > 0 {
            warn!(
                damaged,
                "{damaged} stored block(s) failed their CRC check: they are taken again from the data nodes"
            );
        }
        let n_missing = missing.len();
        let (assignment, orphans) = plan::assign(&distinct, missing, names.len(), &HashMap::new());
        if !orphans.is_empty() {
            bail!("{} blocks have no holder", orphans.len());
        }
        for (i, node) in names.iter().enumerate() {
            files.push(plan::write_assignment(
                dir,
                &distinct,
                node,
                1,
                &assignment.per_node[i],
            )?);
        }
        info!(
            distinct = distinct.blocks.len(),
            replicas = distinct.replicas,
            missing = n_missing,
            "{} distinct blocks ({} replicas), {} not in the repository yet",
            distinct.blocks.len(),
            distinct.replicas,
            n_missing
        );
        Ok((distinct, assignment))
    })?;
    let (mut distinct, mut assignment) = planned;
    let mut length_choice: HashMap<plan::Key, usize> = HashMap::new();

    // Upload rounds: a bad replica goes to another holder in the next round.
    let mut tried: HashMap<plan::Key, u64> = HashMap::new();
    let mut reasons: HashMap<plan::Key, Vec<String>> = HashMap::new();
    let mut bad_replicas = Vec::new();
    let (mut new_blocks, mut new_bytes) = (0u64, 0u64);
    let mut round = 1u32;
    loop {
        let busy: Vec<&NodeSpec> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !assignment.per_node[*i].is_empty())
            .map(|(_, n)| *n)
            .collect();
        let step = if round == 1 {
            "hopsfs-upload".to_owned()
        } else {
            format!("hopsfs-upload-{round}")
        };
        let uploads = fleet.run_on(&busy, |node| JobRequest::HopsfsUpload {
            node: node.name.clone(),
            backup_id: id,
            round,
        });
        let mut retry = Vec::new();
        let mut failed = false;
        for s in uploads {
            let node = busy[s.index];
            let outcome = match s.result {
                Ok(JobResult::HopsfsUploaded(u)) => {
                    new_blocks += u.blocks;
                    new_bytes += u.bytes;
                    for bad in u.bad {
                        let text = format!("{} on {}: {}", bad.key(), node.name, bad.error);
                        warn!(hwdr_node = %node.name, "bad replica: {text}");
                        bad_replicas.push(text.clone());
                        match plan::compact(&distinct, &bad.key()) {
                            Some(k) => {
                                // Only blocks that came back bad remember who tried them.
                                let bit = nodes.iter().position(|n| n.name == node.name).unwrap_or(0);
                                *tried.entry(k).or_default() |= 1 << bit;
                                reasons
                                    .entry(k)
                                    .or_default()
                                    .push(format!("{}: {}", node.name, bad.error));
                                retry.push(k);
                            }
                            None => warn!("node {} reported {} which no inventory lists", node.name, bad.key()),
                        }
                    }
                    Ok(Vec::new())
                }
                Ok(other) => Err(anyhow!("node {} answered the upload with {other:?}", node.name)),
                Err(e) => Err(e),
            };
            failed |= outcome.is_err();
            steps_of(steps, node).record(&step, s.started, s.finished, outcome);
        }
        if failed || retry.is_empty() {
            break;
        }
        round += 1;
        let (next, orphans) = assign_retry(
            &mut distinct,
            std::mem::take(&mut retry),
            names.len(),
            &tried,
            &mut length_choice,
        );
        if !orphans.is_empty() {
            let list: Vec<String> = orphans
                .iter()
                .map(|k| {
                    format!(
                        "{} ({})",
                        distinct.key(k),
                        reasons.get(k).map(|r| r.join("; ")).unwrap_or_default()
                    )
                })
                .collect();
            steps[0].run(&format!("hopsfs-retry-{round}"), |_| -> Result<()> {
                bail!(
                    "{} block(s) are bad on every replica: {}",
                    orphans.len(),
                    list.join(", ")
                )
            });
            break;
        }
        steps[0].run(&format!("hopsfs-retry-{round}"), |files| {
            for (i, node) in names.iter().enumerate() {
                if !next.per_node[i].is_empty() {
                    files.push(plan::write_assignment(dir, &distinct, node, round, &next.per_node[i])?);
                }
            }
            info!("taking {} block(s) from other replicas", next.blocks());
            Ok(())
        })?;
        assignment = next;
    }
    if steps.iter().any(|s| s.failure.is_some()) {
        return None;
    }
    let mut lengths = BTreeMap::new();
    for (k, node, len, good) in plan::bad_lengths(&distinct) {
        let key = distinct.key(&k);
        lengths.insert(key.to_string(), good);
        // One line per replica: the length says more than the CRC failure it also caused.
        let prefix = format!("{key} on {}: ", names[node]);
        bad_replicas.retain(|t: &String| !t.starts_with(&prefix));
        let text = format!(
            "{key} on {}: {len} bytes, the good replica has {good} (truncated or with bytes appended)",
            names[node]
        );
        warn!(hwdr_node = %names[node], "bad replica: {text}");
        bad_replicas.push(text);
    }
    Some(HopsfsInfo {
        block_storage: BlockStorage::Local,
        nodes: names,
        distinct_blocks: distinct.blocks.len() as u64,
        distinct_bytes: distinct.bytes(),
        replicas: distinct.replicas,
        replica_bytes: distinct.replica_bytes,
        new_blocks,
        new_bytes,
        bad_replicas,
        lengths,
    })
}

/// Gives each block of `retry` to a holder not tried yet. A block whose
/// replicas disagree on its length and whose replicas of the length tried so
/// far all failed is tried with the next length ([`plan::take_length`]).
/// Returns the assignment and the blocks no replica is left for.
fn assign_retry(
    distinct: &mut plan::Distinct,
    retry: Vec<plan::Key>,
    nodes: usize,
    tried: &HashMap<plan::Key, u64>,
    choice: &mut HashMap<plan::Key, usize>,
) -> (plan::Assignment, Vec<plan::Key>) {
    let (mut assigned, mut orphans) = plan::assign(distinct, retry, nodes, tried);
    loop {
        let (switched, left): (Vec<plan::Key>, Vec<plan::Key>) = orphans.into_iter().partition(|k| {
            let n = choice.entry(*k).or_insert(0);
            *n += 1;
            distinct.disputed.contains_key(k) && plan::take_length(distinct, k, *n)
        });
        if switched.is_empty() {
            return (assigned, left);
        }
        let (more, still) = plan::assign(distinct, switched, nodes, tried);
        for (i, keys) in more.per_node.into_iter().enumerate() {
            assigned.per_node[i].extend(keys);
            assigned.bytes[i] += more.bytes[i];
        }
        orphans = left.into_iter().chain(still).collect();
    }
}

/// Every data node id of the cluster delivered a complete part, and the
/// master node RonDB named is one of them.
fn check_rondb_complete(config: &Config, rondb: &RondbInfo) -> Result<()> {
    let expected: BTreeSet<u32> = config.rondb_data_nodes().keys().copied().collect();
    let missing: Vec<_> = expected.difference(&rondb.data_node_ids).collect();
    if !missing.is_empty() {
        bail!("data node(s) {missing:?} have no complete part in the repository");
    }
    if let Some(result) = &rondb.result {
        if !rondb.data_node_ids.contains(&result.master_node) {
            bail!(
                "RonDB named data node {} as master, but no node delivered its part",
                result.master_node
            );
        }
    }
    Ok(())
}
