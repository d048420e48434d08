//! The steps of a backup, in order: the one list the run follows and the dry
//! run prints. Their names are what the manifest records, what the journal
//! shows as `HWDR_STEP` and what an agent's job reports as its step.

use std::fmt;

/// A step of the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Take the repository lock and create the backup's folder.
    Lock,
    /// Every other node the backup needs has an agent that answers.
    Agents,
    /// Copy `[config_backup] paths`.
    Config,
    /// Dump users and grants (side by side with [`Step::Schemas`]).
    Users,
    /// Dump the schemas NDB does not hold.
    Schemas,
    /// RonDB's own backup: `START BACKUP`.
    NdbBackup,
    /// Every `rondb` node collects its part into the repository.
    RondbParts,
    /// HopsFS blocks in cloud storage: nothing to back up.
    Hopsfs,
    /// Every HopsFS node lists its blocks.
    HopsfsList,
    /// Merge the lists; give each block the repository lacks to one node.
    HopsfsPlan,
    /// The nodes upload the blocks given to them; a later round is
    /// `hopsfs-upload-<round>`.
    HopsfsUpload,
    /// Give the blocks whose replica came back bad to other holders:
    /// `hopsfs-retry-<round>`, before upload round `<round>`.
    HopsfsRetry,
    /// Every data node of the cluster delivered a complete part.
    Check,
    /// Write `manifest.json`, last.
    Manifest,
    /// After a complete backup, every `rondb` node drops old local backups.
    PruneLocal,
}

/// Every step, in the order the backup runs them and the dry run prints them.
pub const STEPS: [Step; 15] = [
    Step::Lock,
    Step::Agents,
    Step::Config,
    Step::Users,
    Step::Schemas,
    Step::NdbBackup,
    Step::RondbParts,
    Step::Hopsfs,
    Step::HopsfsList,
    Step::HopsfsPlan,
    Step::HopsfsUpload,
    Step::HopsfsRetry,
    Step::Check,
    Step::Manifest,
    Step::PruneLocal,
];

/// What the manifest names as the failing step (`<node>/interrupted`) when
/// SIGTERM or SIGINT stopped a backup whose steps did not say so: no step.
pub const INTERRUPTED_STEP: &str = "interrupted";

impl Step {
    /// The step's name in the manifest, the journal and the dry run.
    pub fn name(self) -> &'static str {
        match self {
            Step::Lock => "lock",
            Step::Agents => "agents",
            Step::Config => "config",
            Step::Users => "users",
            Step::Schemas => "schemas",
            Step::NdbBackup => "ndb-backup",
            Step::RondbParts => "rondb-parts",
            Step::Hopsfs => "hopsfs",
            Step::HopsfsList => "hopsfs-list",
            Step::HopsfsPlan => "hopsfs-plan",
            Step::HopsfsUpload => "hopsfs-upload",
            Step::HopsfsRetry => "hopsfs-retry",
            Step::Check => "check",
            Step::Manifest => "manifest",
            Step::PruneLocal => "prune-local",
        }
    }

    /// The name of the step in round `round` of the HopsFS uploads: the
    /// plain name in the first, `<name>-<round>` after it.
    pub fn in_round(self, round: u32) -> String {
        if round <= 1 {
            self.name().to_owned()
        } else {
            format!("{}-{round}", self.name())
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so the dry run's `{:<12}` lines the names up.
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_stay_those_manifests_and_journals_hold() {
        let names: Vec<&str> = STEPS.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "lock",
                "agents",
                "config",
                "users",
                "schemas",
                "ndb-backup",
                "rondb-parts",
                "hopsfs",
                "hopsfs-list",
                "hopsfs-plan",
                "hopsfs-upload",
                "hopsfs-retry",
                "check",
                "manifest",
                "prune-local",
            ]
        );
        assert_eq!(Step::HopsfsUpload.in_round(1), "hopsfs-upload");
        assert_eq!(Step::HopsfsUpload.in_round(2), "hopsfs-upload-2");
        assert_eq!(Step::HopsfsRetry.in_round(3), "hopsfs-retry-3");
        assert_eq!(format!("{:<12}|", Step::Users), "users       |");
    }
}
