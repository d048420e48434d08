//! Integration tests of the agent and of backups that span several nodes:
//! every node is an `hwdr agent` process on its own 127.0.0.x address.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::cluster::{http, wait_until, Cluster};
use crate::common::text;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, Uid};
use serde_json::json;

const ID: &str = "2611231819";
const NDB_ID: &str = "263271819";

/// head1, head2 (head) and ndb1..ndb3 (rondb, data nodes 2, 3, 4).
fn five_nodes() -> Cluster {
    Cluster::new(
        &[
            ("head1", &["head"], &[]),
            ("head2", &["head"], &[]),
            ("ndb1", &["rondb"], &[2]),
            ("ndb2", &["rondb"], &[3]),
            ("ndb3", &["rondb"], &[4]),
        ],
        2,
    )
}

fn start_data_agents(c: &mut Cluster) {
    for n in ["ndb1", "ndb2", "ndb3"] {
        c.start_agent(n);
    }
}

#[test]
fn three_rondb_nodes_with_two_parts_each_land_complete() {
    let mut c = five_nodes();
    start_data_agents(&mut c);
    let out = c.hwdr("head1", &["backup", "--id", ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = c.manifest(ID).unwrap();
    assert_eq!(m["status"], "complete");
    assert_eq!(m["leader"], "head1");
    assert_eq!(m["rondb"]["data_node_ids"], json!([2, 3, 4]));
    assert_eq!(m["rondb"]["parts"], json!({"2": 2, "3": 2, "4": 2}));
    let nodes: Vec<&str> = m["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["head1", "ndb1", "ndb2", "ndb3"]);
    for (i, node) in m["nodes"].as_array().unwrap().iter().enumerate().skip(1) {
        assert_eq!(node["status"], "ok");
        let step = &node["steps"][0];
        assert_eq!(step["name"], "rondb-parts");
        assert_eq!(step["status"], "ok");
        let files = step["files"].as_array().unwrap();
        assert_eq!(files.len(), 6, "two parts x three files");
        let data_node = i + 1;
        assert!(files
            .iter()
            .all(|f| f["path"].as_str().unwrap().contains(&format!(".{data_node}."))));
        assert!(node["started_at"].is_string() && node["finished_at"].is_string());
    }
    let parts = common::tree(&c.repo.join("backups").join(ID).join(format!("rondb/BACKUP-{NDB_ID}")));
    assert_eq!(parts.len(), 18, "{parts:?}");

    // A second backup prunes the first one's local folders ([rondb] keep_local = 1).
    let local = |node: &str, ndb: &str| {
        c.nodes[node]
            .backup_dir
            .as_ref()
            .unwrap()
            .join(format!("BACKUP/BACKUP-{ndb}"))
    };
    assert!(local("ndb1", NDB_ID).is_dir());
    let out = c.hwdr("head1", &["backup", "--id", "2611231820"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for n in ["ndb1", "ndb2", "ndb3"] {
        assert!(!local(n, NDB_ID).exists(), "{n} kept the old local backup");
        assert!(local(n, "263271820").is_dir(), "{n} must keep the newest local backup");
    }
}

/// Issue 12, move 7: the dry run shows each node's part as that node runs
/// it: ndb2 keeps its RonDB backups elsewhere and says so; the plan asks
/// the agent over the API (`POST /v1/plan`), which runs nothing; a node
/// without an agent is named and the dry run fails.
#[test]
fn dry_run_shows_each_nodes_part_from_its_own_config() {
    let mut c = five_nodes();
    c.dropin(
        "ndb2",
        "70-own-backup-dir.toml",
        "[rondb]\nbackup_dir = \"/srv/ndb2-own/backups\"\n",
    );
    start_data_agents(&mut c);
    let out = c.hwdr("head1", &["backup", "--id", ID, "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    let into = format!("into {}/backups/{ID}/rondb/BACKUP-{NDB_ID}", c.repo.display());
    let from = |n: &str| {
        format!(
            "{}/BACKUP/BACKUP-{NDB_ID}",
            c.nodes[n].backup_dir.as_ref().unwrap().display()
        )
    };
    for expected in [
        format!("rondb-parts  on ndb1 as root: collect the parts of data nodes [2] from {} {into}", from("ndb1")),
        format!("rondb-parts  on ndb2 as root: collect the parts of data nodes [3] from /srv/ndb2-own/backups/BACKUP/BACKUP-{NDB_ID} {into}"),
        format!("rondb-parts  on ndb3 as root: collect the parts of data nodes [4] from {} {into}", from("ndb3")),
    ] {
        assert!(plan.contains(&expected), "plan lacks {expected:?}:\n{plan}");
    }
    assert!(
        c.manifest(ID).is_none() && !c.repo.join(format!("backups/{ID}")).exists(),
        "a dry run changes nothing"
    );
    // The agent's own answer, as the leader gets it.
    let (code, answer) = c.api(
        "ndb2",
        "POST",
        "/v1/plan",
        Some(&format!(
            r#"{{"kind": "collect_rondb_parts", "node": "ndb2", "backup_id": "{ID}"}}"#
        )),
    );
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["lines"][0]["user"], "root");
    assert!(
        answer["lines"][0]["action"]
            .as_str()
            .unwrap()
            .contains("/srv/ndb2-own/backups/"),
        "{answer}"
    );
    let (code, answer) = c.api(
        "ndb2",
        "POST",
        "/v1/plan",
        Some(&format!(
            r#"{{"kind": "collect_rondb_parts", "node": "ndb1", "backup_id": "{ID}"}}"#
        )),
    );
    assert_eq!(code, 400, "a node renders only its own jobs: {answer}");

    c.kill_agent("ndb3");
    let out = c.hwdr("head1", &["backup", "--id", ID, "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(
        plan.contains("rondb-parts  on ndb3: NOT SHOWN: agent of ndb3 ("),
        "{plan}"
    );
    assert!(
        plan.contains("manifest     on head1 as root: write"),
        "the rest is shown:\n{plan}"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("the plan is incomplete: 1 parts could not be shown"),
        "{err}"
    );
}

#[test]
fn wrong_or_missing_token_is_refused_and_changes_nothing() {
    let mut c = five_nodes();
    c.start_agent("ndb1");
    let address = c.nodes["ndb1"].address.clone();
    std::fs::create_dir_all(c.repo.join("backups").join(ID)).unwrap();
    let body = format!(r#"{{"kind":"collect_rondb_parts","node":"ndb1","backup_id":"{ID}"}}"#);
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer "),
        Some(&*format!("Basic {}", c.token)),
    ] {
        let (status, answer) = http(&address, "POST", "/v1/jobs", auth, Some(&body)).unwrap();
        assert_eq!(status, 401, "{auth:?}: {answer}");
        let (status, _) = http(&address, "GET", "/v1/jobs", auth, None).unwrap();
        assert_eq!(status, 401);
    }
    // Nothing ran, nothing was written.
    let (status, jobs) = c.api("ndb1", "GET", "/v1/jobs", None);
    assert_eq!((status, jobs), (200, json!([])));
    assert!(common::tree(&c.repo.join("backups").join(ID)).is_empty());
    // Health needs no token, and tells a caller without one only the name.
    let (status, health) = http(&address, "GET", "/v1/health", None, None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(health, json!({"node": "ndb1", "auth": "token"}));
    let (status, health) = c.api("ndb1", "GET", "/v1/health", None);
    assert_eq!(status, 200);
    assert_eq!(health["detail"]["busy"], false);
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let mut c = five_nodes();
    c.start_agent("ndb1");
    for (body, expected) in [
        (
            r#"{"kind":"collect_rondb_parts","node":"ndb1","backup_id":"../../etc"}"#.to_owned(),
            "backup id",
        ),
        (
            r#"{"kind":"collect_rondb_parts","node":"../x","backup_id":"2611231819"}"#.to_owned(),
            "invalid node name",
        ),
        (
            r#"{"kind":"collect_rondb_parts","node":"ndb2","backup_id":"2611231819"}"#.to_owned(),
            "this agent is node 'ndb1', not 'ndb2'",
        ),
        (r#"{"kind":"rm_rf","node":"ndb1"}"#.to_owned(), "unknown variant"),
        (
            format!(r#"{{"kind":"collect_rondb_parts","node":"ndb1","backup_id":"{ID}"}}"#),
            "is not being taken",
        ),
    ] {
        let (status, answer) = c.api("ndb1", "POST", "/v1/jobs", Some(&body));
        assert!(status == 400 || status == 409, "{body}: {status} {answer}");
        assert!(answer["error"].as_str().unwrap().contains(expected), "{body}: {answer}");
    }
    let (status, _) = c.api("ndb1", "GET", "/v1/jobs/nope", None);
    assert_eq!(status, 404);
}

#[test]
fn agent_killed_mid_collection_fails_the_backup_naming_the_node() {
    let mut c = five_nodes();
    start_data_agents(&mut c);
    // Data node 3 (on ndb2) writes a large part, so its collection takes a while.
    c.control("mgm-client.sh", "pad:3:150000000");
    let backup = std::process::Command::new(common::hwdr_bin())
        .arg("--config")
        .arg(&c.nodes["head1"].config)
        .args(["backup", "--id", ID])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("ndb2's collection job to run", Duration::from_secs(120), || {
        let (_, jobs) = c.api("ndb2", "GET", "/v1/jobs", None);
        jobs.as_array()
            .is_some_and(|j| j.iter().any(|j| j["state"] == "running"))
    });
    kill(Pid::from_raw(c.agent_pid("ndb2")), Signal::SIGSTOP).unwrap();
    c.kill_agent("ndb2");
    let out = backup.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains("ndb2"), "{err}");
    let m = c.manifest(ID).unwrap();
    assert_eq!(m["status"], "partial");
    assert_eq!(m["failed_step"], "ndb2/rondb-parts");
    let ndb2 = m["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "ndb2")
        .unwrap();
    assert_eq!(ndb2["status"], "failed");
    assert!(
        ndb2["error"].as_str().unwrap().contains("stopped answering"),
        "{}",
        ndb2["error"]
    );
    assert!(!c.repo.join("lock").exists());
    let list = c.hwdr("head1", &["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["status"], "partial");
}

#[test]
fn node_without_agent_fails_the_backup_before_rondb_is_touched() {
    let mut c = five_nodes();
    c.start_agent("ndb1");
    c.start_agent("ndb2");
    let out = c.hwdr("head1", &["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("agent of ndb3") && err.contains("does not answer"),
        "{err}"
    );
    let m = c.manifest(ID).unwrap();
    assert_eq!(m["status"], "failed");
    assert_eq!(m["failed_step"], "head1/agents");
    assert!(!c.nodes["ndb1"]
        .backup_dir
        .as_ref()
        .unwrap()
        .join(format!("BACKUP/BACKUP-{NDB_ID}"))
        .exists());
    assert!(!c.repo.join("lock").exists());
}

#[test]
fn node_answering_with_an_error_makes_the_backup_partial() {
    let mut c = five_nodes();
    start_data_agents(&mut c);
    c.control("mgm-client.sh", "skip-node:4");
    let out = c.hwdr("head1", &["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("node ndb3 job") && err.contains("RonDB wrote no backup folder"),
        "{err}"
    );
    assert_eq!(c.manifest(ID).unwrap()["status"], "partial");
}

#[test]
fn leader_is_the_first_head_node_that_answers() {
    let mut c = five_nodes();
    start_data_agents(&mut c);
    // head1's agent is down: head2 leads.
    let out = c.hwdr("head2", &["backup", "--id", ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(c.manifest(ID).unwrap()["leader"], "head2");

    // head1 is back: head2 steps aside with its own exit code.
    c.start_agent("head1");
    let out = c.hwdr("head2", &["backup", "--id", "2611231820"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not the leader: head1 leads the backup"),
        "{}",
        text(&out.stderr)
    );
    assert!(c.manifest("2611231820").is_none());

    // head1 leads even with its own agent up; a data node never leads.
    assert!(c.hwdr("head1", &["backup", "--id", "2611231821"]).status.success());
    assert_eq!(c.hwdr("ndb1", &["backup", "--id", "2611231822"]).status.code(), Some(7));

    // --force-leader: for an operator who knows better.
    let out = c.hwdr("head2", &["backup", "--id", "2611231823", "--force-leader"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(c.manifest("2611231823").unwrap()["leader"], "head2");
}

#[test]
fn agent_speaks_sd_notify() {
    let mut c = five_nodes();
    let socket_path = c.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // systemd sets WATCHDOG_PID to the service's pid: a shell sets it to its
    // own and execs the agent.
    c.start_agent_with("ndb1", |cmd| {
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        *cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"")
            .arg(program)
            .args(args);
        cmd.env("NOTIFY_SOCKET", &socket_path).env("WATCHDOG_USEC", "400000");
    });
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    let mut read = |messages: &mut Vec<String>| {
        let n = socket.recv(&mut buf).expect("a notify message");
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    };
    read(&mut messages);
    assert!(
        messages[0].contains("READY=1") && messages[0].contains("STATUS=idle"),
        "{messages:?}"
    );
    // Pings at half of WATCHDOG_USEC.
    while !messages.iter().any(|m| m.contains("WATCHDOG=1")) {
        read(&mut messages);
    }
    // A job shows in STATUS=, then idle again.
    let (status, _) = c.api(
        "ndb1",
        "POST",
        "/v1/jobs",
        Some(r#"{"kind":"prune_local_rondb","node":"ndb1"}"#),
    );
    assert_eq!(status, 202);
    while !messages
        .iter()
        .any(|m| m.contains("STATUS=job ") && m.contains("prune local RonDB backups"))
    {
        read(&mut messages);
    }
    // SIGTERM: STOPPING=1 and a clean exit.
    kill(Pid::from_raw(c.agent_pid("ndb1")), Signal::SIGTERM).unwrap();
    while !messages.iter().any(|m| m.contains("STOPPING=1")) {
        read(&mut messages);
    }
    wait_until("the agent to exit", Duration::from_secs(20), || {
        nix::sys::wait::waitpid(
            Pid::from_raw(c.agent_pid("ndb1")),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        )
        .is_ok_and(|s| matches!(s, nix::sys::wait::WaitStatus::Exited(_, 0)))
    });
}

/// Issue 11, point 13: token errors are configuration errors (exit 3, so
/// `RestartPreventExitStatus=3` keeps systemd from restarting the agent), and
/// `hwdr config check` names them.
#[test]
fn agent_refuses_an_open_empty_short_or_foreign_token_file_with_exit_3() {
    let c = five_nodes();
    let token = c.dir.path().join("agent.token");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = c.hwdr("ndb1", &["agent"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("[agent] token_file: ") && text(&out.stderr).contains("mode 0644"));
    let check = c.hwdr("ndb1", &["config", "check"]);
    assert_eq!(check.status.code(), Some(3));
    assert!(text(&check.stdout).contains("FAIL  ") && text(&check.stdout).contains("mode 0644"));
    std::fs::write(&token, "\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = c.hwdr("ndb1", &["agent"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("is empty"), "{}", text(&out.stderr));
    std::fs::write(&token, "short-secret\n").unwrap();
    let out = c.hwdr("ndb1", &["agent"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("has 12 characters; it needs at least 32"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&token, &c.token).unwrap();
    nix::unistd::chown(&token, Some(Uid::from_raw(1)), None).unwrap();
    let out = c.hwdr("ndb1", &["agent"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("must be owned by root"),
        "{}",
        text(&out.stderr)
    );
    let check = c.hwdr("ndb1", &["config", "check"]);
    assert!(
        text(&check.stdout).contains("must be owned by root"),
        "{}",
        text(&check.stdout)
    );
}

#[test]
fn status_request_with_wait_ms_answers_when_the_job_ends() {
    let mut c = five_nodes();
    // A job that takes about a second: ndb1's own Kafka command.
    c.dropin_everywhere(
        "70-kafka.toml",
        "[kafka]\nnode = \"ndb1\"\nrestore_command = [\"/bin/sleep\", \"1.5\"]\n",
    );
    c.start_agent("ndb1");
    let _lock = c.hold_lock("restore", ID);
    let (status, created) = c.api(
        "ndb1",
        "POST",
        "/v1/jobs",
        Some(&format!(
            r#"{{"kind":"restore_command","node":"ndb1","backup_id":"{ID}","step":"kafka"}}"#
        )),
    );
    assert_eq!(status, 202, "{created}");
    let job = created["job_id"].as_str().unwrap().to_owned();

    // Without wait_ms: at once, still running.
    let (status, answer) = c.api("ndb1", "GET", &format!("/v1/jobs/{job}"), None);
    assert_eq!((status, answer["state"].as_str()), (200, Some("running")), "{answer}");
    // A short wait ends before the job: still running, after the wait.
    let asked = std::time::Instant::now();
    let (_, answer) = c.api("ndb1", "GET", &format!("/v1/jobs/{job}?wait_ms=200"), None);
    assert_eq!(answer["state"], "running", "{answer}");
    assert!(asked.elapsed() >= Duration::from_millis(200), "{:?}", asked.elapsed());
    // A long wait is cut short by the job's end (the test client gives up after 10 s).
    let (status, answer) = c.api("ndb1", "GET", &format!("/v1/jobs/{job}?wait_ms=60000"), None);
    assert_eq!((status, answer["state"].as_str()), (200, Some("succeeded")), "{answer}");
    // An ended job is answered at once, whatever the wait.
    let (_, again) = c.api("ndb1", "GET", &format!("/v1/jobs/{job}?wait_ms=60000"), None);
    assert_eq!(again["state"], "succeeded");

    let (status, answer) = c.api("ndb1", "GET", &format!("/v1/jobs/{job}?wait_ms=soon"), None);
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("wait_ms"), "{answer}");
}

/// Raises this test process's own file limit (root may raise the hard one
/// too), for the connections it holds.
fn raise_own_file_limit(wanted: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted, hard.max(wanted)).unwrap();
    }
}

/// Starts the program of `cmd` with a soft file limit of `soft`.
fn limit_files(cmd: &mut std::process::Command, soft: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    use std::os::unix::process::CommandExt;
    // SAFETY: only the setrlimit system call runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
            setrlimit(Resource::RLIMIT_NOFILE, soft, hard)?;
            Ok(())
        });
    }
}

/// Whether the agent still holds `stream` open (no EOF, no reset).
fn held(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    matches!((&*stream).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// How long after `since` the agent closed `stream` (EOF or reset).
fn closed_after(mut stream: TcpStream, since: Instant) -> Duration {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return since.elapsed(),
            Err(e) => panic!("the agent kept the connection open for 10 s: {e}"),
        }
    }
}

/// Regression: 1,100 idle connections to an agent made it stop answering (out
/// of file descriptors, no timeouts), and the next backup failed at `agents`.
#[test]
fn backup_completes_while_1100_idle_connections_are_held_to_agents() {
    raise_own_file_limit(8192);
    let mut c = five_nodes();
    // Timeouts far beyond the test: only the connection limit makes room.
    for n in ["ndb1", "ndb2"] {
        c.dropin(
            n,
            "80-timeouts.toml",
            "[agent]\nheader_timeout = \"5m\"\nidle_timeout = \"5m\"\n",
        );
    }
    // ndb1 with the default soft limit of 1024 files (a unit without LimitNOFILE=), ndb2 with more.
    c.start_agent_with("ndb1", |cmd| limit_files(cmd, 1024));
    c.start_agent("ndb2");
    c.start_agent("ndb3");
    let floods: Vec<(&str, Vec<TcpStream>)> = ["ndb1", "ndb2"]
        .into_iter()
        .map(|n| {
            let address = &c.nodes[n].address;
            (n, (0..1100).map(|_| TcpStream::connect(address).unwrap()).collect())
        })
        .collect();

    let out = c.hwdr("head1", &["backup", "--id", ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(c.manifest(ID).unwrap()["status"], "complete");

    for (node, flood) in &floods {
        let open = flood.iter().filter(|s| held(s)).count();
        // The oldest idle ones made room for the leader; most were held throughout.
        assert!(flood.len() - open >= 1100 - 1024, "{node}: {open} of 1100 still open");
        assert!(open >= 500, "{node}: only {open} of 1100 still open");
        wait_until("the agent to log the evictions", Duration::from_secs(10), || {
            c.agent_log(node).contains("idle connections to make room")
        });
    }
    assert!(c.agent_log("ndb1").contains("leaves room for 768 connections at once"));
}

#[test]
fn agent_closes_connections_without_a_header_in_time_but_never_a_request_in_flight() {
    let mut c = five_nodes();
    // A job of 3 s: longer than both timeouts.
    c.dropin_everywhere(
        "70-kafka.toml",
        "[kafka]\nnode = \"ndb1\"\nrestore_command = [\"/bin/sleep\", \"3\"]\n",
    );
    c.dropin(
        "ndb1",
        "80-timeouts.toml",
        "[agent]\nheader_timeout = \"1s\"\nidle_timeout = \"2s\"\n",
    );
    c.start_agent("ndb1");
    let address = c.nodes["ndb1"].address.clone();
    let connect = || (TcpStream::connect(&address).unwrap(), Instant::now());

    let idle = connect();
    let (mut half, since) = connect();
    half.write_all(b"GET /v1/health HTTP/1.1\r\nHost: ndb1\r\n").unwrap();
    // A keep-alive connection that got its answer, then sends nothing.
    let (mut kept, _) = connect();
    kept.write_all(b"GET /v1/health HTTP/1.1\r\nHost: ndb1\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\"auth\"") {
        let n = kept.read(&mut buf).unwrap();
        assert!(n > 0, "no answer: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    let watch = |(stream, since): (TcpStream, Instant)| std::thread::spawn(move || closed_after(stream, since));
    let closes = [watch(idle), watch((half, since)), watch((kept, answered))];

    // A status request waits for the job, in flight longer than both timeouts.
    let _lock = c.hold_lock("restore", ID);
    let (status, created) = c.api(
        "ndb1",
        "POST",
        "/v1/jobs",
        Some(&format!(
            r#"{{"kind":"restore_command","node":"ndb1","backup_id":"{ID}","step":"kafka"}}"#
        )),
    );
    assert_eq!(status, 202, "{created}");
    let job = created["job_id"].as_str().unwrap();
    let (status, answer) = c.api("ndb1", "GET", &format!("/v1/jobs/{job}?wait_ms=60000"), None);
    assert_eq!((status, answer["state"].as_str()), (200, Some("succeeded")), "{answer}");

    let [idle, half, kept] = closes.map(|t| t.join().unwrap());
    let second = Duration::from_secs(1);
    assert!(
        idle >= second && idle < 5 * second,
        "idle connection closed after {idle:?}"
    );
    assert!(
        half >= second && half < 5 * second,
        "half a header: closed after {half:?}"
    );
    // Idle between requests: the idle timeout (2 s), not the header timeout.
    assert!(
        kept >= 3 * second / 2 && kept < 5 * second,
        "kept-alive connection closed after {kept:?}"
    );
    wait_until("the agent to log the timeouts", Duration::from_secs(10), || {
        c.agent_log("ndb1").contains("without a complete request header")
    });
}
