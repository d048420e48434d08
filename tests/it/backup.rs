//! Integration tests of `hwdr backup` on one host holding every role, against
//! the simulators in tests/sim. Run as root: the runbook's programs run as
//! `mysql`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{hwdr_bin, manifest_files, text, tree, Single};
use sha2::{Digest, Sha256};

const ID: &str = "2611231819";
const NDB_ID: &str = "263271819";

#[test]
fn complete_backup_stores_every_part_with_checksums() {
    let c = Single::new(&[(2, 2), (3, 2)]);
    let out = c.hwdr(&["backup", "--id", ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("backup {ID} complete")));

    let m = c.manifest(ID).expect("manifest written");
    assert_eq!(m["status"], "complete");
    assert_eq!(m["backup_id"], ID);
    assert_eq!(m["rondb"]["ndb_backup_id"], 263_271_819);
    assert_eq!(m["rondb"]["data_node_ids"], serde_json::json!([2, 3]));
    assert_eq!(m["rondb"]["parts"], serde_json::json!({"2": 2, "3": 2}));
    let result = &m["rondb"]["result"];
    assert_eq!(result["master_node"], 2);
    assert_eq!(result["mgm_node"], 1);
    assert!(result["records"].as_u64().unwrap() > 0);
    assert!(result["stop_gcp"].as_u64() >= result["start_gcp"].as_u64());

    // Every recorded file exists with its size and checksum, and every file
    // of the backup folder is recorded.
    let dir = c.backup_path(ID);
    let files = manifest_files(&m);
    for (path, size, sha) in &files {
        let bytes = fs::read(dir.join(path)).unwrap();
        assert_eq!(bytes.len() as u64, *size, "{path}");
        assert_eq!(&hex::encode(Sha256::digest(&bytes)), sha, "{path}");
    }
    let mut recorded: Vec<_> = files.iter().map(|f| f.0.clone()).collect();
    recorded.push("manifest.json".into());
    recorded.sort();
    assert_eq!(tree(&dir), recorded);

    // Two data nodes x two parts x (.ctl, .Data, .log).
    let parts: Vec<_> = recorded
        .iter()
        .filter(|p| p.starts_with(&format!("rondb/BACKUP-{NDB_ID}/")))
        .collect();
    assert_eq!(parts.len(), 12, "{parts:?}");
    for node in [2, 3] {
        for p in 1..=2 {
            for f in [
                format!("BACKUP-{NDB_ID}.{node}.ctl"),
                format!("BACKUP-{NDB_ID}-0.{node}.Data"),
                format!("BACKUP-{NDB_ID}.{node}.log"),
            ] {
                let rel = format!("rondb/BACKUP-{NDB_ID}/BACKUP-{NDB_ID}-PART-{p}-OF-2/{f}");
                assert!(recorded.contains(&rel), "missing {rel}");
            }
        }
    }

    // users.sql holds password hashes: owner only.
    let users = dir.join("rondb/users.sql");
    assert_eq!(fs::metadata(&users).unwrap().permissions().mode() & 0o777, 0o600);
    let users_text = fs::read_to_string(&users).unwrap();
    assert!(users_text.starts_with("-- Dump created by MySQL pump utility"));
    assert!(users_text.contains("CREATE USER"));
    assert!(!users_text.contains("'root'@"), "excluded users must not be dumped");
    let schemas = fs::read_to_string(dir.join("rondb/schemas.sql")).unwrap();
    assert!(schemas.contains("CREATE TABLE IF NOT EXISTS "));
    assert!(!schemas.lines().any(|l| l.starts_with("CREATE TABLE `")));
    let def = format!("config/{}", c.cluster_def.display().to_string().trim_start_matches('/'));
    assert_eq!(fs::read(dir.join(def)).unwrap(), fs::read(&c.cluster_def).unwrap());

    // The runbook's programs ran as mysql with a clean environment and argv.
    let mysql_uid = uzers::get_user_by_name("mysql").unwrap().uid();
    let runs = c.invocations();
    assert!(!runs.is_empty());
    for run in &runs {
        assert_eq!(run["uid"], mysql_uid, "{run}");
        assert_eq!(run["euid"], mysql_uid, "{run}");
        let env: Vec<_> = run["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(env, ["HOME", "LANG", "LOGNAME", "PATH", "USER"], "{run}");
    }
    let mgm = runs.iter().find(|r| r["program"] == "mgm-client.sh").unwrap();
    assert_eq!(
        mgm["argv"],
        serde_json::json!(["-e", format!("START BACKUP {NDB_ID} SNAPSHOTEND WAIT COMPLETED")])
    );
    let pump = runs.iter().find(|r| r["program"] == "mysqlpump").unwrap();
    let socket = c.sim.join("mysql.sock").display().to_string();
    assert_eq!(
        pump["argv"],
        serde_json::json!([
            "-S",
            socket,
            "--exclude-databases=%",
            "--exclude-users=root,mysql.sys,mysql.session,mysql.infoschema",
            "--users"
        ])
    );

    // The lock is gone, and list shows the backup as complete.
    assert!(!c.repo.join("lock").exists());
    let list = c.hwdr(&["list", "--json"]);
    assert!(list.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["id"], ID);
    assert_eq!(rows[0]["status"], "complete");
}

#[test]
fn single_file_layout_is_collected_too() {
    let c = Single::new(&[(2, 1)]);
    let out = c.hwdr(&["backup", "--id", ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = c.manifest(ID).unwrap();
    assert_eq!(m["rondb"]["parts"], serde_json::json!({"2": 1}));
    assert!(c
        .backup_path(ID)
        .join(format!("rondb/BACKUP-{NDB_ID}/BACKUP-{NDB_ID}.2.ctl"))
        .is_file());
}

#[test]
fn dry_run_prints_every_step_and_changes_nothing() {
    let c = Single::new(&[(2, 2)]);
    let out = c.hwdr(&["backup", "--id", ID, "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    let bin = c.sim.join("bin").display().to_string();
    for expected in [
        format!("backup {ID} (RonDB backup id {NDB_ID})"),
        format!("lock         on head1 as root: create {}/lock", c.repo.display()),
        format!("config       on head1 as root: copy {}", c.cluster_def.display()),
        format!("users        on head1 as mysql: {bin}/mysqlpump -S "),
        "--exclude-databases=% --exclude-users=root,mysql.sys,mysql.session,mysql.infoschema --users > ".into(),
        format!("schemas      on head1 as mysql: {bin}/mysql -S "),
        format!("{bin}/mysqldump -S "),
        "--no-data --skip-add-drop-table --triggers --routines --events --databases".into(),
        format!(
            "ndb-backup   on head1 as mysql: {bin}/mgm-client.sh -e 'START BACKUP {NDB_ID} SNAPSHOTEND WAIT COMPLETED'"
        ),
        "rondb-parts  on head1 as root: collect the parts of data nodes [2]".into(),
        "manifest     on head1 as root: write".into(),
    ] {
        assert!(plan.contains(&expected), "plan lacks {expected:?}:\n{plan}");
    }
    assert!(c.invocations().is_empty(), "a dry run must run nothing");
    assert_eq!(
        tree(&c.repo),
        ["hwdr-repo.json"],
        "a dry run must write nothing: {:?}",
        tree(&c.repo)
    );
}

/// Issue 16: a taken id gave exit 4 with no advice, and `--dry-run` of it
/// passed. Both name what holds it and the next free id (the next minute no
/// backup uses, past the taken ones) and how to pick it; the dry run fails
/// as the backup would, printing no plan.
#[test]
fn taken_id_in_the_repository_is_refused_and_kept_naming_the_next_free_id() {
    let c = Single::new(&[(2, 1)]);
    assert!(c.hwdr(&["backup", "--id", ID]).status.success());
    assert!(c.hwdr(&["backup", "--id", "2611231820"]).status.success());
    let before = fs::read(c.backup_path(ID).join("manifest.json")).unwrap();
    let expected = format!(
        "hwdr: error: backup id {ID} is already taken: {}/backups/{ID} holds the complete backup of ",
        c.repo.display()
    );
    let advice = "; the next free id is 2611231821 (2026-11-23 18:21): pick it with `--id 2611231821`, or omit \
                  --id to use the current minute\n";
    for args in [&["backup", "--id", ID][..], &["backup", "--id", ID, "--dry-run"]] {
        let out = c.hwdr(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {err}");
        assert!(err.starts_with(&expected) && err.ends_with(advice), "{args:?}: {err}");
        assert!(
            !text(&out.stdout).contains("dry run"),
            "{args:?}: {}",
            text(&out.stdout)
        );
    }
    assert_eq!(fs::read(c.backup_path(ID).join("manifest.json")).unwrap(), before);
    assert!(!c.repo.join("lock").exists());
    // A free id still passes the dry run.
    let out = c.hwdr(&["backup", "--id", "2611231821", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn taken_id_on_a_data_node_is_refused() {
    let c = Single::new(&[(2, 1)]);
    // A backup with this NDB id exists on the data node, unknown to the repository.
    fs::create_dir_all(c.backup_dir.join(format!("BACKUP/BACKUP-{NDB_ID}"))).unwrap();
    let out = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("RonDB backup id {NDB_ID} already exists on a data node")),
        "{err}"
    );
    assert!(
        err.ends_with("; pick another id with `--id yymmddHHMM`, or omit --id to use the current minute\n"),
        "{err}"
    );
    let m = c.manifest(ID).unwrap();
    assert_eq!(m["status"], "failed");
    assert_eq!(m["failed_step"], "head1/ndb-backup");
}

/// Issue 16: errors of the command line start `hwdr: error:` as every other
/// error does (clap's own was `error:`), keeping clap's usage and tip lines
/// and its exit code 2.
#[test]
fn invalid_ids_and_arguments_are_refused_with_hwdrs_error_prefix() {
    let c = Single::new(&[(2, 1)]);
    for bad in ["2613231819", "26112318", "abcdefghij", "2602301200"] {
        let out = c.hwdr(&["backup", "--id", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!(
                "hwdr: error: invalid value '{bad}' for '--id <ID>': backup id '{bad}'"
            )),
            "{err}"
        );
    }
    let out = c.hwdr(&["restore", "--bogus", ID]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("hwdr: error: unexpected argument '--bogus' found\n"),
        "{err}"
    );
    assert!(err.contains("tip: to pass '--bogus' as a value"), "{err}");
    assert!(err.contains("\nUsage: hwdr restore [OPTIONS] <ID>"), "{err}");
    assert!(!err.contains("\nerror:"), "{err}");
    // Help is no error: on stdout, exit 0, unchanged.
    let out = c.hwdr(&["list", "--help"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).starts_with("List the backups"),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stderr).is_empty());
}

#[test]
fn unreachable_management_server_fails_the_backup() {
    let c = Single::new(&[(2, 1)]);
    c.control("mgm-client.sh", "unreachable");
    let out = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot reach the RonDB management server: Unable to connect with connect string"),
        "{err}"
    );
    let m = c.manifest(ID).unwrap();
    assert_eq!(m["status"], "failed");
    assert_eq!(m["failed_step"], "head1/ndb-backup");
    let steps = &m["nodes"][0]["steps"];
    let parts = steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "rondb-parts")
        .unwrap();
    assert_eq!(parts["status"], "skipped");
    let list: serde_json::Value = serde_json::from_slice(&c.hwdr(&["list", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["status"], "failed");
}

#[test]
fn failing_mysqlpump_leaves_nothing_half_written() {
    let c = Single::new(&[(2, 1)]);
    c.control("mysqlpump", "fail");
    let out = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("mysqlpump exited with status"),
        "{}",
        text(&out.stderr)
    );
    let m = c.manifest(ID).unwrap();
    assert_eq!(m["status"], "failed");
    assert_eq!(m["failed_step"], "head1/users");
    let files = tree(&c.backup_path(ID));
    assert!(!files.iter().any(|f| f.contains("users.sql")), "{files:?}");
    assert!(!files.iter().any(|f| f.contains(".tmp-")), "{files:?}");
    // Nothing ran after the failing step.
    assert!(!c.invocations().iter().any(|r| r["program"] == "mgm-client.sh"));
}

#[test]
fn incomplete_part_is_detected() {
    let c = Single::new(&[(2, 2), (3, 2)]);
    c.control("mgm-client.sh", "skip-log:3");
    let out = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("data node 3: part 1 of 2 lacks its .log file"), "{err}");
    let m = c.manifest(ID).unwrap();
    assert_eq!(m["status"], "failed");
    assert_eq!(m["failed_step"], "head1/rondb-parts");
}

#[test]
fn missing_data_node_part_is_detected() {
    let c = Single::new(&[(2, 1), (3, 1)]);
    c.control("mgm-client.sh", "skip-node:3");
    let out = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("data node 3 wrote no backup files"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(c.manifest(ID).unwrap()["status"], "failed");
}

#[test]
fn unknown_config_key_is_named_with_its_file() {
    let c = Single::new(&[(2, 1)]);
    c.dropin("20-rondb.toml", "[rondb]\nusr = \"mysql\"\n");
    let out = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains("hwdr.d/20-rondb.toml: ") && err.contains("unknown field `usr`"),
        "{err}"
    );
    assert_eq!(tree(&c.repo), ["hwdr-repo.json"]);
}

#[test]
fn missing_user_is_named_with_its_file_and_key() {
    let c = Single::new(&[(2, 1)]);
    c.dropin("20-rondb.toml", "[rondb]\nuser = \"msql\"\n");
    let expected = "hwdr.d/20-rondb.toml: [rondb] user: no such user 'msql'";
    let check = c.hwdr(&["config", "check"]);
    assert_eq!(check.status.code(), Some(3));
    assert!(text(&check.stdout).contains(expected), "{}", text(&check.stdout));
    let out = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains(expected), "{}", text(&out.stderr));
}

#[test]
fn config_check_reports_what_it_checked() {
    let c = Single::new(&[(2, 1)]);
    let out = c.hwdr(&["config", "check"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for expected in [
        "ok    configuration parsed and valid",
        "ok    this host is node 'head1'",
        "ok    hwdr.toml: [rondb] user: user 'mysql' exists",
        "ok    hwdr.toml: [rondb] mgm_client: ",
        "ok    hwdr.toml: [repository] path: ",
        "all checks passed",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in:\n{stdout}");
    }
    // A repository that is not there fails the check.
    fs::remove_dir_all(&c.repo).unwrap();
    let out = c.hwdr(&["config", "check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stdout).contains("FAIL  hwdr.toml: [repository] path: "));
}

/// Issue 16: right after a backup used mysqld, `config check` warned that
/// its socket did not exist: it looked for a file (the simulated mysqld has
/// none), not at what the backup does. It asks mysqld as the backup does
/// (`SHOW DATABASES`, as `[rondb] user`); one that does not answer is a
/// warning naming the socket, the user and the client's error.
#[test]
fn config_check_asks_mysqld_as_the_backup_does() {
    let c = Single::new(&[(2, 1)]);
    assert!(c.hwdr(&["backup", "--id", ID]).status.success());
    let socket = c.sim.join("mysql.sock");
    let out = c.hwdr(&["config", "check"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let expected = format!(
        "ok    hwdr.toml: [rondb] socket: mysqld answers on {} as mysql (",
        socket.display()
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(!stdout.contains("warn  hwdr.toml: [rondb] socket"), "{stdout}");

    c.dropin("30-socket.toml", "[rondb]\nsocket = \"/nonexistent/mysql.sock\"\n");
    let out = c.hwdr(&["config", "check"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "a warning: {stdout}");
    let expected = "warn  hwdr.d/30-socket.toml: [rondb] socket: mysqld does not answer on /nonexistent/mysql.sock as \
                    mysql (the socket does not exist: is mysqld running on this node?): mysql (SHOW DATABASES) \
                    exited with status 1";
    assert!(stdout.contains(expected), "{stdout}");
    assert!(stdout.contains("Can't connect to local MySQL server"), "{stdout}");
}

#[test]
fn concurrent_backup_is_refused_and_a_stopped_backup_releases_the_lock() {
    let c = Single::new(&[(2, 1)]);
    c.control("mgm-client.sh", "hang");
    let mut first = c
        .hwdr_cmd(&["backup", "--id", ID])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = c.repo.join("lock");
    let start = Instant::now();
    while !(lock.exists() && c.invocations().iter().any(|r| r["program"] == "mgm-client.sh")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "first backup did not reach START BACKUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = c.hwdr(&["backup", "--id", "2611231820"]);
    assert_eq!(second.status.code(), Some(5), "{}", text(&second.stderr));
    assert!(text(&second.stderr).contains("the repository is locked: backup of backup 2611231819 by pid"));
    assert!(!c.backup_path("2611231820").exists());

    // systemctl stop sends SIGTERM: the backup fails cleanly and unlocks.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(!lock.exists());
    let m = c.manifest(ID).unwrap();
    assert_eq!(m["status"], "failed");
    assert!(
        m["error"].as_str().unwrap().contains("stopped by a signal"),
        "{}",
        m["error"]
    );
}

#[test]
fn hanging_program_times_out() {
    let c = Single::new(&[(2, 1)]);
    c.dropin("10-timeouts.toml", "[backup]\nndb_backup_timeout = \"2s\"\n");
    c.control("mgm-client.sh", "hang");
    let out = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("mgm-client.sh timed out after 2s"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(c.manifest(ID).unwrap()["status"], "failed");
    assert!(!c.repo.join("lock").exists());
    // The killed START BACKUP is aborted on the data nodes too.
    assert!(
        c.invocations()
            .iter()
            .any(|r| r["program"] == "mgm-client.sh" && r["argv"][1] == format!("ABORT BACKUP {NDB_ID}")),
        "{:?}",
        c.invocations()
    );
}

#[test]
fn stale_lock_is_reported_not_stolen_and_unlock_removes_it() {
    let c = Single::new(&[(2, 1)]);
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    let lock = c.repo.join("lock");
    fs::write(
        &lock,
        format!(r#"{{"host":"{host}","pid":4194305,"pid_start":1,"since":"2026-11-23T18:00:00Z","operation":"backup","backup_id":"2611231800"}}"#),
    )
    .unwrap();
    let out = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(5));
    let err = text(&out.stderr);
    assert!(err.contains("stale lock") && err.contains("hwdr unlock"), "{err}");
    assert!(lock.exists());
    let unlock = c.hwdr(&["unlock"]);
    assert!(unlock.status.success(), "{}", text(&unlock.stderr));
    assert!(!lock.exists());
    assert!(c.hwdr(&["backup", "--id", ID]).status.success());
}

#[test]
fn repository_of_another_cluster_is_refused() {
    let c = Single::new(&[(2, 1)]);
    fs::write(c.repo.join("hwdr-repo.json"), r#"{"format":1,"cluster":"staging"}"#).unwrap();
    let out = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("belongs to cluster 'staging', not 'prod'"));
}

#[test]
fn backup_files_keep_their_owner_root_and_group_modes() {
    let c = Single::new(&[(2, 1)]);
    assert!(c.hwdr(&["backup", "--id", ID]).status.success());
    let dir = c.backup_path(ID);
    let manifest = fs::metadata(dir.join("manifest.json")).unwrap();
    assert_eq!(manifest.uid(), 0);
    // The parts on the data node were written by RonDB as mysql.
    let mysql_uid = uzers::get_user_by_name("mysql").unwrap().uid();
    let ctl = c
        .backup_dir
        .join(format!("BACKUP/BACKUP-{NDB_ID}/BACKUP-{NDB_ID}.2.ctl"));
    assert_eq!(fs::metadata(ctl).unwrap().uid(), mysql_uid);
}

/// Issue 9: an unmounted repository looked empty ("no backups", exit 0) and
/// dry runs succeeded. A missing folder, and an empty one (an unmounted NFS
/// mount point), now fail every command that reads the repository, until
/// `hwdr repo init` marks the folder.
#[test]
fn an_unmounted_repository_fails_every_command_and_an_empty_folder_needs_repo_init() {
    let c = Single::new(&[(2, 1)]);
    assert!(c.hwdr(&["backup", "--id", ID]).status.success());
    let commands: [&[&str]; 11] = [
        &["list"],
        &["list", "--json"],
        &["verify", "--latest"],
        &["verify", ID],
        &["prune", "--dry-run"],
        &["prune"],
        &["backup", "--dry-run"],
        &["backup"],
        &["restore", ID, "--plan"],
        &["drill", "--latest"],
        &["unlock"],
    ];
    let prom = c.dir.path().join("state/hwdr.prom");
    let missing = format!(
        "repository {} does not exist or is not a folder (is it mounted?)",
        c.repo.display()
    );
    let unmarked = format!(
        "repository {} is not an hwdr repository (no hwdr-repo.json): is it mounted? To create one there, run \
         `hwdr repo init`",
        c.repo.display()
    );
    let mounted = c.dir.path().join("mounted");
    fs::rename(&c.repo, &mounted).unwrap();
    for (state, expected) in [("missing", &missing), ("empty", &unmarked)] {
        if state == "empty" {
            fs::create_dir(&c.repo).unwrap();
        }
        for args in commands {
            let out = c.hwdr(args);
            assert_eq!(out.status.code(), Some(1), "{state} {args:?}: {}", text(&out.stderr));
            assert!(
                text(&out.stderr).contains(expected.as_str()),
                "{state} {args:?}: {}",
                text(&out.stderr)
            );
            assert!(!text(&out.stdout).contains("no backups"), "{state} {args:?}");
        }
        // The daily backup that could not run says so in the metrics.
        let metrics = fs::read_to_string(&prom).unwrap();
        assert!(metrics.contains("hwdr_repository_ok{cluster=\"prod\"} 0"), "{metrics}");
        assert!(!metrics.contains("hwdr_backups{"), "{metrics}");
        let check = c.hwdr(&["config", "check"]);
        assert_eq!(check.status.code(), Some(3));
        assert!(
            text(&check.stdout).contains(&format!("FAIL  hwdr.toml: [repository] path: {expected}")),
            "{}",
            text(&check.stdout)
        );
    }
    assert_eq!(
        tree(&c.repo),
        Vec::<String>::new(),
        "nothing was written into the mount point"
    );

    // `hwdr repo init` refuses a folder that is not empty and not a repository,
    // and another cluster's repository; it never creates the folder.
    fs::write(c.repo.join("notes.txt"), "x").unwrap();
    let refused = c.hwdr(&["repo", "init"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("is not empty and not an hwdr repository (it holds notes.txt)"),
        "{}",
        text(&refused.stderr)
    );
    fs::remove_file(c.repo.join("notes.txt")).unwrap();
    fs::remove_dir(&c.repo).unwrap();
    let nowhere = c.hwdr(&["repo", "init"]);
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(!c.repo.exists());
    let other = c.dir.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("hwdr-repo.json"), r#"{"format":1,"cluster":"staging"}"#).unwrap();
    c.dropin(
        "30-repo.toml",
        &format!("[repository]\npath = \"{}\"\n", other.display()),
    );
    let theirs = c.hwdr(&["repo", "init"]);
    assert_eq!(theirs.status.code(), Some(1));
    assert!(text(&theirs.stderr).contains("belongs to cluster 'staging', not 'prod'"));
    fs::remove_file(c.config.parent().unwrap().join("hwdr.d/30-repo.toml")).unwrap();

    // Mounted again: everything works, the metric says so, and init is idempotent.
    fs::rename(&mounted, &c.repo).unwrap();
    let again = c.hwdr(&["repo", "init"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("already is the repository of cluster 'prod'"));
    let list = c.hwdr(&["list"]);
    assert!(list.status.success());
    assert!(text(&list.stdout).contains(ID), "{}", text(&list.stdout));
    assert!(c.hwdr(&["verify", "--latest"]).status.success());
    let metrics = fs::read_to_string(&prom).unwrap();
    assert!(metrics.contains("hwdr_repository_ok{cluster=\"prod\"} 1"), "{metrics}");
    let check = c.hwdr(&["config", "check"]);
    assert!(check.status.success(), "{}", text(&check.stdout));
    assert!(text(&check.stdout).contains("is the repository of cluster 'prod' (hwdr-repo.json)"));
}

/// Issue 10: `keep_local` sorted the local RonDB folders by id, so after one
/// backup with a far-future id every later backup's local copy was deleted at
/// once. The newest by backup time stays.
#[test]
fn keep_local_keeps_the_newest_backup_by_time_not_by_id() {
    let c = Single::new(&[(2, 1)]);
    for id in ["9912312359", "2611231819", "2611231820"] {
        let out = c.hwdr(&["backup", "--id", id]);
        assert!(out.status.success(), "{id}: {}", text(&out.stderr));
    }
    let local = |ndb: &str| c.backup_dir.join(format!("BACKUP/BACKUP-{ndb}"));
    assert!(
        local("263271820").is_dir(),
        "the newest backup's local copy must stay: {:?}",
        tree(&c.backup_dir)
    );
    assert!(!local("263271819").exists());
    assert!(!local("993652359").exists(), "older by time, whatever its id");
}

/// Issue 11: a backup that failed fast held its minute, and the operator's
/// immediate retry got "id taken" (exit 4). Without --id the retry now waits
/// for the next minute; the failed backup stays as it was. The clock is
/// faked with libfaketime (LD_PRELOAD; the binary links glibc dynamically).
#[test]
fn a_retry_in_a_taken_minute_waits_for_the_next_one_and_overwrites_nothing() {
    let c = Single::new(&[(2, 1)]);
    let at_18_19_57 = |args: &[&str]| {
        Command::new("faketime")
            .arg("2026-11-23 18:19:57")
            .arg(hwdr_bin())
            .arg("--config")
            .arg(&c.config)
            .args(args)
            .output()
            .expect("faketime (Debian package faketime, see make deps)")
    };
    c.control("mysqlpump", "fail-once");
    let first = at_18_19_57(&["backup"]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));
    let failed = c.backup_path(ID);
    assert_eq!(c.manifest(ID).unwrap()["status"], "failed");
    let files_before = tree(&failed);
    let manifest_before = fs::read(failed.join("manifest.json")).unwrap();

    // A dry run says the backup would wait, and plans the next minute's id (issue 16).
    let dry = at_18_19_57(&["backup", "--dry-run"]);
    let stdout = text(&dry.stdout);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(
        stdout.starts_with(&format!(
            "backup id {ID} is taken (failed backup of 18:19): the backup would wait 3 s for 2611231820\n"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("START BACKUP 263271820 "), "{stdout}");
    assert!(stdout.ends_with("dry run: nothing was changed\n"), "{stdout}");

    let start = Instant::now();
    let retry = at_18_19_57(&["backup"]);
    let err = text(&retry.stderr);
    assert!(retry.status.success(), "{err}");
    assert!(start.elapsed() >= Duration::from_secs(2), "{:?}", start.elapsed());
    assert!(
        err.contains(&format!(
            "backup id {ID} is taken (failed backup of 18:19); waiting 3 s for 2611231820"
        )),
        "{err}"
    );
    assert!(text(&retry.stdout).contains("backup 2611231820 complete"));
    assert_eq!(c.manifest("2611231820").unwrap()["status"], "complete");
    assert_eq!(tree(&failed), files_before);
    assert_eq!(fs::read(failed.join("manifest.json")).unwrap(), manifest_before);

    // An explicit --id that is taken stays an error, and says what to do:
    // the next minute no backup uses (issue 16).
    let explicit = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(explicit.status.code(), Some(4));
    let err = text(&explicit.stderr);
    assert!(
        err.contains(&format!(
            "/backups/{ID} holds the failed backup of 18:19; the next free id is 2611231821 (2026-11-23 18:21): \
             pick it with `--id 2611231821`, or omit --id to use the current minute"
        )),
        "{err}"
    );
}

/// Issue 14: `hwdr list | head -1` panicked on the broken pipe (exit 101). A
/// closed stdout stops the printing; the command carries on and succeeds.
#[test]
fn list_into_a_closed_pipe_does_not_panic() {
    let c = Single::new(&[(2, 1)]);
    for id in ["2611231819", "2611231820", "2611231821"] {
        assert!(c.hwdr(&["backup", "--id", id]).status.success());
    }
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["verify", "--latest"],
        &["prune", "--dry-run"],
    ] {
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(read);
        let out = c
            .hwdr_cmd(args)
            .stdout(Stdio::from(write))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
