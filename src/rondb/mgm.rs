//! `START BACKUP` through `mgm-client.sh`, and reading what it printed.

use anyhow::{anyhow, bail, Result};

use crate::config::{BackupSettings, RondbSettings};
use crate::exit::HwdrError;
use crate::repo::manifest::NdbBackupResult;
use crate::rondb::password::BackupPassword;
use crate::runner::{Cmd, Failure, Outcome, RunAs};

/// The command for `START BACKUP <ndb id> SNAPSHOTEND WAIT COMPLETED`: the
/// whole management command is one argv element (the wrapper hands it to
/// `ndb_mgm -e` as one string). With `password`, RonDB encrypts the backup
/// (`START BACKUP <ndb id> ENCRYPT PASSWORD='…' …`): then the command goes
/// to the wrapper on its standard input (without `-e`, `ndb_mgm` reads its
/// commands there), so the password is in no argv, and it is hidden in the
/// output.
pub fn start_backup_cmd(
    rondb: &RondbSettings,
    backup: &BackupSettings,
    user: RunAs,
    ndb_id: u32,
    password: Option<&BackupPassword>,
) -> Cmd {
    let cmd = Cmd::new(&rondb.mgm_client, user, backup.ndb_backup_timeout);
    match password {
        None => cmd
            .arg("-e")
            .arg(format!("START BACKUP {ndb_id} SNAPSHOTEND WAIT COMPLETED")),
        Some(password) => cmd
            .stdin_secret(password.with(
                format!("START BACKUP {ndb_id} ENCRYPT PASSWORD='").as_bytes(),
                b"' SNAPSHOTEND WAIT COMPLETED\n",
            ))
            .hide(password.secret()),
    }
}

/// How a dry run shows the encrypted `START BACKUP` (the password is never
/// shown): what goes on the wrapper's standard input.
pub fn encrypted_start_backup_display(ndb_id: u32) -> String {
    format!(
        "< \"START BACKUP {ndb_id} ENCRYPT PASSWORD='<[rondb] backup_password_file>' SNAPSHOTEND WAIT COMPLETED\" on stdin"
    )
}

/// How long `ABORT BACKUP` may take.
const ABORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `mgm-client.sh -e "ABORT BACKUP <id>"`: after hwdr killed a `START BACKUP
/// ... WAIT COMPLETED` (stopped by a signal, or timed out), the data nodes
/// would go on with the backup, and its files could collide with the next
/// one. Runs even when hwdr is stopping; its outcome is logged, never fatal.
pub fn abort_backup(rondb: &RondbSettings, user: RunAs, ndb_id: u32) {
    let cmd = Cmd::new(&rondb.mgm_client, user, ABORT_TIMEOUT)
        .arg("-e")
        .arg(format!("ABORT BACKUP {ndb_id}"))
        .unstoppable();
    match crate::runner::run(cmd) {
        Ok(outcome) if outcome.status.success() => {
            tracing::warn!("RonDB backup {ndb_id} was not finished: ABORT BACKUP {ndb_id} ordered")
        }
        Ok(outcome) => tracing::warn!(
            "ABORT BACKUP {ndb_id} failed ({}); stop it by hand if it still runs",
            crate::runner::describe(outcome.status)
        ),
        Err(e) => tracing::warn!("ABORT BACKUP {ndb_id} could not run: {e:#}"),
    }
}

/// Judges the output of `START BACKUP`: the parsed result, or an error that
/// says what RonDB answered. An id that exists on a data node is
/// [`HwdrError::IdTaken`].
pub fn judge_start_backup(outcome: &Outcome, ndb_id: u32) -> Result<NdbBackupResult> {
    let text = outcome.tail.join("\n");
    let all = format!("{}\n{text}", outcome.stdout);
    if all.contains("file already exists") {
        return Err(HwdrError::IdTaken(format!(
            "RonDB backup id {ndb_id} already exists on a data node (NDB error 1350): {}; pick another id with \
             `--id yymmddHHMM`, or omit --id to use the current minute",
            first_line_with(&all, "Backup failed").unwrap_or("Backup failed")
        ))
        .into());
    }
    if let Some(line) = first_line_with(&all, "Unable to connect with connect string") {
        bail!(
            "cannot reach the RonDB management server: {}",
            line.trim_start_matches("ERROR: ")
        );
    }
    if let Some(line) = first_line_with(&all, "No contact with database nodes") {
        bail!("the management server has no contact with the RonDB data nodes: {line}");
    }
    if let Some(line) = first_line_with(&all, "out of range") {
        bail!("RonDB refused backup id {ndb_id}: {line}");
    }
    if let Some(line) = first_line_with(&all, "Backup failed") {
        let detail = all
            .lines()
            .skip_while(|l| !l.contains("Backup failed"))
            .collect::<Vec<_>>()
            .join(" | ");
        bail!(
            "RonDB backup {ndb_id} failed: {}",
            if detail.is_empty() { line.to_owned() } else { detail }
        );
    }
    let what = "mgm-client.sh (START BACKUP)";
    outcome.check(what)?;
    parse_completed(&outcome.stdout, ndb_id)
        .map_err(|e| outcome.failed(what, Failure::Unreadable(e.to_string())).into())
}

fn first_line_with<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    text.lines().map(str::trim).find(|l| l.contains(needle))
}

/// Parses the success report of `START BACKUP ... WAIT COMPLETED`:
///
/// ```text
/// Node 2: Backup 1 started from node 1 completed
///  StartGCP: 177 StopGCP: 180
///  #Records: 7362 #LogRecords: 0
///  Data: 453648 bytes Log: 0 bytes
/// ```
pub fn parse_completed(stdout: &str, ndb_id: u32) -> Result<NdbBackupResult> {
    let mut master = None;
    let mut numbers = std::collections::HashMap::new();
    for line in stdout.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        // Node <m>: Backup <id> started from node <mgm> completed
        if let ["Node", node, "Backup", id, "started", "from", "node", mgm, "completed"] = words[..] {
            if id.parse::<u32>() != Ok(ndb_id) {
                bail!("START BACKUP reported backup {id}, not {ndb_id}");
            }
            let node = node.trim_end_matches(':').parse::<u32>();
            let mgm = mgm.parse::<u32>();
            match (node, mgm) {
                (Ok(n), Ok(m)) => master = Some((n, m)),
                _ => bail!("cannot read the completion line '{line}'"),
            }
            continue;
        }
        // "StartGCP: 177 StopGCP: 180", "#Records: 7362 #LogRecords: 0",
        // "Data: 453648 bytes Log: 0 bytes": label followed by a number.
        for pair in words.windows(2) {
            if let Some(label) = pair[0].strip_suffix(':') {
                if let Ok(n) = pair[1].parse::<u64>() {
                    numbers.insert(label.to_owned(), n);
                }
            }
        }
    }
    let (master_node, mgm_node) =
        master.ok_or_else(|| anyhow!("START BACKUP did not report that backup {ndb_id} completed"))?;
    let get = |label: &str| {
        numbers
            .get(label)
            .copied()
            .ok_or_else(|| anyhow!("START BACKUP output lacks '{label}:'"))
    };
    Ok(NdbBackupResult {
        master_node,
        mgm_node,
        start_gcp: get("StartGCP")?,
        stop_gcp: get("StopGCP")?,
        records: get("#Records")?,
        log_records: get("#LogRecords")?,
        data_bytes: get("Data")?,
        log_bytes: get("Log")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    const OK: &str = "Waiting for completed, this may take several minutes
Node 2: Backup 263271819 started from node 1
Node 2: Backup 263271819 started from node 1 completed
 StartGCP: 177 StopGCP: 180
 #Records: 7362 #LogRecords: 0
 Data: 45364800000 bytes Log: 0 bytes
";

    fn outcome(code: i32, text: &str) -> Outcome {
        Outcome {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: text.to_owned(),
            tail: text.lines().map(String::from).collect(),
        }
    }

    #[test]
    fn parses_the_report_with_64_bit_counts() {
        let r = judge_start_backup(&outcome(0, OK), 263_271_819).unwrap();
        assert_eq!((r.master_node, r.mgm_node, r.start_gcp, r.stop_gcp), (2, 1, 177, 180));
        assert_eq!(
            (r.records, r.log_records, r.data_bytes, r.log_bytes),
            (7362, 0, 45_364_800_000, 0)
        );
    }

    #[test]
    fn wrong_id_or_missing_completion_fails() {
        assert!(judge_start_backup(&outcome(0, OK), 1).is_err());
        let partial = OK.lines().take(2).collect::<Vec<_>>().join("\n");
        let err = judge_start_backup(&outcome(0, &partial), 263_271_819).unwrap_err();
        assert!(err.to_string().contains("did not report"), "{err}");
    }

    #[test]
    fn an_unreadable_report_carries_the_output() {
        let partial = OK.lines().take(2).collect::<Vec<_>>().join("\n");
        let err = judge_start_backup(&outcome(0, &partial), 263_271_819).unwrap_err();
        let failed = err.downcast_ref::<crate::runner::ProgramFailed>().unwrap();
        assert_eq!(failed.tail.len(), 2);
        assert!(matches!(&failed.status, Failure::Unreadable(why) if why.contains("did not report")));
    }

    #[test]
    fn taken_id_is_its_own_error() {
        let text = "Backup failed\n*  3001: Could not start backup\n*        Backup failed: file already exists (use 'START BACKUP <backup id>'): Temporary error: Temporary Resource error\n";
        let err = judge_start_backup(&outcome(255, text), 5).unwrap_err();
        assert!(matches!(err.downcast_ref::<HwdrError>(), Some(HwdrError::IdTaken(_))));
    }

    #[test]
    fn connection_failures_are_named() {
        for text in [
            "Unable to connect with connect string: nodeid=0,head1:1186",
            "ERROR: Unable to connect with connect string: nodeid=0,head1:1186",
        ] {
            let err = judge_start_backup(&outcome(255, text), 5).unwrap_err().to_string();
            assert!(
                err.starts_with("cannot reach the RonDB management server: Unable to connect"),
                "{err}"
            );
        }
        let err = judge_start_backup(&outcome(255, "No contact with database nodes"), 5).unwrap_err();
        assert!(err.to_string().contains("no contact with the RonDB data nodes"));
    }

    #[test]
    fn nonzero_exit_without_known_text_fails() {
        let err = judge_start_backup(&outcome(1, "something odd"), 5)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exited with status 1") && err.contains("something odd"),
            "{err}"
        );
    }
}
