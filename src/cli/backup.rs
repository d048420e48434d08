//! `hwdr backup`: take a backup of the whole cluster, if this node leads.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use chrono::{DateTime, Local, Timelike};
use tracing::{info, info_span, warn};

use crate::backup_id::BackupId;
use crate::exit::Code;
use crate::fleet::{Fleet, Leadership};
use crate::leader::{self, BackupOptions};
use crate::repo::{ManifestState, Repository};
use crate::{out, outln};

/// Options of `hwdr backup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Backup id (yymmddHHMM, local time); default: the current minute.
    #[arg(long, value_name = "ID")]
    id: Option<BackupId>,
    /// Print every step with its node, user and exact argv; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Lead even if an earlier head node answers (for an operator who knows
    /// the first head node is gone for good).
    #[arg(long)]
    force_leader: bool,
    /// Look for every block in the repository's store, instead of trusting
    /// that the latest complete backup's blocks are there (after blocks were
    /// removed from the store by hand, e.g. damaged ones `hwdr verify` named).
    #[arg(long)]
    check_store: bool,
}

/// Runs `hwdr backup`.
pub fn run(config_path: &Path, args: Args) -> Result<Code> {
    let config = super::load_config(config_path)?;
    let opts = BackupOptions {
        id: args.id,
        check_store: args.check_store,
    };
    if args.dry_run {
        super::open_repository(&config)?;
        let id = leader::choose_id(&opts, Local::now())?;
        out!("{}", leader::render_plan(&config, id));
        outln!("dry run: nothing was changed");
        return Ok(Code::Success);
    }
    crate::cancel::install()?;
    let fleet = Fleet::new(config)?;
    let config = fleet.config();
    if !args.force_leader {
        if let Leadership::Follower(leader) = fleet.elect()? {
            // Logged, not printed too: under systemd both would reach the journal.
            info!(hwdr_node = %config.this_node, "not the leader: {leader} leads the backup");
            return Ok(Code::NotLeader);
        }
    }
    let repo = super::open_repository_for_metrics(config)?;
    let (id, now) = match opts.id {
        Some(id) => (id, Local::now()),
        None => free_minute(&repo)?,
    };
    let _span = info_span!("backup", hwdr_backup_id = %id, hwdr_node = %config.this_node).entered();
    let result = leader::run_backup(config, id, &opts, now, &fleet);
    if let Err(e) = crate::metrics::write_textfile(config) {
        warn!("could not write the metrics: {e:#}");
    }
    let manifest = result?;
    // Retention runs after every successful backup; its failure does not
    // make the backup less good.
    match super::prune::prune_now(config, false, crate::prune::Sweep::IfRemoved) {
        Ok(r) => info!(
            "prune: removed {} backup(s), {} block(s) and {} leftover file(s), {} bytes freed",
            r.removed_backups.len(),
            r.removed_blocks,
            r.removed_leftovers,
            r.freed_bytes
        ),
        Err(e) => warn!("prune after backup {id} failed: {e:#}"),
    }
    outln!(
        "backup {id} complete: {} files, {} bytes, RonDB data nodes {:?}",
        manifest.files().count(),
        manifest.size(),
        manifest.rondb.data_node_ids
    );
    Ok(Code::Success)
}

/// The id of the current minute, once it is free in the repository: a
/// backup that failed fast holds its minute, and the operator's retry waits
/// for the next one instead of failing. Nothing is ever overwritten.
fn free_minute(repo: &Repository) -> Result<(BackupId, DateTime<Local>)> {
    loop {
        let now = Local::now();
        match minute_for(now, |id| repo.has_backup(id).unwrap_or(true))? {
            Minute::Free(id) => return Ok((id, now)),
            Minute::Taken { id, next, wait } => {
                info!(
                    "backup id {id} is taken ({}); waiting {} s for {next}",
                    holder(repo, id),
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

/// What holds a taken id, for the message: "failed backup of 18:19".
fn holder(repo: &Repository, id: BackupId) -> String {
    match repo.read_manifest(id) {
        Ok(ManifestState::Ok(m)) => format!(
            "{} backup of {}",
            m.status,
            m.started_at.with_timezone(&Local).format("%H:%M")
        ),
        Ok(ManifestState::Missing) => "unfinished backup".into(),
        Ok(ManifestState::Damaged(_)) => "backup with a damaged manifest".into(),
        Err(_) => "its folder exists".into(),
    }
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
