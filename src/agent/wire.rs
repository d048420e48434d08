//! Conversions between the API's wire types ([`super::api`]) and hwdr's own:
//! what comes in is validated (backup ids and node names are parsed exactly
//! as everywhere else), what goes out is copied field by field.

use anyhow::{anyhow, Context, Result};

use super::api;
use super::client::JobReport;
use crate::backup_id::BackupId;
use crate::config::{NodeName, Role};
use crate::hopsfs::node::{BadReplica, Listed, Uploaded};
use crate::hopsfs::restore::{Restored, StagedBlocks};
use crate::job::{CommandKind, JobRequest, JobResult, PlanLine};
use crate::repo::lock::LockInfo;
use crate::repo::manifest::FileEntry;

fn node(name: String) -> Result<NodeName> {
    name.parse().map_err(|e: String| anyhow!(e)).context("node")
}

fn backup_id(id: String) -> Result<BackupId> {
    id.parse::<BackupId>().context("backup_id")
}

/// A request as it came in, validated: the node name and the backup id.
impl TryFrom<api::JobRequest> for JobRequest {
    type Error = anyhow::Error;

    fn try_from(request: api::JobRequest) -> Result<JobRequest> {
        use api::JobRequest as Wire;
        Ok(match request {
            Wire::CollectRondbParts { node: n, backup_id: b } => JobRequest::CollectRondbParts {
                node: node(n)?,
                backup_id: backup_id(b)?,
            },
            Wire::PruneLocalRondb { node: n } => JobRequest::PruneLocalRondb { node: node(n)? },
            Wire::HopsfsInventory { node: n, backup_id: b } => JobRequest::HopsfsInventory {
                node: node(n)?,
                backup_id: backup_id(b)?,
            },
            Wire::HopsfsUpload {
                node: n,
                backup_id: b,
                round,
            } => JobRequest::HopsfsUpload {
                node: node(n)?,
                backup_id: backup_id(b)?,
                round,
            },
            Wire::HopsfsRestore {
                node: n,
                backup_id: b,
                clean,
            } => JobRequest::HopsfsRestore {
                node: node(n)?,
                backup_id: backup_id(b)?,
                clean,
            },
            Wire::RestoreStage { node: n, backup_id: b } => JobRequest::RestoreStage {
                node: node(n)?,
                backup_id: backup_id(b)?,
            },
            Wire::RestoreUnstage { node: n, backup_id: b } => JobRequest::RestoreUnstage {
                node: node(n)?,
                backup_id: backup_id(b)?,
            },
            Wire::RestoreRondbData {
                node: n,
                backup_id: b,
                data_node,
            } => JobRequest::RestoreRondbData {
                node: node(n)?,
                backup_id: backup_id(b)?,
                data_node,
            },
            Wire::RestoreCommand {
                node: n,
                backup_id: b,
                step,
            } => JobRequest::RestoreCommand {
                node: node(n)?,
                backup_id: backup_id(b)?,
                step: step.into(),
            },
        })
    }
}

impl From<&JobRequest> for api::JobRequest {
    fn from(request: &JobRequest) -> api::JobRequest {
        use api::JobRequest as Wire;
        let (n, b) = (request.node().to_string(), request.backup_id().map(|id| id.to_string()));
        let b = || b.clone().unwrap_or_default();
        match request {
            JobRequest::CollectRondbParts { .. } => Wire::CollectRondbParts {
                node: n,
                backup_id: b(),
            },
            JobRequest::PruneLocalRondb { .. } => Wire::PruneLocalRondb { node: n },
            JobRequest::HopsfsInventory { .. } => Wire::HopsfsInventory {
                node: n,
                backup_id: b(),
            },
            JobRequest::HopsfsUpload { round, .. } => Wire::HopsfsUpload {
                node: n,
                backup_id: b(),
                round: *round,
            },
            JobRequest::HopsfsRestore { clean, .. } => Wire::HopsfsRestore {
                node: n,
                backup_id: b(),
                clean: *clean,
            },
            JobRequest::RestoreStage { .. } => Wire::RestoreStage {
                node: n,
                backup_id: b(),
            },
            JobRequest::RestoreUnstage { .. } => Wire::RestoreUnstage {
                node: n,
                backup_id: b(),
            },
            JobRequest::RestoreRondbData { data_node, .. } => Wire::RestoreRondbData {
                node: n,
                backup_id: b(),
                data_node: *data_node,
            },
            JobRequest::RestoreCommand { step, .. } => Wire::RestoreCommand {
                node: n,
                backup_id: b(),
                step: (*step).into(),
            },
        }
    }
}

impl From<api::CommandKind> for CommandKind {
    fn from(kind: api::CommandKind) -> CommandKind {
        match kind {
            api::CommandKind::Opensearch => CommandKind::Opensearch,
            api::CommandKind::Kafka => CommandKind::Kafka,
        }
    }
}

impl From<CommandKind> for api::CommandKind {
    fn from(kind: CommandKind) -> api::CommandKind {
        match kind {
            CommandKind::Opensearch => api::CommandKind::Opensearch,
            CommandKind::Kafka => api::CommandKind::Kafka,
        }
    }
}

impl From<Role> for api::Role {
    fn from(role: Role) -> api::Role {
        match role {
            Role::Head => api::Role::Head,
            Role::Rondb => api::Role::Rondb,
            Role::Hopsfs => api::Role::Hopsfs,
        }
    }
}

impl From<JobResult> for api::JobResult {
    fn from(result: JobResult) -> api::JobResult {
        match result {
            JobResult::RondbParts { files, parts } => api::JobResult::RondbParts {
                files: files.into_iter().map(Into::into).collect(),
                parts,
            },
            JobResult::Pruned { removed } => api::JobResult::Pruned { removed },
            JobResult::HopsfsListed(l) => api::JobResult::HopsfsListed(api::Listed {
                files: l.files.into_iter().map(Into::into).collect(),
                blocks: l.blocks,
                bytes: l.bytes,
                skipped: l.skipped,
            }),
            JobResult::HopsfsUploaded(u) => api::JobResult::HopsfsUploaded(api::Uploaded {
                blocks: u.blocks,
                bytes: u.bytes,
                stored_bytes: u.stored,
                bad: u
                    .bad
                    .into_iter()
                    .map(|b| api::BadReplica {
                        pool: b.pool,
                        id: b.id,
                        genstamp: b.genstamp,
                        error: b.error,
                    })
                    .collect(),
            }),
            JobResult::HopsfsRestored(r) => api::JobResult::HopsfsRestored(api::Restored {
                blocks_written: r.blocks_written,
                bytes_written: r.bytes_written,
                blocks_kept: r.blocks_kept,
                removed: r.removed,
            }),
            JobResult::Staged { files, blocks, damaged } => api::JobResult::Staged {
                files,
                blocks: blocks.map(|b| api::StagedBlocks {
                    blocks: b.blocks,
                    bytes: b.bytes,
                    kept: b.kept,
                    damaged: b.damaged,
                    damaged_count: b.damaged_count,
                }),
                damaged,
            },
            JobResult::Ran { tail } => api::JobResult::Ran { tail },
        }
    }
}

impl From<api::JobResult> for JobResult {
    fn from(result: api::JobResult) -> JobResult {
        match result {
            api::JobResult::RondbParts { files, parts } => JobResult::RondbParts {
                files: files.into_iter().map(Into::into).collect(),
                parts,
            },
            api::JobResult::Pruned { removed } => JobResult::Pruned { removed },
            api::JobResult::HopsfsListed(l) => JobResult::HopsfsListed(Listed {
                files: l.files.into_iter().map(Into::into).collect(),
                blocks: l.blocks,
                bytes: l.bytes,
                skipped: l.skipped,
            }),
            api::JobResult::HopsfsUploaded(u) => JobResult::HopsfsUploaded(Uploaded {
                blocks: u.blocks,
                bytes: u.bytes,
                stored: u.stored_bytes,
                bad: u
                    .bad
                    .into_iter()
                    .map(|b| BadReplica {
                        pool: b.pool,
                        id: b.id,
                        genstamp: b.genstamp,
                        error: b.error,
                    })
                    .collect(),
            }),
            api::JobResult::HopsfsRestored(r) => JobResult::HopsfsRestored(Restored {
                blocks_written: r.blocks_written,
                bytes_written: r.bytes_written,
                blocks_kept: r.blocks_kept,
                removed: r.removed,
            }),
            api::JobResult::Staged { files, blocks, damaged } => JobResult::Staged {
                files,
                blocks: blocks.map(|b| StagedBlocks {
                    blocks: b.blocks,
                    bytes: b.bytes,
                    kept: b.kept,
                    damaged: b.damaged,
                    damaged_count: b.damaged_count,
                }),
                damaged,
            },
            api::JobResult::Ran { tail } => JobResult::Ran { tail },
        }
    }
}

impl From<FileEntry> for api::StoredFile {
    fn from(f: FileEntry) -> api::StoredFile {
        api::StoredFile {
            path: f.path,
            size: f.size,
            sha256: f.sha256,
            stored: f.stored,
        }
    }
}

impl From<api::StoredFile> for FileEntry {
    fn from(f: api::StoredFile) -> FileEntry {
        FileEntry {
            path: f.path,
            size: f.size,
            sha256: f.sha256,
            stored: f.stored,
        }
    }
}

impl From<PlanLine> for api::PlanLine {
    fn from(l: PlanLine) -> api::PlanLine {
        api::PlanLine {
            user: l.user,
            action: l.action,
        }
    }
}

impl From<api::PlanLine> for PlanLine {
    fn from(l: api::PlanLine) -> PlanLine {
        PlanLine {
            user: l.user,
            action: l.action,
        }
    }
}

impl From<LockInfo> for api::LockHolder {
    fn from(l: LockInfo) -> api::LockHolder {
        api::LockHolder {
            host: l.host,
            pid: l.pid,
            pid_start: l.pid_start,
            since: l.since,
            operation: l.operation,
            backup_id: l.backup_id,
        }
    }
}

impl From<api::LockHolder> for LockInfo {
    fn from(l: api::LockHolder) -> LockInfo {
        LockInfo {
            host: l.host,
            pid: l.pid,
            pid_start: l.pid_start,
            since: l.since,
            operation: l.operation,
            backup_id: l.backup_id,
        }
    }
}

/// An agent's answer about a job, in hwdr's types (the request it echoes is
/// validated as the agent validated it).
impl TryFrom<api::JobStatus> for JobReport {
    type Error = anyhow::Error;

    fn try_from(status: api::JobStatus) -> Result<JobReport> {
        Ok(JobReport {
            request: JobRequest::try_from(status.request).with_context(|| format!("job {}", status.id))?,
            id: status.id,
            lock: status.lock.map(Into::into),
            state: status.state,
            progress: (status.progress.files, status.progress.bytes),
            total: (status.progress.total_files, status.progress.total_bytes),
            result: status.result.map(Into::into),
            error: status.error,
            tail: status.tail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Requests as hwdr sent them before the API had its own types.
    const REQUESTS: [&str; 10] = [
        r#"{"kind":"collect_rondb_parts","node":"ndb2","backup_id":"2611231819"}"#,
        r#"{"kind":"prune_local_rondb","node":"ndb2"}"#,
        r#"{"kind":"hopsfs_inventory","node":"ndb2","backup_id":"2611231819"}"#,
        r#"{"kind":"hopsfs_upload","node":"ndb2","backup_id":"2611231819","round":2}"#,
        r#"{"kind":"hopsfs_restore","node":"ndb2","backup_id":"2611231819","clean":true}"#,
        r#"{"kind":"restore_stage","node":"ndb2","backup_id":"2611231819"}"#,
        r#"{"kind":"restore_unstage","node":"ndb2","backup_id":"2611231819"}"#,
        r#"{"kind":"restore_rondb_data","node":"ndb2","backup_id":"2611231819","data_node":3}"#,
        r#"{"kind":"restore_command","node":"ndb2","backup_id":"2611231819","step":"kafka"}"#,
        r#"{"kind":"restore_command","node":"ndb2","backup_id":"2611231819","step":"opensearch"}"#,
    ];

    /// Results as agents sent them before the API had its own types.
    const RESULTS: [&str; 8] = [
        r#"{"rondb_parts":{"files":[{"path":"rondb/BACKUP-263271819/BACKUP-263271819-0.3.Data","size":4096,"sha256":"abababababababababababababababababababababababababababababababab"}],"parts":{"3":2,"4":1}}}"#,
        r#"{"pruned":{"removed":["BACKUP-263271818"]}}"#,
        r#"{"hopsfs_listed":{"files":[{"path":"rondb/BACKUP-263271819/BACKUP-263271819-0.3.Data","size":4096,"sha256":"abababababababababababababababababababababababababababababababab"}],"blocks":10,"bytes":1000,"skipped":["blk_1"]}}"#,
        r#"{"hopsfs_uploaded":{"blocks":4,"bytes":400,"bad":[{"pool":"BP-1","id":1073741825,"genstamp":1001,"error":"CRC mismatch"}]}}"#,
        r#"{"hopsfs_restored":{"blocks_written":3,"bytes_written":300,"blocks_kept":1,"removed":["x"]}}"#,
        r#"{"staged":{"files":["BACKUP-263271819-0.3.Data"],"blocks":{"blocks":2,"bytes":20,"kept":1,"damaged":["blk_9"],"damaged_count":30},"damaged":["y"]}}"#,
        r#"{"staged":{"files":[],"blocks":null,"damaged":[]}}"#,
        r#"{"ran":{"tail":["one","","  two"]}}"#,
    ];

    /// Job status answers as agents sent them before the API had its own types.
    const STATUSES: [&str; 3] = [
        r#"{"id":"20261123T200157-1","request":{"kind":"hopsfs_upload","node":"ndb2","backup_id":"2611231819","round":2},"lock":{"host":"head1","pid":4242,"pid_start":123456,"since":"2026-11-23T18:19:00Z","operation":"backup","backup_id":"2611231819"},"state":"succeeded","started_at":"2026-11-23T20:01:57.500Z","finished_at":"2026-11-23T20:02:00Z","progress":{"files":4,"bytes":400},"result":{"hopsfs_uploaded":{"blocks":4,"bytes":400,"bad":[{"pool":"BP-1","id":1073741825,"genstamp":1001,"error":"CRC mismatch"}]}},"error":null}"#,
        r#"{"id":"20261123T200157-2","request":{"kind":"prune_local_rondb","node":"ndb2"},"lock":{"host":"head1","pid":4242,"pid_start":null,"since":"2026-11-23T18:19:00.123456789Z","operation":"prune","backup_id":null},"state":"failed","started_at":"2026-11-23T20:01:57Z","finished_at":null,"progress":{"files":0,"bytes":0},"result":null,"error":"ndb_restore exited with status 1; last output:\n    Failed"}"#,
        r#"{"id":"20261123T200157-3","request":{"kind":"collect_rondb_parts","node":"ndb2","backup_id":"2611231819"},"lock":null,"state":"running","started_at":"2026-11-23T20:01:57Z","finished_at":null,"progress":{"files":0,"bytes":0},"result":null,"error":null}"#,
    ];

    /// Health answers, the roles in the order hwdr always sent them: to an
    /// authenticated caller, and to one that did not authenticate.
    const HEALTH: [&str; 3] = [
        r#"{"node":"head1","auth":"mtls","detail":{"cluster":"c1","roles":["head","rondb","hopsfs"],"version":"0.1.0","busy":true,"job":"j"}}"#,
        r#"{"node":"head1","auth":"token","detail":{"cluster":"c1","roles":["hopsfs"],"version":"0.1.0","busy":false,"job":null}}"#,
        r#"{"node":"head1","auth":"mtls"}"#,
    ];

    /// The health answer of an agent from before mutual TLS.
    const OLD_HEALTH: &str =
        r#"{"node":"head1","cluster":"c1","roles":["hopsfs"],"version":"0.1.0","busy":false,"job":null}"#;

    /// `sample` read as `T` and written again, unchanged.
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(sample: &str) -> T {
        let value: T = serde_json::from_str(sample).unwrap();
        assert_eq!(serde_json::to_string(&value).unwrap(), sample);
        value
    }

    #[test]
    fn requests_cross_the_wire_as_before() {
        for sample in REQUESTS {
            let wire: api::JobRequest = round_trip(sample);
            let request = JobRequest::try_from(wire.clone()).unwrap();
            assert_eq!(api::JobRequest::from(&request), wire, "{sample}");
            assert_eq!(request.node().as_str(), "ndb2");
        }
    }

    #[test]
    fn results_cross_the_wire_as_before() {
        for sample in RESULTS {
            let wire: api::JobResult = round_trip(sample);
            let result = JobResult::from(wire.clone());
            assert_eq!(api::JobResult::from(result), wire, "{sample}");
        }
    }

    #[test]
    fn stored_sizes_cross_the_wire_and_are_unknown_from_older_agents() {
        let file = FileEntry {
            path: "rondb/users.sql".into(),
            size: 4096,
            sha256: "ab".repeat(32),
            stored: Some(1200),
        };
        let uploaded = Uploaded {
            blocks: 4,
            bytes: 400,
            stored: Some(460),
            bad: Vec::new(),
        };
        for result in [
            JobResult::RondbParts {
                files: vec![file],
                parts: BTreeMap::new(),
            },
            JobResult::HopsfsUploaded(uploaded),
        ] {
            let json = serde_json::to_string(&api::JobResult::from(result.clone())).unwrap();
            assert!(
                json.contains(r#""stored":1200"#) || json.contains(r#""stored_bytes":460"#),
                "{json}"
            );
            let back = JobResult::from(serde_json::from_str::<api::JobResult>(&json).unwrap());
            assert_eq!(back, result);
        }
        // What an agent without stored sizes sends: unknown, not zero.
        match JobResult::from(serde_json::from_str::<api::JobResult>(RESULTS[3]).unwrap()) {
            JobResult::HopsfsUploaded(u) => assert_eq!(u.stored, None),
            other => panic!("{other:?}"),
        }
        match JobResult::from(serde_json::from_str::<api::JobResult>(RESULTS[0]).unwrap()) {
            JobResult::RondbParts { files, .. } => assert_eq!(files[0].stored, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn statuses_and_health_cross_the_wire_as_before() {
        for sample in STATUSES {
            let status: api::JobStatus = round_trip(sample);
            let report = JobReport::try_from(status.clone()).unwrap();
            assert_eq!(report.id, status.id);
            assert_eq!(report.lock.map(api::LockHolder::from), status.lock);
            assert_eq!(report.result.map(api::JobResult::from), status.result);
        }
        for sample in HEALTH {
            round_trip::<api::Health>(sample);
        }
        let old: api::Health = serde_json::from_str(OLD_HEALTH).unwrap();
        assert_eq!(
            (old.node.as_str(), old.auth, old.detail.is_none()),
            ("head1", None, true)
        );
        round_trip::<api::JobCreated>(r#"{"job_id":"20261123T200157-1"}"#);
        round_trip::<api::ApiError>(r#"{"error":"busy with job 20261123T200157-1"}"#);
    }

    #[test]
    fn roles_go_out_in_the_order_they_always_did() {
        let roles: std::collections::BTreeSet<api::Role> = [Role::Hopsfs, Role::Rondb, Role::Head]
            .into_iter()
            .map(Into::into)
            .collect();
        assert_eq!(serde_json::to_string(&roles).unwrap(), r#"["head","rondb","hopsfs"]"#);
    }

    #[test]
    fn hwdrs_values_go_out_as_the_recorded_json() {
        let id: BackupId = "2611231819".parse().unwrap();
        let ndb2: NodeName = "ndb2".parse().unwrap();
        let request = JobRequest::RestoreCommand {
            node: ndb2,
            backup_id: id,
            step: CommandKind::Opensearch,
        };
        let json = serde_json::to_string(&api::JobRequest::from(&request)).unwrap();
        assert_eq!(json, REQUESTS[9]);
        let file = FileEntry {
            path: "rondb/BACKUP-263271819/BACKUP-263271819-0.3.Data".into(),
            size: 4096,
            sha256: "ab".repeat(32),
            stored: None,
        };
        let results = [
            (
                JobResult::RondbParts {
                    files: vec![file.clone()],
                    parts: BTreeMap::from([(3, 2), (4, 1)]),
                },
                RESULTS[0],
            ),
            (
                JobResult::HopsfsUploaded(Uploaded {
                    blocks: 4,
                    bytes: 400,
                    stored: None,
                    bad: vec![BadReplica {
                        pool: "BP-1".into(),
                        id: 1_073_741_825,
                        genstamp: 1001,
                        error: "CRC mismatch".into(),
                    }],
                }),
                RESULTS[3],
            ),
            (
                JobResult::Staged {
                    files: Vec::new(),
                    blocks: None,
                    damaged: Vec::new(),
                },
                RESULTS[6],
            ),
        ];
        for (result, sample) in results {
            assert_eq!(serde_json::to_string(&api::JobResult::from(result)).unwrap(), sample);
        }
        let lock = LockInfo {
            host: "head1".into(),
            pid: 4242,
            pid_start: None,
            since: "2026-11-23T18:19:00.123456789Z".parse().unwrap(),
            operation: "prune".into(),
            backup_id: None,
        };
        let status: api::JobStatus = serde_json::from_str(STATUSES[1]).unwrap();
        assert_eq!(status.lock, Some(lock.into()));
    }

    #[test]
    fn bad_ids_and_node_names_are_refused_naming_the_field() {
        let bad_id = api::JobRequest::CollectRondbParts {
            node: "ndb1".into(),
            backup_id: "../../etc".into(),
        };
        assert_eq!(
            format!("{:#}", JobRequest::try_from(bad_id).unwrap_err()),
            "backup_id: backup id '../../etc' must be exactly 10 digits (yymmddHHMM)"
        );
        let bad_node = api::JobRequest::PruneLocalRondb { node: "../x".into() };
        let err = format!("{:#}", JobRequest::try_from(bad_node).unwrap_err());
        assert!(err.starts_with("node: invalid node name '../x'"), "{err}");
        let unreal = api::JobRequest::RestoreStage {
            node: "ndb1".into(),
            backup_id: "2613311819".into(),
        };
        assert!(JobRequest::try_from(unreal).is_err());
    }

    #[test]
    fn a_failed_programs_tail_is_sent_only_when_there_is_one() {
        let mut status: api::JobStatus = serde_json::from_str(STATUSES[1]).unwrap();
        assert!(status.tail.is_empty());
        status.tail = vec!["Failed".into()];
        let json = serde_json::to_string(&status).unwrap();
        assert!(
            json.ends_with(
                r#""error":"ndb_restore exited with status 1; last output:\n    Failed","tail":["Failed"]}"#
            ),
            "{json}"
        );
        let back = JobReport::try_from(serde_json::from_str::<api::JobStatus>(&json).unwrap()).unwrap();
        assert_eq!(back.tail, ["Failed"]);
    }
}
