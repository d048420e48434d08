//! The backup's id: the one given, or the current minute once it is free
//! in the repository (a backup that failed fast holds its minute).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use chrono::{DateTime, Local, Timelike};
use tracing::info;

use super::BackupOptions;
use crate::backup_id::BackupId;
use crate::repo::Repository;

/// For `--dry-run`: the id a backup started at local time `now` would take,
/// and a note when the current minute is taken (the backup would wait for
/// the next). A given id that is taken fails as the backup would
/// ([`HwdrError::IdTaken`](crate::exit::HwdrError::IdTaken)).
pub fn dry_run_id(repo: &Repository, opts: &BackupOptions, now: DateTime<Local>) -> Result<(BackupId, Option<String>)> {
    if let Some(id) = opts.id {
        repo.check_id_free(id)?;
        return Ok((id, None));
    }
    let taken = repo.backup_ids()?;
    match minute_for(now, |id| taken.contains(&id))? {
        Minute::Free(id) => Ok((id, None)),
        Minute::Taken { id, next, wait } => {
            let note = format!(
                "backup id {id} is taken ({}): the backup would wait {} s for {next}",
                repo.describe_backup(id),
                wait.as_secs_f64().ceil()
            );
            Ok((next, Some(note)))
        }
    }
}

/// The id of the current minute, once it is free in the repository: a
/// backup that failed fast holds its minute, and the operator's retry waits
/// for the next one instead of failing. Nothing is ever overwritten.
pub fn free_minute(repo: &Repository) -> Result<(BackupId, DateTime<Local>)> {
    loop {
        let now = Local::now();
        match minute_for(now, |id| repo.has_backup(id).unwrap_or(true))? {
            Minute::Free(id) => return Ok((id, now)),
            Minute::Taken { id, next, wait } => {
                info!(
                    "backup id {id} is taken ({}); waiting {} s for {next}",
                    repo.describe_backup(id),
                    wait.as_secs_f64().ceil()
                );
                sleep_unless_stopped(wait)?;
            }
        }
    }
}

/// Whether the minute of `now` can name a new backup.
#[derive(Debug, PartialEq, Eq)]
enum Minute {
    Free(BackupId),
    /// `id` is taken: wait `wait` for the next minute's id `next`.
    Taken {
        id: BackupId,
        next: BackupId,
        wait: Duration,
    },
}

/// The id of the minute of `now`, or how long to wait for the next one when
/// `taken` says it is taken.
fn minute_for(now: DateTime<Local>, taken: impl Fn(BackupId) -> bool) -> Result<Minute> {
    let naive = now.naive_local();
    let id = BackupId::from_datetime(naive)
        .ok_or_else(|| anyhow!("the local time {now} is outside 2000-2099, so it cannot name a backup"))?;
    if !taken(id) {
        return Ok(Minute::Free(id));
    }
    let into_minute =
        Duration::from_secs(u64::from(naive.second())) + Duration::from_nanos(u64::from(naive.nanosecond()));
    let wait = Duration::from_secs(60).saturating_sub(into_minute);
    let next = BackupId::from_datetime(naive + chrono::Duration::seconds(60))
        .ok_or_else(|| anyhow!("the next minute after {now} cannot name a backup"))?;
    Ok(Minute::Taken { id, next, wait })
}

/// Sleeps `wait`, failing at once on SIGTERM or SIGINT.
fn sleep_unless_stopped(wait: Duration) -> Result<()> {
    let until = Instant::now() + wait;
    loop {
        crate::cancel::check()?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32, ms: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(2026, 11, 23, h, m, s).unwrap() + chrono::Duration::milliseconds(ms.into())
    }

    fn id(s: &str) -> BackupId {
        s.parse().unwrap()
    }

    #[test]
    fn a_free_minute_is_used_at_once() {
        assert_eq!(
            minute_for(at(18, 19, 57, 0), |_| false).unwrap(),
            Minute::Free(id("2611231819"))
        );
    }

    #[test]
    fn a_taken_minute_waits_for_the_next_one() {
        let taken = |i: BackupId| i == id("2611231819");
        assert_eq!(
            minute_for(at(18, 19, 57, 250), taken).unwrap(),
            Minute::Taken {
                id: id("2611231819"),
                next: id("2611231820"),
                wait: Duration::from_millis(2750),
            }
        );
        assert_eq!(
            minute_for(at(18, 19, 0, 0), taken).unwrap(),
            Minute::Taken {
                id: id("2611231819"),
                next: id("2611231820"),
                wait: Duration::from_secs(60),
            }
        );
        // The last minute of a day waits for the first of the next.
        let late = |i: BackupId| i == id("2611232359");
        assert_eq!(
            minute_for(at(23, 59, 30, 0), late).unwrap(),
            Minute::Taken {
                id: id("2611232359"),
                next: id("2611240000"),
                wait: Duration::from_secs(30),
            }
        );
    }
}
