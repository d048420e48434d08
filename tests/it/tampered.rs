//! A sealed `users.sql` or `schemas.sql` with one flipped ciphertext byte
//! refuses the restore before anything runs (issue 14): exit 8, the object
//! named as tampered or damaged, no program run, nothing staged, the cluster
//! as it was; with the object put back, the same restore goes through.

use std::fs;

use crate::common::{scenario, text};
use crate::encryption::{clear_invocations, encrypted, invocations};
use crate::restore::{assert_restored, backed_up_in, simctl, wipe, ID};

/// Files below `dir` (none if it does not exist).
fn files_in(dir: &std::path::Path) -> Vec<String> {
    if dir.exists() {
        crate::common::tree(dir)
    } else {
        Vec::new()
    }
}

/// Backs up into an encrypted repository, wipes the cluster, flips a byte
/// in the middle of the stored object of `rel`, and restores.
fn a_flipped_byte_in_refuses_the_restore(rel: &str) {
    let s = backed_up_in(encrypted);
    let c = &s.c;
    wipe(&s);
    let wiped = simctl(c, &["dump"]);
    let path = c.repo.join(format!("backups/{ID}/{rel}"));
    let sealed = fs::read(&path).unwrap();
    scenario::flip(&path);
    clear_invocations(c);

    let out = c.hwdr("head1", &["restore", ID]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains(&format!("{rel}: ")) && l.contains("tampered or damaged")),
        "{rel} not named as tampered: {err}"
    );
    assert_eq!(invocations(c), "", "a program ran");
    assert_eq!(simctl(c, &["dump"]), wiped, "RonDB changed");
    for n in &s.generated.nodes {
        assert!(!n.data_dir.exists(), "{} was made", n.data_dir.display());
    }
    for node in ["head1", "node1", "node2", "node3"] {
        let staged = files_in(&c.dir.path().join(format!("staging-{node}")));
        assert!(staged.is_empty(), "{node} staged {staged:?}");
        let state = c.dir.path().join(format!("state-{node}/restore/{ID}.json"));
        assert!(!state.exists(), "{} was written", state.display());
    }

    // The object put back: the same restore goes through.
    fs::write(&path, &sealed).unwrap();
    let out = c.hwdr("head1", &["restore", ID]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_restored(&s);
}

#[test]
fn a_tampered_users_sql_refuses_the_restore_before_anything_runs() {
    a_flipped_byte_in_refuses_the_restore("rondb/users.sql");
}

#[test]
fn a_tampered_schemas_sql_refuses_the_restore_before_anything_runs() {
    a_flipped_byte_in_refuses_the_restore("rondb/schemas.sql");
}
