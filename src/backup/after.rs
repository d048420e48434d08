//! What follows a backup: after a complete one, every `rondb` node drops
//! its old local backups (the lock released first); after every run, the
//! metrics; after a complete one, the retention.

use anyhow::Result;
use tracing::warn;

use super::Run;
use crate::backup_id::BackupId;
use crate::config::Config;
use crate::repo::manifest::{BackupStatus, Manifest};

impl Run<'_> {
    /// [`Step::PruneLocal`](super::Step::PruneLocal): after a complete backup, releases the lock and
    /// lets every `rondb` node drop its old local backups. Best effort: a
    /// failure is logged, the backup stays complete.
    pub(super) fn prune_local(&mut self) {
        if self.status != BackupStatus::Complete {
            return;
        }
        drop(self.lock.take());
        self.fleet.prune_local(&self.rondb_nodes);
    }
}

/// Writes the metrics after backup `id` (whatever `result` is), and after a
/// complete backup runs the retention; its failure does not make the backup
/// less good. Returns `result`.
pub(super) fn metrics_and_retention(config: &Config, id: BackupId, result: Result<Manifest>) -> Result<Manifest> {
    if let Err(e) = crate::metrics::write_textfile(config) {
        warn!("could not write the metrics: {e:#}");
    }
    let manifest = result?;
    // The prune logs its own summary.
    if let Err(e) = crate::cli::prune::prune_now(config, false, crate::prune::Sweep::IfRemoved) {
        warn!("prune after backup {id} failed: {e:#}");
    }
    Ok(manifest)
}
