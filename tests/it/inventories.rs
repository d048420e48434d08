//! Deduplicated inventories (issue 17): a node's blocks are listed in
//! content-addressed pieces below `inventories/`, shared by every backup
//! that lists them. A backup with nothing new stores no piece and a few
//! hundred bytes per node; a change stores the pieces that hold it; prune
//! sweeps the pieces no kept backup names and never one a kept backup
//! names; a damaged piece is named by verify; a backup from before (every
//! block in `inventory.tsv`) still verifies and restores.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use hwdr::repo::store::{Backend, ObjectKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use testkit::gen::{self, GenSpec, Generated};

use crate::common::cluster::Cluster;
use crate::common::text;
use crate::restore::{assert_restored, backed_up_in, wipe, ID};

/// An object's bytes.
fn get(b: &dyn Backend, name: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    b.get(&ObjectKey::parse(name).unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

fn piece_key(name: &str) -> String {
    ObjectKey::inventory_piece(name).unwrap().as_str().to_owned()
}

/// The lines of a piece or tree after its first line.
fn piece_lines(b: &dyn Backend, name: &str) -> Vec<String> {
    let text = String::from_utf8(get(b, &piece_key(name))).unwrap();
    text.lines().skip(1).map(str::to_owned).collect()
}

/// The pieces a tree lists.
fn tree_pieces(b: &dyn Backend, tree: &str) -> Vec<String> {
    piece_lines(b, tree)
        .iter()
        .map(|l| l.split('\t').nth(1).unwrap().to_owned())
        .collect()
}

/// (id, genstamp, len) of each block line of a piece (format 2) or of the
/// fields after `block<TAB><dir><TAB><pool>` (format 1).
fn fields(line: &str) -> (u64, u64, u64) {
    let f: Vec<u64> = line.split('\t').take(3).map(|x| x.parse().unwrap()).collect();
    (f[0], f[1], f[2])
}

fn piece_blocks(b: &dyn Backend, piece: &str) -> Vec<(u64, u64, u64)> {
    piece_lines(b, piece).iter().map(|l| fields(l)).collect()
}

fn inventory_text(b: &dyn Backend, id: &str, node: &str) -> String {
    String::from_utf8(get(b, &format!("backups/{id}/hopsfs/{node}/inventory.tsv"))).unwrap()
}

/// The trees node `node`'s inventory in backup `id` names.
fn trees(b: &dyn Backend, id: &str, node: &str) -> Vec<String> {
    inventory_text(b, id, node)
        .lines()
        .filter_map(|l| l.strip_prefix("tree\t"))
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect()
}

/// Every tree and piece backup `id` names, over `nodes`.
pub(crate) fn named(b: &dyn Backend, id: &str, nodes: &[&str]) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for node in nodes {
        for tree in trees(b, id, node) {
            all.extend(tree_pieces(b, &tree));
            all.insert(tree);
        }
    }
    all
}

/// (id, genstamp, len) of every block node `node`'s inventory in backup
/// `id` lists, sorted: read from its pieces (format 2) or its lines
/// (format 1).
pub(crate) fn inventory_blocks(b: &dyn Backend, id: &str, node: &str) -> Vec<(u64, u64, u64)> {
    let text = inventory_text(b, id, node);
    let mut blocks: Vec<(u64, u64, u64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("block\t"))
        .map(|l| fields(l.splitn(3, '\t').nth(2).unwrap()))
        .collect();
    for tree in trees(b, id, node) {
        for piece in tree_pieces(b, &tree) {
            blocks.extend(piece_blocks(b, &piece));
        }
    }
    blocks.sort_unstable();
    blocks
}

/// The names of every object below `inventories/`.
fn stored_pieces(b: &dyn Backend) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    b.list(ObjectKey::PIECES, &mut |o| {
        names.insert(o.key.as_str().rsplit('/').next().unwrap().to_owned());
        Ok(())
    })
    .unwrap();
    names
}

/// Name → size of every object of the repository.
fn sizes(repo: &Path) -> std::collections::BTreeMap<String, u64> {
    crate::common::tree(repo)
        .into_iter()
        .map(|p| {
            let len = fs::metadata(repo.join(&p)).unwrap().len();
            (p, len)
        })
        .collect()
}

/// Three data nodes holding `blocks` small blocks in two pools, replication 3.
fn cluster(blocks: usize) -> (Cluster, Generated, GenSpec, PathBuf) {
    crate::hopsfs::cluster_with_blocks_of(blocks, 600)
}

const NODES: [&str; 3] = ["node1", "node2", "node3"];

fn backup(c: &Cluster, id: &str) {
    let out = c.hwdr("head1", &["backup", "--id", id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn pieces_are_shared_a_change_stores_its_pieces_prune_keeps_what_is_named_and_verify_names_damage() {
    let (c, mut generated, spec, root) = cluster(3000);
    let b = c.backend();
    backup(&c, "2611231800");
    let first = stored_pieces(b.as_ref());
    // Replication 3: the three nodes list the same blocks in the same pieces.
    let named1 = named(b.as_ref(), "2611231800", &NODES);
    assert_eq!(named1, first);
    assert_eq!(named(b.as_ref(), "2611231800", &["node1"]), first);
    for (i, node) in generated.nodes.iter().enumerate() {
        let mut expected: Vec<(u64, u64, u64)> = node
            .blocks
            .iter()
            .map(|b| {
                let b = &generated.blocks[*b as usize];
                (b.id, b.genstamp, b.len)
            })
            .collect();
        expected.sort_unstable();
        assert_eq!(inventory_blocks(b.as_ref(), "2611231800", NODES[i]), expected);
    }

    // Nothing new: no piece stored, a few hundred bytes of HopsFS files per node.
    let before = sizes(&c.repo);
    backup(&c, "2611231801");
    let after = sizes(&c.repo);
    assert_eq!(stored_pieces(b.as_ref()), first);
    let added: Vec<(&String, &u64)> = after.iter().filter(|(k, _)| !before.contains_key(*k)).collect();
    let hopsfs: u64 = added
        .iter()
        .filter(|(k, _)| k.starts_with("inventories/") || k.starts_with("backups/2611231801/hopsfs/"))
        .map(|(_, n)| **n)
        .sum();
    eprintln!("a nothing-new backup of 3,000 blocks on 3 nodes added {hopsfs} bytes of HopsFS files: {added:?}");
    assert!(hopsfs <= 16 * 1024, "{hopsfs} bytes: {added:?}");

    // New blocks: the pieces stored are those that hold them.
    let old: BTreeSet<(u64, u64, u64)> = inventory_blocks(b.as_ref(), "2611231801", "node1")
        .into_iter()
        .collect();
    gen::add_blocks(&root, &spec, &mut generated, 5, 17).unwrap();
    backup(&c, "2611231802");
    let named3 = named(b.as_ref(), "2611231802", &NODES);
    let trees3: BTreeSet<String> = NODES.iter().flat_map(|n| trees(b.as_ref(), "2611231802", n)).collect();
    let new_pieces: Vec<&String> = named3.difference(&named1).filter(|p| !trees3.contains(*p)).collect();
    assert!(!new_pieces.is_empty());
    let now: BTreeSet<(u64, u64, u64)> = inventory_blocks(b.as_ref(), "2611231802", "node1")
        .into_iter()
        .collect();
    let fresh: BTreeSet<&(u64, u64, u64)> = now.difference(&old).collect();
    assert_eq!(fresh.len(), 5);
    let mut in_new: BTreeSet<(u64, u64, u64)> = BTreeSet::new();
    for p in &new_pieces {
        let blocks = piece_blocks(b.as_ref(), p);
        assert!(blocks.iter().any(|x| fresh.contains(x)), "piece {p} holds no new block");
        in_new.extend(blocks);
    }
    assert!(fresh.iter().all(|x| in_new.contains(x)));
    // Pieces without a new block are the first backup's.
    assert!(named3
        .difference(&named1)
        .all(|p| new_pieces.contains(&p) || trees3.contains(p)));

    // Prune keeps only the newest: what only the older backups name is
    // swept, nothing the newest names.
    c.dropin_everywhere(
        "70-retention.toml",
        "[retention]\nkeep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\nmin_age = \"1s\"\n",
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = c.hwdr("head1", &["prune"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let gone = named1.difference(&named3).count();
    assert!(gone > 0);
    assert!(
        text(&out.stdout).contains(&format!("{gone} inventory piece(s)")),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(stored_pieces(b.as_ref()), named3);
    let verify = c.hwdr("head1", &["verify", "2611231802"]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
    // The newest restores on a wiped node, byte for byte.
    let node2 = &generated.nodes[1];
    let tree_before = crate::common::snapshot(&node2.data_dir);
    fs::remove_dir_all(&node2.data_dir).unwrap();
    let status = crate::hopsfs::restore_job(&c, "node2", "2611231802", false);
    assert_eq!(status["state"], "succeeded", "{status}");
    assert!(
        crate::common::snapshot(&node2.data_dir) == tree_before,
        "node2 differs after the restore"
    );

    // A damaged piece: verify names it.
    let victim = new_pieces[0];
    let path = c.repo.join(piece_key(victim));
    let body = fs::read_to_string(&path).unwrap().replacen('\t', "\t9", 1);
    fs::write(&path, body).unwrap();
    let verify = c.hwdr("head1", &["verify", "2611231802"]);
    assert_eq!(verify.status.code(), Some(9), "{}", text(&verify.stdout));
    let said = text(&verify.stdout);
    assert!(said.contains(victim.as_str()) && said.contains("damaged"), "{said}");
    assert!(said.contains("backups naming it: 2611231802"), "{said}");
}

/// Backup `id`'s inventories rewritten as hwdr wrote them before pieces
/// (format 1: every block in the file) and its manifest as format 2, with
/// its checksum recomputed as the README describes it.
fn to_format_1(c: &Cluster, id: &str) {
    let b = c.backend();
    let path = c.repo.join(format!("backups/{id}/manifest.json"));
    let mut m: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let nodes: Vec<String> = m["hopsfs"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    for node in &nodes {
        let mut out = String::new();
        let mut pool = String::new();
        for line in inventory_text(b.as_ref(), id, node).lines() {
            if line == "hwdr-hopsfs-inventory\t2" {
                out.push_str("hwdr-hopsfs-inventory\t1\n");
            } else if let Some(rest) = line.strip_prefix("tree\t") {
                let tree = rest.split('\t').next().unwrap();
                for piece in tree_pieces(b.as_ref(), tree) {
                    for l in piece_lines(b.as_ref(), &piece) {
                        out.push_str(&format!("block\t{pool}\t{l}\n"));
                    }
                }
            } else {
                if let Some(rest) = line.strip_prefix("pool\t") {
                    let f: Vec<&str> = rest.split('\t').collect();
                    pool = format!("{}\t{}", f[0], f[1]);
                }
                out.push_str(line);
                out.push('\n');
            }
        }
        let rel = format!("hopsfs/{node}/inventory.tsv");
        fs::write(c.repo.join(format!("backups/{id}/{rel}")), &out).unwrap();
        for n in m["nodes"].as_array_mut().unwrap() {
            for step in n["steps"].as_array_mut().unwrap() {
                for f in step
                    .get_mut("files")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if f["path"] == rel.as_str() {
                        f["size"] = out.len().into();
                        f["stored"] = out.len().into();
                        f["sha256"] = hex::encode(Sha256::digest(out.as_bytes())).into();
                    }
                }
            }
        }
    }
    m["format"] = 2.into();
    m.as_object_mut().unwrap().remove("checksum");
    let body = serde_json::to_string_pretty(&m).unwrap();
    let sum = hex::encode(Sha256::digest(body.as_bytes()));
    let file = format!(
        "{},\n  \"checksum\": \"sha256:{sum}\"\n}}\n",
        body.strip_suffix("\n}").unwrap()
    );
    fs::write(&path, file).unwrap();
}

#[test]
fn a_backup_from_before_pieces_lists_verifies_restores_and_lives_beside_new_ones() {
    let s = backed_up_in(|repo| format!("path = \"{}\"\n", repo.display()));
    to_format_1(&s.c, ID);
    // No piece is left: the backup must not need any.
    fs::remove_dir_all(s.c.repo.join("inventories")).unwrap();
    let list = s.c.hwdr("head1", &["list"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    assert!(!text(&list.stdout).contains("DAMAGED"), "{}", text(&list.stdout));
    let verify = s.c.hwdr("head1", &["verify", ID]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
    wipe(&s);
    let out = s.c.hwdr("head1", &["restore", ID]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_restored(&s);

    // A repository holding both: a new backup (pieces) next to the old one;
    // prune marks through both and sweeps nothing either names.
    let out = s.c.hwdr("head1", &["backup", "--id", "2611231830"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!stored_pieces(s.c.backend().as_ref()).is_empty());
    let out = s.c.hwdr("head1", &["prune"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("removed 0 backup(s), 0 block(s), 0 inventory piece(s)"),
        "{}",
        text(&out.stdout)
    );
    for id in [ID, "2611231830"] {
        let verify = s.c.hwdr("head1", &["verify", id]);
        assert!(verify.status.success(), "{id}: {}", text(&verify.stdout));
    }
}

#[test]
fn a_node_killed_while_it_stores_pieces_leaves_only_whole_pieces_and_the_next_backup_completes() {
    let (mut c, generated, _, _) = cluster(300);
    c.kill_agent("node2");
    c.start_agent_with("node2", |cmd| {
        cmd.env("FAILPOINTS", "inventory-piece-store=2*off->return(kill)");
    });
    let out = c.hwdr("head1", &["backup", "--id", "2611231800"]);
    assert!(!out.status.success(), "node2 was killed, yet: {}", text(&out.stderr));
    assert!(c
        .agent_log("node2")
        .contains("fault injection at inventory-piece-store"));
    // Its inventory was never stored: no backup names a piece it lacks.
    assert!(!c.repo.join("backups/2611231800/hopsfs/node2/inventory.tsv").exists());

    c.kill_agent("node2");
    c.start_agent("node2");
    backup(&c, "2611231801");
    let b = c.backend();
    let mut expected: Vec<(u64, u64, u64)> = generated.nodes[1]
        .blocks
        .iter()
        .map(|x| {
            let x = &generated.blocks[*x as usize];
            (x.id, x.genstamp, x.len)
        })
        .collect();
    expected.sort_unstable();
    assert_eq!(inventory_blocks(b.as_ref(), "2611231801", "node2"), expected);
    // Every piece under its name is whole: its name is the SHA-256 of its bytes.
    for name in stored_pieces(b.as_ref()) {
        let bytes = fs::read(c.repo.join(piece_key(&name))).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), name);
    }
    let verify = c.hwdr("head1", &["verify", "2611231801"]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
}
