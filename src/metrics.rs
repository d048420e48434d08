//! Prometheus metrics: written as a text file for node_exporter's textfile
//! collector after every backup, verify and prune (atomically), and served by
//! the agent at `/metrics`. The repository is the source of truth; the last
//! verify and prune are remembered in `[restore] state_dir/metrics.json`.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::fsutil::{self, mkdir};
use crate::repo::manifest::{BackupStatus, Manifest};
use crate::repo::{Entry, ManifestState, Repository};

/// What the repository cannot tell: the last verify and prune.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetricsState {
    pub last_verify: Option<(DateTime<Utc>, bool)>,
    pub last_prune: Option<(DateTime<Utc>, u64)>,
}

fn state_path(config: &Config) -> PathBuf {
    config.restore.state_dir.join("metrics.json")
}

/// The remembered state (empty if none).
pub fn load_state(config: &Config) -> MetricsState {
    std::fs::read(state_path(config))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_state(config: &Config, state: &MetricsState) -> Result<()> {
    mkdir(&config.restore.state_dir, 0o750)?;
    fsutil::write_atomic(&state_path(config), &serde_json::to_vec_pretty(state)?, 0o640)
}

/// Records a verify and rewrites the text file.
pub fn record_verify(config: &Config, ok: bool) -> Result<()> {
    let mut state = load_state(config);
    state.last_verify = Some((Utc::now(), ok));
    save_state(config, &state)?;
    write_textfile(config)
}

/// Records a prune and rewrites the text file.
pub fn record_prune(config: &Config, freed: u64) -> Result<()> {
    let mut state = load_state(config);
    state.last_prune = Some((Utc::now(), freed));
    save_state(config, &state)?;
    write_textfile(config)
}

/// The metrics in Prometheus text format. A repository that cannot be opened
/// (not mounted, no marker) is `hwdr_repository_ok 0`, never "no backups".
pub fn render(config: &Config) -> Result<String> {
    let entries = match Repository::open(config).and_then(|r| r.entries()) {
        Ok(entries) => Some(entries),
        Err(e) => {
            // The metric says it; a scrape every few seconds must not flood the log.
            tracing::debug!("metrics: {e:#}");
            None
        }
    };
    let state = load_state(config);
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let cluster = format!("cluster=\"{}\"", config.cluster);
    let plain = |v: f64| vec![(format!("{{{cluster}}}"), v)];
    metric(
        "hwdr_repository_ok",
        "1 if the repository is there and is this cluster's (0: not mounted, or no hwdr-repo.json).",
        plain(f64::from(u8::from(entries.is_some()))),
    );
    if let Some(entries) = &entries {
        backup_metrics(&mut metric, &cluster, entries);
    }
    verify_and_prune_metrics(&mut metric, &cluster, &state);
    tls_metrics(&mut metric, &cluster, config);
    Ok(out)
}

/// `hwdr_tls_cert_expiry_timestamp_seconds` of this node's certificate and
/// of each CA certificate it trusts (none without `[tls]`, or when the files
/// cannot be read: `hwdr config check` says why).
fn tls_metrics(metric: &mut Metric<'_>, cluster: &str, config: &Config) {
    let Some(tls) = &config.tls else {
        return;
    };
    let node = config.this_node.as_str();
    let read = |path: &std::path::Path, file: &str| -> Vec<(String, f64)> {
        let certs = crate::tls::files::certificates(path, file).unwrap_or_default();
        certs
            .iter()
            .filter_map(|c| crate::tls::identity::CertInfo::parse(c).ok())
            .take(if file == "certificate" { 1 } else { usize::MAX })
            .map(|info| {
                let labels = format!(
                    "{{{cluster},node=\"{node}\",file=\"{file}\",subject=\"{}\"}}",
                    label_value(&info.subject)
                );
                (labels, info.not_after.timestamp() as f64)
            })
            .collect()
    };
    let mut samples = read(&tls.certificate, "certificate");
    samples.extend(read(&tls.ca, "ca"));
    metric(
        "hwdr_tls_cert_expiry_timestamp_seconds",
        "When this node's TLS certificate (file=\"certificate\") and each CA certificate it trusts (file=\"ca\") expire, in Unix seconds.",
        samples,
    );
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A metric writer: name, help, and (labels, value) samples.
type Metric<'a> = dyn FnMut(&str, &str, Vec<(String, f64)>) + 'a;

fn backup_metrics(metric: &mut Metric<'_>, cluster: &str, entries: &[Entry]) {
    let plain = |v: f64| vec![(format!("{{{cluster}}}"), v)];
    let manifests: Vec<&Manifest> = entries
        .iter()
        .filter_map(|e| match &e.manifest {
            ManifestState::Ok(m) => Some(m.as_ref()),
            _ => None,
        })
        .collect();
    let damaged = entries
        .iter()
        .filter(|e| matches!(e.manifest, ManifestState::Damaged(_)))
        .count();
    let last = manifests.iter().max_by_key(|m| (m.started_at, m.backup_id));
    let good = manifests
        .iter()
        .filter(|m| m.status == BackupStatus::Complete)
        .max_by_key(|m| (m.finished_at, m.backup_id));
    metric(
        "hwdr_last_success_timestamp_seconds",
        "End of the newest complete backup (0: none).",
        plain(good.map_or(0.0, |m| m.finished_at.timestamp() as f64)),
    );
    if let Some(m) = last {
        last_backup_metrics(metric, cluster, m);
    }
    metric(
        "hwdr_backups",
        "Backups in the repository by status (damaged: a manifest that does not parse or match its checksum).",
        ["complete", "partial", "failed", "damaged"]
            .iter()
            .map(|s| {
                let n = match *s {
                    "damaged" => damaged,
                    _ => manifests.iter().filter(|m| m.status.to_string() == *s).count(),
                };
                (format!("{{{cluster},status=\"{s}\"}}"), n as f64)
            })
            .collect(),
    );
}

/// The gauges of the newest backup `m`.
fn last_backup_metrics(metric: &mut Metric<'_>, cluster: &str, m: &Manifest) {
    let plain = |v: f64| vec![(format!("{{{cluster}}}"), v)];
    metric(
        "hwdr_last_backup_timestamp_seconds",
        "End of the newest backup.",
        plain(m.finished_at.timestamp() as f64),
    );
    metric(
        "hwdr_last_backup_status",
        "Status of the newest backup (1 for its status).",
        ["complete", "partial", "failed"]
            .iter()
            .map(|s| {
                (
                    format!("{{{cluster},status=\"{s}\"}}"),
                    f64::from(u8::from(m.status.to_string() == *s)),
                )
            })
            .collect(),
    );
    metric(
        "hwdr_last_backup_duration_seconds",
        "Duration of the newest backup.",
        plain((m.finished_at - m.started_at).num_milliseconds() as f64 / 1000.0),
    );
    let added = m.added();
    let size = m.backup_size();
    metric(
        "hwdr_last_backup_size_bytes",
        "Bytes the newest backup holds (its files and the blocks it names).",
        plain(size as f64),
    );
    metric(
        "hwdr_last_backup_added_bytes",
        "Bytes the newest backup added to the repository.",
        plain(added as f64),
    );
    // Absent, not 0, for a backup made before stored sizes were recorded.
    if let Some(stored) = m.added_stored() {
        metric(
            "hwdr_last_backup_stored_bytes",
            "Bytes the newest backup added to the repository, as stored (after compression and encryption).",
            plain(stored as f64),
        );
    }
}

fn verify_and_prune_metrics(metric: &mut Metric<'_>, cluster: &str, state: &MetricsState) {
    let plain = |v: f64| vec![(format!("{{{cluster}}}"), v)];
    if let Some((time, ok)) = state.last_verify {
        metric(
            "hwdr_last_verify_timestamp_seconds",
            "Time of the last verify.",
            plain(time.timestamp() as f64),
        );
        metric(
            "hwdr_last_verify_ok",
            "1 if the last verify found no damage.",
            plain(f64::from(u8::from(ok))),
        );
    }
    if let Some((time, freed)) = state.last_prune {
        metric(
            "hwdr_last_prune_timestamp_seconds",
            "Time of the last prune.",
            plain(time.timestamp() as f64),
        );
        metric(
            "hwdr_last_prune_freed_bytes",
            "Bytes the last prune freed.",
            plain(freed as f64),
        );
    }
}

/// Writes `[metrics] textfile` atomically.
pub fn write_textfile(config: &Config) -> Result<()> {
    let text = render(config)?;
    let path = &config.metrics_textfile;
    if let Some(parent) = path.parent() {
        mkdir(parent, 0o755)?;
    }
    fsutil::write_atomic(path, text.as_bytes(), 0o644)
}
