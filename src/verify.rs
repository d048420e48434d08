//! `hwdr verify`: is a backup still whole? Every file of its manifest present
//! with its size and SHA-256 (read through), every HopsFS block its
//! inventories name present with its length, and with `full` every block
//! re-read and checked against its `.meta` CRCs.

use std::collections::HashSet;

use anyhow::{anyhow, Result};
use serde::Serialize;
use tracing::info;

use crate::backup_id::BackupId;
use crate::exit::HwdrError;
use crate::hopsfs::inventory::{self};
use crate::hopsfs::node::inventory_rel;
use crate::hopsfs::store::{BlockKey, BlockStore};
use crate::job::JobControl;
use crate::progress::Meter;
use crate::repo::manifest::{BackupStatus, HopsfsInfo, Manifest};
use crate::repo::store::ObjectKey;
use crate::repo::{ManifestState, Repository};

/// What a verify found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub backup_id: String,
    pub files_checked: u64,
    pub bytes_read: u64,
    pub blocks_checked: u64,
    /// Whether blocks were re-read against their CRCs.
    pub full: bool,
    /// One line per damaged or missing file or block.
    pub damage: Vec<String>,
}

impl Report {
    /// Whether nothing is damaged.
    pub fn ok(&self) -> bool {
        self.damage.is_empty()
    }
}

/// The newest complete backup, by the times in the manifests.
pub fn latest_complete(repo: &Repository) -> Result<BackupId> {
    repo.latest_complete()?
        .map(|m| m.backup_id)
        .ok_or_else(|| anyhow!("the repository has no complete backup"))
}

/// Verifies backup `id`: a damaged manifest is damage; a backup that does
/// not exist is [`HwdrError::NotFound`], one that is not complete is
/// [`HwdrError::Refused`] (there is nothing a restore could use to verify).
pub fn verify(repo: &Repository, id: BackupId, full: bool, threads: usize) -> Result<Report> {
    let mut report = Report {
        backup_id: id.to_string(),
        full,
        ..Report::default()
    };
    let manifest: Manifest = match repo.read_manifest(id)? {
        ManifestState::Ok(m) => *m,
        ManifestState::Damaged(why) => {
            report.damage.push(format!("manifest.json: {why}"));
            return Ok(report);
        }
        ManifestState::Missing => return Err(crate::repo::no_manifest(id).into()),
    };
    if manifest.status != BackupStatus::Complete {
        return Err(HwdrError::Refused(format!(
            "backup {id} is {}, not a complete backup: there is nothing to verify; see `hwdr list`",
            manifest.status
        ))
        .into());
    }
    // Inventories are checked while their blocks stream by, below.
    let inventories: HashSet<String> = manifest
        .hopsfs
        .iter()
        .flat_map(|h| h.nodes.iter().map(|n| inventory_rel(n)))
        .collect();
    let backup = repo.reader(id);
    let meter = meter_for(&manifest, full);
    for f in manifest.files().filter(|f| !inventories.contains(&f.path)) {
        crate::cancel::check()?;
        report.files_checked += 1;
        let checked = backup.check(f);
        meter.add(1, f.size);
        match checked {
            Ok(None) => report.bytes_read += f.size,
            Ok(Some(why)) => report.damage.push(format!("{}: {why}", f.path)),
            Err(e) => {
                crate::cancel::check()?;
                report.damage.push(format!("{}: {e:#}", f.path))
            }
        }
    }
    if let Some(h) = &manifest.hopsfs {
        check_blocks(repo, &manifest, h, Checks { full, threads }, &mut report, &meter)?;
    }
    drop(meter);
    crate::cancel::check()?;
    info!(
        files = report.files_checked,
        blocks = report.blocks_checked,
        damaged = report.damage.len(),
        "verified backup {id}: {}",
        if report.ok() { "ok" } else { "damaged" }
    );
    Ok(report)
}

/// The meter of a verify: every file of `manifest` read through, every
/// block looked at (and with `full` re-read).
fn meter_for(manifest: &Manifest, full: bool) -> Meter {
    let (blocks, block_bytes) = manifest
        .hopsfs
        .as_ref()
        .map_or((0, 0), |h| (h.distinct_blocks, h.distinct_bytes));
    let objects = manifest.files().count() as u64 + blocks;
    let bytes = manifest.size() + if full { block_bytes } else { 0 };
    let label = if full { "verifying, blocks re-read" } else { "verifying" };
    Meter::with_totals(label, "objects", objects, bytes)
}

/// How blocks are checked: re-read through their CRCs (`full`), and how
/// many at once (`[repository] upload_parallelism`: on object storage each
/// check is a few requests, and their latency adds up).
#[derive(Debug, Clone, Copy)]
struct Checks {
    full: bool,
    threads: usize,
}

/// Every block the inventories of `nodes` name, each once, checked by
/// `checks.threads` threads; every inventory read through and checked
/// against the manifest. Damage is reported in the inventories' order.
fn check_blocks(
    repo: &Repository,
    manifest: &Manifest,
    h: &HopsfsInfo,
    checks: Checks,
    report: &mut Report,
    meter: &Meter,
) -> Result<()> {
    let store = repo.blocks();
    let control = JobControl::default();
    let checked = crate::parallel::run(
        checks.threads,
        &control,
        || {
            Ok(BlockChecker {
                store: &store,
                full: checks.full,
                found: BlockReport::default(),
                meter,
            })
        },
        |feed| feed_blocks(repo, manifest, h, (report, meter), feed),
    )?;
    let mut damage: Vec<(usize, String)> = Vec::new();
    for found in checked {
        report.blocks_checked += found.checked;
        report.bytes_read += found.bytes;
        damage.extend(found.damage);
    }
    damage.sort();
    report.damage.extend(damage.into_iter().map(|(_, why)| why));
    crate::cancel::check()
}

/// Walks the inventories, handing each block not seen yet to the checkers
/// with its place in the walk.
fn feed_blocks(
    repo: &Repository,
    manifest: &Manifest,
    h: &HopsfsInfo,
    (report, meter): (&mut Report, &Meter),
    feed: &crate::parallel::Feed<'_, (usize, BlockKey, u64)>,
) -> Result<()> {
    let backup = repo.reader(manifest.backup_id);
    let mut seen: HashSet<BlockKey> = HashSet::new();
    for node in &h.nodes {
        let rel = inventory_rel(node);
        let Some(expected) = manifest.files().find(|f| f.path == rel) else {
            report.damage.push(format!("{rel}: not in the manifest"));
            continue;
        };
        report.files_checked += 1;
        report.bytes_read += expected.size;
        meter.add(1, expected.size);
        let read = inventory::for_each_block(&backup, expected, |key, len| {
            crate::cancel::check()?;
            crate::fault::point("verify-block", None)?;
            if seen.insert(key.clone()) {
                let len = h.good_len(&key, len);
                feed.send((seen.len(), key, len))?;
            }
            Ok(())
        });
        if let Err(e) = read {
            // A stop request is not damage (checkers that stopped: `run`
            // returns their error).
            crate::cancel::check()?;
            let users = match e.downcast_ref::<inventory::BadPiece>() {
                Some(bad) => format!("; backups naming it: {}", backups_naming(repo, &bad.name)),
                None => String::new(),
            };
            report.damage.push(format!("{rel}: {e:#}{users}"));
        }
    }
    Ok(())
}

/// The backups whose inventories name inventory piece `name`, for the
/// damage line of a bad piece: every backup with a readable manifest
/// looked at (its inventory files and trees, not its pieces).
fn backups_naming(repo: &Repository, name: &str) -> String {
    let entries = match repo.entries() {
        Ok(entries) => entries,
        Err(e) => return format!("unknown (listing the backups: {e:#})"),
    };
    let mut users = Vec::new();
    for e in entries {
        let ManifestState::Ok(m) = &e.manifest else { continue };
        let backup = repo.reader(e.id);
        // Whether it names the piece; `None`: an inventory of it does not read.
        let names = m
            .hopsfs
            .iter()
            .flat_map(|h| h.nodes.iter())
            .try_fold(false, |found, node| {
                let rel = inventory_rel(node);
                let named = match m
                    .files()
                    .find(|f| f.path == rel)
                    .map(|f| inventory::pieces_named(&backup, f))
                {
                    Some(Ok(named)) => named,
                    // The bad piece is one of its trees.
                    Some(Err(e)) if e.downcast_ref::<inventory::BadPiece>().is_some_and(|b| b.name == name) => {
                        return Some(true)
                    }
                    Some(Err(_)) => return None,
                    None => Vec::new(),
                };
                Some(found || named.iter().any(|n| n == name))
            });
        match names {
            Some(true) => users.push(e.id.to_string()),
            Some(false) => {}
            None => users.push(format!("{} (perhaps: an inventory does not read)", e.id)),
        }
    }
    users.sort();
    if users.is_empty() {
        "none found".into()
    } else {
        users.join(", ")
    }
}

/// What one checking thread found.
#[derive(Debug, Default)]
struct BlockReport {
    checked: u64,
    bytes: u64,
    /// Damage, with the block's place in the walk.
    damage: Vec<(usize, String)>,
}

struct BlockChecker<'a> {
    store: &'a BlockStore,
    full: bool,
    found: BlockReport,
    meter: &'a Meter,
}

impl crate::parallel::Worker<(usize, BlockKey, u64)> for BlockChecker<'_> {
    type Done = BlockReport;

    fn take(&mut self, (at, key, len): (usize, BlockKey, u64)) -> Result<()> {
        self.found.checked += 1;
        match check_block(self.store, &key, len, self.full) {
            Ok(bytes) => self.found.bytes += bytes,
            Err(why) => self.found.damage.push((at, why)),
        }
        self.meter.add(1, if self.full { len } else { 0 });
        Ok(())
    }

    fn finish(self) -> Result<BlockReport> {
        Ok(self.found)
    }
}

/// Checks one stored block: there, its length, its `.meta`, and with
/// `full` its bytes against the CRCs; the bytes read, or what is wrong.
fn check_block(store: &BlockStore, key: &BlockKey, len: u64, full: bool) -> Result<u64, String> {
    let name = format!("blocks/{key}");
    let (block, meta) = (ObjectKey::block(key), ObjectKey::block_meta(key));
    match store.backend().head(&block) {
        Err(e) => return Err(format!("{name}: {e:#}")),
        Ok(None) => return Err(format!("{name}: missing")),
        Ok(Some(m)) if m.size != len => return Err(format!("{name}: {} bytes, the inventory says {len}", m.size)),
        Ok(Some(_)) => {}
    }
    if !store.backend().head(&meta).is_ok_and(|m| m.is_some()) {
        return Err(format!("{name}.meta: missing"));
    }
    if !full {
        return Ok(0);
    }
    match store.verify(key, &JobControl::default()) {
        Ok(n) => Ok(n),
        // A stop request is not damage: the caller's next check ends the verify.
        Err(_) if crate::cancel::requested() => Ok(0),
        Err(e) => Err(format!("{name}: {e:#}")),
    }
}
