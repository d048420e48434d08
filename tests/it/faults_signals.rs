//! Issue 11, "trust under faults": SIGTERM or SIGINT stops every command
//! within seconds and cleanly, and the agents' jobs of a leader that is gone
//! are cancelled (by `hwdr unlock`, when their lease lapses, or on request).
//!
//! Faults come from the `failpoints` build (src/fault.rs). A job is held at a
//! point with `<n>*off->1*return(sleep:60000)`: it does its first `n` files or
//! blocks, then waits at the next one for a minute, far beyond every limit
//! below, so the only way it ends in time is the stop under test. The count
//! makes the point fire once per process: the next backup runs at full speed.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::cluster::{wait_until, Cluster};
use crate::common::{hwdr_bin, run_ok, sim_src, text};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use testkit::gen::{GenSpec, Generated};

const HOPSFS_NODES: [&str; 3] = ["node1", "node2", "node3"];
const RONDB_NODES: [&str; 2] = ["node1", "node2"];

/// A stop after SIGTERM/SIGINT must take less than this (systemd's
/// `TimeoutStopSec=` of the units must leave room for it).
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// `[backup] node_timeout` as the harness sets it: the lease of an agent job.
const NODE_TIMEOUT: Duration = Duration::from_secs(4);

/// `[agent] request_timeout` as the harness sets it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// The point `point` holds its job after `done` hits, once.
fn hold(point: &str, done: u32) -> String {
    if done == 0 {
        format!("{point}=1*return(sleep:60000)")
    } else {
        format!("{point}={done}*off->1*return(sleep:60000)")
    }
}

/// A cluster with its HopsFS data and generated blocks.
struct Setup {
    c: Cluster,
    generated: Generated,
}

/// head1 (head, the leader; no agent), node1 (rondb 2 + hopsfs), node2
/// (rondb 3 + hopsfs), node3 (hopsfs), 60 small blocks with replication 3.
/// `faults` gives an agent its `FAILPOINTS`. The leader runs every node's
/// job at once, so each node reaches its point.
fn cluster(faults: &[(&str, &str)]) -> Setup {
    cluster_with(faults, "")
}

/// [`cluster`] with `dropin` in every node's configuration.
fn cluster_with(faults: &[(&str, &str)], dropin: &str) -> Setup {
    let mut c = Cluster::new(
        &[
            ("head1", &["head"], &[]),
            ("node1", &["rondb", "hopsfs"], &[2]),
            ("node2", &["rondb", "hopsfs"], &[3]),
            ("node3", &["hopsfs"], &[]),
        ],
        2,
    );
    let generated = c.with_hopsfs(GenSpec {
        nodes: 3,
        blocks: 60,
        block_pools: 2,
        replication: 3,
        min_size: 100,
        max_size: 20_000,
        ..GenSpec::default()
    });
    // The simulated namenode knows the blocks (the restore waits for it).
    let dirs: Vec<String> = generated
        .nodes
        .iter()
        .map(|n| n.data_dir.display().to_string())
        .collect();
    simctl(&c, &["blocks", "--data-dirs", &dirs.join(",")]);
    c.dropin("head1", "70-parallel.toml", "[backup]\nparallelism = 3\n");
    c.dropin_everywhere("75-test.toml", dropin);
    for node in HOPSFS_NODES {
        let f = faults
            .iter()
            .find(|(n, _)| *n == node)
            .map_or("", |(_, f)| *f)
            .to_owned();
        c.start_agent_with(node, |cmd| {
            cmd.env("FAILPOINTS", f);
        });
    }
    Setup { c, generated }
}

fn simctl(c: &Cluster, args: &[&str]) -> String {
    let out = run_ok(
        Command::new(sim_src().join("simctl"))
            .arg(args[0])
            .arg(&c.sim)
            .args(&args[1..]),
    );
    text(&out.stdout)
}

/// An hwdr command of head1 running in the background, its output in files.
struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// Starts `hwdr <args>` on head1 with `FAILPOINTS=<faults>`.
fn spawn(c: &Cluster, args: &[&str], faults: &str) -> Running {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let stdout = c.dir.path().join(format!("cmd-{n}.out"));
    let stderr = c.dir.path().join(format!("cmd-{n}.err"));
    let child = Command::new(hwdr_bin())
        .arg("--config")
        .arg(&c.nodes["head1"].config)
        .args(args)
        .env("FAILPOINTS", faults)
        .stdout(File::create(&stdout).unwrap())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    Running { child, stdout, stderr }
}

impl Running {
    fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the command itself logged reaching fault point `point`.
    fn wait_for_point(&mut self, point: &str) {
        let needle = format!("fault injection at {point}");
        wait_until(&needle, Duration::from_secs(60), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("hwdr ended ({status}) before {point}: {}", self.stderr());
            }
            self.stderr().contains(&needle)
        });
    }

    /// Sends `signal`; returns how the command exited and how long after the
    /// signal it did.
    fn stop(&mut self, signal: Signal) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, sent.elapsed());
            }
            assert!(
                sent.elapsed() < Duration::from_secs(60),
                "hwdr still runs 60 s after {signal}: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the command to end by itself.
    fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "hwdr still runs: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent's jobs (the list: unlike `GET /v1/jobs/{id}`, it renews no lease).
fn jobs(c: &Cluster, node: &str) -> Vec<Value> {
    let (status, jobs) = c.api(node, "GET", "/v1/jobs", None);
    assert_eq!(status, 200, "{jobs}");
    jobs.as_array().unwrap().clone()
}

/// The agent's job of `kind` for backup `id`.
fn job_of(c: &Cluster, node: &str, kind: &str, id: &str) -> Option<Value> {
    jobs(c, node)
        .into_iter()
        .find(|j| j["request"]["kind"] == kind && j["request"]["backup_id"] == id)
}

/// Waits until every node's job of `kind` for backup `id` is at fault point
/// `point` (the agent logged it and the job still runs).
fn wait_for_agents_at(c: &Cluster, nodes: &[&str], kind: &str, id: &str, point: &str) {
    let needle = format!("fault injection at {point}");
    for node in nodes {
        wait_until(
            &format!("{node}'s {kind} job at {point}"),
            Duration::from_secs(60),
            || {
                c.agent_log(node).contains(&needle)
                    && job_of(c, node, kind, id).is_some_and(|j| j["state"] == "running")
            },
        );
    }
}

/// Waits until every node's job of `kind` for backup `id` ended; returns the
/// jobs.
fn wait_for_jobs_to_end(c: &Cluster, nodes: &[&str], kind: &str, id: &str, limit: Duration) -> Vec<Value> {
    let mut ended = Vec::new();
    for node in nodes {
        let mut job = Value::Null;
        wait_until(&format!("{node}'s {kind} job to end"), limit, || {
            job = job_of(c, node, kind, id).unwrap();
            job["state"] != "running"
        });
        ended.push(job);
    }
    ended
}

/// Temp files of interrupted writes anywhere in the repository.
fn temp_files(c: &Cluster) -> Vec<String> {
    common::tree(&c.repo)
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .collect()
}

/// The row of backup `id` in `hwdr list --json`.
fn listed(c: &Cluster, id: &str) -> Value {
    let out = c.hwdr("head1", &["list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("hwdr list lacks {id}: {rows}"))
        .clone()
}

fn assert_backup_completes(c: &Cluster, id: &str) {
    let out = c.hwdr("head1", &["backup", "--id", id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(c.manifest(id).unwrap()["status"], "complete");
}

/// Starts backup `id` and waits until `nodes` hold their `kind` jobs at `point`.
fn held_backup(c: &Cluster, id: &str, nodes: &[&str], kind: &str, point: &str) -> Running {
    let leader = spawn(c, &["backup", "--id", id], "");
    wait_for_agents_at(c, nodes, kind, id, point);
    leader
}

/// Sends `signal` to the leader of backup `id` whose `nodes` are held at
/// `point` in their `kind` jobs. Asserts what an operator sees; returns the
/// stop time.
fn interrupt_backup(
    c: &Cluster,
    mut leader: Running,
    id: &str,
    nodes: &[&str],
    (kind, point): (&str, &str),
    signal: Signal,
) -> Duration {
    let (status, took) = leader.stop(signal);
    eprintln!("backup {id}: {signal} at {point}: the leader exited after {took:.2?}");
    let err = leader.stderr();
    assert!(
        took < STOP_LIMIT,
        "{signal} at {point}: the leader took {took:?} to stop"
    );
    assert_eq!(status.code(), Some(1), "{signal} at {point}: {err}");
    assert!(err.contains("interrupted: stopped by a signal"), "{err}");

    // Recorded failed, never partial or complete, and the lock is released.
    let m = c.manifest(id).expect("an interrupted backup writes its manifest");
    assert_eq!(m["status"], "failed", "{m}");
    assert!(m["error"].as_str().unwrap().contains("interrupted"), "{}", m["error"]);
    assert!(!c.repo.join("lock").exists(), "{point}: the lock was left");
    let row = listed(c, id);
    assert_eq!(row["status"], "failed", "{row}");
    assert!(row["error"].as_str().unwrap().contains("interrupted"), "{row}");

    // Every agent's job was cancelled by the leader on its way out.
    let ended = wait_for_jobs_to_end(c, nodes, kind, id, Duration::from_secs(5));
    for job in ended {
        assert_eq!(job["state"], "aborted", "{job}");
        assert!(
            job["error"].as_str().unwrap().contains("cancelled through the API"),
            "{job}"
        );
    }
    assert_eq!(temp_files(c), Vec::<String>::new(), "{point}");
    took
}

/// How many processes have `needle` in their command line (arguments
/// joined by spaces).
fn processes(needle: &str) -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).replace('\0', " ").contains(needle))
        .count()
}

/// The lines of the metrics text file about the last verify.
fn verify_metrics(c: &Cluster) -> Vec<String> {
    fs::read_to_string(c.dir.path().join("state-head1/hwdr.prom"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("hwdr_last_verify_"))
        .map(str::to_owned)
        .collect()
}

/// Every node as after a redeploy (see tests/it/restore.rs).
fn wipe(s: &Setup) {
    simctl(&s.c, &["wipe"]);
    for n in &s.generated.nodes {
        let _ = fs::remove_dir_all(&n.data_dir);
    }
    for entry in fs::read_dir(&s.c.sim).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("ndb") {
            let _ = fs::remove_dir_all(entry.path().join("backups/BACKUP"));
        }
    }
    for entry in fs::read_dir(s.c.dir.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("state-") || name.starts_with("staging-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[test]
fn sigterm_during_hopsfs_upload_fails_the_backup_interrupted_and_cancels_the_agents_jobs() {
    let upload = hold("hopsfs-upload-block", 5);
    let s = cluster(&[("node1", &upload), ("node2", &upload), ("node3", &upload)]);
    let c = &s.c;
    let at = ("hopsfs_upload", "hopsfs-upload-block");
    let leader = held_backup(c, "2611231819", &HOPSFS_NODES, at.0, at.1);
    // Five blocks per node wait under temp names (block and .meta) for their
    // batch's commit: the stop must remove them.
    let pending = temp_files(c);
    assert!(pending.len() >= 2 * 5 * HOPSFS_NODES.len(), "{pending:?}");
    interrupt_backup(c, leader, "2611231819", &HOPSFS_NODES, at, Signal::SIGTERM);
    // No agent is left busy, no block half-stored: the next backup is whole.
    assert_backup_completes(c, "2611231820");
    let out = c.hwdr("head1", &["verify", "2611231820", "--full"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}

/// The same for the steps before the upload, in one cluster: each backup is
/// held one step further (the points fire once per agent), and SIGINT (^C in
/// a shell) stops it as SIGTERM does.
#[test]
fn sigterm_or_sigint_during_rondb_parts_or_hopsfs_list_fails_the_backup_interrupted() {
    let faults = format!("{};{}", hold("rondb-copy-part", 1), hold("hopsfs-list-batch", 0));
    let s = cluster(&[("node1", &faults), ("node2", &faults), ("node3", &faults)]);
    let c = &s.c;

    let at = ("collect_rondb_parts", "rondb-copy-part");
    let leader = held_backup(c, "2611231819", &RONDB_NODES, at.0, at.1);
    interrupt_backup(c, leader, "2611231819", &RONDB_NODES, at, Signal::SIGTERM);
    let m = c.manifest("2611231819").unwrap();
    let steps: Vec<String> = m["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["steps"].as_array().unwrap().iter())
        .map(|s| format!("{} {}", s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert!(steps.contains(&"rondb-parts failed".to_owned()), "{steps:?}");
    // Nothing of HopsFS ran after it.
    assert!(
        steps
            .iter()
            .filter(|s| s.starts_with("hopsfs"))
            .all(|s| s.ends_with("skipped")),
        "{steps:?}"
    );

    let at = ("hopsfs_inventory", "hopsfs-list-batch");
    let leader = held_backup(c, "2611231820", &HOPSFS_NODES, at.0, at.1);
    interrupt_backup(c, leader, "2611231820", &HOPSFS_NODES, at, Signal::SIGINT);

    assert_backup_completes(c, "2611231821");
}

/// SIGTERM while the leader waits for a program of its own (RonDB's START
/// BACKUP, hanging): the program is killed, the backup failed.
#[test]
fn sigterm_while_the_leader_runs_a_program_kills_it_and_fails_the_backup() {
    let s = cluster(&[]);
    let c = &s.c;
    c.control("mgm-client.sh", "hang");
    let mut leader = spawn(c, &["backup", "--id", "2611231819"], "");
    let mgm = c.sim.join("bin/mgm-client.sh").display().to_string();
    wait_until("START BACKUP to run", Duration::from_secs(30), || processes(&mgm) == 1);
    let (status, took) = leader.stop(Signal::SIGTERM);
    eprintln!("backup: SIGTERM during START BACKUP: the leader exited after {took:.2?}");
    assert!(took < STOP_LIMIT, "{took:?}");
    assert_eq!(status.code(), Some(1), "{}", leader.stderr());
    assert_eq!(processes(&mgm), 0, "START BACKUP outlived its leader");
    let m = c.manifest("2611231819").unwrap();
    assert_eq!(m["status"], "failed");
    assert_eq!(m["failed_step"], "head1/ndb-backup");
    assert!(m["error"].as_str().unwrap().contains("interrupted"), "{}", m["error"]);
    assert!(!c.repo.join("lock").exists());
    // The data nodes must not go on with the backup hwdr gave up on.
    let aborted = fs::read_to_string(c.sim.join("state/invocations.jsonl")).unwrap();
    assert!(
        aborted.contains("\"ABORT BACKUP 263271819\""),
        "no ABORT BACKUP after the kill:\n{aborted}"
    );
    simctl(c, &["control", "mgm-client.sh", "--clear"]);
    assert_backup_completes(c, "2611231820");
}

#[test]
fn sigterm_stops_restore_verify_prune_and_drill_cleanly() {
    // The HopsFS restore of every node holds after placing 5 blocks.
    let place = hold("hopsfs-place-block", 5);
    let s = cluster(&[("node1", &place), ("node2", &place), ("node3", &place)]);
    let c = &s.c;
    for id in ["2611231819", "2611231820", "2611231821"] {
        assert_backup_completes(c, id);
    }
    let mut stops = Vec::new();

    // verify: no verdict, so the last verify's metrics stay as they were.
    let out = c.hwdr("head1", &["verify", "--latest", "--full"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let before = verify_metrics(c);
    assert!(
        before.contains(&"hwdr_last_verify_ok{cluster=\"prod\"} 1".to_owned()),
        "{before:?}"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let mut verify = spawn(c, &["verify", "--latest", "--full"], &hold("verify-block", 3));
    verify.wait_for_point("verify-block");
    let (status, took) = verify.stop(Signal::SIGTERM);
    stops.push(("verify", took));
    assert_eq!(status.code(), Some(1), "{}", verify.stderr());
    assert!(
        verify.stderr().contains("interrupted: stopped by a signal"),
        "{}",
        verify.stderr()
    );
    assert!(!verify.stdout().contains("DAMAGED"), "{}", verify.stdout());
    assert_eq!(verify_metrics(c), before);

    // drill: it reports the failing step.
    let mut drill = spawn(c, &["drill", "--latest"], &hold("verify-block", 3));
    drill.wait_for_point("verify-block");
    let (status, took) = drill.stop(Signal::SIGTERM);
    stops.push(("drill", took));
    assert_eq!(status.code(), Some(1), "{}", drill.stderr());
    assert!(
        drill
            .stdout()
            .contains("FAIL  hopsfs-blocks: interrupted: stopped by a signal"),
        "{}",
        drill.stdout()
    );
    assert!(
        drill.stderr().contains("failed at step hopsfs-blocks"),
        "{}",
        drill.stderr()
    );

    // prune: retention removes the two older backups; stopped before the
    // second, it removes nothing more and releases the lock.
    c.dropin(
        "head1",
        "80-retention.toml",
        "[retention]\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\nmin_age = \"1s\"\n",
    );
    let mut prune = spawn(c, &["prune"], &hold("prune-remove-backup", 1));
    prune.wait_for_point("prune-remove-backup");
    let (status, took) = prune.stop(Signal::SIGTERM);
    stops.push(("prune", took));
    assert_eq!(status.code(), Some(1), "{}", prune.stderr());
    assert!(
        prune.stderr().contains("interrupted: stopped by a signal"),
        "{}",
        prune.stderr()
    );
    assert!(!c.repo.join("lock").exists());
    let left: Vec<String> = fs::read_dir(c.repo.join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "one backup removed, one left: {left:?}");
    assert!(left.contains(&"2611231821".to_owned()), "{left:?}");
    for id in &left {
        assert_eq!(listed(c, id)["status"], "complete", "{id}");
    }
    fs::remove_file(
        c.nodes["head1"]
            .config
            .parent()
            .unwrap()
            .join("hwdr.d/80-retention.toml"),
    )
    .unwrap();

    // restore: stopped in the HopsFS step, with blocks half placed; the
    // state says so, and --resume finishes it.
    let rondb = simctl(c, &["dump"]);
    let trees: Vec<_> = s
        .generated
        .nodes
        .iter()
        .map(|n| common::snapshot(&n.data_dir))
        .collect();
    wipe(&s);
    let mut restore = spawn(c, &["restore", "2611231821"], "");
    wait_for_agents_at(c, &HOPSFS_NODES, "hopsfs_restore", "2611231821", "hopsfs-place-block");
    let (status, took) = restore.stop(Signal::SIGTERM);
    stops.push(("restore", took));
    let err = restore.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("stopped at step hopsfs") && err.contains("interrupted"),
        "{err}"
    );
    assert!(!c.repo.join("lock").exists());
    let ended = wait_for_jobs_to_end(c, &HOPSFS_NODES, "hopsfs_restore", "2611231821", Duration::from_secs(5));
    assert!(ended.iter().all(|j| j["state"] == "aborted"), "{ended:?}");
    let status = text(&c.hwdr("head1", &["restore", "2611231821", "--status"]).stdout);
    assert!(
        status.lines().any(|l| l.starts_with("hopsfs") && l.contains("failed")),
        "{status}"
    );
    assert!(status.contains("interrupted: stopped by a signal"), "{status}");
    for (i, n) in s.generated.nodes.iter().enumerate() {
        let placed = common::snapshot(&n.data_dir).len();
        assert!(
            placed > 0 && placed < trees[i].len(),
            "node{}: {placed} files placed",
            i + 1
        );
    }
    let out = c.hwdr("head1", &["restore", "2611231821", "--resume"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(simctl(c, &["dump"]), rondb, "RonDB differs from the backup");
    for (i, n) in s.generated.nodes.iter().enumerate() {
        assert_eq!(common::snapshot(&n.data_dir), trees[i], "node{} differs", i + 1);
    }

    for (command, took) in stops {
        eprintln!("hwdr {command}: stopped {took:.2?} after SIGTERM");
        assert!(took < STOP_LIMIT, "{command} took {took:?}");
    }
}

/// The slowest stop: an agent that does not answer at all (frozen). The
/// leader's cancel request gives up after `[agent] request_timeout` (3 s
/// here, 10 s by default), and the other nodes' jobs are cancelled meanwhile.
#[test]
fn sigterm_with_a_frozen_agent_stops_within_the_request_timeout() {
    let upload = hold("hopsfs-upload-block", 5);
    let s = cluster(&[("node1", &upload), ("node2", &upload), ("node3", &upload)]);
    let c = &s.c;
    let mut leader = held_backup(c, "2611231819", &HOPSFS_NODES, "hopsfs_upload", "hopsfs-upload-block");
    let frozen = Pid::from_raw(c.agent_pid("node3"));
    kill(frozen, Signal::SIGSTOP).unwrap();
    let (status, took) = leader.stop(Signal::SIGTERM);
    kill(frozen, Signal::SIGCONT).unwrap();
    eprintln!("backup: SIGTERM with node3's agent frozen: the leader exited after {took:.2?}");
    assert!(took < REQUEST_TIMEOUT + Duration::from_secs(2), "{took:?}");
    assert_eq!(status.code(), Some(1), "{}", leader.stderr());
    let m = c.manifest("2611231819").unwrap();
    assert_eq!(m["status"], "failed");
    assert!(!c.repo.join("lock").exists());
    let ended = wait_for_jobs_to_end(
        c,
        &["node1", "node2"],
        "hopsfs_upload",
        "2611231819",
        Duration::from_secs(1),
    );
    assert!(ended.iter().all(|j| j["state"] == "aborted"), "{ended:?}");
    // Thawed, node3 reads the cancel request still in its socket (else its
    // lease would lapse).
    let ended = wait_for_jobs_to_end(c, &["node3"], "hopsfs_upload", "2611231819", NODE_TIMEOUT * 2);
    assert_eq!(ended[0]["state"], "aborted", "{}", ended[0]);
}

/// Regression: after SIGTERM the leader still started the jobs of the nodes
/// whose turn had not come (`[backup] parallelism`), only to cancel them at
/// once; a restore would start changing nodes after the operator stopped it.
#[test]
fn after_sigterm_no_node_whose_turn_had_not_come_gets_a_job() {
    let list = hold("hopsfs-list-batch", 0);
    let s = cluster(&[("node1", &list), ("node2", &list), ("node3", &list)]);
    let c = &s.c;
    c.dropin("head1", "71-one-at-a-time.toml", "[backup]\nparallelism = 1\n");
    let mut leader = spawn(c, &["backup", "--id", "2611231819"], "");
    let listing = |n: &str| job_of(c, n, "hopsfs_inventory", "2611231819");
    let mut first = "";
    wait_until("a listing job at its point", Duration::from_secs(60), || {
        first = HOPSFS_NODES
            .into_iter()
            .find(|n| c.agent_log(n).contains("fault injection at hopsfs-list-batch"))
            .unwrap_or("");
        !first.is_empty()
    });
    let (status, _) = leader.stop(Signal::SIGTERM);
    assert_eq!(status.code(), Some(1), "{}", leader.stderr());
    assert_eq!(listing(first).unwrap()["state"], "aborted");
    for n in HOPSFS_NODES.into_iter().filter(|n| *n != first) {
        assert_eq!(listing(n), None, "{n} got a job after the stop");
    }
    let m = c.manifest("2611231819").unwrap();
    assert_eq!(m["status"], "failed");
    assert!(!c.repo.join("lock").exists());
}

#[test]
fn a_sigkilled_leaders_jobs_are_cancelled_by_unlock_and_the_next_backup_succeeds() {
    let upload = hold("hopsfs-upload-block", 5);
    let s = cluster(&[("node1", &upload), ("node2", &upload), ("node3", &upload)]);
    let c = &s.c;
    let mut leader = held_backup(c, "2611231819", &HOPSFS_NODES, "hopsfs_upload", "hopsfs-upload-block");
    let held: Vec<(&str, String)> = HOPSFS_NODES
        .iter()
        .map(|n| {
            let job = job_of(c, n, "hopsfs_upload", "2611231819").unwrap();
            (*n, job["id"].as_str().unwrap().to_owned())
        })
        .collect();
    assert!(!temp_files(c).is_empty());
    leader.stop(Signal::SIGKILL);
    // The leader's lock stays behind, stale.
    assert!(c.repo.join("lock").exists());

    // At once, long before the jobs' lease would lapse.
    let out = c.hwdr("head1", &["unlock"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("removed the lock: backup of backup 2611231819 by pid"),
        "{stdout}"
    );
    for (node, id) in &held {
        assert!(
            stdout.contains(&format!(
                "cancelled job {id} on {node} (upload HopsFS blocks for backup 2611231819 (round 1)): aborted"
            )),
            "{node}:\n{stdout}"
        );
        let job = job_of(c, node, "hopsfs_upload", "2611231819").unwrap();
        assert_eq!(job["state"], "aborted", "{job}");
        assert!(
            job["error"].as_str().unwrap().contains("cancelled through the API"),
            "{job}"
        );
    }
    assert!(!c.repo.join("lock").exists());
    assert_eq!(temp_files(c), Vec::<String>::new());
    assert_eq!(listed(c, "2611231819")["status"], "incomplete");

    // No agent answers "busy" any more.
    assert_backup_completes(c, "2611231820");
}

#[test]
fn a_job_whose_leader_stops_asking_is_cancelled_when_its_lease_lapses() {
    let upload = hold("hopsfs-upload-block", 5);
    let s = cluster(&[("node1", &upload), ("node2", &upload), ("node3", &upload)]);
    let c = &s.c;
    let mut leader = held_backup(c, "2611231819", &HOPSFS_NODES, "hopsfs_upload", "hopsfs-upload-block");
    assert!(!temp_files(c).is_empty());
    leader.stop(Signal::SIGKILL);
    let killed = Instant::now();

    // Nobody asks for the jobs now (listing them renews no lease): they are
    // cancelled node_timeout after the answer to the leader's last status
    // request, which waited up to 1.5 s ([agent] request_timeout / 2).
    let ended = wait_for_jobs_to_end(
        c,
        &HOPSFS_NODES,
        "hopsfs_upload",
        "2611231819",
        NODE_TIMEOUT + Duration::from_secs(4),
    );
    let took = killed.elapsed();
    eprintln!("the lease of the jobs lapsed {took:.2?} after the leader was killed");
    assert!(
        took > NODE_TIMEOUT - Duration::from_secs(1),
        "ended after only {took:?}: not by the lease"
    );
    for job in ended {
        assert_eq!(job["state"], "aborted", "{job}");
        let error = job["error"].as_str().unwrap();
        assert!(error.contains("the lease lapsed"), "{job}");
        assert!(error.contains("[backup] node_timeout"), "{job}");
    }
    assert_eq!(temp_files(c), Vec::<String>::new());
}

/// Regression: a status request that waited longer than the lease (the
/// leader's long poll, up to 5 s, with `[backup] node_timeout` under it) let
/// the lease lapse while the leader was waiting, and the job was cancelled.
#[test]
fn a_leader_waiting_on_a_job_longer_than_its_lease_keeps_the_job() {
    // Each upload takes about 2.4 s; the leader waits 1.5 s per status
    // request ([agent] request_timeout 3 s); the lease is 1 s.
    let slow = "hopsfs-upload-block=8*return(sleep:300)";
    let s = cluster_with(
        &[("node1", slow), ("node2", slow), ("node3", slow)],
        "[backup]\nnode_timeout = \"1s\"\n",
    );
    assert_backup_completes(&s.c, "2611231819");
}

#[test]
fn a_cancel_request_stops_a_running_job() {
    // node1 holds its upload; node2 and node3 are not slowed. node1 runs
    // the Kafka step of restores, a program that takes long.
    let s = cluster_with(
        &[("node1", &hold("hopsfs-upload-block", 5))],
        "[kafka]\nnode = \"node1\"\nrestore_command = [\"/bin/sleep\", \"31.7\"]\n",
    );
    let c = &s.c;
    let mut leader = held_backup(c, "2611231819", &["node1"], "hopsfs_upload", "hopsfs-upload-block");
    let job = job_of(c, "node1", "hopsfs_upload", "2611231819").unwrap();
    let id = job["id"].as_str().unwrap();
    let asked = Instant::now();
    let (status, answer) = c.api("node1", "POST", &format!("/v1/jobs/{id}/cancel?wait_ms=5000"), None);
    let took = asked.elapsed();
    eprintln!("the cancelled job ended {took:.2?} after the request");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "aborted", "{answer}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        answer["error"].as_str().unwrap().contains("cancelled through the API"),
        "{answer}"
    );
    // Its leader lives on and records the node's failure: a partial backup.
    assert_eq!(leader.wait().code(), Some(6), "{}", leader.stderr());
    let m = c.manifest("2611231819").unwrap();
    assert_eq!(m["status"], "partial");
    assert_eq!(m["failed_step"], "node1/hopsfs-upload");
    assert!(
        m["error"].as_str().unwrap().contains("cancelled through the API"),
        "{}",
        m["error"]
    );
    assert!(!c.repo.join("lock").exists());
    assert_eq!(temp_files(c), Vec::<String>::new());

    // An ended job is answered as it is; an unknown one is not found.
    let (status, again) = c.api("node1", "POST", &format!("/v1/jobs/{id}/cancel"), None);
    assert_eq!((status, again["state"].as_str()), (200, Some("aborted")), "{again}");
    let (status, _) = c.api("node1", "POST", "/v1/jobs/nope/cancel", None);
    assert_eq!(status, 404);

    // A job that runs a program: the program is killed with it.
    let _lock = c.hold_lock("restore", "2611231819");
    let (status, created) = c.api(
        "node1",
        "POST",
        "/v1/jobs",
        Some(r#"{"kind":"restore_command","node":"node1","backup_id":"2611231819","step":"kafka"}"#),
    );
    assert_eq!(status, 202, "{created}");
    let id = created["job_id"].as_str().unwrap();
    let sleeping = || processes("/bin/sleep 31.7");
    wait_until("the Kafka command to run", Duration::from_secs(10), || sleeping() == 1);
    let (status, answer) = c.api("node1", "POST", &format!("/v1/jobs/{id}/cancel?wait_ms=5000"), None);
    assert_eq!((status, answer["state"].as_str()), (200, Some("aborted")), "{answer}");
    assert_eq!(sleeping(), 0, "the program outlived its job");
}
