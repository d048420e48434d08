//! Users and grants (`mysqlpump --users`) and the schemas NDB does not hold
//! (`mysqldump --no-data`), as the runbook and Hopsworks' script take them.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::{BackupSettings, RondbSettings};
use crate::repo::fsutil::{self, FileEntry};
use crate::repo::mkdir;
use crate::runner::{self, Cmd, RunAs};

/// `users.sql` inside the backup folder.
pub const USERS_FILE: &str = "rondb/users.sql";
/// `schemas.sql` inside the backup folder.
pub const SCHEMAS_FILE: &str = "rondb/schemas.sql";

/// The runbook's users-and-grants dump.
pub fn mysqlpump_cmd(rondb: &RondbSettings, backup: &BackupSettings, user: RunAs) -> Cmd {
    Cmd::new(&rondb.mysqlpump, user, backup.dump_timeout)
        .arg("-S")
        .arg(&rondb.socket)
        .arg("--exclude-databases=%")
        .arg(format!("--exclude-users={}", rondb.exclude_users.join(",")))
        .arg("--users")
}

/// Lists the databases of the cluster's mysqld.
pub fn show_databases_cmd(rondb: &RondbSettings, backup: &BackupSettings, user: RunAs) -> Cmd {
    Cmd::new(&rondb.mysql, user, backup.dump_timeout)
        .arg("-S")
        .arg(&rondb.socket)
        .arg("--batch")
        .arg("--skip-column-names")
        .arg("-e")
        .arg("SHOW DATABASES")
}

/// Hopsworks' schema dump of `databases`.
pub fn mysqldump_cmd(rondb: &RondbSettings, backup: &BackupSettings, user: RunAs, databases: &[String]) -> Cmd {
    Cmd::new(&rondb.mysqldump, user, backup.dump_timeout)
        .arg("-S")
        .arg(&rondb.socket)
        .args([
            "--no-data",
            "--skip-add-drop-table",
            "--triggers",
            "--routines",
            "--events",
            "--databases",
        ])
        .args(databases)
}

/// Runs `cmd` with stdout into a new file `rel` of the backup (mode 0600),
/// then `check`s the file. Nothing is left under the final name unless the
/// program succeeded and the check passed.
fn dump_to_file(
    cmd: Cmd,
    backup_dir: &Path,
    rel: &str,
    what: &str,
    check: impl Fn(&Path) -> Result<()>,
) -> Result<FileEntry> {
    let dst = backup_dir.join(rel);
    mkdir(dst.parent().unwrap_or(backup_dir), 0o750)?;
    let (tmp, file) = fsutil::create_temp(&dst, 0o600)?;
    let out = file.try_clone().context("duplicating the dump file")?;
    let result = runner::run(cmd.stdout_to(out))
        .and_then(|o| Ok(o.check(what)?))
        .and_then(|_| check(&tmp));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsutil::commit_temp(&tmp, file, &dst)?;
    let (size, sha256) = fsutil::hash_file(&dst)?;
    Ok(FileEntry {
        path: rel.to_owned(),
        size,
        sha256,
    })
}

/// Whether the last non-empty line of `path` starts with `marker` (dump tools
/// write a closing comment only when they finish).
fn ends_with_marker(path: &Path, marker: &str, what: &str) -> Result<()> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(last) if last.starts_with(marker) => Ok(()),
        _ => bail!("{what} output is incomplete: it does not end with '{marker}'"),
    }
}

/// Dumps users and grants into `rondb/users.sql` (0600: it holds password hashes).
pub fn dump_users(rondb: &RondbSettings, backup: &BackupSettings, user: RunAs, backup_dir: &Path) -> Result<FileEntry> {
    let cmd = mysqlpump_cmd(rondb, backup, user);
    dump_to_file(cmd, backup_dir, USERS_FILE, "mysqlpump", |p| {
        ends_with_marker(p, "-- Dump end time", "mysqlpump")
    })
}

/// The databases `mysqldump` should dump: all but the excluded ones.
pub fn databases_to_dump(rondb: &RondbSettings, backup: &BackupSettings, user: RunAs) -> Result<Vec<String>> {
    let out = runner::run(show_databases_cmd(rondb, backup, user))?;
    out.check("mysql (SHOW DATABASES)")?;
    let all: Vec<String> = out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if all.is_empty() {
        bail!("SHOW DATABASES listed no databases");
    }
    Ok(all
        .into_iter()
        .filter(|d| !rondb.exclude_databases.contains(d))
        .collect())
}

/// Dumps the schemas of `databases` into `rondb/schemas.sql`, with every
/// `CREATE TABLE ` made `CREATE TABLE IF NOT EXISTS ` (the tables come back
/// from the NDB backup first).
pub fn dump_schemas(
    rondb: &RondbSettings,
    backup: &BackupSettings,
    user: RunAs,
    backup_dir: &Path,
    databases: &[String],
) -> Result<FileEntry> {
    if databases.is_empty() {
        let rel = SCHEMAS_FILE;
        mkdir(&backup_dir.join("rondb"), 0o750)?;
        let body = b"-- hwdr: no databases to dump (every database is excluded)\n";
        fsutil::write_atomic(&backup_dir.join(rel), body, 0o600)?;
        let (size, sha256) = fsutil::hash_file(&backup_dir.join(rel))?;
        return Ok(FileEntry {
            path: rel.into(),
            size,
            sha256,
        });
    }
    let raw_rel = "rondb/.schemas.raw.sql";
    let cmd = mysqldump_cmd(rondb, backup, user, databases);
    dump_to_file(cmd, backup_dir, raw_rel, "mysqldump", |p| {
        ends_with_marker(p, "-- Dump completed", "mysqldump")
    })?;
    let raw = backup_dir.join(raw_rel);
    let result = rewrite_create_table(&raw, &backup_dir.join(SCHEMAS_FILE));
    let _ = fs::remove_file(&raw);
    let (size, sha256) = result?;
    Ok(FileEntry {
        path: SCHEMAS_FILE.into(),
        size,
        sha256,
    })
}

fn rewrite_create_table(src: &Path, dst: &Path) -> Result<(u64, String)> {
    let input = BufReader::new(File::open(src).with_context(|| format!("opening {}", src.display()))?);
    let (tmp, file) = fsutil::create_temp(dst, 0o600)?;
    let mut out = BufWriter::new(file);
    let written: Result<()> = (|| {
        for line in input.split(b'\n') {
            let line = line?;
            match line.strip_prefix(b"CREATE TABLE ") {
                Some(rest) if !rest.starts_with(b"IF NOT EXISTS ") => {
                    out.write_all(b"CREATE TABLE IF NOT EXISTS ")?;
                    out.write_all(rest)?;
                }
                _ => out.write_all(&line)?,
            }
            out.write_all(b"\n")?;
        }
        Ok(())
    })();
    let file = match written.and_then(|_| out.into_inner().map_err(|e| e.into_error().into())) {
        Ok(file) => file,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e.context(format!("writing {}", tmp.display())));
        }
    };
    fsutil::commit_temp(&tmp, file, dst)?;
    fsutil::hash_file(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_table_gets_if_not_exists_once() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("raw");
        fs::write(&src, "USE `a`;\nCREATE TABLE `t` (\n  `id` int\n);\nCREATE TABLE IF NOT EXISTS `u` (x int);\n-- CREATE TABLE in a comment\n").unwrap();
        let dst = d.path().join("out");
        rewrite_create_table(&src, &dst).unwrap();
        assert_eq!(
            fs::read_to_string(&dst).unwrap(),
            "USE `a`;\nCREATE TABLE IF NOT EXISTS `t` (\n  `id` int\n);\nCREATE TABLE IF NOT EXISTS `u` (x int);\n-- CREATE TABLE in a comment\n"
        );
    }
}
