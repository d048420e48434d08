//! `hwdr prune`: retention that never eats the last good backup.
//!
//! Complete backups are kept by `[retention]` rules (restic-style: the newest
//! `keep_last`; the newest of each of the last `keep_daily` days,
//! `keep_weekly` ISO weeks and `keep_monthly` months that have backups; a
//! backup kept by any rule stays). Never removed: the newest complete
//! backup, anything younger than `min_age`, a backup being taken. Failed,
//! partial and unfinished backups go after `keep_failed_days`. Then HopsFS
//! blocks and inventory pieces that no remaining backup names are swept, but
//! only those written before the sweep started, so a backup running
//! meanwhile is never robbed,
//! and leftovers of crashed writes older than [`LEFTOVER_GRACE`]. Prune holds
//! the repository lock: while a backup or restore holds it, prune removes
//! nothing; nor does it while any manifest is damaged (it judges only what
//! it can read).

use std::collections::HashSet;
use std::io::BufReader;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Datelike, Local, Utc};
use serde::Serialize;
use tracing::{info, warn};

use crate::backup_id::BackupId;
use crate::config::Retention;
use crate::exit::HwdrError;
use crate::hopsfs::inventory::{self, PieceReader};
use crate::hopsfs::node::inventory_rel;
use crate::hopsfs::store::BlockKey;
use crate::progress::text;
use crate::repo::manifest::{BackupStatus, Manifest};
use crate::repo::store::{ObjectKey, StoreError};
use crate::repo::{Entry, ManifestState, Repository};

/// A backup as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: BackupId,
    /// `None`: no manifest (unfinished).
    pub status: Option<BackupStatus>,
    /// When it was taken (manifest start, else the folder's time).
    pub time: DateTime<Utc>,
    /// A live lock names it: it is being taken.
    pub running: bool,
}

/// The decision for one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: String,
    pub keep: bool,
    /// Why (every rule that keeps it, or why it goes).
    pub reasons: Vec<String>,
}

/// The period a backup falls in for a rule: (year, day / ISO week / month).
type Bucket = fn(DateTime<Local>) -> (i32, u32);

/// Decides which backups stay. Pure: `now` is a parameter.
pub fn decide(candidates: &[Candidate], policy: &Retention, now: DateTime<Utc>) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); sorted.len()];
    let complete: Vec<usize> = (0..sorted.len())
        .filter(|i| sorted[*i].status == Some(BackupStatus::Complete))
        .collect();

    if let Some(&newest) = complete.first() {
        reasons[newest].push("newest complete backup".into());
    }
    for &i in complete.iter().take(policy.keep_last) {
        reasons[i].push("keep_last".into());
    }
    let local = |t: DateTime<Utc>| t.with_timezone(&Local);
    let buckets: [(&str, usize, Bucket); 3] = [
        ("keep_daily", policy.keep_daily, |t| (t.year(), t.ordinal())),
        ("keep_weekly", policy.keep_weekly, |t| {
            (t.iso_week().year(), t.iso_week().week())
        }),
        ("keep_monthly", policy.keep_monthly, |t| (t.year(), t.month())),
    ];
    for (rule, count, bucket_of) in buckets {
        let mut seen = Vec::new();
        for &i in &complete {
            let bucket = bucket_of(local(sorted[i].time));
            if seen.contains(&bucket) {
                continue;
            }
            if seen.len() == count {
                break;
            }
            seen.push(bucket);
            reasons[i].push(format!("{rule} {}-{}", bucket.0, bucket.1));
        }
    }
    let min_age = chrono::Duration::from_std(policy.min_age).unwrap_or(chrono::Duration::days(1));
    let failed_age = chrono::Duration::days(policy.keep_failed_days as i64);
    sorted
        .iter()
        .zip(reasons)
        .map(|(c, mut why)| {
            let age = now - c.time;
            if c.running {
                why.push("being taken".into());
            }
            if age < min_age {
                why.push(format!("younger than min_age ({}s)", policy.min_age.as_secs()));
            }
            if c.status != Some(BackupStatus::Complete) && !c.running && age < failed_age {
                why.push(format!(
                    "not complete, kept for keep_failed_days ({})",
                    policy.keep_failed_days
                ));
            }
            let keep = !why.is_empty();
            if !keep {
                why.push(match c.status {
                    Some(BackupStatus::Complete) => "no rule keeps it".into(),
                    Some(s) => format!("{s}, older than keep_failed_days"),
                    None => "unfinished, older than keep_failed_days".into(),
                });
            }
            Decision {
                id: c.id.to_string(),
                keep,
                reasons: why,
            }
        })
        .collect()
}

/// How old a leftover in the block store must be before prune removes it: a
/// temp file (`.<name>.tmp-<pid>`) or a `.meta` whose block file is missing
/// (the block file is the commit mark). An upload in progress has both for
/// moments; one left for an hour was left by a crash.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(3600);

/// What a prune did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub decisions: Vec<Decision>,
    pub removed_backups: Vec<String>,
    pub removed_blocks: u64,
    /// Inventory pieces no remaining backup names.
    pub removed_pieces: u64,
    /// Leftover temp files and orphan `.meta` files in the block store.
    pub removed_leftovers: u64,
    pub freed_bytes: u64,
}

/// The backups of a repository as candidates. Every manifest must have
/// passed its checks ([`refuse_damaged`]).
pub fn candidates(repo: &Repository, entries: &[Entry]) -> Vec<Candidate> {
    let holder = repo.lock_holder().ok().flatten();
    let mut out = Vec::new();
    for e in entries {
        let running = holder
            .as_ref()
            .is_some_and(|h| h.backup_id.as_deref() == Some(e.id.to_string().as_str()) && !h.is_stale());
        let (status, time) = match &e.manifest {
            ManifestState::Ok(m) => (Some(m.status), m.started_at),
            _ => (None, e.started.map_or_else(Utc::now, DateTime::<Utc>::from)),
        };
        out.push(Candidate {
            id: e.id,
            status,
            time,
            running,
        });
    }
    out
}

/// Prune judges only what it can read: a damaged manifest stops it before it
/// removes anything, naming every damaged backup and what to do.
pub fn refuse_damaged(repo: &Repository, entries: &[Entry]) -> Result<()> {
    let mut damaged: Vec<(BackupId, &str)> = entries
        .iter()
        .filter_map(|e| match &e.manifest {
            ManifestState::Damaged(why) => Some((e.id, why.as_str())),
            _ => None,
        })
        .collect();
    if damaged.is_empty() {
        return Ok(());
    }
    damaged.sort();
    let named: Vec<String> = damaged
        .iter()
        .map(|(id, why)| format!("backup {id} (manifest.json: {why})"))
        .collect();
    Err(HwdrError::Damaged(format!(
        "prune removed nothing: the manifest of {} is damaged, so retention cannot be judged; check each backup \
         (`hwdr verify <id>`), then move it aside out of {}/backups, or restore its manifest.json from a copy",
        named.join(", "),
        repo.location()
    ))
    .into())
}

/// When [`prune`] sweeps the block store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Every time (`hwdr prune`).
    Always,
    /// Only when a backup was removed: blocks become unreferenced only then
    /// (the prune after every backup, which must not cost a walk of the whole
    /// store each time).
    IfRemoved,
}

/// Applies retention to the repository and sweeps unreferenced blocks.
pub fn prune(
    repo: &Repository,
    policy: &Retention,
    now: DateTime<Utc>,
    dry_run: bool,
    when: Sweep,
) -> Result<PruneReport> {
    let lock = if dry_run { None } else { Some(repo.lock("prune", None)?) };
    // Blocks written from here on are never swept. The store's clock, not
    // this node's: the blocks' times are the store's, and the nodes' clocks
    // may be off from it. The lock's lease was written just before (its
    // time is the store's); a dry run, which removes nothing, takes ours.
    let sweep_start = lock.as_ref().map_or_else(SystemTime::now, |l| l.acquired());
    let entries = repo.entries()?;
    refuse_damaged(repo, &entries)?;
    let decisions = decide(&candidates(repo, &entries), policy, now);
    let mut report = PruneReport {
        dry_run,
        decisions: decisions.clone(),
        ..Default::default()
    };
    let kept: HashSet<String> = decisions.iter().filter(|d| d.keep).map(|d| d.id.clone()).collect();
    // Marked before anything is removed: an inventory that does not match
    // its manifest stops the prune with nothing removed.
    let marked = if when == Sweep::Always || decisions.iter().any(|d| !d.keep) {
        let kept: Vec<&Entry> = entries.iter().filter(|e| kept.contains(&e.id.to_string())).collect();
        Some(mark(repo, &kept)?)
    } else {
        None
    };
    for d in decisions.iter().filter(|d| !d.keep) {
        crate::cancel::check()?;
        crate::fault::point("prune-remove-backup", None)?;
        let id: BackupId = d.id.parse()?;
        let size = backup_size(repo, id)?;
        info!(hwdr_backup_id = %id, freed_bytes = size, "{} backup {id} ({}; its own files take {})", if dry_run { "would remove" } else { "removing" }, d.reasons.join(", "), text::size(size));
        if !dry_run {
            // The manifest first: a half-removed backup never looks like a backup.
            repo.backend().delete(&ObjectKey::manifest(id))?;
            repo.backend().delete_prefix(&ObjectKey::backup_prefix(id))?;
        }
        report.removed_backups.push(d.id.clone());
        report.freed_bytes += size;
    }
    match marked {
        Some(marked) => {
            sweep(repo, &marked.blocks, sweep_start, dry_run, &mut report)?;
            sweep_pieces(repo, &marked.pieces, sweep_start, dry_run, &mut report)?;
        }
        None => info!("no backup removed: the block store is not swept"),
    }
    info!(
        removed_backups = report.removed_backups.len(),
        removed_blocks = report.removed_blocks,
        removed_pieces = report.removed_pieces,
        removed_leftovers = report.removed_leftovers,
        freed_bytes = report.freed_bytes,
        "prune {}: {} backups, {} blocks, {} inventory pieces and {} leftover files, {}",
        if dry_run { "would remove" } else { "removed" },
        report.removed_backups.len(),
        report.removed_blocks,
        report.removed_pieces,
        report.removed_leftovers,
        text::size(report.freed_bytes)
    );
    Ok(report)
}

/// What the backups prune keeps name: blocks (`pool/blk_<id>_<gs>`) and
/// inventory pieces (by name).
struct Marked {
    blocks: HashSet<String>,
    pieces: HashSet<String>,
}

/// Every block and inventory piece named by the inventories of `kept`. A
/// piece is read once, however many backups name it: its blocks are marked
/// the first time.
fn mark(repo: &Repository, kept: &[&Entry]) -> Result<Marked> {
    let mut blocks = HashSet::new();
    let mut pieces = PieceReader::once(repo.shared_backend());
    for e in kept {
        crate::cancel::check()?;
        match &e.manifest {
            ManifestState::Ok(m) => mark_listed(repo, m, &mut pieces, &mut blocks)?,
            // Unfinished: keep every block any of its inventories names.
            ManifestState::Missing => mark_unfinished(repo, e.id, &mut pieces, &mut blocks)?,
            ManifestState::Damaged(why) => bail!("backup {}: manifest.json: {why}", e.id),
        }
    }
    Ok(Marked {
        blocks,
        pieces: pieces.into_named(),
    })
}

/// The blocks of a backup with a manifest: each inventory must be the one the
/// manifest lists (size and SHA-256), or nothing is swept.
fn mark_listed(repo: &Repository, m: &Manifest, pieces: &mut PieceReader, marked: &mut HashSet<String>) -> Result<()> {
    let id = m.backup_id;
    let backup = repo.reader(id);
    for node in m.hopsfs.iter().flat_map(|h| h.nodes.iter()) {
        let rel = inventory_rel(node);
        let checked = match m.files().find(|f| f.path == rel) {
            Some(expected) => inventory::for_each_block_in(pieces, &backup, expected, |key, _| {
                marked.insert(key.to_string());
                Ok(())
            })
            .map(|_| ()),
            None => Err(anyhow!("the manifest does not list {rel}")),
        };
        checked.map_err(|e| {
            HwdrError::Damaged(format!(
                "prune removed nothing: backup {id} is kept, but its inventory of node {node} cannot be trusted: \
                 {e:#}; `hwdr verify {id}` names the damage"
            ))
        })?;
    }
    Ok(())
}

/// The blocks of an unfinished backup: whatever its inventories list so far.
fn mark_unfinished(
    repo: &Repository,
    id: BackupId,
    pieces: &mut PieceReader,
    marked: &mut HashSet<String>,
) -> Result<()> {
    let nodes = repo
        .backend()
        .list_children(&format!("{}hopsfs/", ObjectKey::backup_prefix(id)))?;
    let backup = repo.reader(id);
    for node in nodes {
        let input = match backup.open(&inventory_rel(&node)) {
            Ok(input) => input,
            Err(StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let read = inventory::blocks_of(BufReader::new(input), pieces, |key, _| {
            marked.insert(key.to_string());
            Ok(())
        });
        if let Err(e) = read {
            // A truncated inventory of an unfinished backup: what it listed is marked.
            warn!("backup {id}, inventory of {node}: {e:#}");
        }
    }
    Ok(())
}

/// Removes blocks (and their `.meta`) not in `marked` and written before
/// `sweep_start`; a `.meta` whose block is gone once it is older than
/// [`LEFTOVER_GRACE`]; and what crashed puts left (the backend's temp files)
/// as old.
fn sweep(
    repo: &Repository,
    marked: &HashSet<String>,
    sweep_start: SystemTime,
    dry_run: bool,
    report: &mut PruneReport,
) -> Result<()> {
    let leftover_before = sweep_start
        .checked_sub(LEFTOVER_GRACE)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let backend = repo.backend();
    // Unmarked blocks seen (and those swept), and unmarked metas with their
    // size and time: only garbage is kept in memory.
    let mut seen: HashSet<String> = HashSet::new();
    let mut swept: HashSet<String> = HashSet::new();
    let mut metas: Vec<(ObjectKey, u64, SystemTime)> = Vec::new();
    backend.list("blocks/", &mut |o| {
        crate::cancel::check()?;
        let Some((key, is_meta)) = BlockKey::of_object(&o.key) else {
            return Ok(());
        };
        if marked.contains(&key.to_string()) {
            return Ok(());
        }
        if is_meta {
            metas.push((o.key, o.size, o.modified));
            return Ok(());
        }
        seen.insert(o.key.as_str().to_owned());
        if o.modified >= sweep_start {
            return Ok(());
        }
        if !dry_run {
            backend.delete(&o.key)?;
        }
        report.removed_blocks += 1;
        report.freed_bytes += o.size;
        swept.insert(o.key.as_str().to_owned());
        Ok(())
    })?;
    for (meta, size, modified) in metas {
        // Its block is the object of the same name without `.meta`.
        let block = meta.as_str().trim_end_matches(".meta");
        // With its swept block; or alone (a `.meta` alone is no block) once
        // old enough that no upload can be about to add its block.
        let orphan = !seen.contains(block) && modified < leftover_before;
        if !swept.contains(block) && !orphan {
            continue;
        }
        if orphan {
            info!(
                "{} leftover {meta} ({})",
                if dry_run { "would remove" } else { "removing" },
                text::size(size)
            );
            report.removed_leftovers += 1;
        }
        if !dry_run {
            backend.delete(&meta)?;
        }
        report.freed_bytes += size;
    }
    let (count, bytes) = backend.remove_leftovers(leftover_before, dry_run)?;
    report.removed_leftovers += count;
    report.freed_bytes += bytes;
    Ok(())
}

/// Removes the inventory pieces not in `named` and written before
/// `sweep_start` (the rule of the blocks: a backup running meanwhile may
/// have stored pieces its inventory does not name yet).
fn sweep_pieces(
    repo: &Repository,
    named: &HashSet<String>,
    sweep_start: SystemTime,
    dry_run: bool,
    report: &mut PruneReport,
) -> Result<()> {
    let backend = repo.backend();
    backend.list(ObjectKey::PIECES, &mut |o| {
        crate::cancel::check()?;
        let name = o.key.as_str().rsplit('/').next().unwrap_or_default();
        // Anything else there (a put's temp file) is the leftovers' sweep's.
        let is_piece = ObjectKey::inventory_piece(name).is_ok_and(|k| k == o.key);
        if !is_piece || named.contains(name) || o.modified >= sweep_start {
            return Ok(());
        }
        if !dry_run {
            backend.delete(&o.key)?;
        }
        report.removed_pieces += 1;
        report.freed_bytes += o.size;
        Ok(())
    })
}

/// What backup `id`'s objects hold.
fn backup_size(repo: &Repository, id: BackupId) -> Result<u64> {
    let mut total = 0;
    repo.backend().list(&ObjectKey::backup_prefix(id), &mut |o| {
        total += o.size;
        Ok(())
    })?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn policy(last: usize, daily: usize, weekly: usize, monthly: usize) -> Retention {
        Retention {
            keep_last: last,
            keep_daily: daily,
            keep_weekly: weekly,
            keep_monthly: monthly,
            min_age: Duration::from_secs(86_400),
            keep_failed_days: 7,
        }
    }

    /// A complete backup at local time `y-m-d h:00`.
    fn at(y: i32, m: u32, d: u32, h: u32) -> Candidate {
        let t = Local.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
        Candidate {
            id: BackupId::from_datetime(t.naive_local()).unwrap(),
            status: Some(BackupStatus::Complete),
            time: t.with_timezone(&Utc),
            running: false,
        }
    }

    fn kept(decisions: &[Decision]) -> Vec<String> {
        let mut k: Vec<String> = decisions.iter().filter(|d| d.keep).map(|d| d.id.clone()).collect();
        k.sort();
        k
    }

    fn now() -> DateTime<Utc> {
        Local
            .with_ymd_and_hms(2026, 11, 30, 12, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn daily_keeps_the_newest_of_each_of_the_last_days_with_backups() {
        // Two backups a day for ten days.
        let backups: Vec<Candidate> = (10..20)
            .flat_map(|d| [at(2026, 11, d, 1), at(2026, 11, d, 13)])
            .collect();
        let d = decide(&backups, &policy(0, 3, 0, 0), now());
        assert_eq!(kept(&d), ["2611171300", "2611181300", "2611191300"]);
    }

    #[test]
    fn weekly_and_monthly_keep_the_newest_of_each_bucket() {
        // One backup a day through October and November 2026.
        let backups: Vec<Candidate> = (1..=31)
            .map(|d| at(2026, 10, d, 2))
            .chain((1..=28).map(|d| at(2026, 11, d, 2)))
            .collect();
        // ISO weeks: Nov 28 (Sat, week 48), Nov 22 (Sun, week 47), Nov 15 (week 46).
        assert_eq!(
            kept(&decide(&backups, &policy(0, 0, 3, 0), now())),
            ["2611150200", "2611220200", "2611280200"]
        );
        assert_eq!(
            kept(&decide(&backups, &policy(0, 0, 0, 2), now())),
            ["2610310200", "2611280200"]
        );
        // A backup kept by any rule stays: last 2 plus monthly 2.
        assert_eq!(
            kept(&decide(&backups, &policy(2, 0, 0, 2), now())),
            ["2610310200", "2611270200", "2611280200"]
        );
    }

    #[test]
    fn the_newest_complete_and_young_backups_are_never_removed() {
        let mut backups = vec![at(2026, 1, 1, 1), at(2026, 2, 1, 1)];
        // Every rule at zero: the newest complete one still stays.
        assert_eq!(kept(&decide(&backups, &policy(0, 0, 0, 0), now())), ["2602010100"]);
        // A newer failed backup does not count as the newest good one.
        let mut failed = at(2026, 11, 25, 1);
        failed.status = Some(BackupStatus::Failed);
        backups.push(failed.clone());
        assert_eq!(
            kept(&decide(&backups, &policy(0, 0, 0, 0), now())),
            ["2602010100", "2611250100"]
        );
        // ...and is removed once older than keep_failed_days.
        let later = Local
            .with_ymd_and_hms(2026, 12, 20, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(kept(&decide(&backups, &policy(0, 0, 0, 0), later)), ["2602010100"]);
        // Younger than min_age: kept whatever the rules say.
        let young = at(2026, 11, 30, 2);
        backups.push(young);
        assert!(kept(&decide(&backups, &policy(0, 0, 0, 0), now())).contains(&"2611300200".to_owned()));
        // Being taken: kept.
        let mut running = at(2026, 3, 1, 1);
        running.status = None;
        running.running = true;
        assert!(kept(&decide(&[running], &policy(0, 0, 0, 0), later)).contains(&"2603010100".to_owned()));
    }
}
