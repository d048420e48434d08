//! Integration tests of `hwdr verify`: it catches a flipped byte in a block
//! (with --full), a truncated RonDB part and a missing file, naming each; a
//! hand-edited manifest is damaged and never restored; an id that does not
//! exist is "not found", never damage.

use std::fs;

use crate::common;
use crate::common::cluster::Cluster;
use crate::common::{text, Single};
use sha2::{Digest, Sha256};
use testkit::gen::GenSpec;

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

fn metric(c: &Single, name: &str) -> Option<String> {
    let text = fs::read_to_string(c.dir.path().join("state/hwdr.prom")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
}

/// Issue 7: a failed backup's status hand-edited to `complete` was listed
/// complete, verified "ok" and planned for restore with `ndb_restore -n 0`.
/// Its checksum fails, so it is damaged; and a "complete" manifest that names
/// no RonDB data node is damaged even with a valid checksum.
#[test]
fn a_failed_backup_hand_edited_to_complete_is_damaged_and_never_restored() {
    let c = Single::new(&[(2, 1)]);
    c.control("mysqlpump", "fail-once");
    assert_eq!(c.hwdr(&["backup", "--id", ID]).status.code(), Some(1));
    let path = c.backup_path(ID).join("manifest.json");
    let original = fs::read_to_string(&path).unwrap();
    assert!(original.contains("\"checksum\": \"sha256:"), "{original}");
    let edited = original.replacen("\"status\": \"failed\"", "\"status\": \"complete\"", 1);
    assert_ne!(edited, original);

    // The body's own checksum, recomputed by hand as docs/backup.md describes it.
    let forged = {
        let mut value: serde_json::Value = serde_json::from_str(&edited).unwrap();
        value.as_object_mut().unwrap().remove("checksum");
        let body = serde_json::to_string_pretty(&value).unwrap();
        let sum = hex::encode(Sha256::digest(body.as_bytes()));
        format!(
            "{},\n  \"checksum\": \"sha256:{sum}\"\n}}\n",
            body.strip_suffix("\n}").unwrap()
        )
    };
    for (text_of, why) in [
        (&edited, "its checksum does not match its content"),
        (&forged, "it says complete but names no RonDB data node"),
    ] {
        fs::write(&path, text_of).unwrap();
        let list: serde_json::Value = serde_json::from_slice(&c.hwdr(&["list", "--json"]).stdout).unwrap();
        assert_eq!(list[0]["status"], "damaged", "{list}");
        assert!(list[0]["error"].as_str().unwrap().contains(why), "{list}");

        let verify = c.hwdr(&["verify", ID]);
        assert_eq!(verify.status.code(), Some(9), "{}", text(&verify.stderr));
        assert!(
            text(&verify.stdout).contains(&format!("DAMAGED manifest.json: {why}")),
            "{}",
            text(&verify.stdout)
        );
        assert!(!text(&verify.stdout).contains(": ok ("));
        assert_eq!(
            metric(&c, "hwdr_last_verify_ok{cluster=\"prod\"}").as_deref(),
            Some("0")
        );

        for args in [&["restore", ID, "--plan"][..], &["restore", ID], &["drill", ID]] {
            let out = c.hwdr(args);
            assert_eq!(out.status.code(), Some(8), "{args:?}: {}", text(&out.stderr));
            assert!(
                text(&out.stderr).contains(&format!("backup {ID} is damaged: manifest.json: {why}")),
                "{args:?}: {}",
                text(&out.stderr)
            );
            assert!(!text(&out.stdout).contains("ndb_restore"), "{args:?}");
        }
        let latest = c.hwdr(&["verify", "--latest"]);
        assert_eq!(latest.status.code(), Some(1));
        assert!(text(&latest.stderr).contains("the repository has no complete backup"));
    }
    assert!(c.invocations().iter().all(|r| r["program"] != "ndb_restore"));
}

/// Issue 8: `verify` of an id that does not exist said "DAMAGED" (exit 9) and
/// set `hwdr_last_verify_ok 0`, firing the damaged-backup alert for a typo.
/// It is "not found" (10) and leaves the metric alone; a backup that is not
/// complete is "cannot be used" (8), never "ok". Issue 16: both say where to
/// look (`hwdr list`).
#[test]
fn verify_of_a_missing_id_is_not_found_and_of_a_failed_backup_is_refused_leaving_the_metric() {
    let c = Single::new(&[(2, 1)]);
    assert!(c.hwdr(&["backup", "--id", ID]).status.success());
    assert!(c.hwdr(&["verify", ID]).status.success());
    assert_eq!(
        metric(&c, "hwdr_last_verify_ok{cluster=\"prod\"}").as_deref(),
        Some("1")
    );
    let verified_at = metric(&c, "hwdr_last_verify_timestamp_seconds{cluster=\"prod\"}");

    let typo = "2611231918";
    let expected = format!(
        "hwdr: error: no backup {typo} in {}; `hwdr list` shows what there is\n",
        c.repo.display()
    );
    for args in [
        &["verify", typo][..],
        &["restore", typo],
        &["restore", typo, "--plan"],
        &["drill", typo],
    ] {
        let out = c.hwdr(args);
        assert_eq!(out.status.code(), Some(10), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).ends_with(&expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stdout).contains("DAMAGED"), "{args:?}");
    }

    c.control("mysqlpump", "fail-once");
    assert_eq!(c.hwdr(&["backup", "--id", "2611231820"]).status.code(), Some(1));
    fs::create_dir(c.backup_path("2611231821")).unwrap();
    for (id, why) in [
        ("2611231820", "backup 2611231820 is failed, not a complete backup"),
        (
            "2611231821",
            "backup 2611231821 has no manifest: it is not a complete backup (unfinished, or being taken); `hwdr \
             list` shows its state",
        ),
    ] {
        let out = c.hwdr(&["verify", id]);
        assert_eq!(out.status.code(), Some(8), "{id}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(why), "{id}: {}", text(&out.stderr));
        assert!(!text(&out.stdout).contains("ok"), "{id}: {}", text(&out.stdout));
    }
    assert_eq!(
        metric(&c, "hwdr_last_verify_ok{cluster=\"prod\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        metric(&c, "hwdr_last_verify_timestamp_seconds{cluster=\"prod\"}"),
        verified_at
    );
}

/// A repository written by hwdr 0.1 (format 1, manifests without checksum)
/// is not taken for damaged: every command names `hwdr repo upgrade`, which
/// seals the manifests that parse and leaves a damaged one damaged.
/// Issue 16: `verify` or `drill` without an id printed a usage line that did
/// not mention `--latest`, under clap's `error:` where every other error
/// says `hwdr: error:`.
#[test]
fn verify_and_drill_without_an_id_name_latest_in_the_usage_error() {
    let c = Single::new(&[(2, 1)]);
    for command in ["verify", "drill"] {
        let out = c.hwdr(&[command]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.starts_with("hwdr: error: the following required arguments were not provided:\n  <ID|--latest>\n"),
            "{command}: {err}"
        );
        assert!(
            err.contains(&format!("\nUsage: hwdr {command} <ID|--latest>")),
            "{command}: {err}"
        );
        assert!(text(&out.stdout).is_empty(), "{command}");
    }
}

#[test]
fn a_format_1_repository_is_upgraded_not_called_damaged() {
    let c = Single::new(&[(2, 1)]);
    for id in [ID, "2611231820"] {
        let out = c.hwdr(&["backup", "--id", id]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // As hwdr 0.1 left them: format 1, no checksum; one of them unreadable.
    for id in [ID, "2611231820"] {
        let path = c.backup_path(id).join("manifest.json");
        let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        m["format"] = 1.into();
        m.as_object_mut().unwrap().remove("checksum");
        fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }
    let broken = c.backup_path("2611231820").join("manifest.json");
    let mut bytes = fs::read(&broken).unwrap();
    bytes.truncate(bytes.len() / 2);
    fs::write(&broken, bytes).unwrap();
    let marker = c.repo.join("hwdr-repo.json");
    fs::write(&marker, r#"{"format":1,"cluster":"prod"}"#).unwrap();

    let out = c.hwdr(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("run `hwdr repo upgrade`"),
        "{}",
        text(&out.stderr)
    );

    let out = c.hwdr(&["repo", "upgrade"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains(&format!("backup {ID}: manifest sealed")), "{said}");
    assert!(said.contains("backup 2611231820: DAMAGED manifest.json"), "{said}");
    assert!(!c.repo.join("lock").exists());

    let out = c.hwdr(&["verify", ID]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let list = text(&c.hwdr(&["list"]).stdout);
    assert!(
        list.lines().any(|l| l.starts_with(ID) && l.contains("complete")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("2611231820") && l.contains("damaged")),
        "{list}"
    );
    // Twice is harmless.
    let again = c.hwdr(&["repo", "upgrade"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
}
