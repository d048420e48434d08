//! Integration tests of `hwdr prune` and the metrics: retention never eats
//! the newest complete backup, blocks no kept backup names are swept, a
//! backup running at the same time is never robbed, and the Prometheus text
//! file says what happened.

use std::fs;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use crate::common;
use crate::common::cluster::{http, wait_until, Cluster};
use crate::common::text;
use testkit::gen::{GenSpec, Generated};

fn cluster() -> (Cluster, Generated) {
    let mut c = Cluster::new(
        &[
            ("head1", &["head"], &[]),
            ("node1", &["rondb", "hopsfs"], &[2]),
            ("node2", &["hopsfs"], &[]),
        ],
        1,
    );
    let generated = c.with_hopsfs(GenSpec {
        nodes: 2,
        blocks: 20,
        replication: 2,
        min_size: 100,
        max_size: 5_000,
        ..GenSpec::default()
    });
    c.start_agent("node1");
    c.start_agent("node2");
    (c, generated)
}

fn stored_blocks(c: &Cluster) -> Vec<String> {
    common::tree(&c.repo.join("blocks"))
        .into_iter()
        .filter(|p| !p.ends_with(".meta"))
        .collect()
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn retention_keeps_the_newest_complete_backup_and_sweeps_unreferenced_blocks() {
    let (c, generated) = cluster();
    c.dropin_everywhere(
        "70-retention.toml",
        "[retention]\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\nmin_age = \"1s\"\n",
    );
    assert!(c.hwdr("head1", &["backup", "--id", "2611231800"]).status.success());
    let first = stored_blocks(&c);
    // A file deleted in HopsFS: its block is on no data node any more.
    let gone = &generated.blocks[generated.nodes[0].blocks[0] as usize];
    for n in &generated.nodes {
        let p = n.data_dir.join(generated.block_rel_path(gone));
        let _ = fs::remove_file(&p);
        let _ = fs::remove_file(n.data_dir.join(generated.meta_rel_path(gone)));
    }
    // A failed backup in between.
    c.control("mgm-client.sh", "fail-once");
    assert!(!c.hwdr("head1", &["backup", "--id", "2611231801"]).status.success());
    std::thread::sleep(Duration::from_millis(1100));
    let out = c.hwdr("head1", &["backup", "--id", "2611231802"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The backup's own prune ran: the old complete backup is gone (keep_last = 1,
    // older than min_age), the failed one stays (keep_failed_days), the newest stays.
    let ids: Vec<String> = fs::read_dir(c.repo.join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        ids.contains(&"2611231802".to_owned()) && ids.contains(&"2611231801".to_owned()),
        "{ids:?}"
    );
    assert!(!ids.contains(&"2611231800".to_owned()), "{ids:?}");
    let after = stored_blocks(&c);
    assert_eq!(
        after.len(),
        first.len() - 1,
        "the deleted file's block is swept, nothing else"
    );
    assert!(!after
        .iter()
        .any(|p| p.contains(&format!("blk_{}_{}", gone.id, gone.genstamp))));
    // What is left is whole.
    assert!(c.hwdr("head1", &["verify", "--latest", "--full"]).status.success());

    // A dry run removes nothing, and even with every rule at zero the newest
    // complete backup stays.
    c.dropin_everywhere("71-zero.toml", "[retention]\nkeep_last = 0\nkeep_failed_days = 0\n");
    std::thread::sleep(Duration::from_millis(1100));
    let dry = c.hwdr("head1", &["prune", "--dry-run"]);
    assert!(text(&dry.stdout).contains("remove 2611231801"), "{}", text(&dry.stdout));
    assert!(c.repo.join("backups/2611231801").exists());
    let out = c.hwdr("head1", &["prune"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("keep   2611231802  (newest complete backup"),
        "{stdout}"
    );
    assert!(c.repo.join("backups/2611231802/manifest.json").exists());
    assert!(!c.repo.join("backups/2611231801").exists());

    // The metrics text file says what happened, and the agent serves the same.
    let prom = fs::read_to_string(c.dir.path().join("state-head1/hwdr.prom")).unwrap();
    assert!(
        metric(&prom, "hwdr_last_success_timestamp_seconds{cluster=\"prod\"}").unwrap() > 1.7e9,
        "{prom}"
    );
    assert_eq!(
        metric(&prom, "hwdr_last_backup_status{cluster=\"prod\",status=\"complete\"}"),
        Some(1.0),
        "{prom}"
    );
    assert_eq!(
        metric(&prom, "hwdr_backups{cluster=\"prod\",status=\"complete\"}"),
        Some(1.0),
        "{prom}"
    );
    assert_eq!(
        metric(&prom, "hwdr_last_verify_ok{cluster=\"prod\"}"),
        Some(1.0),
        "{prom}"
    );
    assert!(
        metric(&prom, "hwdr_last_prune_freed_bytes{cluster=\"prod\"}").unwrap() > 0.0,
        "{prom}"
    );
    assert!(
        metric(&prom, "hwdr_last_backup_size_bytes{cluster=\"prod\"}").unwrap() > 0.0,
        "{prom}"
    );
    assert!(
        metric(&prom, "hwdr_last_backup_added_bytes{cluster=\"prod\"}").is_some(),
        "{prom}"
    );
    assert!(
        metric(&prom, "hwdr_last_backup_duration_seconds{cluster=\"prod\"}").is_some(),
        "{prom}"
    );
    let (status, body) = http(&c.nodes["node1"].address, "GET", "/metrics", None, None).unwrap();
    assert_eq!(status, 200);
    let served = body.as_str().unwrap().to_owned();
    assert!(
        served.contains("hwdr_backups{cluster=\"prod\",status=\"complete\"} 1"),
        "{served}"
    );

    // A block no backup names (say, left by hand). The prune after a backup
    // that removes no backup does not walk the store; `hwdr prune` does.
    c.dropin_everywhere("72-keep.toml", "[retention]\nkeep_last = 7\n");
    let some = c.repo.join("blocks").join(&stored_blocks(&c)[0]);
    let orphan = some.with_file_name("blk_999999_1");
    fs::copy(&some, &orphan).unwrap();
    fs::write(orphan.with_file_name("blk_999999_1.meta"), b"meta").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let out = c.hwdr("head1", &["backup", "--id", "2611231803"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no backup removed: the block store is not swept"),
        "{}",
        text(&out.stderr)
    );
    assert!(orphan.exists());
    let out = c.hwdr("head1", &["prune"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!orphan.exists() && !orphan.with_file_name("blk_999999_1.meta").exists());
    assert!(c.hwdr("head1", &["verify", "--latest", "--full"]).status.success());
}

#[test]
fn prune_never_robs_a_backup_running_at_the_same_time() {
    let (c, _) = cluster();
    c.dropin_everywhere(
        "70-retention.toml",
        "[retention]\nkeep_last = 0\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\nmin_age = \"1s\"\nkeep_failed_days = 0\n",
    );
    assert!(c.hwdr("head1", &["backup", "--id", "2611231800"]).status.success());
    // A stray block nobody names, written long ago: swept. One written "now"
    // (after the sweep started, as a running backup's would be): kept.
    let pool = fs::read_dir(c.repo.join("blocks"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let old = pool.join("subdir0/subdir0/blk_42_1");
    fs::create_dir_all(old.parent().unwrap()).unwrap();
    fs::write(&old, b"old").unwrap();
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let fresh = pool.join("subdir0/subdir0/blk_43_1");
    fs::write(&fresh, b"fresh").unwrap();
    fs::File::options()
        .write(true)
        .open(&fresh)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));

    // A slow backup and a prune at the same time: the one without the lock
    // changes nothing.
    c.control("mgm-client.sh", "pad:2:60000000");
    let backup = std::process::Command::new(common::hwdr_bin())
        .arg("--config")
        .arg(&c.nodes["head1"].config)
        .args(["backup", "--id", "2611231801"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the backup to take the lock", Duration::from_secs(30), || {
        c.repo.join("lock").exists()
    });
    let prune = c.hwdr("head1", &["prune"]);
    assert_eq!(prune.status.code(), Some(5), "{}", text(&prune.stderr));
    let out = backup.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The backup's own prune: the older backup goes (every rule at zero), the
    // newest complete one stays, the old stray block is swept, the fresh one stays.
    assert!(!c.repo.join("backups/2611231800").exists());
    assert!(c.repo.join("backups/2611231801/manifest.json").exists());
    assert!(!old.exists());
    assert!(fresh.exists());
    assert!(c.hwdr("head1", &["verify", "2611231801", "--full"]).status.success());
}

fn backup_ids(c: &Cluster) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(c.repo.join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

fn set_age(path: &std::path::Path, age: Duration) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

/// Issue 7: one damaged byte in the newest complete backup's manifest made
/// `list` call it `incomplete`, and prune removed it after `keep_failed_days`.
/// It is `damaged` everywhere, and prune removes nothing (no backup, no
/// block) until the manifest is mended; then the newest complete one stays.
#[test]
fn a_damaged_manifest_is_listed_damaged_and_prune_removes_nothing() {
    let (c, _) = cluster();
    assert!(c.hwdr("head1", &["backup", "--id", "2611231800"]).status.success());
    c.control("mgm-client.sh", "fail-once");
    assert!(!c.hwdr("head1", &["backup", "--id", "2611231801"]).status.success());
    let out = c.hwdr("head1", &["backup", "--id", "2611231802"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // From here on every rule would remove all but the newest complete backup.
    c.dropin_everywhere(
        "70-retention.toml",
        "[retention]\nkeep_last = 0\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\nmin_age = \"1s\"\nkeep_failed_days = 0\n",
    );
    let some = c.repo.join("blocks").join(&stored_blocks(&c)[0]);
    let orphan = some.with_file_name("blk_999999_1");
    fs::copy(&some, &orphan).unwrap();
    set_age(&orphan, Duration::from_secs(7200));
    std::thread::sleep(Duration::from_millis(1100));

    // One flipped byte in the newest complete backup's manifest.
    let path = c.repo.join("backups/2611231802/manifest.json");
    let good = fs::read(&path).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x04;
    fs::write(&path, &bad).unwrap();

    let list: serde_json::Value = serde_json::from_slice(&c.hwdr("head1", &["list", "--json"]).stdout).unwrap();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "2611231802")
        .unwrap();
    assert_eq!(row["status"], "damaged", "{list}");
    assert!(row["error"].as_str().unwrap().starts_with("manifest.json: "), "{list}");
    let table = text(&c.hwdr("head1", &["list"]).stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("2611231802  damaged") && l.contains("manifest.json: ")),
        "{table}"
    );

    let verify = c.hwdr("head1", &["verify", "2611231802"]);
    assert_eq!(verify.status.code(), Some(9));
    assert!(
        text(&verify.stdout).contains("DAMAGED manifest.json: "),
        "{}",
        text(&verify.stdout)
    );
    // --latest finds the newest complete backup whose manifest is whole.
    let latest = c.hwdr("head1", &["verify", "--latest"]);
    assert!(latest.status.success(), "{}", text(&latest.stderr));
    assert!(
        text(&latest.stdout).contains("backup 2611231800: ok"),
        "{}",
        text(&latest.stdout)
    );
    let restore = c.hwdr("head1", &["restore", "2611231802", "--plan"]);
    assert_eq!(restore.status.code(), Some(8));
    assert!(text(&restore.stderr).contains("backup 2611231802 is damaged: manifest.json: "));

    for args in [&["prune", "--dry-run"][..], &["prune"]] {
        let out = c.hwdr("head1", args);
        assert_eq!(out.status.code(), Some(9), "{args:?}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains("prune removed nothing: the manifest of backup 2611231802 (manifest.json: ")
                && err.contains("restore its manifest.json from a copy"),
            "{err}"
        );
    }
    // The prune after a backup is stopped too; the backup stays good.
    std::thread::sleep(Duration::from_millis(1100));
    let out = c.hwdr("head1", &["backup", "--id", "2611231803"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("prune removed nothing"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(backup_ids(&c), ["2611231800", "2611231801", "2611231802", "2611231803"]);
    assert!(orphan.exists(), "no block is swept while a manifest is damaged");
    assert_eq!(fs::read(&path).unwrap(), bad);

    // The metrics say so, in the text file and on /metrics.
    let prom = fs::read_to_string(c.dir.path().join("state-head1/hwdr.prom")).unwrap();
    assert_eq!(
        metric(&prom, "hwdr_backups{cluster=\"prod\",status=\"damaged\"}"),
        Some(1.0),
        "{prom}"
    );
    let (_, body) = http(&c.nodes["node1"].address, "GET", "/metrics", None, None).unwrap();
    assert!(
        body.as_str()
            .unwrap()
            .contains("hwdr_backups{cluster=\"prod\",status=\"damaged\"} 1"),
        "{body}"
    );

    // The manifest restored from a copy: prune judges again. The newest
    // complete backup stays, whatever the rules say.
    fs::write(&path, &good).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let out = c.hwdr("head1", &["prune"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("keep   2611231803  (newest complete backup"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(backup_ids(&c), ["2611231803"]);
    assert!(!orphan.exists());
    assert!(c.hwdr("head1", &["verify", "--latest", "--full"]).status.success());
}

/// Issue 14: prune never removed leftover temp files (`.<name>.tmp-<pid>`)
/// or orphan `.meta` files (a `.meta` whose block file, the commit mark, is
/// missing) in the block store. Those older than an hour go; fresh ones (an
/// upload in progress) stay.
#[test]
fn prune_removes_old_leftovers_in_the_block_store_and_keeps_fresh_ones() {
    let (c, _) = cluster();
    assert!(c.hwdr("head1", &["backup", "--id", "2611231800"]).status.success());
    let block = c.repo.join("blocks").join(&stored_blocks(&c)[0]);
    let folder = block.parent().unwrap();
    let old_temp = folder.join(".blk_77_1.tmp-4242");
    let old_meta = folder.join("blk_78_1.meta");
    let fresh_temp = folder.join(".blk_79_1.tmp-4243");
    let fresh_meta = folder.join("blk_80_1.meta");
    for (path, bytes) in [
        (&old_temp, 1000),
        (&old_meta, 15),
        (&fresh_temp, 500),
        (&fresh_meta, 15),
    ] {
        fs::write(path, vec![7u8; bytes]).unwrap();
    }
    set_age(&old_temp, Duration::from_secs(7200));
    set_age(&old_meta, Duration::from_secs(7200));
    // A stored block's own .meta, however old, is no leftover.
    let own_meta = block.with_file_name(format!("{}.meta", block.file_name().unwrap().to_string_lossy()));
    set_age(&own_meta, Duration::from_secs(7200));

    let dry = c.hwdr("head1", &["prune", "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(
        text(&dry.stdout).contains(
            "would remove 0 backup(s), 0 block(s), 0 inventory piece(s) and 2 leftover file(s), 1015 B freed"
        ),
        "{}",
        text(&dry.stdout)
    );
    assert!(old_temp.exists() && old_meta.exists());

    let out = c.hwdr("head1", &["prune", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed_leftovers"], 2, "{report}");
    assert_eq!(report["freed_bytes"], 1015, "{report}");
    assert!(!old_temp.exists() && !old_meta.exists());
    assert!(fresh_temp.exists() && fresh_meta.exists());
    assert!(own_meta.exists());
    assert!(c.hwdr("head1", &["verify", "--latest", "--full"]).status.success());
}
