//! `hwdr list`: the backups in the repository, newest first by the times in
//! their manifests (never by folder names).

use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Local, Utc};
use serde::Serialize;

use crate::exit::Code;
use crate::outln;
use crate::repo::{ManifestState, Repository};

/// Options of `hwdr list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (one array) instead of a table.
    #[arg(long)]
    json: bool,
}

/// One row of the listing.
#[derive(Debug, Serialize)]
pub struct Row {
    pub id: String,
    /// complete, partial, failed, in_progress, incomplete (no manifest and
    /// no live lock: the backup died), or damaged (a manifest that does not
    /// parse or match its checksum; `error` says why).
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What the backup holds: its own files and the HopsFS blocks it names.
    pub size_bytes: Option<u64>,
    /// What it added to the repository: its own files and the blocks it stored first.
    pub added_bytes: Option<u64>,
    /// The bytes those take in the store: after compression and encryption
    /// in an encrypted repository, `added_bytes` in a plaintext one. `None`
    /// for a backup made before hwdr recorded stored sizes.
    pub added_stored_bytes: Option<u64>,
    pub files: Option<usize>,
    pub nodes: Vec<String>,
    pub hwdr_version: Option<String>,
    pub ndb_backup_id: Option<u32>,
    pub error: Option<String>,
}

/// The rows for every backup folder, newest first.
pub fn rows(repo: &Repository) -> Result<Vec<Row>> {
    let holder = repo.lock_holder().ok().flatten();
    let mut rows = Vec::new();
    for entry in repo.entries()? {
        let id = entry.id.to_string();
        let row = match entry.manifest {
            ManifestState::Ok(m) => Row {
                status: m.status.to_string(),
                started_at: Some(m.started_at),
                finished_at: Some(m.finished_at),
                size_bytes: Some(m.backup_size()),
                added_bytes: Some(m.added()),
                added_stored_bytes: m.added_stored(),
                files: Some(m.files().count()),
                nodes: m.nodes.iter().map(|n| n.name.clone()).collect(),
                hwdr_version: Some(m.hwdr_version.clone()),
                ndb_backup_id: Some(m.rondb.ndb_backup_id),
                error: m.error.clone(),
                id,
            },
            ManifestState::Damaged(why) => Row {
                status: "damaged".into(),
                started_at: entry.started.map(DateTime::<Utc>::from),
                finished_at: None,
                size_bytes: None,
                added_bytes: None,
                added_stored_bytes: None,
                files: None,
                nodes: Vec::new(),
                hwdr_version: None,
                ndb_backup_id: Some(entry.id.ndb_id()),
                error: Some(format!("manifest.json: {why}")),
                id,
            },
            ManifestState::Missing => {
                let running = holder
                    .as_ref()
                    .is_some_and(|h| h.backup_id.as_deref() == Some(id.as_str()) && !h.is_stale());
                let started = holder
                    .as_ref()
                    .filter(|_| running)
                    .map(|h| h.since)
                    .or_else(|| entry.started.map(DateTime::<Utc>::from));
                Row {
                    status: if running { "in_progress" } else { "incomplete" }.into(),
                    started_at: started,
                    finished_at: None,
                    size_bytes: None,
                    added_bytes: None,
                    added_stored_bytes: None,
                    files: None,
                    nodes: Vec::new(),
                    hwdr_version: None,
                    ndb_backup_id: Some(entry.id.ndb_id()),
                    error: None,
                    id,
                }
            }
        };
        rows.push(row);
    }
    rows.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| b.id.cmp(&a.id)));
    Ok(rows)
}

/// Runs `hwdr list`.
pub fn run(config_path: &Path, args: Args) -> Result<Code> {
    let config = super::load_config(config_path)?;
    let repo = super::open_repository(&config)?;
    let rows = rows(&repo)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Code::Success);
    }
    outln!("repository {}: {}", repo.location(), sealing(&repo, &config)?);
    if rows.is_empty() {
        outln!("no backups in {}", repo.location());
        return Ok(Code::Success);
    }
    table(&rows);
    Ok(Code::Success)
}

/// The rows as a table: SIZE and ADDED as read, STORED what ADDED takes in
/// the store, in binary units (`--json` has the exact bytes); a note when a
/// backup predates stored sizes.
fn table(rows: &[Row]) {
    let local = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| "-".into())
    };
    let bytes = |b: Option<u64>| b.map_or("-".into(), crate::progress::text::size);
    outln!(
        "{:<10}  {:<11}  {:<19}  {:<19}  {:>10}  {:>10}  {:>10}  {:<8}  NODES",
        "ID",
        "STATUS",
        "STARTED",
        "FINISHED",
        "SIZE",
        "ADDED",
        "STORED",
        "VERSION"
    );
    for r in rows {
        // A damaged backup has no nodes to show: its reason, shortened, instead.
        let last = match (&r.error, r.status.as_str()) {
            (Some(why), "damaged") => shorten(why, 60),
            _ => r.nodes.join(","),
        };
        outln!(
            "{:<10}  {:<11}  {:<19}  {:<19}  {:>10}  {:>10}  {:>10}  {:<8}  {}",
            r.id,
            r.status,
            local(r.started_at),
            local(r.finished_at),
            bytes(r.size_bytes),
            bytes(r.added_bytes),
            bytes(r.added_stored_bytes),
            r.hwdr_version.as_deref().unwrap_or("-"),
            last
        );
    }
    if rows
        .iter()
        .any(|r| r.added_bytes.is_some() && r.added_stored_bytes.is_none())
    {
        outln!("STORED -: unknown: the backup was made by an hwdr (or with an agent) that did not record stored sizes");
    }
}

/// Whether `repo` is encrypted, and how its objects are compressed.
pub fn sealing(repo: &Repository, config: &crate::config::Config) -> Result<String> {
    if !repo.encrypted()? {
        return Ok("not encrypted".into());
    }
    Ok(match config.repository.compression {
        Some(level) => {
            format!("encrypted (XChaCha20-Poly1305), this node compresses with zstd level {level} where it pays")
        }
        None => "encrypted (XChaCha20-Poly1305), this node does not compress".into(),
    })
}

/// `text` cut to at most `max` characters, with `...` when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max.saturating_sub(3)).collect();
    format!("{cut}...")
}
