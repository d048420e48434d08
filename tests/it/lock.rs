//! The repository lock through the built binary: the leases in `locks/`, the
//! create-only guard `hwdr repo init` records, stale and foreign leases, and
//! `hwdr unlock` (the races themselves: `src/repo/lock/tests.rs`).

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::common::{text, Single};

const ID: &str = "2611231819";

fn this_host() -> String {
    nix::unistd::gethostname().unwrap().to_string_lossy().into_owned()
}

/// The leases in the repository (file names).
fn leases(c: &Single) -> Vec<String> {
    let Ok(dir) = fs::read_dir(c.repo.join("locks")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// Writes the lease another process would hold, lasting `lease_ms`.
fn write_lease(c: &Single, host: &str, pid: u32, lease_ms: u64) -> PathBuf {
    fs::create_dir_all(c.repo.join("locks")).unwrap();
    let path = c.repo.join(format!("locks/{host}-{pid}-00000000000000ab.json"));
    fs::write(
        &path,
        format!(
            r#"{{"host":"{host}","pid":{pid},"pid_start":1,"since":"2026-11-23T18:00:00Z","operation":"backup","backup_id":"2611231800","lease_ms":{lease_ms}}}"#
        ),
    )
    .unwrap();
    path
}

fn marker(c: &Single) -> Value {
    serde_json::from_slice(&fs::read(c.repo.join("hwdr-repo.json")).unwrap()).unwrap()
}

#[test]
fn repo_init_records_whether_the_store_honours_create_only_writes() {
    let c = Single::new(&[(2, 1)]);
    // A folder honours them (a hard link never replaces a name).
    assert_eq!(marker(&c)["create_only"], true);

    // A marker from before the probe still opens, and init adds the answer.
    fs::write(c.repo.join("hwdr-repo.json"), r#"{"format":2,"cluster":"prod"}"#).unwrap();
    assert!(c.hwdr(&["list"]).status.success());
    let out = c.hwdr(&["repo", "init"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("already is the repository of cluster 'prod'; hwdr-repo.json now records:")
            && said.contains("the store honours create-only writes"),
        "{said}"
    );
    assert_eq!(marker(&c)["create_only"], true);
    assert_eq!(marker(&c)["format"], 2);
    let again = c.hwdr(&["repo", "init"]);
    assert!(text(&again.stdout).contains("nothing to do"), "{}", text(&again.stdout));
    assert_eq!(
        crate::common::tree(&c.repo),
        ["hwdr-repo.json"],
        "the probes were removed, nothing else written"
    );

    // With the guard, a backup holds both its lease and `lock`; it leaves neither.
    assert!(c.hwdr(&["backup", "--id", ID]).status.success());
    assert_eq!(leases(&c), Vec::<String>::new());
    assert!(!c.repo.join("lock").exists());
}

#[test]
fn a_dead_processes_lease_is_reported_stale_and_unlock_removes_it() {
    let c = Single::new(&[(2, 1)]);
    let host = this_host();
    // A pid above the kernel's maximum is never alive.
    let lease = write_lease(&c, &host, 4_194_305, 3_600_000);
    let out = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(5));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "stale lock {}: backup of backup 2611231800 by pid 4194305 on host {host}",
            lease.display()
        )) && err.contains("but that process is gone; check the backup it left, then run `hwdr unlock`"),
        "{err}"
    );
    assert!(lease.exists(), "never taken over");
    assert!(!c.backup_path(ID).exists());

    let unlock = c.hwdr(&["unlock"]);
    assert!(unlock.status.success(), "{}", text(&unlock.stderr));
    let said = text(&unlock.stdout);
    assert!(
        said.contains("removed the lock: backup of backup 2611231800 by pid 4194305")
            && said.contains(&format!(": that process is gone ({})", lease.display())),
        "{said}"
    );
    assert_eq!(leases(&c), Vec::<String>::new());
    assert!(c.hwdr(&["backup", "--id", ID]).status.success());
    assert_eq!(leases(&c), Vec::<String>::new());
}

#[test]
fn another_hosts_lease_refuses_until_it_runs_out_or_unlock_force() {
    let c = Single::new(&[(2, 1)]);
    let lease = write_lease(&c, "head2", 42, 3_600_000);
    let out = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(5));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "the repository is locked: backup of backup 2611231800 by pid 42 on host head2 since 2026-11-23 18:00:00 \
             UTC ({})",
            lease.display()
        )),
        "{err}"
    );
    let unlock = c.hwdr(&["unlock"]);
    assert_eq!(unlock.status.code(), Some(5));
    assert!(
        text(&unlock.stderr).contains("the lock is not stale: backup of backup 2611231800 by pid 42 on host head2"),
        "{}",
        text(&unlock.stderr)
    );
    assert!(lease.exists());

    // Not renewed for longer than it lasts: stale, by the store's clock.
    write_lease(&c, "head2", 42, 1);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let out = c.hwdr(&["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(5));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "stale lock {}: backup of backup 2611231800 by pid 42",
            lease.display()
        )) && err.contains("but that process is gone (its lease ran out "),
        "{err}"
    );
    let unlock = c.hwdr(&["unlock"]);
    assert!(unlock.status.success(), "{}", text(&unlock.stderr));
    assert!(
        text(&unlock.stdout).contains(": its lease ran out "),
        "{}",
        text(&unlock.stdout)
    );
    assert!(!lease.exists());

    // A live one goes only with --force.
    write_lease(&c, "head2", 42, 3_600_000);
    let unlock = c.hwdr(&["unlock", "--force"]);
    assert!(unlock.status.success(), "{}", text(&unlock.stderr));
    assert!(
        text(&unlock.stdout).contains(&format!(": removed with --force ({})", lease.display())),
        "{}",
        text(&unlock.stdout)
    );
    assert!(c.hwdr(&["backup", "--id", ID]).status.success());
}

/// `hwdr unlock --force` under a running backup: the backup notices its
/// lease is gone at its next renewal and stops, failed, saying so.
#[cfg(feature = "failpoints")]
#[test]
fn a_backup_whose_lease_is_removed_stops_with_lost_the_lock() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let c = Single::new(&[(2, 1)]);
    c.control("mgm-client.sh", "hang");
    let mut first = c
        .hwdr_cmd(&["backup", "--id", ID])
        // Short enough to notice the removal soon, long enough that a
        // renewal on a loaded machine is never late by half a lease.
        .env("FAILPOINTS", "lock-lease-ms=return(5000)")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !(c.repo.join("lock").exists() && c.invocations().iter().any(|r| r["program"] == "mgm-client.sh")) {
        if first.try_wait().unwrap().is_some() {
            let mut err = String::new();
            std::io::Read::read_to_string(first.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the backup ended before START BACKUP:\n{err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the backup did not reach START BACKUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let held = leases(&c);
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(
        held[0].starts_with(&format!("{}-{}-", this_host().replace('.', "_"), first.id())),
        "{held:?}"
    );

    let refused = c.hwdr(&["unlock"]);
    assert_eq!(refused.status.code(), Some(5));
    let forced = c.hwdr(&["unlock", "--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let said = text(&forced.stdout);
    assert!(
        said.contains(&format!(
            "removed the lock: backup of backup {ID} by pid {}",
            first.id()
        )) && said.contains(&format!("removed with --force ({}/lock, ", c.repo.display())),
        "{said}"
    );

    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let m = c.manifest(ID).unwrap();
    assert_eq!(m["status"], "failed");
    let error = m["error"].as_str().unwrap();
    assert!(
        error.contains("lost the repository lock: its lease")
            && error.contains("was removed (by `hwdr unlock --force`?)"),
        "{error}"
    );
    assert!(!error.contains("stopped by a signal"), "{error}");
    assert_eq!(leases(&c), Vec::<String>::new());
}

/// Two head nodes start a backup at the same moment, each believing it
/// leads (`--force-leader`, as in a split brain): exactly one proceeds, the
/// other is refused with the lock's exit code naming the holder. On a
/// folder (create-only honoured) and on Garage (create-only ignored: the
/// leases alone decide), several times over. The data node takes 1.5 s per
/// part (a fault point), so the two backups overlap.
#[cfg(feature = "failpoints")]
#[test]
fn two_backups_started_at_once_on_two_heads_exactly_one_proceeds() {
    use crate::common::cluster::Cluster;
    use crate::common::hwdr_bin;
    use std::process::{Command, Stdio};
    let garage = testkit::garage::Garage::start().unwrap();
    let posix = |repo: &std::path::Path| format!("path = \"{}\"\n", repo.display());
    type Repository = Box<dyn FnOnce(&std::path::Path) -> String>;
    let repositories: [(&str, Repository); 2] = [
        ("posix", Box::new(posix)),
        ("s3", Box::new(crate::s3::s3_repository(&garage, "race", None))),
    ];
    for (store, repository) in repositories {
        let mut c = Cluster::with_repository(
            &[
                ("head1", &["head"], &[]),
                ("head2", &["head"], &[]),
                ("ndb1", &["rondb"], &[2]),
            ],
            1,
            repository,
        );
        c.start_agent_with("ndb1", |cmd| {
            // Long enough that the second start, however slow on a busy
            // machine, meets the first one still holding the lock.
            cmd.env("FAILPOINTS", "rondb-copy-part=return(sleep:5000)");
        });
        for round in 0..3 {
            let ids = [format!("26112318{round}0"), format!("26112318{round}1")];
            let racing: Vec<_> = ["head1", "head2"]
                .iter()
                .zip(&ids)
                .map(|(head, id)| {
                    Command::new(hwdr_bin())
                        .arg("--config")
                        .arg(&c.nodes[*head].config)
                        .args(["backup", "--id", id, "--force-leader"])
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            let outs: Vec<_> = racing.into_iter().map(|p| p.wait_with_output().unwrap()).collect();
            let codes: Vec<_> = outs.iter().map(|o| o.status.code()).collect();
            let winner = codes.iter().position(|c| *c == Some(0));
            let loser = codes.iter().position(|c| *c == Some(5));
            let (Some(winner), Some(loser)) = (winner, loser) else {
                panic!(
                    "{store} round {round}: exit codes {codes:?}, not one 0 and one 5:\n{}\n{}",
                    text(&outs[0].stderr),
                    text(&outs[1].stderr)
                );
            };
            assert!(
                text(&outs[loser].stderr).contains("the repository is locked: backup of backup"),
                "{store}: {}",
                text(&outs[loser].stderr)
            );
            assert_eq!(c.manifest(&ids[winner]).unwrap()["status"], "complete", "{store}");
            assert!(c.manifest(&ids[loser]).is_none(), "{store}");
        }
    }
}
