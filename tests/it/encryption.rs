//! Encrypted, compressed repositories (issue 14): every object sealed before
//! it leaves a node, by the leader and by every agent; wrong, missing and
//! removed keys stop a command before anything runs; tampered, swapped and
//! truncated objects are named; keys change while backups exist.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hwdr::repo::store::{Backend, ObjectKey};

use crate::common::cluster::Cluster;
use crate::common::scenario;
use crate::common::text;
use crate::restore::{assert_restored, backed_up_in, wipe, Setup, ID};

/// Writes a new random key file `name` next to the repository, mode 0600.
fn key_file(c_dir: &Path, name: &str) -> PathBuf {
    let path = c_dir.join(name);
    let mut key = [0u8; 32];
    fs::File::open("/dev/urandom").unwrap().read_exact(&mut key).unwrap();
    fs::write(&path, hex::encode(key)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `[repository]` of an encrypted, compressed repository in `repo`.
pub(crate) fn encrypted(repo: &Path) -> String {
    let key = key_file(repo.parent().unwrap(), "repo.key");
    format!(
        "path = \"{}\"\nkey_file = \"{}\"\ncompression_level = 3\n",
        repo.display(),
        key.display()
    )
}

/// Every object in the store, as stored.
fn stored_objects(store: &dyn Backend) -> Vec<(String, Vec<u8>)> {
    let mut keys = Vec::new();
    store
        .list("", &mut |o| {
            keys.push(o.key);
            Ok(())
        })
        .unwrap();
    keys.into_iter()
        .map(|k| {
            let mut bytes = Vec::new();
            store.get(&k).unwrap().read_to_end(&mut bytes).unwrap();
            (k.as_str().to_owned(), bytes)
        })
        .collect()
}

fn read(store: &dyn Backend, name: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    let key = ObjectKey::parse(name).unwrap();
    store.get(&key).unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

fn assert_nowhere(objects: &[(String, Vec<u8>)], needle: &[u8], what: &str) {
    assert!(needle.len() >= 16, "{what}: too short a needle");
    for (name, bytes) in objects {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{what} is readable in the stored object {name}"
        );
    }
}

/// 64 bytes from the middle of the largest file below `dir` whose name
/// passes `pick`.
fn middle_of_largest(dir: &Path, pick: impl Fn(&str) -> bool) -> Vec<u8> {
    let path = crate::common::tree(dir)
        .into_iter()
        .filter(|p| pick(p.rsplit('/').next().unwrap()))
        .map(|p| dir.join(p))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap_or_else(|| panic!("no file below {}", dir.display()));
    let bytes = fs::read(&path).unwrap();
    assert!(bytes.len() >= 256, "{} is too small", path.display());
    bytes[bytes.len() / 2..bytes.len() / 2 + 64].to_vec()
}

/// The known plaintexts: a `CREATE USER` line of users.sql (read through
/// the key), a chunk of a data node's RonDB part, a chunk of a block.
fn known_plaintexts(s: &Setup) -> Vec<(&'static str, Vec<u8>)> {
    let users = text(&read(s.c.backend().as_ref(), &format!("backups/{ID}/rondb/users.sql")));
    let line = users
        .lines()
        .find(|l| l.starts_with("CREATE USER"))
        .unwrap_or_else(|| panic!("no CREATE USER in users.sql: {users}"));
    let backup_dir = s.c.nodes["node1"].backup_dir.clone().unwrap();
    let part = middle_of_largest(&backup_dir, |_| true);
    let block = middle_of_largest(&s.generated.nodes[0].data_dir, |n| {
        n.starts_with("blk_") && !n.ends_with(".meta")
    });
    vec![
        ("a line of users.sql", line.as_bytes().to_vec()),
        ("a RonDB part", part),
        ("a block", block),
    ]
}

#[test]
fn an_encrypted_compressed_repository_round_trips_and_stores_no_plaintext() {
    let s = backed_up_in(encrypted);
    let c = &s.c;
    let list = c.hwdr("head1", &["list"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    assert!(
        text(&list.stdout).contains("encrypted (XChaCha20-Poly1305)"),
        "{}",
        text(&list.stdout)
    );
    let check = c.hwdr("node1", &["config", "check"]);
    assert!(
        text(&check.stdout).contains("repo.key opens it"),
        "{}",
        text(&check.stdout)
    );

    let objects = stored_objects(c.stored().as_ref());
    for (what, needle) in known_plaintexts(&s) {
        assert_nowhere(&objects, &needle, what);
    }
    // Inventory pieces are sealed, and named by a keyed hash: not the
    // SHA-256 of what they hold, which anyone could check a guess against.
    let pieces: Vec<&(String, Vec<u8>)> = objects.iter().filter(|(n, _)| n.starts_with("inventories/")).collect();
    assert!(!pieces.is_empty());
    for (name, _) in &pieces {
        let plain = read(c.backend().as_ref(), name);
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&plain));
        assert!(!name.ends_with(&sha), "{name} is named by the SHA-256 of its content");
        let line = text(&plain).lines().nth(1).unwrap().to_owned();
        assert_nowhere(&objects, line.as_bytes(), "a line of an inventory piece");
    }
    // Format 3: an hwdr that knows only format 2 refuses the repository
    // rather than write plaintext into it.
    let marker: serde_json::Value = serde_json::from_slice(&read(c.stored().as_ref(), "hwdr-repo.json")).unwrap();
    assert_eq!(
        (&marker["format"], &marker["encrypted"]),
        (&3.into(), &true.into()),
        "{marker}"
    );
    // Only the marker, the key and nothing else is plain JSON.
    let plain: Vec<_> = objects
        .iter()
        .filter(|(_, b)| b.starts_with(b"{"))
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        plain.iter().all(|n| *n == "hwdr-repo.json" || n.starts_with("keys/")),
        "{plain:?}"
    );
    // What compresses was compressed: the stored RonDB folder is smaller than its content.
    let (mut stored, mut content) = (0, 0);
    for (name, bytes) in objects
        .iter()
        .filter(|(n, _)| n.starts_with(&format!("backups/{ID}/rondb/")))
    {
        stored += bytes.len();
        content += read(c.backend().as_ref(), name).len();
    }
    assert!(stored < content, "stored {stored} bytes of {content}");

    let full = c.hwdr("head1", &["verify", "--full", ID]);
    assert!(full.status.success(), "{}{}", text(&full.stdout), text(&full.stderr));
    wipe(&s);
    let out = c.hwdr("head1", &["restore", ID]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_restored(&s);
}

/// The simulator's invocation log, emptied.
pub(crate) fn clear_invocations(c: &Cluster) {
    fs::write(c.sim.join("state/invocations.jsonl"), "").unwrap();
}

pub(crate) fn invocations(c: &Cluster) -> String {
    fs::read_to_string(c.sim.join("state/invocations.jsonl")).unwrap_or_default()
}

/// `head1`'s configuration without its key: a copy of its folder.
fn config_without_key(c: &Cluster) -> PathBuf {
    let from = c.nodes["head1"].config.parent().unwrap().to_owned();
    let to = c.dir.path().join("etc-nokey");
    fs::create_dir_all(to.join("hwdr.d")).unwrap();
    let main = fs::read_to_string(from.join("hwdr.toml")).unwrap();
    let main: Vec<_> = main.lines().filter(|l| !l.starts_with("key_file")).collect();
    fs::write(to.join("hwdr.toml"), main.join("\n")).unwrap();
    for e in fs::read_dir(from.join("hwdr.d")).unwrap().flatten() {
        fs::copy(e.path(), to.join("hwdr.d").join(e.file_name())).unwrap();
    }
    to.join("hwdr.toml")
}

#[test]
fn a_wrong_missing_or_removed_key_is_a_clear_error_and_nothing_runs() {
    let s = backed_up_in(encrypted);
    let c = &s.c;
    let dir = c.dir.path();
    let wrong = key_file(dir, "wrong.key");
    c.dropin_everywhere(
        "60-key.toml",
        &format!("[repository]\nkey_file = \"{}\"\n", wrong.display()),
    );
    clear_invocations(c);
    for args in [
        &["restore", ID][..],
        &["backup", "--id", "2611231820"],
        &["verify", "--full", ID],
        &["list"],
    ] {
        let out = c.hwdr("head1", args);
        assert!(!out.status.success(), "{args:?}");
        let want = format!("the key in {} opens none of the repository's keys", wrong.display());
        assert!(text(&out.stderr).contains(&want), "{args:?}: {}", text(&out.stderr));
    }
    assert_eq!(invocations(c), "", "a simulator ran");
    let check = c.hwdr("node2", &["config", "check"]);
    assert!(!check.status.success());
    assert!(
        text(&check.stdout).contains("opens none of the repository's keys"),
        "{}",
        text(&check.stdout)
    );

    c.dropin_everywhere("60-key.toml", "");
    let out = std::process::Command::new(crate::common::hwdr_bin())
        .arg("--config")
        .arg(config_without_key(c))
        .args(["restore", ID])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let want = format!(
        "repository {} is encrypted: set [repository] key_file or passphrase_file",
        c.repo.display()
    );
    assert!(text(&out.stderr).contains(&want), "{}", text(&out.stderr));

    // The right key back; another one added, the first removed: the first no longer opens.
    let first = dir.join("repo.key");
    let other = key_file(dir, "other.key");
    let add = c.hwdr("head1", &["key", "add", "--key-file", other.to_str().unwrap()]);
    assert!(add.status.success(), "{}", text(&add.stderr));
    let first_id = key_ids(c)[0].clone();
    c.dropin_everywhere(
        "60-key.toml",
        &format!("[repository]\nkey_file = \"{}\"\n", other.display()),
    );
    let remove = c.hwdr("head1", &["key", "remove", &first_id]);
    assert!(remove.status.success(), "{}", text(&remove.stderr));
    c.dropin_everywhere("60-key.toml", "");
    clear_invocations(c);
    let out = c.hwdr("head1", &["restore", ID]);
    let want = format!("the key in {} opens none of the repository's keys", first.display());
    assert!(text(&out.stderr).contains(&want), "{}", text(&out.stderr));
    assert_eq!(invocations(c), "", "a simulator ran");
}

/// The ids of `hwdr key list --json`, oldest first.
fn key_ids(c: &Cluster) -> Vec<String> {
    let out = c.hwdr("head1", &["key", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn tampered_swapped_and_truncated_objects_are_named_and_the_restore_refuses() {
    let s = backed_up_in(encrypted);
    let c = &s.c;
    let mut blocks = scenario::stored_blocks(&c.repo);
    blocks.retain(|b| fs::metadata(b).unwrap().len() >= 2000);
    let [flipped, swapped, truncated, source] = [0, 1, 2, 3].map(|i| blocks[i].clone());
    scenario::flip(&flipped);
    fs::copy(&source, &swapped).unwrap();
    let bytes = fs::read(&truncated).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let names = [&flipped, &swapped, &truncated].map(|b| scenario::block_name(&c.repo, b));
    // And a RonDB part with a flipped byte.
    let part = crate::common::tree(&c.repo.join(format!("backups/{ID}")))
        .into_iter()
        .find(|p| p.ends_with(".Data"))
        .unwrap();
    let part_path = c.repo.join(format!("backups/{ID}")).join(&part);
    let part_bytes = fs::read(&part_path).unwrap();
    scenario::flip(&part_path);

    let full = c.hwdr("head1", &["verify", "--full", ID]);
    assert_eq!(full.status.code(), Some(9), "{}", text(&full.stderr));
    let said = text(&full.stdout);
    for name in names.iter().chain([&part]) {
        assert!(
            said.lines()
                .any(|l| l.starts_with("DAMAGED") && l.contains(name.as_str())),
            "{name}: {said}"
        );
    }
    for name in [&names[0], &part] {
        assert!(
            said.lines()
                .any(|l| l.contains(name.as_str()) && l.contains("tampered or damaged")),
            "{said}"
        );
    }

    // The restore refuses before it runs anything: for the part, then (the
    // part put back) for the blocks.
    wipe(&s);
    clear_invocations(c);
    for (expected, fix) in [(vec![part.clone()], true), (names.to_vec(), false)] {
        let out = c.hwdr("head1", &["restore", ID]);
        assert_eq!(out.status.code(), Some(8), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        for name in &expected {
            assert!(err.contains(&format!("{name}: ")), "{name}: {err}");
        }
        assert!(err.contains("tampered or damaged"), "{err}");
        assert!(err.contains("nothing was changed"), "{err}");
        assert!(!invocations(c).contains("ndb_restore"), "{}", invocations(c));
        if fix {
            fs::write(&part_path, &part_bytes).unwrap();
        }
    }
}

#[test]
fn keys_are_added_rotated_and_removed_while_backups_exist() {
    let mut s = backed_up_in(encrypted);
    let dir = s.c.dir.path().to_owned();
    let first = dir.join("repo.key");
    let passphrase = dir.join("repo.passphrase");
    fs::write(&passphrase, "a long enough passphrase\n").unwrap();
    fs::set_permissions(&passphrase, fs::Permissions::from_mode(0o600)).unwrap();
    let add = s.c.hwdr(
        "head1",
        &["key", "add", "--passphrase-file", passphrase.to_str().unwrap()],
    );
    assert!(add.status.success(), "{}", text(&add.stderr));
    let out = s.c.hwdr("head1", &["key", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].clone(), r["this_node"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [("file".into(), true.into()), ("passphrase".into(), false.into())]
    );
    let [first_id, pass_id] = [0, 1].map(|i| key_ids(&s.c)[i].clone());
    // This node's own key is never removed while nothing else opens for it.
    let refused = s.c.hwdr("head1", &["key", "remove", &first_id]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("would lock this node out"),
        "{}",
        text(&refused.stderr)
    );

    // Rotate to a new key file: the first key goes, the data key stays.
    let second = key_file(&dir, "second.key");
    let rotate =
        s.c.hwdr("head1", &["key", "rotate", "--key-file", second.to_str().unwrap()]);
    assert!(rotate.status.success(), "{}", text(&rotate.stderr));
    assert!(
        text(&rotate.stdout).contains(&format!("key {first_id} removed")),
        "{}",
        text(&rotate.stdout)
    );
    let stale = s.c.hwdr("head1", &["verify", ID]);
    let want = format!("the key in {} opens none", first.display());
    assert!(text(&stale.stderr).contains(&want), "{}", text(&stale.stderr));
    s.c.dropin_everywhere(
        "60-key.toml",
        &format!("[repository]\nkey_file = \"{}\"\n", second.display()),
    );
    let ids = key_ids(&s.c);
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&pass_id) && !ids.contains(&first_id), "{ids:?}");
    let full = s.c.hwdr("head1", &["verify", "--full", ID]);
    assert!(full.status.success(), "{}{}", text(&full.stdout), text(&full.stderr));

    // The passphrase removed, then the last key refused.
    assert!(s.c.hwdr("head1", &["key", "remove", &pass_id]).status.success());
    let last = key_ids(&s.c)[0].clone();
    let refused = s.c.hwdr("head1", &["key", "remove", &last]);
    assert!(
        text(&refused.stderr).contains("the repository's last key"),
        "{}",
        text(&refused.stderr)
    );

    // The agents read their configuration when they start.
    for n in ["node1", "node2", "node3"] {
        s.c.kill_agent(n);
        s.c.start_agent(n);
    }
    wipe(&s);
    let out = s.c.hwdr("head1", &["restore", ID]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_restored(&s);
}

#[test]
fn a_plaintext_repository_says_so_and_stays_plaintext() {
    let c = Cluster::new(&[("head1", &["head"], &[]), ("node1", &["rondb"], &[2])], 1);
    let list = c.hwdr("head1", &["list"]);
    assert!(text(&list.stdout).contains(": not encrypted"), "{}", text(&list.stdout));
    let check = c.hwdr("head1", &["config", "check"]);
    assert!(
        text(&check.stdout).contains(": not encrypted"),
        "{}",
        text(&check.stdout)
    );
    let keys = c.hwdr("head1", &["key", "list"]);
    assert!(
        text(&keys.stderr).contains("is not encrypted"),
        "{}",
        text(&keys.stderr)
    );
    let key = key_file(c.dir.path(), "repo.key");
    c.dropin_everywhere(
        "60-key.toml",
        &format!("[repository]\nkey_file = \"{}\"\n", key.display()),
    );
    let init = c.hwdr("head1", &["repo", "init", "--encrypt"]);
    assert!(!init.status.success());
    assert!(
        text(&init.stderr).contains("already is a plaintext repository"),
        "{}",
        text(&init.stderr)
    );
    // An encrypted init needs a key.
    let fresh = c.dir.path().join("fresh");
    fs::create_dir(&fresh).unwrap();
    c.dropin_everywhere(
        "60-key.toml",
        &format!("[repository]\npath = \"{}\"\n", fresh.display()),
    );
    let init = c.hwdr("head1", &["repo", "init", "--encrypt"]);
    assert!(
        text(&init.stderr).contains("--encrypt needs a key"),
        "{}",
        text(&init.stderr)
    );
    assert!(fs::read_dir(&fresh).unwrap().next().is_none(), "init wrote something");
}

#[test]
fn a_passphrase_opens_an_uncompressed_encrypted_repository() {
    let s = backed_up_in(|repo| {
        let file = repo.parent().unwrap().join("repo.passphrase");
        fs::write(&file, "correct horse battery staple\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        format!(
            "path = \"{}\"\npassphrase_file = \"{}\"\ncompression_level = 0\n",
            repo.display(),
            file.display()
        )
    });
    let c = &s.c;
    let out = c.hwdr("head1", &["key", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["kind"], "passphrase", "{rows}");
    assert_eq!(rows[0]["this_node"], true, "{rows}");
    let list = text(&c.hwdr("head1", &["list"]).stdout);
    assert!(list.contains("this node does not compress"), "{list}");
    let objects = stored_objects(c.stored().as_ref());
    for (what, needle) in known_plaintexts(&s) {
        assert_nowhere(&objects, &needle, what);
    }
    // Inventory pieces are sealed, and named by a keyed hash: not the
    // SHA-256 of what they hold, which anyone could check a guess against.
    let pieces: Vec<&(String, Vec<u8>)> = objects.iter().filter(|(n, _)| n.starts_with("inventories/")).collect();
    assert!(!pieces.is_empty());
    for (name, _) in &pieces {
        let plain = read(c.backend().as_ref(), name);
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&plain));
        assert!(!name.ends_with(&sha), "{name} is named by the SHA-256 of its content");
        let line = text(&plain).lines().nth(1).unwrap().to_owned();
        assert_nowhere(&objects, line.as_bytes(), "a line of an inventory piece");
    }
    // Not compressed: every stored object is its content and the seals.
    for (name, bytes) in objects
        .iter()
        .filter(|(n, _)| n.starts_with(&format!("backups/{ID}/rondb/")))
    {
        assert!(bytes.len() > read(c.backend().as_ref(), name).len(), "{name}");
    }
    let full = c.hwdr("head1", &["verify", "--full", ID]);
    assert!(full.status.success(), "{}{}", text(&full.stdout), text(&full.stderr));
}

#[test]
fn an_encrypted_repository_on_s3_round_trips() {
    let garage = testkit::garage::Garage::start().unwrap();
    let s3 = crate::s3::s3_repository(&garage, "prod/sealed", None);
    let s = backed_up_in(|repo| {
        let key = key_file(repo.parent().unwrap(), "repo.key");
        format!("{}key_file = \"{}\"\n", s3(repo), key.display())
    });
    let c = &s.c;
    let objects = stored_objects(c.stored().as_ref());
    assert!(
        objects.iter().any(|(n, _)| n.starts_with("blocks/")),
        "nothing stored in the bucket"
    );
    for (what, needle) in known_plaintexts(&s) {
        assert_nowhere(&objects, &needle, what);
    }
    // Inventory pieces are sealed, and named by a keyed hash: not the
    // SHA-256 of what they hold, which anyone could check a guess against.
    let pieces: Vec<&(String, Vec<u8>)> = objects.iter().filter(|(n, _)| n.starts_with("inventories/")).collect();
    assert!(!pieces.is_empty());
    for (name, _) in &pieces {
        let plain = read(c.backend().as_ref(), name);
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&plain));
        assert!(!name.ends_with(&sha), "{name} is named by the SHA-256 of its content");
        let line = text(&plain).lines().nth(1).unwrap().to_owned();
        assert_nowhere(&objects, line.as_bytes(), "a line of an inventory piece");
    }
    let full = c.hwdr("head1", &["verify", "--full", ID]);
    assert!(full.status.success(), "{}{}", text(&full.stdout), text(&full.stderr));
    wipe(&s);
    let out = c.hwdr("head1", &["restore", ID]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_restored(&s);
}
