//! `hwdr restore <id> --status` from another terminal shows, under the step
//! that runs, each node's progress (issue 16): the leader records what every
//! job reports, its own node's job (in-process) as the agents' ones, and the
//! lines go away when the step ends.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cluster::Cluster;
use crate::common::scenario::{simctl, step_states};
use crate::common::{hwdr_bin, text};
use testkit::gen::GenSpec;

const ID: &str = "2611231819";

/// node1 (head, rondb 2, hopsfs: the leader, which restores its own blocks
/// in-process), node2 (rondb 3 + hopsfs), node3 (hopsfs), 60 blocks on each
/// (replication 3); backed up, then wiped as after a redeploy.
fn backed_up_and_wiped() -> (Cluster, Vec<std::path::PathBuf>) {
    let mut c = Cluster::new(
        &[
            ("node1", &["head", "rondb", "hopsfs"], &[2]),
            ("node2", &["rondb", "hopsfs"], &[3]),
            ("node3", &["hopsfs"], &[]),
        ],
        2,
    );
    let generated = c.with_hopsfs(GenSpec {
        nodes: 3,
        blocks: 60,
        block_pools: 1,
        replication: 3,
        max_size: 30_000,
        ..GenSpec::default()
    });
    let dirs: Vec<_> = generated.nodes.iter().map(|n| n.data_dir.clone()).collect();
    let listed: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    simctl(&c, &["blocks", "--data-dirs", &listed.join(",")]);
    for n in ["node2", "node3"] {
        c.start_agent_with(n, |cmd| {
            cmd.env("FAILPOINTS", SLOW_PLACE);
        });
    }
    let out = c.hwdr("node1", &["backup", "--id", ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    simctl(&c, &["wipe"]);
    for d in &dirs {
        fs::remove_dir_all(d).unwrap();
    }
    for entry in fs::read_dir(&c.sim).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("ndb") {
            let _ = fs::remove_dir_all(entry.path().join("backups/BACKUP"));
        }
    }
    (c, dirs)
}

/// Every block placed takes 100 ms: the `hopsfs` step runs for seconds.
const SLOW_PLACE: &str = "hopsfs-place-block=return(sleep:100)";

/// The restore on node1, slowed like the agents, in the background.
fn start_restore(c: &Cluster) -> Child {
    Command::new(hwdr_bin())
        .arg("--config")
        .arg(&c.nodes["node1"].config)
        .args(["restore", ID])
        .env("FAILPOINTS", SLOW_PLACE)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The progress lines under the `hopsfs` step of a `--status` text.
fn hopsfs_progress(status: &str) -> Vec<String> {
    status
        .lines()
        .skip_while(|l| !l.starts_with("hopsfs "))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter(|l| l.contains(" hopsfs: "))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn status_shows_each_nodes_progress_while_the_hopsfs_step_runs_and_none_after() {
    let (c, _dirs) = backed_up_and_wiped();
    let mut restore = start_restore(&c);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    let seen = loop {
        let status = text(&c.hwdr("node1", &["restore", ID, "--status"]).stdout);
        let lines = hopsfs_progress(&status);
        // A share of the blocks on node1 (in-process) and on another node.
        let counting: Vec<&String> = lines.iter().filter(|l| l.contains("% (")).collect();
        if counting.iter().any(|l| l.starts_with("node1 ")) && counting.len() >= 2 {
            break status;
        }
        if let Ok(Some(exit)) = restore.try_wait() {
            let out = restore.wait_with_output().unwrap();
            panic!(
                "the restore ended ({exit}) before --status showed two nodes' progress; last:\n{last}\n{}",
                text(&out.stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no per-node progress seen; last --status:\n{last}"
        );
        last = status;
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        step_states(&seen).contains(&("hopsfs".into(), "running".into())),
        "{seen}"
    );
    assert!(seen.contains("    progress at "), "{seen}");
    let line = hopsfs_progress(&seen)
        .into_iter()
        .find(|l| l.starts_with("node1 ") && l.contains("% ("))
        .unwrap();
    assert!(line.contains(" blocks"), "{line}");
    assert!(line.contains(" of "), "{line}");

    let out = restore.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = text(&c.hwdr("node1", &["restore", ID, "--status"]).stdout);
    assert!(step_states(&status).iter().all(|(_, st)| st == "done"), "{status}");
    assert!(!status.contains("progress at"), "{status}");
    assert!(hopsfs_progress(&status).is_empty(), "{status}");
    let progress_file = c.dir.path().join(format!("state-node1/restore/{ID}.progress.json"));
    assert!(!progress_file.exists());
}
