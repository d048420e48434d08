//! Integration test of `hwdr drill`: the backup's RonDB part restored into a
//! spare (simulated) RonDB cluster equals the production one, the check runs,
//! every block is re-read; a failure is reported with its step.

use std::process::Command;

use crate::common::cluster::Cluster;
use crate::common::{run_ok, sim_src, text};
use testkit::gen::GenSpec;

#[test]
fn drill_restores_into_a_spare_cluster_and_reports_the_failing_step() {
    drill_round(|repo| format!("path = \"{}\"\n", repo.display()));
}

/// A backup, a drill that passes, a damaged block that fails it at its
/// step; with the repository `[repository]` names.
pub(crate) fn drill_round(repository: impl FnOnce(&std::path::Path) -> String) {
    let mut c = Cluster::with_repository(
        &[
            ("head1", &["head"], &[]),
            ("node1", &["rondb", "hopsfs"], &[2]),
            ("node2", &["rondb", "hopsfs"], &[3]),
        ],
        2,
        repository,
    );
    c.with_hopsfs(GenSpec {
        nodes: 2,
        blocks: 20,
        replication: 2,
        max_size: 10_000,
        ..GenSpec::default()
    });
    c.start_agent("node1");
    c.start_agent("node2");
    assert!(c.hwdr("head1", &["backup", "--id", "2611231819"]).status.success());

    // A spare cluster: another simulated RonDB, empty, at another management address.
    let spare = c.dir.path().join("spare");
    let simctl = sim_src().join("simctl");
    run_ok(
        Command::new(&simctl)
            .arg("init")
            .arg(&spare)
            .args([
                "--data-nodes",
                "2:1,3:1",
                "--connectstring",
                "127.0.0.1:1187",
                "--socket",
            ])
            .arg(spare.join("mysql.sock")),
    );
    run_ok(Command::new(&simctl).arg("wipe").arg(&spare));
    let bin = spare.join("bin");
    c.dropin_everywhere(
        "70-drill.toml",
        &format!(
            "[drill]\nconnectstring = \"127.0.0.1:1187\"\nndb_restore = \"{b}/ndb_restore\"\nmysql_client = \"{b}/mysql-client.sh\"\ncheck_command = [\"{b}/mysql-client.sh\", \"-e\", \"SELECT COUNT(*) FROM hopsworks.project\"]\n",
            b = bin.display()
        ),
    );
    let out = c.hwdr("head1", &["drill", "--latest"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for step in [
        "stage",
        "rondb-meta",
        "rondb-data",
        "rondb-indexes",
        "users",
        "check",
        "hopsfs-blocks",
    ] {
        assert!(stdout.contains(&format!("ok    {step}: ")), "{step}:\n{stdout}");
    }
    assert!(stdout.contains("drill of backup 2611231819: passed"));
    // The spare cluster now holds what production held.
    let dump = |root: &std::path::Path| text(&run_ok(Command::new(&simctl).arg("dump").arg(root)).stdout);
    assert_eq!(dump(&spare), dump(&c.sim));

    // A damaged block fails the drill at its step.
    let backend = c.backend();
    let mut block = None;
    backend
        .list("blocks/", &mut |o| {
            if !o.key.as_str().ends_with(".meta") {
                block = Some(o.key);
            }
            Ok(())
        })
        .unwrap();
    let block = block.unwrap();
    backend
        .put(&block, &mut &b"garbage"[..], hwdr::repo::store::PutOptions::default())
        .unwrap();
    run_ok(Command::new(&simctl).arg("wipe").arg(&spare));
    let out = c.hwdr("head1", &["drill", "2611231819"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("FAIL  hopsfs-blocks: "),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("failed at step hopsfs-blocks"),
        "{}",
        text(&out.stderr)
    );
}
