//! Integration tests of the HopsFS part of a backup: three data nodes with
//! replication 3 (generated trees with real `.meta` CRCs), agents on
//! 127.0.0.x, blocks stored once in the repository's block store.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common;
use crate::common::cluster::Cluster;
use crate::common::text;
use hwdr::hopsfs::meta;
use testkit::gen::{self, GenSpec, Generated};

/// head1 (head), node1 (rondb 2 + hopsfs), node2 (rondb 3 + hopsfs), node3 (hopsfs).
fn cluster_with_blocks(blocks: usize) -> (Cluster, Generated, GenSpec, PathBuf) {
    cluster_with_blocks_of(blocks, 40_000)
}

/// [`cluster_with_blocks`] with blocks of at most `max_size` bytes, in two
/// pools, replication 3, agents started on node1..node3.
pub(crate) fn cluster_with_blocks_of(blocks: usize, max_size: u64) -> (Cluster, Generated, GenSpec, PathBuf) {
    let mut c = Cluster::new(
        &[
            ("head1", &["head"], &[]),
            ("node1", &["rondb", "hopsfs"], &[2]),
            ("node2", &["rondb", "hopsfs"], &[3]),
            ("node3", &["hopsfs"], &[]),
        ],
        2,
    );
    let hdfs = uzers::get_user_by_name("hdfs").unwrap();
    let hadoop = uzers::get_group_by_name("hadoop").unwrap();
    let root = c.dir.path().join("hopsfs");
    let spec = GenSpec {
        nodes: 3,
        blocks,
        block_pools: 2,
        replication: 3,
        min_size: 0,
        max_size,
        owner: Some((hdfs.uid(), hadoop.gid())),
        ..GenSpec::default()
    };
    let generated = gen::generate(&root, &spec).unwrap();
    for (i, node) in generated.nodes.iter().enumerate() {
        c.set_data_dirs(&format!("node{}", i + 1), &[&node.data_dir]);
    }
    for n in ["node1", "node2", "node3"] {
        c.start_agent(n);
    }
    (c, generated, spec, root)
}

/// Every stored block file (not `.meta`) below `<repo>/blocks`.
fn stored_blocks(repo: &Path) -> Vec<PathBuf> {
    common::tree(&repo.join("blocks"))
        .into_iter()
        .filter(|p| !p.ends_with(".meta"))
        .map(|p| repo.join("blocks").join(p))
        .collect()
}

#[test]
fn replicas_are_stored_once_and_a_second_backup_copies_only_new_blocks() {
    let (c, mut generated, spec, root) = cluster_with_blocks(120);
    let out = c.hwdr("head1", &["backup", "--id", "2611231819"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = c.manifest("2611231819").unwrap();
    assert_eq!(m["status"], "complete");
    let h = &m["hopsfs"];
    assert_eq!(h["block_storage"], "local");
    assert_eq!(h["distinct_blocks"], generated.blocks.len() as u64);
    assert_eq!(h["distinct_bytes"], generated.unique_bytes);
    assert_eq!(h["replicas"], 3 * generated.blocks.len() as u64);
    assert_eq!(h["replica_bytes"], generated.replica_bytes);
    assert_eq!(h["new_blocks"], generated.blocks.len() as u64);
    assert_eq!(h["new_bytes"], generated.unique_bytes);

    // Each distinct block once, with a .meta, and it verifies.
    let stored = stored_blocks(&c.repo);
    assert_eq!(stored.len(), generated.blocks.len());
    let bytes: u64 = stored.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    assert_eq!(bytes, generated.unique_bytes);
    for p in &stored {
        let meta_path = PathBuf::from(format!("{}.meta", p.display()));
        meta::verify_file(p, &meta_path).unwrap();
    }
    // Each node's inventory names exactly its finalized blocks, no rbw.
    for (i, node) in generated.nodes.iter().enumerate() {
        let listed =
            crate::inventories::inventory_blocks(c.backend().as_ref(), "2611231819", &format!("node{}", i + 1));
        assert_eq!(listed.len(), node.blocks.len(), "node{}", i + 1);
        for rbw in &node.rbw {
            assert!(
                !listed.iter().any(|b| (b.0, b.1) == (rbw.id, rbw.genstamp)),
                "rbw block {} listed",
                rbw.id
            );
        }
        let version = fs::read(
            c.repo
                .join(format!("backups/2611231819/hopsfs/node{}/0/VERSION", i + 1)),
        )
        .unwrap();
        assert_eq!(version, fs::read(node.data_dir.join("current/VERSION")).unwrap());
    }

    // 1% more blocks: the second backup copies exactly those.
    let old_block = stored[0].clone();
    let old_ino = fs::metadata(&old_block).unwrap().ino();
    let before = generated.blocks.len();
    gen::add_blocks(&root, &spec, &mut generated, 7, 99).unwrap();
    let out = c.hwdr("head1", &["backup", "--id", "2611231820"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let h = &c.manifest("2611231820").unwrap()["hopsfs"];
    assert_eq!(h["distinct_blocks"], (before + 7) as u64);
    assert_eq!(h["new_blocks"], 7);
    assert_eq!(stored_blocks(&c.repo).len(), before + 7);
    assert_eq!(
        fs::metadata(&old_block).unwrap().ino(),
        old_ino,
        "an old block was copied again"
    );

    // hwdr list: newest first, what each backup holds and what it added.
    let list = c.hwdr("head1", &["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["id"], "2611231820");
    assert_eq!(rows[1]["id"], "2611231819");
    let (size, added) = (
        rows[0]["size_bytes"].as_u64().unwrap(),
        rows[0]["added_bytes"].as_u64().unwrap(),
    );
    assert!(
        size > generated.unique_bytes && added < size / 2,
        "size {size}, added {added}"
    );
    assert!(rows[1]["added_bytes"].as_u64().unwrap() >= rows[1]["size_bytes"].as_u64().unwrap() - 1000);
    assert_eq!(
        rows[0]["nodes"],
        serde_json::json!(["head1", "node1", "node2", "node3"])
    );
}

/// Every file below `dir` with its mode and content.
fn contents(dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
    common::tree(dir)
        .into_iter()
        .map(|p| {
            let full = dir.join(&p);
            let mode = fs::metadata(&full).unwrap().permissions().mode();
            (p, mode, fs::read(&full).unwrap())
        })
        .collect()
}

#[test]
fn one_or_eight_uploads_at_once_store_the_same_blocks_and_count_the_same() {
    let (mut c, generated, _, _) = cluster_with_blocks(120);
    let mut stores = Vec::new();
    let mut counters = Vec::new();
    for (threads, id) in [(1, "2611231819"), (8, "2611231820")] {
        // A new repository each time: each backup stores every block.
        let repo = c.dir.path().join(format!("repo-{threads}"));
        fs::create_dir(&repo).unwrap();
        c.dropin_everywhere(
            "70-parallel.toml",
            &format!(
                "[repository]\npath = \"{}\"\nupload_parallelism = {threads}\n",
                repo.display()
            ),
        );
        let out = c.hwdr("head1", &["repo", "init"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        for n in ["node1", "node2", "node3"] {
            c.kill_agent(n);
            c.start_agent(n);
        }
        let out = c.hwdr("head1", &["backup", "--id", id]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let m = c.manifest(id).unwrap();
        assert_eq!(m["status"], "complete", "{m}");
        assert_eq!(m["hopsfs"]["new_blocks"], generated.blocks.len() as u64);
        let log = c.agent_log("node1");
        assert!(log.contains(&format!("threads={threads}")), "{log}");
        counters.push(m["hopsfs"].clone());
        stores.push(contents(&repo.join("blocks")));
    }
    assert_eq!(stores[0].len(), 2 * generated.blocks.len());
    assert!(stores[0] == stores[1], "the block stores differ");
    assert_eq!(counters[0], counters[1]);
}

/// Flips one byte in the middle of `path`.
fn flip(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

/// A block of at least `min` bytes and the path of its replica on each node.
#[allow(dead_code)]
fn replicas(generated: &Generated, min: u64) -> (u64, Vec<PathBuf>) {
    let block = generated.blocks.iter().find(|b| b.len >= min).unwrap();
    let paths = generated
        .nodes
        .iter()
        .filter(|n| n.blocks.iter().any(|i| generated.blocks[*i as usize].id == block.id))
        .map(|n| n.data_dir.join(generated.block_rel_path(block)))
        .collect();
    (block.id, paths)
}

#[test]
fn a_corrupt_replica_is_detected_and_taken_from_another_node() {
    let (c, generated, _, _) = cluster_with_blocks(40);
    // Every replica on node1 is corrupt, so every block the leader gives
    // node1 fails its CRC check there and must come from node2 or node3.
    let node1 = &generated.nodes[0];
    let mut flipped = Vec::new();
    for i in &node1.blocks {
        let block = &generated.blocks[*i as usize];
        if block.len > 0 {
            flip(&node1.data_dir.join(generated.block_rel_path(block)));
            flipped.push(block.id);
        }
    }
    // And one replica on node2 that hdfs may not read: hwdr reads as hdfs, so
    // it is bad too, although root could read it.
    let node2 = &generated.nodes[1];
    let block2 = &generated.blocks[node2.blocks[0] as usize];
    let unreadable = node2.data_dir.join(generated.block_rel_path(block2));
    fs::set_permissions(&unreadable, fs::Permissions::from_mode(0o000)).unwrap();
    nix::unistd::chown(&unreadable, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();

    let out = c.hwdr("head1", &["backup", "--id", "2611231819"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = c.manifest("2611231819").unwrap();
    assert_eq!(m["status"], "complete");
    let bad: Vec<String> = m["hopsfs"]["bad_replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let crc: Vec<&String> = bad.iter().filter(|b| b.contains("checksum mismatch")).collect();
    assert!(!crc.is_empty(), "no corrupt replica was detected: {bad:?}");
    for b in &crc {
        assert!(b.contains(" on node1: "), "{b}");
        assert!(flipped.iter().any(|id| b.contains(&format!("blk_{id}_"))), "{b}");
    }
    // The unreadable replica is reported only if node2 was asked for it.
    for b in bad.iter().filter(|b| b.contains("Permission denied")) {
        assert!(
            b.contains(&format!("blk_{}_", block2.id)) && b.contains(" on node2: "),
            "{b}"
        );
    }
    // Every stored block is a good replica.
    let stored = stored_blocks(&c.repo);
    assert_eq!(stored.len(), generated.blocks.len());
    for p in &stored {
        meta::verify_file(p, &PathBuf::from(format!("{}.meta", p.display()))).unwrap();
    }
}

#[test]
fn blocks_are_read_as_hdfs() {
    let (c, generated, _, _) = cluster_with_blocks(12);
    // A replica only root could read, on every node: reading as hdfs, hwdr
    // cannot take it from anywhere.
    let block = generated.blocks.iter().find(|b| b.len > 0).unwrap();
    for node in &generated.nodes {
        if node.blocks.iter().any(|i| generated.blocks[*i as usize].id == block.id) {
            let p = node.data_dir.join(generated.block_rel_path(block));
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
            nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        }
    }
    let out = c.hwdr("head1", &["backup", "--id", "2611231819"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("blk_{}_", block.id)) && err.contains("Permission denied"),
        "{err}"
    );
}

#[test]
fn a_block_bad_on_every_replica_fails_the_backup_naming_it() {
    let (c, generated, _, _) = cluster_with_blocks(30);
    let (id, paths) = replicas(&generated, 2000);
    for p in &paths {
        flip(p);
    }
    let out = c.hwdr("head1", &["backup", "--id", "2611231819"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad on every replica") && err.contains(&format!("blk_{id}_")),
        "{err}"
    );
    let m = c.manifest("2611231819").unwrap();
    assert_eq!(m["status"], "failed");
    assert!(
        m["failed_step"].as_str().unwrap().starts_with("head1/hopsfs-retry"),
        "{}",
        m["failed_step"]
    );
}

#[test]
fn cloud_block_storage_stores_no_blocks() {
    let (c, _, _, _) = cluster_with_blocks(20);
    c.dropin_everywhere("70-cloud.toml", "[hopsfs]\nblock_storage = \"cloud\"\n");
    let out = c.hwdr("head1", &["backup", "--id", "2611231819"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = c.manifest("2611231819").unwrap();
    assert_eq!(m["status"], "complete");
    assert_eq!(m["hopsfs"]["block_storage"], "cloud");
    assert_eq!(m["hopsfs"]["distinct_blocks"], 0);
    assert!(stored_blocks(&c.repo).is_empty());
    assert!(!c.repo.join("backups/2611231819/hopsfs").exists());
}

/// Runs a restore job on `node` and waits for its end; returns the job status.
pub(crate) fn restore_job(c: &Cluster, node: &str, id: &str, clean: bool) -> serde_json::Value {
    // The agent runs restore jobs only while the lock names a restore of that backup.
    let _lock = c.hold_lock("restore", id);
    let body = format!(r#"{{"kind":"hopsfs_restore","node":"{node}","backup_id":"{id}","clean":{clean}}}"#);
    let (status, created) = c.api(node, "POST", "/v1/jobs", Some(&body));
    assert_eq!(status, 202, "{created}");
    let job = created["job_id"].as_str().unwrap().to_owned();
    let mut last = serde_json::Value::Null;
    common::cluster::wait_until("the restore job", std::time::Duration::from_secs(60), || {
        last = c.api(node, "GET", &format!("/v1/jobs/{job}"), None).1;
        last["state"] != "running"
    });
    last
}

#[test]
fn restore_rebuilds_every_node_byte_for_byte_with_owners_and_modes_and_is_idempotent() {
    let (c, generated, _, _) = cluster_with_blocks(60);
    // One block with an unusual mode, to see modes come back as they were.
    let node1 = &generated.nodes[0];
    let odd = node1
        .data_dir
        .join(generated.block_rel_path(&generated.blocks[node1.blocks[0] as usize]));
    fs::set_permissions(&odd, fs::Permissions::from_mode(0o640)).unwrap();
    let before: Vec<_> = generated.nodes.iter().map(|n| common::snapshot(&n.data_dir)).collect();
    let out = c.hwdr("head1", &["backup", "--id", "2611231819"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Every node wiped, as on a freshly deployed cluster.
    for n in &generated.nodes {
        fs::remove_dir_all(&n.data_dir).unwrap();
    }
    for (i, n) in generated.nodes.iter().enumerate() {
        let name = format!("node{}", i + 1);
        let status = restore_job(&c, &name, "2611231819", false);
        assert_eq!(status["state"], "succeeded", "{status}");
        let restored = &status["result"]["hopsfs_restored"];
        assert_eq!(restored["blocks_written"], n.blocks.len() as u64);
        assert_eq!(common::snapshot(&n.data_dir), before[i], "{name}");
        // rbw/ and tmp/ exist again, empty; in_use.lock is the data node's own.
        assert!(n.data_dir.join("current").read_dir().unwrap().count() >= 2);
        assert!(!n.data_dir.join("in_use.lock").exists());
    }

    // Again: nothing is copied, the tree stays the same.
    let status = restore_job(&c, "node1", "2611231819", false);
    assert_eq!(status["result"]["hopsfs_restored"]["blocks_written"], 0);
    assert_eq!(
        status["result"]["hopsfs_restored"]["blocks_kept"],
        generated.nodes[0].blocks.len() as u64
    );
    assert_eq!(common::snapshot(&generated.nodes[0].data_dir), before[0]);

    // A block the backup does not name stays, unless asked to clean; a
    // damaged one is put back.
    let pool_dir = node1
        .data_dir
        .join(generated.block_rel_path(&generated.blocks[node1.blocks[1] as usize]));
    let damaged = pool_dir.clone();
    flip(&damaged);
    let stray = pool_dir.parent().unwrap().join("blk_1");
    fs::write(&stray, b"stray").unwrap();
    let status = restore_job(&c, "node1", "2611231819", false);
    assert_eq!(status["result"]["hopsfs_restored"]["blocks_written"], 1);
    assert!(stray.exists());
    assert_eq!(common::snapshot(&node1.data_dir).len(), before[0].len() + 1);
    let status = restore_job(&c, "node1", "2611231819", true);
    assert_eq!(status["state"], "succeeded", "{status}");
    assert!(!stray.exists());
    assert_eq!(common::snapshot(&node1.data_dir), before[0]);
}

#[test]
fn restore_refuses_an_incomplete_backup_and_a_damaged_inventory() {
    let (c, generated, _, _) = cluster_with_blocks(10);
    let out = c.hwdr("head1", &["backup", "--id", "2611231819"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inv = c.repo.join("backups/2611231819/hopsfs/node2/inventory.tsv");
    let tampered = fs::read_to_string(&inv).unwrap() + "# tampered\n";
    fs::write(&inv, tampered).unwrap();
    let status = restore_job(&c, "node2", "2611231819", false);
    assert_eq!(status["state"], "failed");
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("does not match the manifest"),
        "{status}"
    );
    // Nothing was touched.
    assert!(generated.nodes[1].data_dir.join("current/VERSION").exists());

    c.control("mgm-client.sh", "unreachable");
    assert!(!c.hwdr("head1", &["backup", "--id", "2611231820"]).status.success());
    let status = restore_job(&c, "node1", "2611231820", false);
    assert_eq!(status["state"], "failed");
    assert!(
        status["error"].as_str().unwrap().contains("is failed, not complete"),
        "{status}"
    );
}

#[test]
fn blocks_of_the_latest_complete_backup_are_trusted_and_check_store_looks_them_up() {
    let (c, generated, _, _) = cluster_with_blocks(30);
    let out = c.hwdr("head1", &["backup", "--id", "2611231819"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A block removed from the store by hand (say, one `hwdr verify` found damaged).
    let gone = stored_blocks(&c.repo).remove(0);
    fs::remove_file(&gone).unwrap();
    fs::remove_file(format!("{}.meta", gone.display())).unwrap();

    // The next backup trusts backup 2611231819's list and does not look for it...
    let out = c.hwdr("head1", &["backup", "--id", "2611231820"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!(
            "{} blocks are listed by backup 2611231819",
            generated.blocks.len()
        )),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(c.manifest("2611231820").unwrap()["hopsfs"]["new_blocks"], 0);
    // ...so verify names the hole,
    let verify = c.hwdr("head1", &["verify", "2611231820"]);
    assert_eq!(verify.status.code(), Some(9), "{}", text(&verify.stdout));
    let name = gone.file_name().unwrap().to_str().unwrap();
    assert!(text(&verify.stdout).contains(name), "{}", text(&verify.stdout));
    assert!(
        text(&verify.stdout).contains("hwdr backup --check-store"),
        "{}",
        text(&verify.stdout)
    );

    // and --check-store takes it again from a data node.
    let out = c.hwdr("head1", &["backup", "--id", "2611231821", "--check-store"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(c.manifest("2611231821").unwrap()["hopsfs"]["new_blocks"], 1);
    assert!(gone.is_file());
    let verify = c.hwdr("head1", &["verify", "2611231820"]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
}

/// (id, genstamp, len) of every block of a node's inventory in a backup.
fn inventory_blocks(c: &Cluster, id: &str, node: &str) -> Vec<(u64, u64, u64)> {
    crate::inventories::inventory_blocks(c.backend().as_ref(), id, node)
}

#[test]
fn the_listing_cache_reuses_unchanged_folders_and_sees_every_change() {
    let (c, mut generated, spec, root) = cluster_with_blocks(80);
    // Folders changed within 10 s of a listing are not trusted by the next one.
    std::thread::sleep(std::time::Duration::from_secs(11));
    let out = c.hwdr("head1", &["backup", "--id", "2611231819"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // New blocks, and one block gone from node2 (as after a deletion).
    gen::add_blocks(&root, &spec, &mut generated, 9, 7).unwrap();
    let gone = generated.nodes[1].blocks.pop().unwrap();
    let gone_path = generated.nodes[1]
        .data_dir
        .join(generated.block_rel_path(&generated.blocks[gone as usize]));
    let meta = fs::read_dir(gone_path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("{}_", gone_path.file_name().unwrap().to_str().unwrap()))
        })
        .unwrap();
    fs::remove_file(&gone_path).unwrap();
    fs::remove_file(meta).unwrap();

    let out = c.hwdr("head1", &["backup", "--id", "2611231820"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (i, node) in generated.nodes.iter().enumerate() {
        let name = format!("node{}", i + 1);
        let log = c.agent_log(&name);
        let counts = log
            .lines()
            .rfind(|l| l.contains("unchanged ones taken from the listing cache"))
            .unwrap_or_else(|| panic!("{name} logged no listing: {log}"))
            .to_owned();
        assert!(!counts.contains(" 0 unchanged ones"), "{name}: {counts}");
        // The inventory is exactly the node's tree.
        let mut expected: Vec<(u64, u64, u64)> = node
            .blocks
            .iter()
            .map(|b| {
                let b = &generated.blocks[*b as usize];
                (b.id, b.genstamp, b.len)
            })
            .collect();
        expected.sort_unstable();
        assert_eq!(inventory_blocks(&c, "2611231820", &name), expected, "{name}");
    }
    assert_eq!(c.manifest("2611231820").unwrap()["hopsfs"]["new_blocks"], 9);
}
