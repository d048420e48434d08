//! RonDB's own backup encryption (issue 14): `START BACKUP ... ENCRYPT
//! PASSWORD` with the password of `[rondb] backup_password_file` on
//! mgm-client.sh's standard input, `ndb_restore --decrypt
//! --backup-password-from-stdin`; the password in no argv, no output and no
//! log; a node without it refused before anything runs; a wrong one named.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::cluster::Cluster;
use crate::common::scenario::{runs_of, simctl};
use crate::common::{text, tree};

const ID: &str = "2611231819";
/// The RonDB backup id of [`ID`].
const NDB: &str = "263271819";
const PASSWORD: &str = "correct horse & battery (staple)";
const DROPIN: &str = "60-rondb-password.toml";

/// A RonDB-only cluster (head1; node1 hosting data node 2, node2 data node
/// 3) whose nodes `with_password` have `[rondb] backup_password_file`.
struct Encrypted {
    c: Cluster,
    password_file: PathBuf,
    /// `simctl dump` at the backup.
    rondb: String,
    /// What `hwdr backup` printed.
    backup_output: String,
}

/// Writes `text` into `dir/name`, root's, mode 0600.
fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn point_at(c: &Cluster, node: &str, file: &Path) {
    c.dropin(
        node,
        DROPIN,
        &format!("[rondb]\nbackup_password_file = \"{}\"\n", file.display()),
    );
}

/// The cluster with agents on node1 and node2 and one complete backup
/// [`ID`], taken by head1.
fn backed_up(with_password: &[&str]) -> Encrypted {
    let mut c = Cluster::new(
        &[
            ("head1", &["head"], &[]),
            ("node1", &["rondb"], &[2]),
            ("node2", &["rondb"], &[3]),
        ],
        2,
    );
    // No HopsFS here: the metadata names no blocks, so the namenode leaves safe mode.
    let no_blocks = c.dir.path().join("no-hopsfs");
    fs::create_dir(&no_blocks).unwrap();
    simctl(&c, &["blocks", "--data-dirs", &no_blocks.display().to_string()]);
    let password_file = secret_file(c.dir.path(), "rondb-backup.pw", &format!("{PASSWORD}\n"));
    for node in with_password {
        point_at(&c, node, &password_file);
    }
    c.start_agent("node1");
    c.start_agent("node2");
    let out = c.hwdr("head1", &["backup", "--id", ID]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let rondb = simctl(&c, &["dump"]);
    let backup_output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    Encrypted {
        c,
        password_file,
        rondb,
        backup_output,
    }
}

/// RonDB as after a redeploy: empty, no local backups, no restore state or
/// staged files.
fn wipe(c: &Cluster) {
    simctl(c, &["wipe"]);
    for entry in fs::read_dir(&c.sim).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("ndb") {
            let _ = fs::remove_dir_all(entry.path().join("backups/BACKUP"));
        }
    }
    for entry in fs::read_dir(c.dir.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("state-") || name.starts_with("staging-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn argv(run: &Value) -> Vec<String> {
    run["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// The RonDB part files below `dir` (`.ctl`, `.Data`, `.log`).
fn part_files(dir: &Path) -> Vec<PathBuf> {
    tree(dir)
        .into_iter()
        .filter(|p| [".ctl", ".Data", ".log"].iter().any(|x| p.ends_with(x)))
        .map(|p| dir.join(p))
        .collect()
}

/// `"username-<n>"` of the first rows of hopsworks.users: strings every
/// plaintext part file of the backup holds one of.
fn known_rows(dump: &str) -> Vec<String> {
    let dump: Value = serde_json::from_str(dump).unwrap();
    let rows = dump["databases"]["hopsworks"]["tables"]["users"]["rows"]
        .as_array()
        .unwrap();
    assert!(rows.len() >= 20, "too few rows to look for");
    rows.iter()
        .take(20)
        .map(|r| format!("\"{}\"", r[1].as_str().unwrap()))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every part file starts with NDBXFRM1 and holds none of `rows`.
fn assert_encrypted(files: &[PathBuf], rows: &[String]) {
    for file in files {
        let bytes = fs::read(file).unwrap();
        assert!(bytes.starts_with(b"NDBXFRM1"), "{} is not encrypted", file.display());
        for row in rows {
            assert!(
                !contains(&bytes, row.as_bytes()),
                "{row} is readable in {}",
                file.display()
            );
        }
    }
}

/// No file below the cluster's folder but the password file holds the
/// password: logs, state, invocations, repository, staged and backup files.
fn assert_password_nowhere(e: &Encrypted) {
    for rel in tree(e.c.dir.path()) {
        let path = e.c.dir.path().join(&rel);
        if path == e.password_file {
            continue;
        }
        let bytes = fs::read(&path).unwrap_or_default();
        assert!(!contains(&bytes, PASSWORD.as_bytes()), "the password is in {rel}");
    }
}

#[test]
fn an_encrypted_rondb_backup_round_trips_and_the_password_is_never_seen() {
    let e = backed_up(&["head1", "node1", "node2"]);
    let c = &e.c;
    assert_eq!(c.manifest(ID).unwrap()["rondb"]["encrypted"], true);
    // START BACKUP went in on stdin: the wrapper ran without arguments.
    let mgm: Vec<Vec<String>> = runs_of(c, "mgm-client.sh").iter().map(argv).collect();
    assert_eq!(mgm, [Vec::<String>::new()], "{mgm:?}");

    let rows = known_rows(&e.rondb);
    let mut local = Vec::new();
    for node in ["node1", "node2"] {
        local.extend(part_files(c.nodes[node].backup_dir.as_ref().unwrap()));
    }
    let stored = part_files(&c.repo.join("backups").join(ID));
    // 2 data nodes, 2 LDM parts each, 3 files a part.
    assert_eq!((local.len(), stored.len()), (12, 12), "{local:?}\n{stored:?}");
    assert_encrypted(&local, &rows);
    assert_encrypted(&stored, &rows);

    // The dry run and the plan say how the password goes in, never what it is.
    let dry = text(&c.hwdr("head1", &["backup", "--id", "2611231820", "--dry-run"]).stdout);
    assert!(
        dry.contains("mgm-client.sh < \"START BACKUP 263271820 ENCRYPT PASSWORD='<[rondb] backup_password_file>' SNAPSHOTEND WAIT COMPLETED\" on stdin"),
        "{dry}"
    );
    let plan = text(&c.hwdr("head1", &["restore", ID, "--plan"]).stdout);
    let decrypting = "--decrypt --backup-password-from-stdin < (the password of [rondb] backup_password_file)";
    // -m, -r of node 2 and of node 3 (rendered by their agents), --rebuild-indexes.
    assert_eq!(plan.matches(decrypting).count(), 4, "{plan}");
    assert!(!dry.contains(PASSWORD) && !plan.contains(PASSWORD));

    wipe(c);
    let out = c.hwdr("head1", &["restore", ID]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(simctl(c, &["dump"]), e.rondb, "RonDB content differs from the backup");
    let ndb: Vec<Vec<String>> = runs_of(c, "ndb_restore").iter().map(argv).collect();
    assert_eq!(ndb.len(), 4, "{ndb:?}");
    for run in &ndb {
        assert!(
            run.iter().any(|a| a == "--decrypt") && run.iter().any(|a| a == "--backup-password-from-stdin"),
            "{run:?}"
        );
    }
    for output in [e.backup_output.clone(), text(&out.stdout), text(&out.stderr)] {
        assert!(!output.contains(PASSWORD), "{output}");
    }
    assert_password_nowhere(&e);
}

#[test]
fn a_node_without_a_usable_password_file_is_refused_before_anything_runs() {
    // Only the leader has the password: it takes the backup, nobody else can restore it.
    let e = backed_up(&["head1"]);
    let c = &e.c;
    let out = c.hwdr("head1", &["restore", ID]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{err}");
    for node in ["node1", "node2"] {
        assert!(
            err.contains(&format!(
                "backup {ID}: its RonDB backup is encrypted with RonDB's own backup encryption, and node {node} cannot decrypt it: hwdr.toml: [rondb] backup_password_file is not set"
            )),
            "{err}"
        );
    }
    assert!(runs_of(c, "ndb_restore").is_empty() && runs_of(c, "mysql-client.sh").is_empty());

    // The leader's file readable by others: its restore, its backups and
    // its config check refuse it, naming the file.
    fs::set_permissions(&e.password_file, fs::Permissions::from_mode(0o644)).unwrap();
    let file = e.password_file.display().to_string();
    let key = format!("hwdr.d/{DROPIN}: [rondb] backup_password_file");
    let mode = format!("{key}: {file} has mode 0644; it must be readable by its owner only (chmod 600)");
    let out = c.hwdr("head1", &["restore", ID]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(
        err.contains(&format!("and node head1 cannot decrypt it: {mode}")),
        "{err}"
    );
    assert!(runs_of(c, "ndb_restore").is_empty());

    let out = c.hwdr("head1", &["backup", "--id", "2611231820"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&mode), "{}", text(&out.stderr));
    assert_eq!(runs_of(c, "mgm-client.sh").len(), 1, "a second START BACKUP ran");
    let check = c.hwdr("head1", &["config", "check"]);
    assert_eq!(check.status.code(), Some(3));
    assert!(
        text(&check.stdout).contains(&format!("FAIL  {mode}")),
        "{}",
        text(&check.stdout)
    );

    fs::set_permissions(&e.password_file, fs::Permissions::from_mode(0o600)).unwrap();
    let check = text(&c.hwdr("head1", &["config", "check"]).stdout);
    assert!(
        check.contains(&format!(
            "ok    {key}: RonDB's own backup encryption is on: {file} is root's, mode 0600"
        )),
        "{check}"
    );
    let check = text(&c.hwdr("node1", &["config", "check"]).stdout);
    assert!(
        check.contains("ok    hwdr.toml: [rondb] backup_password_file: not set: RonDB's own backup encryption is off"),
        "{check}"
    );
}

#[test]
fn a_wrong_password_fails_at_the_data_step_naming_the_cause() {
    let mut e = backed_up(&["head1", "node1", "node2"]);
    // node2 holds another password than the one the backup was taken with.
    let wrong = secret_file(e.c.dir.path(), "wrong.pw", "some-other-secret-77\n");
    point_at(&e.c, "node2", &wrong);
    e.c.kill_agent("node2");
    e.c.start_agent("node2");
    wipe(&e.c);
    let out = e.c.hwdr("head1", &["restore", ID]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the password in hwdr.d/{DROPIN}: [rondb] backup_password_file did not decrypt RonDB backup {NDB}"
        )),
        "{err}"
    );
    assert!(err.contains("Might be wrong password"), "{err}");
    assert!(err.contains("stopped at step rondb-data"), "{err}");
    // Nothing after the data step ran.
    let ndb: Vec<Vec<String>> = runs_of(&e.c, "ndb_restore").iter().map(argv).collect();
    assert!(
        ndb.iter().all(|a| !a.contains(&"--rebuild-indexes".to_owned())),
        "{ndb:?}"
    );
    assert!(runs_of(&e.c, "mysql-client.sh").is_empty());
    assert!(
        !err.contains("some-other-secret-77") && !err.contains(PASSWORD),
        "{err}"
    );
}
