//! Integration tests of `hwdr verify`: it catches a flipped byte in a block
//! (with --full), a truncated RonDB part and a missing file, naming each.

mod common;

use std::fs;

use common::cluster::Cluster;
use common::text;
use hwdr::hopsfs::gen::GenSpec;

const ID: &str = "2611231819";

fn backed_up() -> Cluster {
    let mut c = Cluster::new(
        &[
            ("head1", &["head"], &[]),
            ("node1", &["rondb", "hopsfs"], &[2]),
            ("node2", &["hopsfs"], &[]),
        ],
        2,
    );
    c.with_hopsfs(GenSpec {
        nodes: 2,
        blocks: 30,
        replication: 2,
        max_size: 20_000,
        ..GenSpec::default()
    });
    c.start_agent("node1");
    c.start_agent("node2");
    let out = c.hwdr("head1", &["backup", "--id", ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    c
}

#[test]
fn verify_catches_flipped_bytes_truncated_parts_and_missing_files() {
    let c = backed_up();
    let ok = c.hwdr("head1", &["verify", ID, "--full"]);
    assert!(ok.status.success(), "{}", text(&ok.stdout));
    assert!(
        text(&ok.stdout).contains(&format!("backup {ID}: ok (")),
        "{}",
        text(&ok.stdout)
    );
    let latest = c.hwdr("head1", &["verify", "--latest"]);
    assert!(latest.status.success());

    // A flipped byte in a stored block: same size, so only --full sees it.
    let blocks = common::tree(&c.repo.join("blocks"));
    let block = blocks
        .iter()
        .find(|p| !p.ends_with(".meta") && fs::metadata(c.repo.join("blocks").join(p.as_str())).unwrap().len() > 1000)
        .unwrap();
    let path = c.repo.join("blocks").join(block);
    let mut bytes = fs::read(&path).unwrap();
    bytes[600] ^= 1;
    fs::write(&path, bytes).unwrap();
    assert!(
        c.hwdr("head1", &["verify", ID]).status.success(),
        "a quick verify does not re-read blocks"
    );
    let full = c.hwdr("head1", &["verify", ID, "--full"]);
    assert_eq!(full.status.code(), Some(9));
    let name = block.rsplit('/').next().unwrap();
    assert!(
        text(&full.stdout)
            .lines()
            .any(|l| l.starts_with("DAMAGED blocks/") && l.contains(name) && l.contains("checksum mismatch")),
        "{}",
        text(&full.stdout)
    );

    // A truncated RonDB part and a missing file, each named.
    let backup = c.repo.join("backups").join(ID);
    let part = common::tree(&backup)
        .into_iter()
        .find(|p| p.ends_with(".Data"))
        .unwrap();
    let data = fs::read(backup.join(&part)).unwrap();
    fs::write(backup.join(&part), &data[..data.len() / 2]).unwrap();
    fs::remove_file(backup.join("rondb/users.sql")).unwrap();
    let out = c.hwdr("head1", &["verify", ID, "--json"]);
    assert_eq!(out.status.code(), Some(9));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let damage: Vec<&str> = report["damage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        damage
            .iter()
            .any(|d| d.starts_with(&part) && d.contains("the manifest says")),
        "{damage:?}"
    );
    assert!(damage.iter().any(|d| d.starts_with("rondb/users.sql")), "{damage:?}");
    assert_eq!(damage.len(), 2, "{damage:?}");
}
