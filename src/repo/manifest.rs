//! `manifest.json`: what a backup holds and how it went, node by node. It is
//! written last and atomically; a backup folder without one never counts.
//!
//! Every manifest carries the SHA-256 of its own content as its last key, so
//! one damaged byte (or a hand-edited status) is seen: the body is the pretty
//! JSON of the manifest without the checksum (it ends with `\n}`), and the file
//! is that body with `,\n  "checksum": "sha256:<hex of the body>"\n}\n` put in
//! place of its final `\n}`. Reading checks the raw bytes, never a
//! re-serialisation ([`encode`], [`decode`]).

use std::borrow::Cow;
use std::collections::BTreeSet;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backup_id::BackupId;
use crate::config::{BlockStorage, Role};

/// A file stored in the repository: path relative to the backup folder, size
/// and SHA-256 (of the file itself), and the bytes it takes in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// The bytes the stored object takes (compressed and sealed in an
    /// encrypted repository, `size` in a plaintext one); absent in manifests
    /// written before hwdr recorded it (hwdr 0.x before issue 14's sizes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<u64>,
}

/// Version of the manifest format written: 3 since its HopsFS inventories
/// may name pieces shared between backups (issue 17; an hwdr that reads
/// only 2 calls such a manifest unreadable, "it has format 3", and never
/// prunes or restores by it). 2: with its own checksum.
pub const FORMAT: u32 = 3;

/// The manifest formats this hwdr reads: 2 (inventories whole in the
/// backup) and 3.
const READS: [u32; 2] = [2, FORMAT];

/// What comes between the body and the checksum's hex digits.
const CHECKSUM_KEY: &[u8] = b",\n  \"checksum\": \"sha256:";
/// What follows the hex digits: the end of the file.
const CHECKSUM_END: &[u8] = b"\"\n}\n";

/// Outcome of a whole backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    /// Every node and step succeeded.
    Complete,
    /// Some node did not deliver its part; the rest is stored.
    Partial,
    /// A step failed; the backup cannot be restored.
    Failed,
}

impl std::fmt::Display for BackupStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackupStatus::Complete => "complete",
            BackupStatus::Partial => "partial",
            BackupStatus::Failed => "failed",
        })
    }
}

/// Outcome of one step (or of one node's share).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Failed,
    /// Not run because an earlier step failed.
    Skipped,
}

/// The parsed result of `START BACKUP ... WAIT COMPLETED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NdbBackupResult {
    /// The data node that coordinated the backup.
    pub master_node: u32,
    /// The management node that ordered it.
    pub mgm_node: u32,
    pub start_gcp: u64,
    pub stop_gcp: u64,
    pub records: u64,
    pub log_records: u64,
    pub data_bytes: u64,
    pub log_bytes: u64,
}

/// RonDB part of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RondbInfo {
    /// The `yyDDDHHMM` id given to `START BACKUP` and `ndb_restore -b`.
    pub ndb_backup_id: u32,
    pub result: Option<NdbBackupResult>,
    /// Every data node id whose complete part is in the repository.
    pub data_node_ids: BTreeSet<u32>,
    /// Parts per data node id (1 = single-file layout).
    pub parts: std::collections::BTreeMap<u32, u32>,
    /// RonDB encrypted its backup files itself (`START BACKUP ... ENCRYPT
    /// PASSWORD`): `ndb_restore` needs `--decrypt` and the password of
    /// `[rondb] backup_password_file`. Absent in older manifests: false.
    #[serde(default)]
    pub encrypted: bool,
}

/// HopsFS part of the manifest. Each node's exact block list and VERSION
/// files are in `hopsfs/<node>/` of the backup (files of its `hopsfs-list`
/// step); the blocks themselves are in the repository's block store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopsfsInfo {
    pub block_storage: BlockStorage,
    /// The HopsFS nodes whose inventories are in the backup.
    pub nodes: Vec<String>,
    pub distinct_blocks: u64,
    pub distinct_bytes: u64,
    pub replicas: u64,
    pub replica_bytes: u64,
    /// Blocks this backup added to the store.
    pub new_blocks: u64,
    pub new_bytes: u64,
    /// The bytes those blocks take in the store (their `.meta` files not
    /// counted, as in `new_bytes`); absent when unknown: written by an hwdr
    /// that did not record it, or a node's agent did not report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_stored_bytes: Option<u64>,
    /// Replicas that failed their CRC check, or whose length differs from
    /// the block's good replica; each block was taken from another.
    pub bad_replicas: Vec<String>,
    /// The good length (`pool/blk_<id>_<genstamp>` → bytes) of every block
    /// whose replicas disagreed on it: it overrides the length a node's
    /// inventory lists for its bad replica.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub lengths: std::collections::BTreeMap<String, u64>,
}

impl HopsfsInfo {
    /// The length block `key` was stored with, given the length an inventory
    /// lists for it.
    pub fn good_len(&self, key: &crate::hopsfs::store::BlockKey, listed: u64) -> u64 {
        if self.lengths.is_empty() {
            return listed;
        }
        self.lengths.get(&key.to_string()).copied().unwrap_or(listed)
    }
}

/// One step on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub status: StepStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
}

/// What one node did for the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub roles: BTreeSet<Role>,
    pub status: StepStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub steps: Vec<StepRecord>,
}

/// The manifest of one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub backup_id: BackupId,
    pub cluster: String,
    pub status: BackupStatus,
    pub hwdr_version: String,
    /// The head node that ran the backup.
    pub leader: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The first step that failed, as `node/step`.
    pub failed_step: Option<String>,
    pub error: Option<String>,
    pub rondb: RondbInfo,
    /// Absent when no node has the hopsfs role.
    #[serde(default)]
    pub hopsfs: Option<HopsfsInfo>,
    pub nodes: Vec<NodeRecord>,
    /// `sha256:<hex>` of the manifest's own content (see [`encode`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

impl Manifest {
    /// Every file of the backup, from every node and step.
    pub fn files(&self) -> impl Iterator<Item = &FileEntry> {
        self.nodes
            .iter()
            .flat_map(|n| n.steps.iter())
            .flat_map(|s| s.files.iter())
    }

    /// Total size of the backup's own files.
    pub fn size(&self) -> u64 {
        self.files().map(|f| f.size).sum()
    }

    /// The size of the backup, as `hwdr list`, the journal, the terminal
    /// and the metrics show it: its own files and the HopsFS blocks it
    /// names (each once), whether it stored them or an earlier backup did.
    pub fn backup_size(&self) -> u64 {
        self.size() + self.hopsfs.as_ref().map_or(0, |h| h.distinct_bytes)
    }

    /// The bytes this backup added to the store: its own files and the
    /// HopsFS blocks it stored first, as they are stored. `None` when the
    /// manifest does not record it for every one of them (a backup made
    /// before hwdr recorded stored sizes).
    pub fn added_stored(&self) -> Option<u64> {
        let files = self.files().map(|f| f.stored).sum::<Option<u64>>()?;
        let blocks = match &self.hopsfs {
            Some(h) => h.new_stored_bytes?,
            None => 0,
        };
        Some(files + blocks)
    }

    /// The bytes this backup added to the store, as read: its own files and
    /// the HopsFS blocks it stored first.
    pub fn added(&self) -> u64 {
        self.size() + self.hopsfs.as_ref().map_or(0, |h| h.new_bytes)
    }
}

/// The bytes of `manifest.json` for `manifest`: its pretty JSON with the
/// checksum of that JSON as the last key.
pub fn encode(manifest: &Manifest) -> Result<Vec<u8>> {
    let plain = match manifest.checksum {
        None => Cow::Borrowed(manifest),
        Some(_) => Cow::Owned(Manifest {
            checksum: None,
            ..manifest.clone()
        }),
    };
    let mut body = serde_json::to_vec_pretty(plain.as_ref())?;
    if !body.ends_with(b"\n}") {
        bail!("the manifest's JSON does not end with a closing brace on its own line");
    }
    let sum = hex::encode(Sha256::digest(&body));
    body.truncate(body.len() - 2);
    body.extend_from_slice(CHECKSUM_KEY);
    body.extend_from_slice(sum.as_bytes());
    body.extend_from_slice(CHECKSUM_END);
    Ok(body)
}

/// The manifest in `bytes` if they are exactly what [`encode`] wrote: they
/// end with the checksum, the checksum matches, they parse, and the format is
/// one this hwdr reads. Otherwise why not, for a "damaged" verdict.
pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
    let Some((body, sum)) = split_checksum(bytes) else {
        return Err(match serde_json::from_slice::<FormatOnly>(bytes) {
            Ok(f) if !READS.contains(&f.format) => unknown_format(f.format),
            _ => "it does not end with its checksum (truncated or edited)".into(),
        });
    };
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(b"\n}");
    if hex::encode(hasher.finalize()).as_bytes() != sum {
        return Err("its checksum does not match its content (changed after it was written)".into());
    }
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("it does not parse: {e}"))?;
    if !READS.contains(&manifest.format) {
        return Err(unknown_format(manifest.format));
    }
    Ok(manifest)
}

fn unknown_format(format: u32) -> String {
    format!(
        "it has format {format}, this hwdr reads formats {} and {}: it was written by another version of hwdr",
        READS[0], READS[1]
    )
}

/// The manifest of a repository of format 1 (hwdr 0.1, no checksums), for
/// `hwdr repo upgrade`: it must parse and say format 1.
pub fn decode_legacy(bytes: &[u8]) -> Result<Manifest, String> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("it does not parse: {e}"))?;
    if manifest.format != 1 || manifest.checksum.is_some() {
        return Err(format!("it has format {}, not 1", manifest.format));
    }
    Ok(manifest)
}

/// The body before the checksum key and the checksum's hex digits, if the
/// file ends exactly as [`encode`] ends it.
fn split_checksum(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.windows(CHECKSUM_KEY.len()).rposition(|w| w == CHECKSUM_KEY)?;
    let (sum, end) = bytes[at + CHECKSUM_KEY.len()..].split_at_checked(64)?;
    let hex_digits = sum.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    (hex_digits && end == CHECKSUM_END).then(|| (&bytes[..at], sum))
}

/// Enough of any manifest to name its format.
#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let t = DateTime::parse_from_rfc3339("2026-11-23T18:19:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Manifest {
            format: FORMAT,
            backup_id: "2611231819".parse().unwrap(),
            cluster: "prod".into(),
            status: BackupStatus::Complete,
            hwdr_version: "0.1.0".into(),
            leader: "head1".into(),
            started_at: t,
            finished_at: t,
            failed_step: None,
            error: None,
            rondb: RondbInfo {
                ndb_backup_id: 263_271_819,
                result: None,
                data_node_ids: [2].into(),
                parts: [(2, 1)].into(),
                encrypted: false,
            },
            hopsfs: None,
            nodes: Vec::new(),
            checksum: None,
        }
    }

    #[test]
    fn a_rondb_part_recorded_before_rondbs_encryption_is_not_encrypted() {
        let old = r#"{"ndb_backup_id": 263271819, "result": null, "data_node_ids": [2], "parts": {"2": 1}}"#;
        let info: RondbInfo = serde_json::from_str(old).unwrap();
        assert!(!info.encrypted);
        let encrypted = RondbInfo {
            encrypted: true,
            ..info
        };
        let json = serde_json::to_string(&encrypted).unwrap();
        assert!(json.contains(r#""encrypted":true"#), "{json}");
        assert_eq!(serde_json::from_str::<RondbInfo>(&json).unwrap(), encrypted);
    }

    #[test]
    fn encoded_manifests_decode_with_their_checksum() {
        let bytes = encode(&manifest()).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.ends_with("\"\n}\n"), "{text}");
        let body = text.rsplit_once(",\n  \"checksum\"").unwrap().0;
        let sum = hex::encode(Sha256::digest(format!("{body}\n}}")));
        assert!(text.contains(&format!("\"checksum\": \"sha256:{sum}\"")), "{text}");
        let back = decode(&bytes).unwrap();
        assert_eq!(back.checksum, Some(format!("sha256:{sum}")));
        assert_eq!(
            Manifest {
                checksum: None,
                ..back.clone()
            },
            manifest()
        );
        // Encoding a manifest that was read gives the same bytes.
        assert_eq!(encode(&back).unwrap(), bytes);
    }

    /// A manifest with a node whose step stored `files`, and HopsFS blocks
    /// whose stored bytes are `new_stored_bytes`.
    fn with_sizes(files: Vec<FileEntry>, new_stored_bytes: Option<u64>) -> Manifest {
        let mut m = manifest();
        m.nodes.push(NodeRecord {
            name: "node1".into(),
            roles: BTreeSet::new(),
            status: StepStatus::Ok,
            started_at: None,
            finished_at: None,
            error: None,
            steps: vec![StepRecord {
                name: "rondb-parts".into(),
                status: StepStatus::Ok,
                started_at: None,
                finished_at: None,
                error: None,
                files,
            }],
        });
        m.hopsfs = Some(HopsfsInfo {
            block_storage: BlockStorage::Local,
            nodes: vec!["node1".into()],
            distinct_blocks: 2,
            distinct_bytes: 2000,
            replicas: 2,
            replica_bytes: 2000,
            new_blocks: 1,
            new_bytes: 1000,
            new_stored_bytes,
            bad_replicas: Vec::new(),
            lengths: Default::default(),
        });
        m
    }

    fn file(path: &str, size: u64, stored: Option<u64>) -> FileEntry {
        FileEntry {
            path: path.into(),
            size,
            sha256: "ab".repeat(32),
            stored,
        }
    }

    #[test]
    fn a_manifest_from_before_stored_sizes_parses_and_keeps_its_checksum() {
        // What an hwdr without stored sizes wrote: no `stored`, no `new_stored_bytes`.
        let old = with_sizes(vec![file("rondb/users.sql", 300, None)], None);
        let bytes = encode(&old).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("stored"), "{text}");
        let back = decode(&bytes).unwrap();
        assert_eq!(back.files().next().unwrap().stored, None);
        assert_eq!(back.hopsfs.as_ref().unwrap().new_stored_bytes, None);
        assert_eq!((back.added(), back.added_stored()), (1300, None));
        assert_eq!(encode(&back).unwrap(), bytes);
        let entry: FileEntry = serde_json::from_str(r#"{"path": "a", "size": 1, "sha256": "x"}"#).unwrap();
        assert_eq!(entry.stored, None);

        // Recorded: read back as written, under the checksum.
        let new = with_sizes(
            vec![
                file("rondb/users.sql", 300, Some(120)),
                file("rondb/schemas.sql", 50, Some(90)),
            ],
            Some(1040),
        );
        let bytes = encode(&new).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("\"stored\": 120") && text.contains("\"new_stored_bytes\": 1040"),
            "{text}"
        );
        let back = decode(&bytes).unwrap();
        assert_eq!((back.added(), back.added_stored()), (1350, Some(1250)));
        // One file without it makes the total unknown, not smaller.
        let mixed = with_sizes(vec![file("a", 1, Some(1)), file("b", 1, None)], Some(5));
        assert_eq!(mixed.added_stored(), None);
        let no_hopsfs = Manifest {
            hopsfs: None,
            ..with_sizes(vec![file("a", 10, Some(7))], None)
        };
        assert_eq!(no_hopsfs.added_stored(), Some(7));
    }

    #[test]
    fn any_changed_byte_or_a_missing_checksum_is_damage() {
        let bytes = encode(&manifest()).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                decode(&bad).is_err(),
                "byte {i} flipped: {}",
                String::from_utf8_lossy(&bad)
            );
        }
        let edited = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\"complete\"", "\"failed\"");
        let why = decode(edited.as_bytes()).unwrap_err();
        assert!(why.contains("checksum does not match"), "{why}");
        assert!(decode(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .contains("does not end with its checksum"));
        let mut extra = bytes.clone();
        extra.extend_from_slice(b"\n");
        assert!(decode(&extra).is_err());
    }

    #[test]
    fn a_manifest_without_checksum_or_of_another_format_is_damage() {
        let old = Manifest {
            format: 1,
            ..manifest()
        };
        let plain = serde_json::to_vec_pretty(&old).unwrap();
        let why = "it has format 1, this hwdr reads formats 2 and 3: it was written by another version of hwdr";
        assert_eq!(decode(&plain).unwrap_err(), why);
        // With a valid checksum, the format is still checked.
        assert_eq!(decode(&encode(&old).unwrap()).unwrap_err(), why);
        let newer = Manifest {
            format: 4,
            ..manifest()
        };
        assert!(decode(&encode(&newer).unwrap()).unwrap_err().contains("format 4"));
        // Format 2 (before pieces) still reads.
        let two = Manifest {
            format: 2,
            ..manifest()
        };
        assert_eq!(decode(&encode(&two).unwrap()).unwrap().format, 2);
        let mut current = serde_json::to_vec_pretty(&manifest()).unwrap();
        current.push(b'\n');
        assert!(decode(&current).unwrap_err().contains("does not end with its checksum"));
        assert!(decode(b"").is_err());
    }
}
