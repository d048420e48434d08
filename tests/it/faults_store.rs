//! The block store under faults (issue 11): blocks land under their final
//! names only once durable, a crash before the renames leaves no block under
//! a final name, a damaged stored block is found and replaced, replicas of
//! the wrong length are bad replicas, and the repository gives "others" no
//! access whatever the umask.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common;
use crate::common::cluster::Cluster;
use crate::common::scenario::{self, block_name, meta_of, stored_block_of_at_least, stored_blocks};
use crate::common::text;
use hwdr::hopsfs::meta;
use hwdr::hopsfs::store::BlockKey;
use hwdr::repo::store::ObjectKey;
use serde_json::Value;
use testkit::gen::{GenBlock, GenSpec, Generated};

const ID: &str = "2611231819";
const ID2: &str = "2611231820";

/// One system call of an `strace -f -y` log: the lines where it started and
/// ended (a call other threads interrupt is split over two lines), its name
/// and its text (both halves joined).
#[derive(Debug)]
struct Call {
    start: usize,
    end: usize,
    name: String,
    text: String,
}

impl Call {
    /// Whether it returned without an error. strace pads short lines, as
    /// calls of several threads resumed are: `<... rename resumed>)    = 0`.
    fn ok(&self) -> bool {
        self.text
            .rsplit_once(" = ")
            .is_some_and(|(_, result)| !result.starts_with('-') && !result.starts_with('?'))
    }

    /// Its string arguments (paths), in order.
    fn strings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut chars = self.text.chars();
        while let Some(c) = chars.next() {
            if c != '"' {
                continue;
            }
            let mut s = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => s.extend(chars.next()),
                    '"' => break,
                    c => s.push(c),
                }
            }
            out.push(s);
        }
        out
    }

    /// The path `-y` shows for its first argument, a file descriptor.
    fn fd_path(&self) -> Option<&str> {
        let args = self.text.split_once('(')?.1;
        let (fd, rest) = args.split_once('<')?;
        fd.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
        Some(rest.split_once('>')?.0)
    }
}

/// Parses an `strace -f` log (every line starts with the pid).
fn calls(log: &str) -> Vec<Call> {
    let mut unfinished: HashMap<&str, (usize, String)> = HashMap::new();
    let mut out = Vec::new();
    for (i, line) in log.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            unfinished.insert(pid, (i, head.to_owned()));
            continue;
        }
        let (start, text) = match rest.strip_prefix("<... ") {
            Some(resumed) => {
                let Some((_, tail)) = resumed.split_once("resumed>") else {
                    continue;
                };
                let Some((start, head)) = unfinished.remove(pid) else {
                    continue;
                };
                (start, format!("{head}{tail}"))
            }
            None => (i, rest.to_owned()),
        };
        if text.starts_with("+++") || text.starts_with("---") {
            continue;
        }
        let name = text.split('(').next().unwrap_or("").to_owned();
        out.push(Call {
            start,
            end: i,
            name,
            text,
        });
    }
    out
}

fn is_temp_name(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with('.') && name.contains(".tmp-")
}

#[test]
fn a_block_renamed_into_place_is_always_durable() {
    // One node that is head, RonDB and HopsFS node: the leader uploads the
    // blocks itself, so one strace sees every write, sync and rename.
    let c = Cluster::new(&[("node1", &["head", "rondb", "hopsfs"], &[2])], 2);
    let generated = c.with_hopsfs(GenSpec {
        nodes: 1,
        blocks: 40,
        block_pools: 1,
        replication: 1,
        max_size: 20_000,
        ..GenSpec::default()
    });
    let trace = c.dir.path().join("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-y", "-s", "512", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=openat,write,fsync,fdatasync,syncfs,rename,renameat,renameat2",
        ])
        .arg(common::hwdr_bin())
        .arg("--config")
        .arg(&c.nodes["node1"].config)
        .args(["backup", "--id", ID])
        .output()
        .expect("strace runs (make deps installs it)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(c.manifest(ID).unwrap()["status"], "complete");

    let log = fs::read_to_string(&trace).unwrap();
    let calls = calls(&log);
    let repo = c.repo.display().to_string();
    let blocks_dir = format!("{repo}/blocks/");
    // Where each temp file was created and last written, every sync, every rename.
    let mut created: HashMap<String, usize> = HashMap::new();
    let mut written: HashMap<String, usize> = HashMap::new();
    // (start, end, the file for an fsync; None for a syncfs of the repository's file system)
    let mut syncs: Vec<(usize, usize, Option<String>)> = Vec::new();
    let mut renames: Vec<(usize, usize, String, String)> = Vec::new();
    for call in calls.iter().filter(|c| c.ok()) {
        match call.name.as_str() {
            "openat" if call.text.contains("O_CREAT") => {
                if let Some(path) = call.strings().first() {
                    created.insert(path.clone(), call.end);
                }
            }
            "write" => {
                if let Some(path) = call.fd_path() {
                    written.insert(path.to_owned(), call.end);
                }
            }
            "syncfs" if call.fd_path().is_some_and(|p| p.starts_with(&repo)) => {
                syncs.push((call.start, call.end, None))
            }
            "fsync" | "fdatasync" => syncs.push((call.start, call.end, call.fd_path().map(str::to_owned))),
            "rename" | "renameat" | "renameat2" => {
                let s = call.strings();
                if s.len() == 2 {
                    renames.push((call.start, call.end, s[0].clone(), s[1].clone()));
                }
            }
            _ => {}
        }
    }
    let into_store: Vec<&(usize, usize, String, String)> = renames
        .iter()
        .filter(|(_, _, from, to)| to.starts_with(&blocks_dir) && is_temp_name(from))
        .collect();
    // Every block and its .meta were renamed into place, nothing else.
    assert_eq!(
        into_store.len(),
        2 * generated.blocks.len(),
        "renames into the store: {into_store:#?}"
    );
    let mut offenders = Vec::new();
    for (start, _, from, to) in &into_store {
        let Some(made) = created.get(from) else {
            offenders.push(format!("{to}: its temp file {from} was not seen created"));
            continue;
        };
        let last = written.get(from).copied().unwrap_or(0).max(*made);
        let durable = syncs
            .iter()
            .any(|(s, e, file)| *s > last && *e < *start && file.as_ref().is_none_or(|f| f == from));
        if !durable {
            offenders.push(format!(
                "{to}: renamed (line {}) with no syncfs or fsync between its last write (line {}) and the rename",
                start + 1,
                last + 1
            ));
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
    // The .meta lands first: the block file is the commit mark.
    let renamed_at: HashMap<&str, usize> = into_store.iter().map(|(s, _, _, to)| (to.as_str(), *s)).collect();
    for (to, at) in &renamed_at {
        if !to.ends_with(".meta") {
            let meta_at = renamed_at[format!("{to}.meta").as_str()];
            assert!(meta_at < *at, "{to} was renamed into place before its .meta");
        }
    }
    // And the renames themselves are durable before the manifest names the blocks.
    let last_block = into_store.iter().map(|(_, e, _, _)| *e).max().unwrap();
    let manifest_at = renames
        .iter()
        .find(|(_, _, _, to)| to.ends_with(&format!("/backups/{ID}/manifest.json")))
        .map(|(s, _, _, _)| *s)
        .expect("the manifest was renamed into place");
    assert!(
        syncs
            .iter()
            .any(|(s, e, file)| file.is_none() && *s > last_block && *e < manifest_at),
        "no syncfs of the repository between the last block rename (line {}) and the manifest (line {})",
        last_block + 1,
        manifest_at + 1
    );
}

#[test]
fn a_crash_between_write_and_rename_leaves_no_block_under_a_final_name() {
    let mut s = scenario::cluster(80);
    s.c.kill_agent("node2");
    s.c.start_agent_with("node2", |cmd| {
        cmd.env("FAILPOINTS", "store-before-rename=return(kill)");
    });
    let out = s.c.hwdr("head1", &["backup", "--id", ID]);
    assert!(!out.status.success(), "node2 was killed, yet: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("node2"), "{err}");
    assert_ne!(s.c.manifest(ID).unwrap()["status"], "complete");
    assert!(s
        .c
        .agent_log("node2")
        .contains("fault injection at store-before-rename"));

    // node2 wrote its blocks under temp names and died: they are there, as
    // temp files only; every file under a final name is whole.
    let assigned = fs::read_to_string(s.c.repo.join(format!("backups/{ID}/hopsfs/node2/assign-1.tsv"))).unwrap();
    assert!(!assigned.is_empty(), "node2 was given no block");
    let temps: Vec<String> = common::tree(&s.c.repo.join("blocks"))
        .into_iter()
        .filter(|p| is_temp_name(p))
        .collect();
    assert!(
        !temps.is_empty(),
        "the crash left no temp file: did it happen before the writes?"
    );
    for line in assigned.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (pool, id, gs) = (f[0], f[1], f[2]);
        let blocks = common::tree(&s.c.repo.join("blocks").join(pool));
        let name = format!("blk_{id}_{gs}");
        assert!(
            !blocks
                .iter()
                .any(|p| p.ends_with(&format!("/{name}")) || p.ends_with(&format!("/{name}.meta"))),
            "{pool}/{name} is under its final name although node2 died before renaming it"
        );
    }
    let repo = s.c.repo.clone();
    let whole = |what: &str| {
        for block in stored_blocks(&repo) {
            if let Err(e) = meta::verify_file(&block, &meta_of(&block)) {
                panic!(
                    "{what}: {} is under its final name but not whole: {e:#}",
                    block.display()
                );
            }
        }
    };
    whole("after the crash");

    // The agent comes back; the next backup is complete and every block verifies.
    s.c.kill_agent("node2");
    s.c.start_agent("node2");
    assert!(!s.c.repo.join("lock").exists(), "the leader left its lock");
    let out = s.c.hwdr("head1", &["backup", "--id", ID2]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.c.manifest(ID2).unwrap()["status"], "complete");
    let verify = s.c.hwdr("head1", &["verify", ID2, "--full"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stdout));
    assert_eq!(stored_blocks(&s.c.repo).len(), s.generated.blocks.len());
    whole("after the next backup");
}

#[test]
fn a_batch_that_cannot_be_made_durable_fails_the_backup_naming_the_repository() {
    // Issue 17: the batches grew to thousands of files; the one failing
    // still fails the backup, and says where.
    let mut s = scenario::cluster(40);
    s.c.kill_agent("node2");
    s.c.start_agent_with("node2", |cmd| {
        cmd.env("FAILPOINTS", "store-before-sync=return(fail)");
    });
    let out = s.c.hwdr("head1", &["backup", "--id", ID]);
    assert!(!out.status.success(), "the sync failed, yet: {}", text(&out.stderr));
    assert_ne!(s.c.manifest(ID).unwrap()["status"], "complete");
    let err = text(&out.stderr);
    let repo = s.c.repo.display().to_string();
    for what in [
        "node2",
        "storing a batch of",
        repo.as_str(),
        "injected failure at store-before-sync",
    ] {
        assert!(err.contains(what), "{what:?} not in: {err}");
    }
    // Nothing of node2's share is under a final name.
    let assigned = fs::read_to_string(s.c.repo.join(format!("backups/{ID}/hopsfs/node2/assign-1.tsv"))).unwrap();
    let stored: Vec<String> = stored_blocks(&s.c.repo)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    for line in assigned.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let name = format!("/blk_{}_{}", f[1], f[2]);
        assert!(!stored.iter().any(|p| p.ends_with(&name)), "{name} is stored");
    }
}

#[test]
fn a_zero_filled_stored_block_is_replaced_by_backup_check_store() {
    let s = scenario::backed_up(ID);
    let block = stored_block_of_at_least(&s.c.repo, 2000);
    let name = block_name(&s.c.repo, &block);
    let original = fs::read(&block).unwrap();
    fs::write(&block, vec![0u8; original.len()]).unwrap();

    // Plain verify checks presence, length and .meta, not content: it passes.
    let verify = s.c.hwdr("head1", &["verify", ID]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );
    // --full reads the block against its CRCs and names it.
    let verify = s.c.hwdr("head1", &["verify", ID, "--full"]);
    assert_eq!(verify.status.code(), Some(9), "{}", text(&verify.stdout));
    let report = text(&verify.stdout);
    let damaged: Vec<&str> = report.lines().filter(|l| l.starts_with("DAMAGED")).collect();
    assert_eq!(damaged.len(), 1, "{report}");
    assert!(damaged[0].starts_with(&format!("DAMAGED {name}: ")), "{report}");

    // A plain backup trusts the last complete backup's blocks; --check-store
    // reads every stored block and takes the damaged one again.
    let out = s.c.hwdr("head1", &["backup", "--id", ID2, "--check-store"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("1 stored block(s) failed their CRC check"), "{err}");
    assert_eq!(s.c.manifest(ID2).unwrap()["hopsfs"]["new_blocks"], 1);
    assert!(fs::read(&block).unwrap() == original, "{name} was not put back");
    for id in [ID, ID2] {
        let verify = s.c.hwdr("head1", &["verify", id, "--full"]);
        assert_eq!(verify.status.code(), Some(0), "{id}: {}", text(&verify.stdout));
    }
}

/// The path of `block`'s replica on `node` (0-based).
fn replica(g: &Generated, node: usize, block: &GenBlock) -> std::path::PathBuf {
    g.nodes[node].data_dir.join(g.block_rel_path(block))
}

/// `pool/blk_<id>_<genstamp>`, as the manifest names a block.
fn key(g: &Generated, block: &GenBlock) -> String {
    format!("{}/blk_{}_{}", g.pool_name(block), block.id, block.genstamp)
}

/// Where the repository stores `block`.
fn stored(repo: &Path, g: &Generated, block: &GenBlock) -> std::path::PathBuf {
    repo.join(
        ObjectKey::block(&BlockKey {
            pool: g.pool_name(block).to_owned(),
            id: block.id,
            genstamp: block.genstamp,
        })
        .as_str(),
    )
}

fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// The manifest's bad replicas that name `key` on `node`.
fn bad_replicas_of<'a>(m: &'a Value, key: &str, node: &str) -> Vec<&'a str> {
    m["hopsfs"]["bad_replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|b| b.starts_with(&format!("{key} on {node}: ")))
        .collect()
}

/// Runs a `hopsfs_restore` job of backup `id` on `node` under a restore
/// lock and waits for its end.
fn restore_job(c: &Cluster, node: &str, id: &str) -> Value {
    let _lock = c.hold_lock("restore", id);
    let body = format!(r#"{{"kind":"hopsfs_restore","node":"{node}","backup_id":"{id}","clean":false}}"#);
    let (status, created) = c.api(node, "POST", "/v1/jobs", Some(&body));
    assert_eq!(status, 202, "{created}");
    let job = created["job_id"].as_str().unwrap().to_owned();
    let mut last = Value::Null;
    common::cluster::wait_until("the restore job", std::time::Duration::from_secs(60), || {
        last = c.api(node, "GET", &format!("/v1/jobs/{job}?wait_ms=1000"), None).1;
        last["state"] != "running"
    });
    last
}

#[test]
fn a_replica_of_the_wrong_length_is_a_bad_replica_not_a_failed_backup() {
    let s = scenario::cluster(60);
    let g = &s.generated;
    let before: Vec<_> = g.nodes.iter().map(|n| common::snapshot(&n.data_dir)).collect();
    // Three blocks of some size, each on every node (replication 3).
    let mut big = g.blocks.iter().filter(|b| b.len >= 3000 && b.len % 512 != 0);
    let (cut, grown, twice) = (big.next().unwrap(), big.next().unwrap(), big.next().unwrap());
    let good = |b: &GenBlock| fs::read(replica(g, 2, b)).unwrap();
    // node1's replica of `cut` lost its tail; node2's replica of `grown` got
    // bytes appended; `twice` is cut the same way on node1 and node2, so the
    // wrong length is the one most replicas have.
    truncate(&replica(g, 0, cut), cut.len - 700);
    append(&replica(g, 1, grown), &[7u8; 100]);
    for node in [0, 1] {
        truncate(&replica(g, node, twice), twice.len / 2);
    }

    let out = s.c.hwdr("head1", &["backup", "--id", ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = s.c.manifest(ID).unwrap();
    assert_eq!(m["status"], "complete");
    for (block, node, len) in [
        (cut, "node1", cut.len - 700),
        (grown, "node2", grown.len + 100),
        (twice, "node1", twice.len / 2),
        (twice, "node2", twice.len / 2),
    ] {
        let k = key(g, block);
        let named = bad_replicas_of(&m, &k, node);
        let expected = format!("{len} bytes, the good replica has {}", block.len);
        assert!(
            named.iter().any(|b| b.contains(&expected)),
            "{k} on {node} not reported as {expected:?}: {}",
            m["hopsfs"]["bad_replicas"]
        );
        assert_eq!(m["hopsfs"]["lengths"][&k], block.len, "{}", m["hopsfs"]);
    }
    // Good replicas are not reported.
    assert!(bad_replicas_of(&m, &key(g, cut), "node2").is_empty());
    assert!(bad_replicas_of(&m, &key(g, cut), "node3").is_empty());
    assert!(bad_replicas_of(&m, &key(g, twice), "node3").is_empty());
    // The store holds the good replicas, and they verify.
    for block in [cut, grown, twice] {
        let stored = stored(&s.c.repo, g, block);
        assert!(fs::read(&stored).unwrap() == good(block), "{}", key(g, block));
    }
    let verify = s.c.hwdr("head1", &["verify", ID, "--full"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stdout));

    // Restoring node1 and node2 gives them back the good blocks.
    for (i, node) in [(0, "node1"), (1, "node2")] {
        let status = restore_job(&s.c, node, ID);
        assert_eq!(status["state"], "succeeded", "{status}");
        assert_eq!(common::snapshot(&g.nodes[i].data_dir), before[i], "{node}");
    }
}

#[test]
fn a_block_bad_on_every_replica_still_fails_naming_it() {
    // Each replica bad in its own way: cut short, grown, and a flipped byte.
    let s = scenario::cluster(30);
    let g = &s.generated;
    let block = g.blocks.iter().find(|b| b.len >= 3000 && b.len % 512 != 0).unwrap();
    truncate(&replica(g, 0, block), block.len - 600);
    append(&replica(g, 1, block), &[1u8; 50]);
    scenario::flip(&replica(g, 2, block));
    let out = s.c.hwdr("head1", &["backup", "--id", ID]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let k = key(g, block);
    assert!(err.contains("bad on every replica") && err.contains(&k), "{err}");
    // What each node found is named.
    for node in ["node1", "node2", "node3"] {
        assert!(err.contains(&format!("{node}: ")), "{node} not named: {err}");
    }
    let m = s.c.manifest(ID).unwrap();
    assert_eq!(m["status"], "failed");
    assert!(!stored(&s.c.repo, g, block).exists(), "{k} was stored");
}

/// Pins a bug: `hwdr repo init` wrote `hwdr-repo.json` 0644 and `backups/`
/// 0755, and the lock was created 0644.
#[test]
fn repository_files_have_no_access_for_others_whatever_the_umask() {
    let mut s = scenario::cluster(40);
    let umask_022 = |cmd: &mut Command| {
        // SAFETY: umask(2) is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            });
        }
    };
    for node in ["node1", "node2", "node3"] {
        s.c.kill_agent(node);
        // node1 pauses at its first block, so the repository can be looked
        // at while the backup runs (its lock, its unfinished folder).
        s.c.start_agent_with(node, |cmd| {
            umask_022(cmd);
            if node == "node1" {
                cmd.env("FAILPOINTS", "hopsfs-upload-block=1*return(sleep:2000)");
            }
        });
    }
    let config = s.c.nodes["head1"].config.clone();
    let hwdr = |args: &[&str]| {
        let mut cmd = Command::new(common::hwdr_bin());
        cmd.arg("--config").arg(&config).args(args);
        umask_022(&mut cmd);
        cmd
    };
    let mut offenders = Vec::new();
    let backup = hwdr(&["backup", "--id", ID])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::cluster::wait_until("node1's pause", std::time::Duration::from_secs(30), || {
        s.c.agent_log("node1")
            .contains("fault injection at hopsfs-upload-block")
    });
    assert!(s.c.repo.join("lock").exists());
    offenders.extend(others_may_access(&s.c.repo));
    let out = backup.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    scenario::add_blocks(&mut s, 5, 9);
    for args in [
        &["backup", "--id", ID2, "--check-store"][..],
        &["verify", ID2, "--full"],
        &["prune"],
    ] {
        let out = hwdr(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let after = others_may_access(&s.c.repo);
    assert!(
        after.len() > 2 * s.generated.blocks.len(),
        "only {} entries",
        after.len()
    );
    offenders.extend(after);
    offenders.retain(|o| !o.starts_with("ok "));
    offenders.sort();
    offenders.dedup();
    assert!(
        offenders.is_empty(),
        "readable or writable by others:\n{}",
        offenders.join("\n")
    );
}

/// Every file and folder below `repo` (the folder itself is the
/// operator's): `ok <path>`, or its mode and path if "others" have any bit.
fn others_may_access(repo: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![repo.to_path_buf()];
    while let Some(dir) = stack.pop() {
        // Files may come and go while a backup runs.
        let Ok(read) = fs::read_dir(&dir) else { continue };
        for e in read.flatten() {
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o007 != 0 {
                out.push(format!("{mode:o} {}", e.path().display()));
            } else {
                out.push(format!("ok {}", e.path().display()));
            }
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}
