//! A node's HopsFS restore copies `[repository] upload_parallelism` blocks at
//! once and `verify --full` checks that many at once (issue 17): the restored
//! trees are byte-equal across several storage folders and pools; a failure
//! in the middle of a copy names its block and node, leaves no block half
//! written under a final name, and `--resume` finishes; a stopped job stops
//! mid-copy the same way; the progress counts every block exactly once; a
//! verify names exactly the damaged block, in the same words every run.

use std::fs;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};

use crate::common;
use crate::common::scenario::{self, leftovers, wipe, Setup};
use crate::common::text;

const ID: &str = "2611231819";

/// Blocks of the test: enough that 8 threads have many each.
const BLOCKS: usize = 240;

/// A cluster of [`BLOCKS`] blocks in two storage folders per node (the
/// second pool of each node moved into `<node>/dn2`, with a copy of the
/// folder's VERSION), `[repository] upload_parallelism = 8`, backed up as
/// [`ID`]. Returns the setup and every node's folders.
fn backed_up_in_two_folders() -> (Setup, Vec<[PathBuf; 2]>) {
    let mut folders = Vec::new();
    let mut s = scenario::cluster_with(&[], BLOCKS, |c| {
        c.dropin_everywhere("70-parallel.toml", "[repository]\nupload_parallelism = 8\n");
        for i in 1..=3 {
            let dn = c.dir.path().join(format!("hopsfs/node{i}/dn"));
            let dn2 = dn.with_file_name("dn2");
            split_second_pool(&dn, &dn2);
            c.set_data_dirs(&format!("node{i}"), &[&dn, &dn2]);
            folders.push([dn, dn2]);
        }
        // The simulated namenode looks for the blocks in every folder.
        let all: Vec<String> = folders.iter().flatten().map(|d| d.display().to_string()).collect();
        scenario::simctl(c, &["blocks", "--data-dirs", &all.join(",")]);
    });
    let out = s.c.hwdr("head1", &["backup", "--id", ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.rondb = scenario::simctl(&s.c, &["dump"]);
    s.trees = folders.iter().flatten().map(|d| common::snapshot(d)).collect();
    (s, folders)
}

/// Moves the last block pool of storage folder `dn` into a new storage
/// folder `dn2`, owned as `dn` is.
fn split_second_pool(dn: &Path, dn2: &Path) {
    use std::os::unix::fs::MetadataExt;
    let mut pools: Vec<String> = fs::read_dir(dn.join("current"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("BP-"))
        .collect();
    pools.sort();
    assert!(pools.len() >= 2, "{pools:?}");
    let pool = pools.last().unwrap();
    let meta = fs::metadata(dn).unwrap();
    fs::create_dir_all(dn2.join("current")).unwrap();
    for d in [dn2.to_path_buf(), dn2.join("current")] {
        chown(&d, Some(meta.uid()), Some(meta.gid())).unwrap();
    }
    fs::rename(dn.join("current").join(pool), dn2.join("current").join(pool)).unwrap();
    fs::copy(dn.join("current/VERSION"), dn2.join("current/VERSION")).unwrap();
    chown(dn2.join("current/VERSION"), Some(meta.uid()), Some(meta.gid())).unwrap();
}

/// Every folder of `folders` holds what was backed up, and nothing of hwdr's.
fn assert_folders_restored(s: &Setup, folders: &[[PathBuf; 2]]) {
    for (i, dir) in folders.iter().flatten().enumerate() {
        assert!(
            common::snapshot(dir) == s.trees[i],
            "{} differs from the backup",
            dir.display()
        );
        assert_eq!(leftovers(dir), Vec::<String>::new(), "{}", dir.display());
    }
}

fn wipe_folders(s: &Setup, folders: &[[PathBuf; 2]]) {
    wipe(s);
    for dir in folders.iter().flatten() {
        let _ = fs::remove_dir_all(dir);
    }
}

#[cfg(feature = "failpoints")]
/// The blocks (not `.meta`) below `dir` at their final names, with their bytes.
fn final_blocks(dir: &Path) -> Vec<(String, Vec<u8>)> {
    common::tree(dir)
        .into_iter()
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or_default();
            name.starts_with("blk_") && !name.ends_with(".meta")
        })
        .map(|p| {
            let bytes = fs::read(dir.join(&p)).unwrap();
            (p, bytes)
        })
        .collect()
}

#[cfg(feature = "failpoints")]
/// The pool and file name of a block file at `path` (below a staging folder
/// `BP-…/…/blk_<id>_<genstamp>`, or placed `current/BP-…/…/blk_<id>`).
fn pool_and_name(path: &str) -> (&str, &str) {
    let pool = path.split('/').find(|p| p.starts_with("BP-")).unwrap_or_default();
    (pool, path.rsplit('/').next().unwrap_or_default())
}

#[cfg(feature = "failpoints")]
/// The original bytes of block `name` (`blk_<id>`, or `blk_<id>_<genstamp>`
/// as staged) of `pool` on node `i` (0-based), as backed up.
fn original(s: &Setup, i: usize, pool: &str, name: &str) -> Option<Vec<u8>> {
    let id = name.strip_prefix("blk_")?.split('_').next()?;
    let (pool_dir, file) = (format!("/{pool}/"), format!("/blk_{id}"));
    s.trees[2 * i..2 * i + 2]
        .iter()
        .flatten()
        .find(|e| e.0.contains(&pool_dir) && e.0.ends_with(&file))
        .map(|e| e.4.clone())
}

#[cfg(feature = "failpoints")]
/// Every staged or placed block below `dirs` (node `i`'s) is whole: its
/// bytes are the original's. Returns how many there are.
fn whole_blocks(s: &Setup, i: usize, dirs: &[PathBuf; 2]) -> usize {
    let mut n = 0;
    for dir in dirs {
        for (path, bytes) in final_blocks(dir) {
            let (pool, name) = pool_and_name(&path);
            let orig = original(s, i, pool, name).unwrap_or_else(|| panic!("{path}: not a block of node{}", i + 1));
            assert!(
                bytes == orig,
                "{}/{path} is not the block it names (half written?)",
                dir.display()
            );
            n += 1;
        }
    }
    n
}

#[test]
fn a_concurrent_restore_of_many_blocks_in_two_folders_per_node_is_byte_equal_and_counts_exactly() {
    let (s, folders) = backed_up_in_two_folders();
    wipe_folders(&s, &folders);
    let out = s.c.hwdr("head1", &["restore", ID, "--only", "hopsfs"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_folders_restored(&s, &folders);
    let log = s.c.agent_log("node1");
    assert!(log.contains("threads=8"), "{log}");

    // A node's job restores again into wiped folders, and its progress
    // counts each block once in the stage and once in the placing.
    for dir in &folders[1] {
        fs::remove_dir_all(dir).unwrap();
    }
    let _lock = s.c.hold_lock("restore", ID);
    let body = format!(r#"{{"kind":"hopsfs_restore","node":"node2","backup_id":"{ID}","clean":false}}"#);
    let (code, created) = s.c.api("node2", "POST", "/v1/jobs", Some(&body));
    assert_eq!(code, 202, "{created}");
    let job = created["job_id"].as_str().unwrap().to_owned();
    let mut last = serde_json::Value::Null;
    common::cluster::wait_until("the restore job", std::time::Duration::from_secs(60), || {
        last = s.c.api("node2", "GET", &format!("/v1/jobs/{job}?wait_ms=1000"), None).1;
        last["state"] != "running"
    });
    assert_eq!(last["state"], "succeeded", "{last}");
    let blocks = last["result"]["hopsfs_restored"]["blocks_written"].as_u64().unwrap();
    let bytes = last["result"]["hopsfs_restored"]["bytes_written"].as_u64().unwrap();
    assert!(blocks > 100, "{last}");
    let p = &last["progress"];
    assert_eq!(
        (p["files"].as_u64(), p["bytes"].as_u64()),
        (Some(2 * blocks), Some(2 * bytes)),
        "{last}"
    );
    assert_eq!(
        (p["total_files"].as_u64(), p["total_bytes"].as_u64()),
        (p["files"].as_u64(), p["bytes"].as_u64())
    );
    assert_folders_restored(&s, &folders);
}

#[cfg(feature = "failpoints")]
#[test]
fn a_failure_in_the_middle_of_a_concurrent_copy_names_its_block_leaves_nothing_half_written_and_resumes() {
    let (mut s, folders) = backed_up_in_two_folders();
    wipe_folders(&s, &folders);
    // node2's 50th copy fails after its bytes are written, before its rename.
    s.c.kill_agent("node2");
    s.c.start_agent_with("node2", |cmd| {
        cmd.env("FAILPOINTS", "hopsfs-stage-copy=49*off->1*return(fail)->off");
    });
    let out = s.c.hwdr("head1", &["restore", ID]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("stopped at step stage"), "{err}");
    assert!(err.contains("node2"), "{err}");
    assert!(err.contains("injected failure at hopsfs-stage-copy"), "{err}");
    // The error names the block: staging <pool>/blk_<id>_<genstamp>.
    let named = err
        .split("staging block ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no block named: {err}"));
    let (pool, name) = pool_and_name(named);
    assert!(
        original(&s, 1, pool, name).is_some(),
        "{named} is not a block of node2: {err}"
    );
    // That block is nowhere under a final name, no temp file is left, and
    // every block at a final name is whole.
    let staged = whole_blocks(&s, 1, &folders[1]);
    assert!(staged > 0, "nothing was staged before the failure");
    for dir in &folders[1] {
        let temps: Vec<String> = common::tree(dir).into_iter().filter(|p| p.contains(".tmp-")).collect();
        assert_eq!(temps, Vec::<String>::new(), "{}", dir.display());
        assert!(
            !common::tree(dir).iter().any(|p| p.ends_with(&format!("/{name}"))),
            "{name} is under its final name"
        );
    }

    s.c.kill_agent("node2");
    s.c.start_agent("node2");
    let out = s.c.hwdr("head1", &["restore", ID, "--resume"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_folders_restored(&s, &folders);
    assert_eq!(
        scenario::simctl(&s.c, &["dump"]),
        s.rondb,
        "RonDB content differs from the backup"
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn a_stage_stopped_mid_copy_ends_promptly_without_a_half_written_block() {
    use std::time::{Duration, Instant};
    let (mut s, folders) = backed_up_in_two_folders();
    wipe_folders(&s, &folders);
    // Every copy of node3 holds a minute between its bytes and its rename.
    s.c.kill_agent("node3");
    s.c.start_agent_with("node3", |cmd| {
        cmd.env("FAILPOINTS", "hopsfs-stage-copy=20*off->return(sleep:60000)");
    });
    let _lock = s.c.hold_lock("restore", ID);
    let body = format!(r#"{{"kind":"restore_stage","node":"node3","backup_id":"{ID}"}}"#);
    let (code, created) = s.c.api("node3", "POST", "/v1/jobs", Some(&body));
    assert_eq!(code, 202, "{created}");
    let job = created["job_id"].as_str().unwrap().to_owned();
    common::cluster::wait_until("node3's copies to hold", Duration::from_secs(30), || {
        s.c.agent_log("node3")
            .matches("fault injection at hopsfs-stage-copy")
            .count()
            >= 8
    });
    let asked = Instant::now();
    let (code, answer) =
        s.c.api("node3", "POST", &format!("/v1/jobs/{job}/cancel?wait_ms=5000"), None);
    assert_eq!((code, answer["state"].as_str()), (200, Some("aborted")), "{answer}");
    assert!(asked.elapsed() < Duration::from_secs(5), "{:?}", asked.elapsed());
    // The 8 copies held were not renamed: 20 blocks staged, each whole, and
    // the held ones' temp files removed.
    assert_eq!(whole_blocks(&s, 2, &folders[2]), 20);
    for dir in &folders[2] {
        let temps: Vec<String> = common::tree(dir).into_iter().filter(|p| p.contains(".tmp-")).collect();
        assert_eq!(temps, Vec::<String>::new(), "{}", dir.display());
    }
}

#[test]
fn verify_full_with_many_blocks_names_exactly_the_flipped_one_in_the_same_order_every_run() {
    let (s, _) = backed_up_in_two_folders();
    let ok = s.c.hwdr("head1", &["verify", ID, "--full"]);
    assert!(ok.status.success(), "{}", text(&ok.stdout));
    // One byte flipped in one stored block among hundreds, a second block
    // cut short: same size for the first, so only its CRCs tell.
    let stored = scenario::stored_blocks(&s.c.repo);
    assert!(stored.len() >= BLOCKS, "{}", stored.len());
    let flipped = scenario::stored_block_of_at_least(&s.c.repo, 2000);
    scenario::flip(&flipped);
    let flipped_name = scenario::block_name(&s.c.repo, &flipped);
    let cut = stored
        .iter()
        .rev()
        .find(|p| **p != flipped && fs::metadata(p).unwrap().len() > 100)
        .unwrap();
    let bytes = fs::read(cut).unwrap();
    fs::write(cut, &bytes[..bytes.len() / 2]).unwrap();
    let cut_name = scenario::block_name(&s.c.repo, cut);

    let runs: Vec<String> = (0..2)
        .map(|_| {
            let out = s.c.hwdr("head1", &["verify", ID, "--full"]);
            assert_eq!(out.status.code(), Some(9), "{}", text(&out.stderr));
            text(&out.stdout)
        })
        .collect();
    assert_eq!(runs[0], runs[1], "two runs report differently");
    let damaged: Vec<&str> = runs[0].lines().filter(|l| l.starts_with("DAMAGED ")).collect();
    assert_eq!(damaged.len(), 2, "{}", runs[0]);
    assert!(
        damaged
            .iter()
            .any(|l| l.starts_with(&format!("DAMAGED {flipped_name}: ")) && l.contains("checksum mismatch")),
        "{damaged:?}"
    );
    assert!(
        damaged.iter().any(|l| l.starts_with(&format!("DAMAGED {cut_name}: "))),
        "{damaged:?}"
    );
    assert!(runs[0].contains("damaged, 2 problem(s)"), "{}", runs[0]);
}
