//! Users and grants (`mysqlpump --users`) and the schemas NDB does not hold
//! (`mysqldump --no-data`), as the runbook and Hopsworks' script take them.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::{BackupSettings, RondbSettings};
use crate::fsutil;
use crate::repo::backup::BackupWriter;
use crate::repo::manifest::FileEntry;
use crate::repo::store::Access;
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
        .stdout_is_data()
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

/// Runs `cmd` with stdout into a scratch file in `spool` (see
/// [`fsutil::spool`]), then `check`s it; the file, read from its start.
fn dump_to_spool(cmd: Cmd, spool: &Path, what: &str, check: impl Fn(&mut File) -> Result<()>) -> Result<File> {
    let mut file = fsutil::spool(spool)?;
    let out = file.try_clone().context("duplicating the dump file")?;
    runner::run(cmd.stdout_to(out))?.check(what)?;
    file.rewind().context("rereading the dump")?;
    check(&mut file)?;
    file.rewind().context("rereading the dump")?;
    Ok(file)
}

/// Whether the last non-empty line of `file` starts with `marker` (dump tools
/// write a closing comment only when they finish).
fn ends_with_marker(file: &mut File, marker: &str, what: &str) -> Result<()> {
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("reading the {what} output"))?;
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(last) if last.starts_with(marker) => Ok(()),
        _ => bail!("{what} output is incomplete: it does not end with '{marker}'"),
    }
}

/// Dumps users and grants into `rondb/users.sql` of backup `to` (readable by
/// its owner only: it holds password hashes), spooled in `spool` first.
pub fn dump_users(
    rondb: &RondbSettings,
    backup: &BackupSettings,
    user: RunAs,
    spool: &Path,
    to: &BackupWriter,
) -> Result<FileEntry> {
    let cmd = mysqlpump_cmd(rondb, backup, user);
    let dump = dump_to_spool(cmd, spool, "mysqlpump", |f| {
        ends_with_marker(f, "-- Dump end time", "mysqlpump")
    })?;
    to.put(USERS_FILE, &mut BufReader::new(dump), Access::Owner)
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
    spool: &Path,
    to: &BackupWriter,
    databases: &[String],
) -> Result<FileEntry> {
    if databases.is_empty() {
        let body = b"-- hwdr: no databases to dump (every database is excluded)\n";
        return to.put_bytes(SCHEMAS_FILE, body, Access::Owner);
    }
    let cmd = mysqldump_cmd(rondb, backup, user, databases);
    let raw = dump_to_spool(cmd, spool, "mysqldump", |f| {
        ends_with_marker(f, "-- Dump completed", "mysqldump")
    })?;
    let mut rewritten = fsutil::spool(spool)?;
    rewrite_create_table(BufReader::new(raw), &mut BufWriter::new(&mut rewritten))?;
    rewritten.rewind().context("rereading the schemas")?;
    to.put(SCHEMAS_FILE, &mut BufReader::new(rewritten), Access::Owner)
}

fn rewrite_create_table(input: impl BufRead, out: &mut impl Write) -> Result<()> {
    for line in input.split(b'\n') {
        let line = line.context("reading the mysqldump output")?;
        match line.strip_prefix(b"CREATE TABLE ") {
            Some(rest) if !rest.starts_with(b"IF NOT EXISTS ") => {
                out.write_all(b"CREATE TABLE IF NOT EXISTS ")?;
                out.write_all(rest)?;
            }
            _ => out.write_all(&line)?,
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_table_gets_if_not_exists_once() {
        let src = "USE `a`;\nCREATE TABLE `t` (\n  `id` int\n);\nCREATE TABLE IF NOT EXISTS `u` (x int);\n-- CREATE TABLE in a comment\n";
        let mut out = Vec::new();
        rewrite_create_table(src.as_bytes(), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "USE `a`;\nCREATE TABLE IF NOT EXISTS `t` (\n  `id` int\n);\nCREATE TABLE IF NOT EXISTS `u` (x int);\n-- CREATE TABLE in a comment\n"
        );
    }
}
