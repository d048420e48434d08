//! A backed-up cluster to damage, wipe and restore: head1 (head), node1
//! (rondb 2 + hopsfs), node2 (rondb 3 + hopsfs), node3 (hopsfs), generated
//! HopsFS trees with real CRCs that the simulated RonDB's metadata names, and
//! helpers to look at what an operator would see afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use testkit::gen::{self, GenSpec, Generated};

use super::cluster::Cluster;
use super::{run_ok, sim_src, text, SnapshotEntry};

/// A cluster with one complete backup and what it held.
pub struct Setup {
    pub c: Cluster,
    pub generated: Generated,
    /// The generator's spec and root, to add blocks later.
    pub spec: GenSpec,
    pub root: PathBuf,
    /// `simctl dump` at the backup: the RonDB content to get back.
    pub rondb: String,
    /// Each data folder as it was backed up.
    pub trees: Vec<Vec<SnapshotEntry>>,
}

/// Runs `simctl <args[0]> <sim> <args[1..]>` and returns its output.
pub fn simctl(c: &Cluster, args: &[&str]) -> String {
    let out = run_ok(
        Command::new(sim_src().join("simctl"))
            .arg(args[0])
            .arg(&c.sim)
            .args(&args[1..]),
    );
    text(&out.stdout)
}

/// The four nodes with agents on node1..node3, `blocks` generated blocks
/// (replication 3, so every node holds every block), not yet backed up.
pub fn cluster(blocks: usize) -> Setup {
    cluster_with(&[], blocks, |_| {})
}

/// [`cluster`] with extra head nodes `heads` (agents started too), and
/// `setup` run on the cluster before any agent starts (drop-ins, files).
pub fn cluster_with(heads: &[&str], blocks: usize, setup: impl FnOnce(&Cluster)) -> Setup {
    let mut nodes: Vec<(&str, &[&str], &[u32])> = vec![("head1", &["head"], &[])];
    nodes.extend(heads.iter().map(|h| (*h, &["head"][..], &[][..])));
    nodes.extend([
        ("node1", &["rondb", "hopsfs"][..], &[2][..]),
        ("node2", &["rondb", "hopsfs"][..], &[3][..]),
        ("node3", &["hopsfs"][..], &[][..]),
    ]);
    let mut c = Cluster::new(&nodes, 2);
    let hdfs = uzers::get_user_by_name("hdfs").unwrap();
    let hadoop = uzers::get_group_by_name("hadoop").unwrap();
    let spec = GenSpec {
        nodes: 3,
        blocks,
        block_pools: 2,
        replication: 3,
        max_size: 30_000,
        owner: Some((hdfs.uid(), hadoop.gid())),
        ..GenSpec::default()
    };
    let generated = c.with_hopsfs(spec.clone());
    let dirs: Vec<String> = generated
        .nodes
        .iter()
        .map(|n| n.data_dir.display().to_string())
        .collect();
    simctl(&c, &["blocks", "--data-dirs", &dirs.join(",")]);
    setup(&c);
    for n in heads.iter().chain(&["node1", "node2", "node3"]) {
        c.start_agent(n);
    }
    let root = c.dir.path().join("hopsfs");
    Setup {
        c,
        generated,
        spec,
        root,
        rondb: String::new(),
        trees: Vec::new(),
    }
}

/// [`cluster`] with 80 blocks and one complete backup `id`.
pub fn backed_up(id: &str) -> Setup {
    let mut s = cluster(80);
    let out = s.c.hwdr("head1", &["backup", "--id", id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.rondb = simctl(&s.c, &["dump"]);
    s.trees = s.generated.nodes.iter().map(|n| super::snapshot(&n.data_dir)).collect();
    s
}

/// Every node as after a redeploy: an empty RonDB, no data node folders, no
/// local RonDB backups, no restore state, no staged files.
pub fn wipe(s: &Setup) {
    simctl(&s.c, &["wipe"]);
    for n in &s.generated.nodes {
        let _ = fs::remove_dir_all(&n.data_dir);
    }
    for entry in fs::read_dir(&s.c.sim).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("ndb") {
            let _ = fs::remove_dir_all(entry.path().join("backups/BACKUP"));
        }
    }
    for entry in fs::read_dir(s.c.dir.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("state-") || name.starts_with("staging-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// RonDB and every data folder hold exactly what was backed up.
pub fn assert_restored(s: &Setup) {
    assert_eq!(
        simctl(&s.c, &["dump"]),
        s.rondb,
        "RonDB content differs from the backup"
    );
    for (i, n) in s.generated.nodes.iter().enumerate() {
        assert_eq!(
            super::snapshot(&n.data_dir),
            s.trees[i],
            "node{} data folder differs",
            i + 1
        );
    }
}

/// The recorded runs of one simulated program.
pub fn runs_of(c: &Cluster, program: &str) -> Vec<Value> {
    fs::read_to_string(c.sim.join("state/invocations.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["program"] == program)
        .collect()
}

/// Every stored block file (not `.meta`, not a temp file) below `<repo>/blocks`.
pub fn stored_blocks(repo: &Path) -> Vec<PathBuf> {
    super::tree(&repo.join("blocks"))
        .into_iter()
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            name.starts_with("blk_") && !name.ends_with(".meta")
        })
        .map(|p| repo.join("blocks").join(p))
        .collect()
}

/// A stored block's `.meta`.
pub fn meta_of(block: &Path) -> PathBuf {
    PathBuf::from(format!("{}.meta", block.display()))
}

/// How `verify` and the restore name a stored block: `blocks/<pool>/blk_<id>_<genstamp>`.
pub fn block_name(repo: &Path, block: &Path) -> String {
    let rel = block.strip_prefix(repo.join("blocks")).unwrap();
    let pool = rel.components().next().unwrap().as_os_str().to_string_lossy();
    format!("blocks/{pool}/{}", block.file_name().unwrap().to_string_lossy())
}

/// A stored block of at least `min` bytes.
pub fn stored_block_of_at_least(repo: &Path, min: u64) -> PathBuf {
    stored_blocks(repo)
        .into_iter()
        .find(|p| fs::metadata(p).unwrap().len() >= min)
        .unwrap_or_else(|| panic!("no stored block of {min} bytes or more"))
}

/// Flips one byte in the middle of `path`.
pub fn flip(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

/// hwdr's leftovers below `dir`: temp files (`.<name>.tmp-<pid>`) and
/// staging folders (`.hwdr-staging`).
pub fn leftovers(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(read) = fs::read_dir(dir) else { return };
        for e in read.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.contains(".tmp-") || name == hwdr::hopsfs::restore::STAGING {
                out.push(path.display().to_string());
            }
            if path.is_dir() {
                walk(&path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// `hwdr restore <id> --status` of the leader.
pub fn status(s: &Setup, id: &str) -> String {
    text(&s.c.hwdr("head1", &["restore", id, "--status"]).stdout)
}

/// The steps of a `--status` text with their status word (`done`, `failed`, ...).
pub fn step_states(status: &str) -> Vec<(String, String)> {
    status
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with(' ') && !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            (
                words.next().unwrap_or("").to_owned(),
                words.next().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Adds `count` new blocks to every node's tree (as HopsFS would after the backup).
pub fn add_blocks(s: &mut Setup, count: usize, seed: u64) {
    gen::add_blocks(&s.root, &s.spec, &mut s.generated, count, seed).unwrap();
}
