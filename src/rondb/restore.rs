//! The RonDB side of a restore, as the runbook orders it: staging a node's
//! parts from the repository, `ndb_restore` for schemas, data, indexes and
//! the epoch, and replaying users and schemas through `mysql-client.sh`.
//! Every program's output is read for errors too: `ndb_restore` has exited 0
//! after failing (RONDB-428).

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::fchown;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use tracing::info;

use super::dump::{SCHEMAS_FILE, USERS_FILE};
use super::parts;
use super::password::BackupPassword;
use crate::config::{Config, RestoreSettings, RondbSettings};
use crate::fsutil;
use crate::fsutil::mkdir;
use crate::job::JobControl;
use crate::repo::backup::BackupReader;
use crate::repo::manifest::FileEntry;
use crate::repo::manifest::Manifest;
use crate::repo::store::sealed::Tampered;
use crate::repo::store::StoreError;
use crate::repo::Repository;
use crate::runner::{Cmd, Failure, Outcome, ProgramFailed, RunAs};

/// What `ndb_restore` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdbAction {
    /// `-m --disable-indexes`: schemas and tables, once.
    Meta,
    /// `-r`: the data of one data node.
    Data,
    /// `--rebuild-indexes`, once, after every node's data.
    Indexes,
    /// `--restore-epoch`, once.
    Epoch,
}

/// The staging folder of backup `ndb` on this node: what `--backup_path` names.
pub fn staged_dir(restore: &RestoreSettings, ndb: u32) -> PathBuf {
    restore.staging_dir.join(format!("BACKUP-{ndb}"))
}

/// Removes this node's staged copies of backup `ndb` (after a restore).
pub fn unstage(restore: &RestoreSettings, ndb: u32) -> Result<()> {
    let dir = staged_dir(restore, ndb);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// The `ndb_restore` command for `action` reading data node `node_id`'s files.
pub fn ndb_restore_cmd(
    rondb: &RondbSettings,
    restore: &RestoreSettings,
    user: RunAs,
    ndb: u32,
    node_id: u32,
    action: NdbAction,
) -> Cmd {
    let cmd = Cmd::new(&rondb.ndb_restore, user, restore.ndb_restore_timeout)
        .arg("-n")
        .arg(node_id.to_string())
        .arg("-b")
        .arg(ndb.to_string());
    let cmd = match action {
        NdbAction::Meta => cmd.args(["-m", "--disable-indexes"]),
        NdbAction::Data => cmd.arg("-r"),
        NdbAction::Indexes => cmd.arg("--rebuild-indexes"),
        NdbAction::Epoch => cmd.arg("--restore-epoch"),
    };
    cmd.arg(format!("--ndb-connectstring={}", rondb.connectstring))
        .arg(format!("--backup_path={}", staged_dir(restore, ndb).display()))
}

/// The options that make `ndb_restore` decrypt RonDB's own backup
/// encryption with the password it reads on its standard input.
pub const DECRYPT_ARGS: [&str; 2] = ["--decrypt", "--backup-password-from-stdin"];

/// What `ndb_restore` says when the password does not decrypt a file.
const WRONG_PASSWORD: &str = "Might be wrong password";
/// What `ndb_restore` says of an encrypted file it was not asked to decrypt.
const NOT_DECRYPTING: &str = "File is encrypted but no decryption requested";

/// `cmd` (an `ndb_restore`) decrypting with `password`: the options, and
/// the password on its standard input (never in the argv), hidden in its
/// output. Without a password, `cmd` as it is.
pub fn decrypting(cmd: Cmd, password: Option<&BackupPassword>) -> Cmd {
    match password {
        None => cmd,
        Some(password) => cmd
            .args(DECRYPT_ARGS)
            .stdin_secret(password.line())
            .hide(password.secret()),
    }
}

/// How a plan shows `cmd`, an `ndb_restore`, when it `decrypts`: with the
/// options, and where its password comes from (never the password).
pub fn shown(cmd: Cmd, decrypts: bool) -> String {
    if !decrypts {
        return cmd.argv_display();
    }
    format!(
        "{} < (the password of [rondb] backup_password_file)",
        cmd.args(DECRYPT_ARGS).argv_display()
    )
}

/// Runs `cmd`, an `ndb_restore` of RonDB backup `ndb`, and judges it
/// ([`judge_ndb_restore`]). When it could not decrypt the backup, the error
/// says so first: the password of `password_key` (decrypting) is not the
/// one the backup was taken with, or the files are encrypted and the
/// manifest does not say so.
pub fn run_ndb_restore(cmd: Cmd, ndb: u32, password_key: &str) -> Result<Outcome> {
    let decrypting = cmd.stdin.is_some();
    let outcome = crate::runner::run(cmd)?;
    let Err(failed) = judge_ndb_restore(&outcome) else {
        return Ok(outcome);
    };
    let text = format!("{}\n{}", outcome.stdout, failed.tail.join("\n"));
    let said = |what: &str| text.contains(what);
    let cause = if decrypting && said(WRONG_PASSWORD) {
        format!(
            "the password in {password_key} did not decrypt RonDB backup {ndb} (ndb_restore: \"Can not read decrypted \
             file. Might be wrong password.\"): it is not the password the backup was taken with"
        )
    } else if !decrypting && said(NOT_DECRYPTING) {
        format!(
            "the files of RonDB backup {ndb} are encrypted by RonDB, but the backup's manifest does not say so: \
             ndb_restore was not asked to decrypt them"
        )
    } else {
        return Err(failed.into());
    };
    Err(anyhow::Error::new(failed).context(cause))
}

/// Fails unless `ndb_restore` exited 0 AND its output shows no error.
pub fn judge_ndb_restore(outcome: &Outcome) -> Result<(), ProgramFailed> {
    outcome.check("ndb_restore")?;
    let text = format!("{}\n{}", outcome.stdout, outcome.tail.join("\n"));
    let failed = text.lines().map(str::trim).find(|l| {
        l.starts_with("NDBT_ProgramExit: 1")
            || l.contains(WRONG_PASSWORD)
            || l.contains(NOT_DECRYPTING)
            || l.contains("Failed to")
            || l.contains("Unable to")
            || l.contains("An error occurred")
            || l.contains("failed:")
            || l.starts_with("Error ")
            || l.contains(" error : ")
            || l.contains("Temporary error")
            || l.contains("Could not connect")
    });
    match failed {
        Some(line) => Err(outcome.failed("ndb_restore", Failure::Reported(line.to_owned()))),
        None => Ok(()),
    }
}

/// `mysql-client.sh -e "SOURCE <absolute path>"` (the runbook's `source
/// users.sql` form does not work: the wrapper drops its first argument).
pub fn mysql_source_cmd(rondb: &RondbSettings, restore: &RestoreSettings, user: RunAs, file: &Path) -> Cmd {
    Cmd::new(&rondb.mysql_client, user, restore.command_timeout)
        .arg("-e")
        .arg(format!("SOURCE {}", file.display()))
}

/// Fails unless the client exited 0 and printed no `ERROR`.
pub fn judge_mysql(outcome: &Outcome) -> Result<(), ProgramFailed> {
    outcome.check("mysql-client.sh")?;
    let text = format!("{}\n{}", outcome.stdout, outcome.tail.join("\n"));
    match text.lines().find(|l| l.trim_start().starts_with("ERROR")) {
        Some(line) => Err(outcome.failed("mysql-client.sh", Failure::ErrorLine(line.to_owned()))),
        None => Ok(()),
    }
}

/// A file of the backup that is missing or does not match the manifest: the
/// restore is refused, naming it.
#[derive(Debug)]
pub struct Damaged(pub String);

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Damaged {}

/// What staging a node's RonDB parts did.
#[derive(Debug, Default)]
pub struct StagedParts {
    /// The staged files, relative to the staging folder.
    pub files: Vec<String>,
    /// Files of the backup that are missing or damaged.
    pub damaged: Vec<String>,
}

/// Copies the RonDB files of data nodes `node_ids` of the backup from the
/// repository into this node's staging folder, each checked against the
/// manifest, readable by the RonDB user. Files already staged with the
/// right checksum are kept. A file that is missing or does not match is
/// reported in [`StagedParts::damaged`], and the others are still staged.
pub fn stage_parts(
    config: &Config,
    manifest: &Manifest,
    node_ids: &BTreeSet<u32>,
    control: &JobControl,
) -> Result<StagedParts> {
    let ndb = manifest.rondb.ndb_backup_id;
    let prefix = format!("{}/", parts::repo_rel_dir(ndb));
    let user = config.rondb_user()?;
    let backup = Repository::of(config).reader(manifest.backup_id);
    let target = staged_dir(&config.restore, ndb);
    make_owned_dir(&config.restore.staging_dir, &user)?;
    make_owned_dir(&target, &user)?;
    let mine: Vec<&FileEntry> = manifest
        .files()
        .filter(|f| f.path.starts_with(&prefix))
        .filter(|f| {
            let name = f.path.rsplit('/').next().unwrap_or(&f.path);
            parts::node_of_file(name, ndb).is_some_and(|n| node_ids.contains(&n))
        })
        .collect();
    check_space(&target, mine.iter().map(|f| f.size).sum())?;
    let mut staged = StagedParts::default();
    for f in mine {
        let rel = &f.path[prefix.len()..];
        control.check()?;
        let dst = target.join(rel);
        if let Some(parent) = dst.parent() {
            make_owned_dir(parent, &user)?;
        }
        if fsutil::hash_file(&dst).is_ok_and(|(size, sha)| size == f.size && sha == f.sha256) {
            staged.files.push(rel.to_owned());
            continue;
        }
        control.add_total(1, f.size);
        match copy_checked(&backup, &dst, f, &user, None, control) {
            Ok(()) => {}
            Err(e) => match e.downcast::<Damaged>() {
                Ok(damaged) => {
                    staged.damaged.push(damaged.0);
                    continue;
                }
                Err(e) => return Err(e),
            },
        }
        control.file_done(f.size);
        staged.files.push(rel.to_owned());
    }
    let missing: Vec<_> = node_ids
        .iter()
        .filter(|n| !staged.files.iter().any(|s| s.contains(&format!(".{n}."))))
        .collect();
    if !missing.is_empty() && staged.damaged.is_empty() {
        bail!("the backup holds no files of data node(s) {missing:?}");
    }
    info!(
        files = staged.files.len(),
        damaged = staged.damaged.len(),
        "staged the RonDB parts of data nodes {node_ids:?} in {}",
        target.display()
    );
    Ok(staged)
}

/// Fails unless the file system of `dir` has `bytes` free.
fn check_space(dir: &Path, bytes: u64) -> Result<()> {
    let stat = nix::sys::statvfs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    if bytes > free {
        bail!(
            "not enough space to stage the RonDB parts in {}: they need {bytes} bytes, {free} are free; nothing was changed",
            dir.display()
        );
    }
    Ok(())
}

/// Stages `users.sql` (with `CREATE USER ` made `CREATE USER IF NOT EXISTS `,
/// so the step can be repeated, as Hopsworks' restore does) and
/// `schemas.sql`; returns their staged paths.
pub fn stage_sql(config: &Config, manifest: &Manifest) -> Result<(PathBuf, PathBuf)> {
    let user = config.rondb_user()?;
    let backup = Repository::of(config).reader(manifest.backup_id);
    let target = staged_dir(&config.restore, manifest.rondb.ndb_backup_id);
    make_owned_dir(&config.restore.staging_dir, &user)?;
    make_owned_dir(&target, &user)?;
    let entry = |rel: &str| -> Result<&FileEntry> {
        manifest
            .files()
            .find(|f| f.path == rel)
            .with_context(|| format!("the backup has no {rel}"))
    };
    let users = target.join("users.sql");
    let control = JobControl::default();
    copy_checked(
        &backup,
        &users,
        entry(USERS_FILE)?,
        &user,
        Some(rewrite_create_user),
        &control,
    )?;
    let schemas = target.join("schemas.sql");
    copy_checked(&backup, &schemas, entry(SCHEMAS_FILE)?, &user, None, &control)?;
    Ok((users, schemas))
}

fn rewrite_create_user(line: &[u8], out: &mut dyn Write) -> std::io::Result<()> {
    match line.strip_prefix(b"CREATE USER ") {
        Some(rest) if !rest.starts_with(b"IF NOT EXISTS ") => {
            out.write_all(b"CREATE USER IF NOT EXISTS ")?;
            out.write_all(rest)
        }
        _ => out.write_all(line),
    }
}

type Rewrite = fn(&[u8], &mut dyn Write) -> std::io::Result<()>;

/// Copies `entry` of the backup to `dst` (mode 0600 for SQL with a rewrite,
/// 0640 else, owned by `user`), checking its size and SHA-256 while reading;
/// `rewrite` transforms it line by line. A file that is missing or does not
/// match fails with [`Damaged`].
fn copy_checked(
    backup: &BackupReader,
    dst: &Path,
    entry: &FileEntry,
    user: &RunAs,
    rewrite: Option<Rewrite>,
    control: &JobControl,
) -> Result<()> {
    let mode = if rewrite.is_some() || entry.path.ends_with(".sql") {
        0o600
    } else {
        0o640
    };
    let (tmp, file) = fsutil::create_temp(dst, mode)?;
    let result = (|| -> Result<()> {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut out = BufWriter::new(&file);
        let source = match backup.open(&entry.path) {
            Ok(f) => f,
            Err(StoreError::NotFound(_)) => {
                return Err(Damaged(format!("{}: missing from the repository", entry.path)).into())
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("opening {}", entry.path))),
        };
        let mut input = BufReader::with_capacity(1 << 20, source);
        match rewrite {
            None => loop {
                control.check()?;
                let buf = input.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                hasher.update(buf);
                out.write_all(buf)?;
                size += buf.len() as u64;
                let n = buf.len();
                input.consume(n);
            },
            Some(rewrite) => {
                let mut line = Vec::new();
                loop {
                    line.clear();
                    if input.read_until(b'\n', &mut line)? == 0 {
                        break;
                    }
                    hasher.update(&line);
                    size += line.len() as u64;
                    rewrite(&line, &mut out)?;
                }
            }
        }
        out.flush()?;
        drop(out);
        let sha = hex::encode(hasher.finalize());
        if size != entry.size {
            return Err(Damaged(format!(
                "{}: {size} bytes, the manifest says {}",
                entry.path, entry.size
            ))
            .into());
        }
        if sha != entry.sha256 {
            return Err(Damaged(format!("{}: SHA-256 differs from the manifest", entry.path)).into());
        }
        fchown(&file, Some(user.uid.as_raw()), Some(user.gid.as_raw())).context("chown")?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        // A sealed object that fails its tags is damage, as a wrong checksum is.
        if Tampered::is_in(e.as_ref()) {
            return Err(Damaged(format!("{}: {e:#}", entry.path)).into());
        }
        return Err(e);
    }
    fsutil::commit_temp(&tmp, file, dst)
}

fn make_owned_dir(path: &Path, user: &RunAs) -> Result<()> {
    // Missing parents must let the RonDB user through (a head node may not
    // have [rondb] backup_dir at all); only the folder itself is its own.
    if let Some(parent) = path.parent() {
        mkdir(parent, 0o755)?;
    }
    mkdir(path, 0o750)?;
    std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        .with_context(|| format!("chown {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn outcome(code: i32, text: &str) -> Outcome {
        Outcome {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: text.into(),
            tail: text.lines().map(String::from).collect(),
        }
    }

    #[test]
    fn ndb_restore_output_is_read_for_errors_even_with_exit_0() {
        assert!(judge_ndb_restore(&outcome(
            0,
            "Restored 10 tuples and 0 log entries\n\nNDBT_ProgramExit: 0 - OK\n"
        ))
        .is_ok());
        let rondb_428 =
            "Temporary error: 4010: Node failure caused abort of transaction\n\nNDBT_ProgramExit: 1 - Failed\n";
        let err = judge_ndb_restore(&outcome(0, rondb_428)).unwrap_err().to_string();
        assert!(err.contains("exited 0 but reported a failure"), "{err}");
        assert!(judge_ndb_restore(&outcome(1, "Failed to find backup")).is_err());
        assert!(judge_ndb_restore(&outcome(0, "Unable to find table: `a/def/b` error : 723")).is_err());
    }

    fn sh(script: &str) -> Cmd {
        let uid = nix::unistd::Uid::effective();
        let user = uzers::get_user_by_uid(uid.as_raw()).unwrap();
        let me = RunAs::lookup(&user.name().to_string_lossy(), "test").unwrap();
        Cmd::new("/bin/sh", me, std::time::Duration::from_secs(10)).args(["-c", script])
    }

    #[test]
    fn a_password_that_does_not_decrypt_is_named_as_the_cause() {
        let wrong =
            "echo 'Can not read decrypted file. Might be wrong password.' >&2; echo 'NDBT_ProgramExit: 1 - Failed'";
        let password = || crate::runner::Secret::new(b"pw\n".to_vec());
        for script in [format!("{wrong}; exit 1"), format!("{wrong}; exit 0")] {
            let err = run_ndb_restore(sh(&script).stdin_secret(password()), 5, "k").unwrap_err();
            assert!(
                format!("{err:#}").starts_with("the password in k did not decrypt RonDB backup 5 (ndb_restore: "),
                "{err:#}"
            );
            // The program's output stays with the error, for the restore's state.
            let failed = err.chain().find_map(|c| c.downcast_ref::<ProgramFailed>()).unwrap();
            assert_eq!(failed.tail.len(), 2);
        }
        // Not decrypting, the same words are no password's fault.
        let err = run_ndb_restore(sh(&format!("{wrong}; exit 1")), 5, "k").unwrap_err();
        assert!(
            format!("{err:#}").starts_with("ndb_restore exited with status 1"),
            "{err:#}"
        );
        let not_asked = "echo 'File is encrypted but no decryption requested.' >&2; exit 1";
        let err = run_ndb_restore(sh(not_asked), 5, "k").unwrap_err();
        assert!(
            format!("{err:#}").starts_with(
                "the files of RonDB backup 5 are encrypted by RonDB, but the backup's manifest does not say so"
            ),
            "{err:#}"
        );
        assert!(run_ndb_restore(sh("echo 'NDBT_ProgramExit: 0 - OK'"), 5, "k").is_ok());
    }

    #[test]
    fn a_plan_shows_where_the_password_comes_from_never_the_password() {
        let cmd = || Cmd::new("/bin/ndb_restore", RunAs::root(), std::time::Duration::from_secs(1)).arg("-r");
        assert_eq!(shown(cmd(), false), "/bin/ndb_restore -r");
        assert_eq!(
            shown(cmd(), true),
            "/bin/ndb_restore -r --decrypt --backup-password-from-stdin < (the password of [rondb] backup_password_file)"
        );
    }

    #[test]
    fn judges_fail_with_the_programs_tail() {
        let text = "Restored 10 tuples\nNDBT_ProgramExit: 1 - Failed";
        let failed = judge_ndb_restore(&outcome(0, text)).unwrap_err();
        assert_eq!(failed.status, Failure::Reported("NDBT_ProgramExit: 1 - Failed".into()));
        assert_eq!(failed.tail, ["Restored 10 tuples", "NDBT_ProgramExit: 1 - Failed"]);
        let failed = judge_mysql(&outcome(0, "Using socket: /s\nERROR 1396 (HY000)")).unwrap_err();
        assert_eq!(
            (failed.program.as_str(), &failed.status),
            ("mysql-client.sh", &Failure::ErrorLine("ERROR 1396 (HY000)".into()))
        );
        assert_eq!(failed.tail, ["Using socket: /s", "ERROR 1396 (HY000)"]);
    }

    #[test]
    fn mysql_errors_are_caught() {
        assert!(judge_mysql(&outcome(0, "Using socket: /s\n")).is_ok());
        assert!(judge_mysql(&outcome(
            0,
            "Using socket: /s\nERROR 1396 (HY000) at line 3: Operation CREATE USER failed"
        ))
        .is_err());
    }

    #[test]
    fn create_user_becomes_repeatable() {
        let mut out = Vec::new();
        rewrite_create_user(b"CREATE USER 'a'@'%' IDENTIFIED WITH x;\n", &mut out).unwrap();
        rewrite_create_user(b"CREATE USER IF NOT EXISTS 'b'@'%';\n", &mut out).unwrap();
        rewrite_create_user(b"GRANT ALL ON *.* TO 'a'@'%';\n", &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CREATE USER IF NOT EXISTS 'a'@'%' IDENTIFIED WITH x;\nCREATE USER IF NOT EXISTS 'b'@'%';\nGRANT ALL ON *.* TO 'a'@'%';\n"
        );
    }
}
