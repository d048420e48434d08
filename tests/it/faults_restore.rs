//! `hwdr restore` under faults (issue 11): a restore never starts what it
//! cannot finish (a damaged stored block, staging that does not fit), a
//! crash while staging or placing blocks resumes to the exact tree, and an
//! agent runs restore jobs only under a lock naming that restore.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common;
use crate::common::run_ok;
use crate::common::scenario::{
    self, assert_restored, block_name, leftovers, runs_of, simctl, status, step_states, stored_block_of_at_least, wipe,
    Setup,
};
use crate::common::text;
use serde_json::Value;

const ID: &str = "2611231819";
const ID2: &str = "2611231820";

/// The leader's restore state file of backup `id`.
fn state_file(s: &Setup, id: &str) -> PathBuf {
    s.c.dir.path().join(format!("state-head1/restore/{id}.json"))
}

/// Files below `dir` outside its staging folder: what the data node sees.
fn placed(dir: &Path) -> Vec<String> {
    common::tree(dir)
        .into_iter()
        .filter(|p| !p.starts_with(&format!("{}/", hwdr::hopsfs::restore::STAGING)))
        .collect()
}

/// Every step after `stage` is still pending, and no RonDB restore ran.
fn nothing_after_stage_ran(s: &Setup) {
    assert!(
        runs_of(&s.c, "ndb_restore").is_empty(),
        "{:?}",
        runs_of(&s.c, "ndb_restore")
    );
    for program in ["mysql-client.sh", "reindex-epipe.sh", "kafka-restore.sh"] {
        assert!(runs_of(&s.c, program).is_empty(), "{program} ran");
    }
    for (i, n) in s.generated.nodes.iter().enumerate() {
        assert_eq!(placed(&n.data_dir), Vec::<String>::new(), "node{} data folder", i + 1);
    }
}

#[test]
fn a_restore_with_a_damaged_stored_block_is_refused_before_anything_runs() {
    let s = scenario::backed_up(ID);
    // One stored block with a flipped byte (same length: only its CRCs tell),
    // and another one gone with its .meta.
    let block = stored_block_of_at_least(&s.c.repo, 2000);
    let name = block_name(&s.c.repo, &block);
    let original = fs::read(&block).unwrap();
    scenario::flip(&block);
    let gone = scenario::stored_blocks(&s.c.repo)
        .into_iter()
        .find(|p| *p != block)
        .unwrap();
    let gone_name = block_name(&s.c.repo, &gone);
    let kept = s.c.dir.path().join("kept");
    fs::create_dir(&kept).unwrap();
    fs::rename(&gone, kept.join("block")).unwrap();
    fs::rename(scenario::meta_of(&gone), kept.join("meta")).unwrap();
    wipe(&s);
    let wiped = simctl(&s.c, &["dump"]);

    let out = s.c.hwdr("head1", &["restore", ID]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{name}: the stored block fails its CRC check")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{gone_name}: its .meta is not in the store")),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    nothing_after_stage_ran(&s);
    assert_eq!(simctl(&s.c, &["dump"]), wiped, "RonDB changed");
    // No restore was started: a fresh `hwdr restore` is not told to --resume.
    assert!(!state_file(&s, ID).exists(), "restore state left behind");
    assert!(!s.c.repo.join("lock").exists());

    // The block's bytes put back (the nodes are wiped, so --check-store
    // could not take it again): the restore passes.
    fs::write(&block, &original).unwrap();
    fs::rename(kept.join("block"), &gone).unwrap();
    fs::rename(kept.join("meta"), scenario::meta_of(&gone)).unwrap();
    let out = s.c.hwdr("head1", &["restore", ID]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_restored(&s);
    for n in &s.generated.nodes {
        assert_eq!(leftovers(&n.data_dir), Vec::<String>::new());
    }
}

/// A tmpfs mounted on a folder, unmounted when dropped (also when a test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
                .arg(dir),
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let done = Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !done {
            // Busy (an agent still in it): detach it now, it goes when released.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn staging_that_does_not_fit_is_refused_before_anything_runs() {
    let s = scenario::backed_up(ID);
    wipe(&s);
    // node3's data folder is a file system too small for its blocks.
    let dir = s.generated.nodes[2].data_dir.clone();
    let small = Tmpfs::mount(&dir, "64k");
    let need: u64 = s.trees[2]
        .iter()
        .filter(|e| e.0.contains("/current/finalized/"))
        .map(|e| e.4.len() as u64)
        .sum();
    assert!(need > 64 << 10, "the blocks would fit: {need} bytes");

    let out = s.c.hwdr("head1", &["restore", ID]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("stopped at step stage"), "{err}");
    assert!(
        err.contains(&format!(
            "not enough space to stage the blocks of {}: they need {need} bytes",
            dir.display()
        )),
        "{err}"
    );
    nothing_after_stage_ran(&s);
    assert_eq!(common::tree(&dir), Vec::<String>::new(), "node3 got files");
    let steps = step_states(&status(&s, ID));
    assert_eq!(steps[0], ("stage".to_owned(), "failed".to_owned()), "{steps:?}");
    assert!(steps[1..].iter().all(|(_, st)| st == "pending"), "{steps:?}");

    // With room again, --resume finishes it.
    drop(small);
    let out = s.c.hwdr("head1", &["restore", ID, "--resume"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_restored(&s);
}

/// Bytes `files` (paths below `dir`) take on a file system of 4 KiB pages.
fn pages(dir: &Path, files: &[String]) -> u64 {
    files
        .iter()
        .map(|f| fs::metadata(dir.join(f)).unwrap().len().div_ceil(4096) * 4096)
        .sum()
}

/// Pins a bug: the free space check of a resumed stage counted the blocks
/// the crashed stage had staged as still to come, so on a folder with room
/// for the blocks once the resume was refused for ever.
#[test]
fn a_stage_resumed_after_a_crash_does_not_count_what_it_staged_as_still_needed() {
    let mut s = scenario::backed_up(ID);
    wipe(&s);
    // node3's data folder has room for its blocks once, with little to spare.
    let dir = s.generated.nodes[2].data_dir.clone();
    let need: u64 = s.trees[2]
        .iter()
        .filter(|e| e.0.contains("/current/finalized/"))
        .map(|e| e.4.len() as u64)
        .sum();
    let rounded: u64 = s.trees[2]
        .iter()
        .filter(|e| e.0.contains("/current/finalized/"))
        .map(|e| (e.4.len() as u64).div_ceil(4096) * 4096)
        .sum();
    let size = rounded + (256 << 10);
    let _room = Tmpfs::mount(&dir, &format!("{}k", size >> 10));
    // node3's agent dies after staging 60 of its 80 blocks.
    s.c.kill_agent("node3");
    s.c.start_agent_with("node3", |cmd| {
        cmd.env("FAILPOINTS", "hopsfs-stage-block=60*off->return(kill)");
    });
    let out = s.c.hwdr("head1", &["restore", ID]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("stopped at step stage"));
    let staging = dir.join(hwdr::hopsfs::restore::STAGING);
    let staged = pages(&staging, &common::tree(&staging));
    // What is left to stage fits; all of it again would not.
    assert!(
        need > size - staged,
        "the test cannot tell: {need} bytes fit in {size} - {staged}"
    );

    s.c.kill_agent("node3");
    s.c.start_agent("node3");
    let out = s.c.hwdr("head1", &["restore", ID, "--resume"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_restored(&s);
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}

/// Restarts node2's agent with `FAILPOINTS`, runs the restore, which the
/// agent's crash stops at `step`; then node2's agent comes back without the
/// point and `--resume` must give back exactly what was backed up, with no
/// temp file and no staging folder left.
fn killed_at(point: &str, step: &str) {
    let mut s = scenario::backed_up(ID);
    wipe(&s);
    s.c.kill_agent("node2");
    let failpoints = format!("{point}=10*off->return(kill)");
    s.c.start_agent_with("node2", |cmd| {
        cmd.env("FAILPOINTS", &failpoints);
    });
    let out = s.c.hwdr("head1", &["restore", ID]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("stopped at step {step}")), "{err}");
    assert!(err.contains("node2"), "{err}");
    assert!(
        s.c.agent_log("node2")
            .contains(&format!("fault injection at {point}: kill")),
        "{}",
        s.c.agent_log("node2")
    );
    // node2 died half-way: ten blocks staged (or placed), the rest not.
    let node2 = &s.generated.nodes[1].data_dir;
    let staging = node2.join(hwdr::hopsfs::restore::STAGING);
    assert!(staging.is_dir());
    let blocks = |files: Vec<String>| {
        files
            .iter()
            .filter(|p| {
                p.rsplit('/')
                    .next()
                    .is_some_and(|n| n.starts_with("blk_") && !n.ends_with(".meta"))
            })
            .count()
    };
    let total = s.trees[1]
        .iter()
        .filter(|e| e.0.contains("/finalized/") && !e.0.ends_with(".meta"))
        .count();
    let halfway = match step {
        "stage" => blocks(common::tree(&staging)),
        _ => blocks(placed(node2)),
    };
    assert!(
        halfway > 0 && halfway < total,
        "{halfway} of {total} blocks done at the crash"
    );
    if step == "stage" {
        // Staged blocks are the data node's already.
        let hdfs = uzers::get_user_by_name("hdfs").unwrap().uid();
        for f in common::tree(&staging) {
            let uid = fs::metadata(staging.join(&f)).unwrap().uid();
            assert_eq!(uid, hdfs, "{f} is not owned by hdfs");
        }
    }
    let steps = step_states(&status(&s, ID));
    assert!(
        steps.iter().any(|(name, st)| name == step && st == "failed"),
        "{steps:?}"
    );

    s.c.kill_agent("node2");
    s.c.start_agent("node2");
    // The leader released its lock on the way out: no `hwdr unlock` needed.
    assert!(!s.c.repo.join("lock").exists());
    let out = s.c.hwdr("head1", &["restore", ID, "--resume"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_restored(&s);
    for n in &s.generated.nodes {
        assert_eq!(leftovers(&n.data_dir), Vec::<String>::new());
    }
}

#[test]
fn a_restore_killed_while_placing_blocks_resumes_to_an_exact_tree_without_temp_files() {
    killed_at("hopsfs-place-block", "hopsfs");
}

#[test]
fn a_restore_killed_while_staging_blocks_resumes_to_an_exact_tree_without_temp_files() {
    killed_at("hopsfs-stage-block", "stage");
}

#[test]
fn a_token_alone_cannot_start_a_restore_job() {
    let mut s = scenario::cluster(40);
    s.c.start_agent("head1");
    let out = s.c.hwdr("head1", &["backup", "--id", ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Newer blocks the old backup does not name, and a newer backup.
    scenario::add_blocks(&mut s, 6, 5);
    let out = s.c.hwdr("head1", &["backup", "--id", ID2]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let node1 = s.generated.nodes[0].data_dir.clone();
    let before = common::snapshot(&node1);
    fs::write(s.c.sim.join("state/invocations.jsonl"), "").unwrap();

    // Jobs of a restore of the old backup, each of which would change a node.
    let jobs = [
        (
            "node1",
            format!(r#"{{"kind":"hopsfs_restore","node":"node1","backup_id":"{ID}","clean":true}}"#),
        ),
        (
            "node1",
            format!(r#"{{"kind":"restore_stage","node":"node1","backup_id":"{ID}"}}"#),
        ),
        (
            "node1",
            format!(r#"{{"kind":"restore_rondb_data","node":"node1","backup_id":"{ID}","data_node":2}}"#),
        ),
        (
            "node1",
            format!(r#"{{"kind":"restore_unstage","node":"node1","backup_id":"{ID}"}}"#),
        ),
        (
            "head1",
            format!(r#"{{"kind":"restore_command","node":"head1","backup_id":"{ID}","step":"kafka"}}"#),
        ),
        (
            "head1",
            format!(r#"{{"kind":"restore_command","node":"head1","backup_id":"{ID}","step":"opensearch"}}"#),
        ),
    ];
    // No lock; a restore of another backup; a backup of this one.
    for lock in [None, Some(("restore", ID2)), Some(("backup", ID))] {
        let _held = lock.map(|(op, id)| s.c.hold_lock(op, id));
        for (node, body) in &jobs {
            let (code, answer) = s.c.api(node, "POST", "/v1/jobs", Some(body));
            let case = format!("{body} under lock {lock:?}");
            assert_eq!(code, 409, "{case}: {answer}");
            let error = answer["error"].as_str().unwrap_or_default();
            assert!(
                error.starts_with("refused: ")
                    && error.contains(&format!(
                        "runs only while the repository lock names a restore of backup {ID}"
                    )),
                "{case}: {error}"
            );
            match lock {
                None => assert!(error.contains("the repository is not locked"), "{case}: {error}"),
                Some((op, id)) => assert!(
                    error.contains(&format!("it is held by {op} of backup {id} by pid")),
                    "{case}: {error}"
                ),
            }
        }
    }
    // Nothing was touched: node1's blocks (the newer ones too), no staging,
    // no program run, no restore job on any agent.
    assert_eq!(common::snapshot(&node1), before);
    assert_eq!(leftovers(&node1), Vec::<String>::new());
    assert!(!s.c.dir.path().join("staging-node1").exists());
    for program in ["ndb_restore", "kafka-restore.sh", "reindex-epipe.sh"] {
        assert!(runs_of(&s.c, program).is_empty(), "{program} ran");
    }
    for node in ["head1", "node1"] {
        let (_, jobs) = s.c.api(node, "GET", "/v1/jobs", None);
        let restores: Vec<&Value> = jobs
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| {
                j["request"]["kind"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("restore") || k == "hopsfs_restore")
            })
            .collect();
        assert!(restores.is_empty(), "{node}: {restores:?}");
    }

    // The same token and request under the restore's own lock is accepted.
    let _held = s.c.hold_lock("restore", ID);
    let (code, answer) = s.c.api("head1", "POST", "/v1/jobs", Some(&jobs[4].1));
    assert_eq!(code, 202, "{answer}");
    let job = answer["job_id"].as_str().unwrap().to_owned();
    let mut last = Value::Null;
    common::cluster::wait_until("the kafka job", Duration::from_secs(30), || {
        last = s.c.api("head1", "GET", &format!("/v1/jobs/{job}?wait_ms=1000"), None).1;
        last["state"] != "running"
    });
    assert_eq!(last["state"], "succeeded", "{last}");
    assert_eq!(runs_of(&s.c, "kafka-restore.sh").len(), 1);
}
