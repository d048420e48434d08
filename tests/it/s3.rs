//! The repository in a real S3 server (Garage on loopback, started per test
//! and stopped when it ends, also when it fails): backup, list, verify,
//! prune and restore round trips, and the faults of object storage: the
//! server stopped mid-upload, answering 503 or dropping connections, wrong
//! credentials, a bucket holding another cluster's repository.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::common::cluster::Cluster;
use crate::common::text;
use crate::restore::{assert_restored, backed_up_in, wipe, ID};
use testkit::garage::Garage;

/// The `[repository]` keys for `garage` below `prefix`, with its
/// credentials written beside the test's folders (root's, 0600); requests
/// give up after a few seconds, so a stopped server fails a test quickly.
pub(crate) fn s3_repository(
    garage: &Garage,
    prefix: &str,
    endpoint: Option<String>,
) -> impl FnOnce(&Path) -> String + use<> {
    let prefix = prefix.to_owned();
    let endpoint = endpoint.unwrap_or_else(|| garage.endpoint());
    let (bucket, region) = (garage.bucket().to_owned(), garage.region().to_owned());
    let credentials = garage_credentials(garage);
    move |repo: &Path| {
        let file = repo.parent().unwrap().join("s3.credentials");
        std::fs::write(&file, credentials).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        format!(
            "url = \"s3://{bucket}/{prefix}\"\nendpoint = \"{endpoint}\"\nregion = \"{region}\"\npath_style = true\n\
             credentials_file = \"{}\"\npart_size_mib = 5\nrequest_timeout = \"10s\"\nretries = 3\n\
             retry_timeout = \"4s\"\n",
            file.display()
        )
    }
}

/// The shared-credentials text for `garage`'s key.
fn garage_credentials(garage: &Garage) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    garage.write_credentials(&path).unwrap();
    std::fs::read_to_string(path).unwrap()
}

/// How many objects the repository holds below `prefix`.
fn objects(c: &Cluster, prefix: &str) -> usize {
    let mut n = 0;
    c.backend()
        .list(prefix, &mut |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
    n
}

fn list_json(c: &Cluster) -> serde_json::Value {
    let out = c.hwdr("head1", &["list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn backup_list_verify_prune_and_restore_round_trip_through_s3() {
    let garage = Garage::start().unwrap();
    let s = backed_up_in(s3_repository(&garage, "prod/hwdr", None));
    let c = &s.c;
    let m = c.manifest(ID).unwrap();
    assert_eq!(m["status"], "complete");
    assert_eq!(m["hopsfs"]["new_blocks"], s.generated.blocks.len() as u64);
    // Each distinct block once, with its .meta, in the bucket.
    let stored = objects(c, "blocks/");
    assert_eq!(stored, 2 * s.generated.blocks.len());

    let pieces = objects(c, "inventories/");
    assert!(pieces > 0);

    // A second backup stores no block again, and no inventory piece: a few
    // small objects of HopsFS files.
    let second = "2611231820";
    let out = c.hwdr("head1", &["backup", "--id", second]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(c.manifest(second).unwrap()["hopsfs"]["new_blocks"], 0);
    assert_eq!(objects(c, "blocks/"), stored);
    assert_eq!(objects(c, "inventories/"), pieces);
    let mut hopsfs = (0, 0);
    c.backend()
        .list(&format!("backups/{second}/hopsfs/"), &mut |o| {
            hopsfs = (hopsfs.0 + 1, hopsfs.1 + o.size);
            Ok(())
        })
        .unwrap();
    assert!(hopsfs.0 <= 20 && hopsfs.1 <= 16 * 1024, "{hopsfs:?}");
    let list = list_json(c);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert!(
        list.as_array().unwrap().iter().all(|b| b["status"] == "complete"),
        "{list}"
    );

    // The metrics of the leader see the repository.
    let prom = std::fs::read_to_string(c.dir.path().join("state-head1/hwdr.prom")).unwrap();
    assert!(prom.contains("hwdr_repository_ok{cluster=\"prod\"} 1"), "{prom}");

    // Every block streamed through its CRCs.
    let out = c.hwdr("head1", &["verify", "--full", second]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));

    // Retention keeps the newest; the blocks it still names stay.
    c.dropin_everywhere(
        "70-retention.toml",
        "[retention]\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\nmin_age = \"1s\"\n",
    );
    std::thread::sleep(Duration::from_millis(1100));
    let out = c.hwdr("head1", &["prune"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let list = list_json(c);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], second);
    assert_eq!(objects(c, &format!("backups/{ID}/")), 0);
    assert_eq!(objects(c, "blocks/"), stored);
    assert_eq!(objects(c, "inventories/"), pieces);

    // Every node wiped, everything back from the bucket.
    wipe(&s);
    let out = c.hwdr("head1", &["restore", second]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_restored(&s);
}

#[test]
fn a_drill_restores_from_s3_into_a_spare_cluster() {
    let garage = Garage::start().unwrap();
    crate::drill::drill_round(s3_repository(&garage, "prod", None));
}

/// head1 (head) and node1 (rondb 2) with the repository in `garage`.
fn small_cluster(garage: &Garage, prefix: &str) -> Cluster {
    let mut c = Cluster::with_repository(
        &[("head1", &["head"], &[]), ("node1", &["rondb"], &[2])],
        1,
        s3_repository(garage, prefix, None),
    );
    c.start_agent("node1");
    c
}

/// The simulator runs recorded so far.
fn runs(c: &Cluster) -> usize {
    std::fs::read_to_string(c.sim.join("state/invocations.jsonl"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn wrong_credentials_are_named_by_config_check_and_stop_a_backup_before_anything_runs() {
    let garage = Garage::start().unwrap();
    let c = small_cluster(&garage, "prod");
    let check = c.hwdr("head1", &["config", "check"]);
    let stdout = text(&check.stdout);
    assert!(check.status.success(), "{stdout}");
    for step in [
        "put of the probe s3://",
        "get of the probe",
        "listing of the probe",
        "delete of the probe",
    ] {
        assert!(
            stdout.contains(&format!("ok    hwdr.toml: [repository] url: {step}")),
            "{step}:\n{stdout}"
        );
    }
    // Every node's credentials file now holds a wrong secret.
    let file = c.dir.path().join("s3.credentials");
    let wrong = std::fs::read_to_string(&file)
        .unwrap()
        .replace(garage.secret_key(), &"0".repeat(64));
    std::fs::write(&file, wrong).unwrap();
    let check = c.hwdr("head1", &["config", "check"]);
    let stdout = text(&check.stdout);
    assert_eq!(check.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "FAIL  hwdr.toml: [repository] url: cannot list repository s3://{}/prod",
            garage.bucket()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("access denied"), "{stdout}");
    // (The check asked mysqld as the backup does; the backup must run nothing.)
    let before = runs(&c);
    let out = c.hwdr("head1", &["backup", "--id", ID]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("access denied"), "{stderr}");
    assert_eq!(runs(&c), before, "a program ran although the repository was unusable");
    // A credentials file others can read is refused, naming it.
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = c.hwdr("head1", &["backup", "--id", ID]);
    assert!(
        text(&out.stderr).contains(&format!("credentials file {} is readable by others", file.display())),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_bucket_prefix_holding_another_clusters_repository_is_refused() {
    let garage = Garage::start().unwrap();
    let c = small_cluster(&garage, "shared");
    // `repo init` found that Garage does not honour create-only writes: the
    // lock relies on its leases alone there.
    let mut marker = Vec::new();
    c.backend()
        .get(&hwdr::repo::store::ObjectKey::marker())
        .unwrap()
        .read_to_end(&mut marker)
        .unwrap();
    let marker: serde_json::Value = serde_json::from_slice(&marker).unwrap();
    assert_eq!(marker["create_only"], false, "{marker}");
    assert!(c.hwdr("head1", &["backup", "--id", ID]).status.success());
    // The same bucket and prefix, configured for cluster "staging".
    for node in c.nodes.values() {
        let text = std::fs::read_to_string(&node.config)
            .unwrap()
            .replace("name = \"prod\"", "name = \"staging\"");
        std::fs::write(&node.config, text).unwrap();
    }
    for args in [&["repo", "init"][..], &["backup", "--id", "2611231820"], &["list"]] {
        let out = c.hwdr("head1", args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains(&format!(
                "repository s3://{}/shared belongs to cluster 'prod', not 'staging'",
                garage.bucket()
            )),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// head1, node1 (rondb 2 + hopsfs), node2 (rondb 3 + hopsfs), node3
/// (hopsfs), 60 blocks, the repository at `endpoint` (a proxy, or Garage
/// itself) below `prefix`; agents not started yet.
pub(crate) fn hopsfs_cluster(garage: &Garage, prefix: &str, endpoint: Option<String>) -> Cluster {
    let c = Cluster::with_repository(
        &[
            ("head1", &["head"], &[]),
            ("node1", &["rondb", "hopsfs"], &[2]),
            ("node2", &["rondb", "hopsfs"], &[3]),
            ("node3", &["hopsfs"], &[]),
        ],
        2,
        s3_repository(garage, prefix, endpoint),
    );
    c.with_hopsfs(testkit::gen::GenSpec {
        nodes: 3,
        blocks: 60,
        block_pools: 2,
        replication: 3,
        max_size: 200_000,
        ..testkit::gen::GenSpec::default()
    });
    c
}

#[test]
fn transient_503s_and_dropped_connections_are_retried_and_the_backup_completes() {
    use testkit::faultproxy::{Fault, FaultProxy, Plan};
    let garage = Garage::start().unwrap();
    let proxy = FaultProxy::start(garage.s3_addr()).unwrap();
    let mut c = hopsfs_cluster(&garage, "prod", Some(proxy.url()));
    // The default retry budget: every fifth request fails, and on a loaded
    // machine a retry may meet another fifth request more than three times.
    c.dropin_everywhere(
        "80-retries.toml",
        "[repository]\nretries = 10\nretry_timeout = \"60s\"\n",
    );
    for n in ["node1", "node2", "node3"] {
        c.start_agent(n);
    }
    for (id, fault) in [(ID, Fault::SlowDown), ("2611231820", Fault::Drop)] {
        proxy.set(Plan::Every { k: 5, fault });
        let faulted = proxy.faulted();
        let out = c.hwdr("head1", &["backup", "--id", id]);
        assert!(out.status.success(), "{fault:?}: {}", text(&out.stderr));
        assert!(
            proxy.faulted() > faulted + 5,
            "{fault:?}: too few requests failed to prove anything"
        );
        assert_eq!(c.manifest(id).unwrap()["status"], "complete");
    }
    proxy.set(Plan::Pass);
    let out = c.hwdr("head1", &["verify", "--full", "2611231820"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
}
