//! Object storage failing at a chosen moment of a backup (the agents are
//! slowed by a fault point between blocks): the S3 server stopped
//! mid-upload, a server that keeps answering 503. The backup fails and says
//! where; nothing is listed complete; after the server is back (and the
//! stale lock of the dead leader removed) the next backup completes and
//! verifies.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::cluster::{wait_until, Cluster};
use crate::common::{hwdr_bin, text};
use crate::restore::ID;
use crate::s3::hopsfs_cluster;
use testkit::faultproxy::{Fault, FaultProxy, Plan};
use testkit::garage::Garage;

/// Agents that pause a second after their first three blocks.
const SLOW_UPLOADS: &str = "hopsfs-upload-block=3*off->return(sleep:1000)";

fn start_slow_agents(c: &mut Cluster) {
    for n in ["node1", "node2", "node3"] {
        c.start_agent_with(n, |cmd| {
            cmd.env("FAILPOINTS", SLOW_UPLOADS);
        });
    }
}

/// Block objects in the repository, if it answers.
fn stored_blocks(c: &Cluster) -> usize {
    let mut n = 0;
    let _ = c.backend().list("blocks/", &mut |_| {
        n += 1;
        Ok(())
    });
    n
}

/// Starts `hwdr backup --id <id>` on head1; waits until some blocks are
/// stored, then runs `fault`; returns the backup's output.
fn backup_faulted_midway(c: &Cluster, id: &str, fault: impl FnOnce()) -> std::process::Output {
    let child = Command::new(hwdr_bin())
        .arg("--config")
        .arg(&c.nodes["head1"].config)
        .args(["backup", "--id", id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("some blocks stored", Duration::from_secs(60), || stored_blocks(c) >= 4);
    fault();
    child.wait_with_output().unwrap()
}

/// No backup is listed complete but `complete` ones.
fn assert_listed(c: &Cluster, complete: &[&str]) {
    let out = c.hwdr("head1", &["list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["status"] == "complete")
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, complete, "{list}");
}

/// The dead leader's lock is reported stale, naming `hwdr unlock`; unlocked.
fn unlock_stale(c: &Cluster, id: &str) {
    let refused = c.hwdr("head1", &["backup", "--id", id]);
    assert_eq!(refused.status.code(), Some(5), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("stale lock"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        text(&refused.stderr).contains("hwdr unlock"),
        "{}",
        text(&refused.stderr)
    );
    let out = c.hwdr("head1", &["unlock"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The next backup, with agents at full speed, completes and verifies.
fn next_backup_completes(c: &mut Cluster, id: &str) {
    for n in ["node1", "node2", "node3"] {
        c.kill_agent(n);
        c.start_agent(n);
    }
    let out = c.hwdr("head1", &["backup", "--id", id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = c.hwdr("head1", &["verify", "--full", id]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn an_s3_server_stopped_mid_upload_fails_the_backup_and_the_next_one_completes() {
    let mut garage = Garage::start().unwrap();
    let mut c = hopsfs_cluster(&garage, "prod", None);
    start_slow_agents(&mut c);
    let out = backup_faulted_midway(&c, ID, || garage.stop().unwrap());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("s3://{}/prod", garage.bucket())), "{stderr}");
    garage.restart().unwrap();
    assert_listed(&c, &[]);
    unlock_stale(&c, "2611231820");
    next_backup_completes(&mut c, "2611231821");
    assert_listed(&c, &["2611231821"]);
}

#[test]
fn a_server_that_keeps_answering_503_fails_the_backup_naming_the_object() {
    let garage = Garage::start().unwrap();
    let proxy = FaultProxy::start(garage.s3_addr()).unwrap();
    let mut c = hopsfs_cluster(&garage, "prod", Some(proxy.url()));
    start_slow_agents(&mut c);
    let out = backup_faulted_midway(&c, ID, || proxy.set(Plan::Always(Fault::SlowDown)));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("storing s3://{}/prod/blocks/BP-", garage.bucket())),
        "{stderr}"
    );
    proxy.set(Plan::Pass);
    assert_listed(&c, &[]);
    unlock_stale(&c, "2611231820");
    next_backup_completes(&mut c, "2611231821");
}
