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
use crate::hopsfs::meta;
use crate::hopsfs::node::inventory_rel;
use crate::hopsfs::store::{BlockKey, BlockStore};
use crate::repo::fsutil;
use crate::repo::manifest::{BackupStatus, HopsfsInfo, Manifest};
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
pub fn verify(repo: &Repository, id: BackupId, full: bool) -> Result<Report> {
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
        ManifestState::Missing => {
            return Err(HwdrError::Refused(format!(
                "backup {id} has no manifest: it is not a complete backup (unfinished, or being taken); see \
                 `hwdr list`"
            ))
            .into())
        }
    };
    if manifest.status != BackupStatus::Complete {
        return Err(HwdrError::Refused(format!(
            "backup {id} is {}, not a complete backup: there is nothing to verify; see `hwdr list`",
            manifest.status
        ))
        .into());
    }
    let dir = repo.backup_dir(id);
    // Inventories are checked while their blocks stream by, below.
    let inventories: HashSet<String> = manifest
        .hopsfs
        .iter()
        .flat_map(|h| h.nodes.iter().map(|n| inventory_rel(n)))
        .collect();
    for f in manifest.files().filter(|f| !inventories.contains(&f.path)) {
        crate::cancel::check()?;
        report.files_checked += 1;
        match fsutil::hash_file(&dir.join(&f.path)) {
            Ok((size, sha)) => {
                report.bytes_read += size;
                if size != f.size {
                    report
                        .damage
                        .push(format!("{}: {size} bytes, the manifest says {}", f.path, f.size));
                } else if sha != f.sha256 {
                    report
                        .damage
                        .push(format!("{}: SHA-256 differs from the manifest", f.path));
                }
            }
            Err(e) => {
                crate::cancel::check()?;
                report.damage.push(format!("{}: {e:#}", f.path))
            }
        }
    }
    if let Some(h) = &manifest.hopsfs {
        check_blocks(repo, &manifest, h, full, &mut report)?;
    }
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

/// Every block the inventories of `nodes` name, each once; every inventory
/// read through and checked against the manifest.
fn check_blocks(repo: &Repository, manifest: &Manifest, h: &HopsfsInfo, full: bool, report: &mut Report) -> Result<()> {
    let store = BlockStore::new(repo.root());
    let dir = repo.backup_dir(manifest.backup_id);
    let mut seen: HashSet<BlockKey> = HashSet::new();
    for node in &h.nodes {
        let rel = inventory_rel(node);
        let Some(expected) = manifest.files().find(|f| f.path == rel) else {
            report.damage.push(format!("{rel}: not in the manifest"));
            continue;
        };
        report.files_checked += 1;
        report.bytes_read += expected.size;
        let read = inventory::for_each_block_checked(&dir.join(&rel), expected, |key, len| {
            crate::cancel::check()?;
            crate::fault::point("verify-block", None)?;
            if !seen.contains(&key) {
                let len = h.good_len(&key, len);
                check_block(&store, &key, len, full, report);
                seen.insert(key);
            }
            Ok(())
        });
        if let Err(e) = read {
            // A stop request is not damage.
            crate::cancel::check()?;
            report.damage.push(format!("{rel}: {e:#}"));
        }
    }
    Ok(())
}

fn check_block(store: &BlockStore, key: &BlockKey, len: u64, full: bool, report: &mut Report) {
    report.blocks_checked += 1;
    let path = store.block_path(key);
    let name = format!("blocks/{key}");
    match std::fs::metadata(&path) {
        Err(e) => return report.damage.push(format!("{name}: {e}")),
        Ok(m) if m.len() != len => {
            return report
                .damage
                .push(format!("{name}: {} bytes, the inventory says {len}", m.len()))
        }
        Ok(_) => {}
    }
    if !store.meta_path(key).is_file() {
        return report.damage.push(format!("{name}.meta: missing"));
    }
    if full {
        match meta::verify_file(&path, &store.meta_path(key)) {
            Ok(n) => report.bytes_read += n,
            // A stop request is not damage: the caller's next check ends the verify.
            Err(_) if crate::cancel::requested() => {}
            Err(e) => report.damage.push(format!("{name}: {e:#}")),
        }
    }
}
