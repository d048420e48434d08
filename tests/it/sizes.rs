//! Stored sizes (issue 14): the manifest records the bytes every file of a
//! backup, and the HopsFS blocks it added, take in the store, next to their
//! own sizes; `hwdr list` and the metrics show both. Compressible files
//! (users.sql, RonDB parts) take less than they hold, random blocks their
//! size and the seals; in a plaintext repository both are the same; a
//! backup made before hwdr recorded stored sizes shows `-`.
//!
//! One notion of a backup's size (issue 16): its own files and the blocks it
//! names, the same number in the log's "complete" line, `hwdr list`, its
//! `--json` and the metrics; people read it in binary units, machines get
//! the exact bytes; each summary line is logged once.

use std::collections::BTreeMap;
use std::fs;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::scenario;
use crate::common::text;
use crate::encryption::encrypted;
use crate::restore::{backed_up_in, Setup, ID};

/// `bytes` as people read them (`3.5 MiB`), as the README says hwdr shows
/// sizes: binary units, one decimal below 100.
fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let (mut value, mut unit) = (bytes as f64, 0);
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    match (unit, value >= 100.0) {
        (0, _) => format!("{bytes} B"),
        (_, true) => format!("{value:.0} {}", units[unit]),
        (_, false) => format!("{value:.1} {}", units[unit]),
    }
}

/// The bytes every object takes in the store, by name.
fn stored_lengths(s: &Setup) -> BTreeMap<String, u64> {
    let mut lengths = BTreeMap::new();
    s.c.stored()
        .list("", &mut |o| {
            lengths.insert(o.key.as_str().to_owned(), o.size);
            Ok(())
        })
        .unwrap();
    lengths
}

/// Every file entry of a manifest: (path, size, stored).
fn entries(manifest: &Value) -> Vec<(String, u64, Option<u64>)> {
    let mut out = Vec::new();
    for node in manifest["nodes"].as_array().unwrap() {
        for step in node["steps"].as_array().unwrap() {
            for f in step["files"].as_array().into_iter().flatten() {
                out.push((
                    f["path"].as_str().unwrap().to_owned(),
                    f["size"].as_u64().unwrap(),
                    f["stored"].as_u64(),
                ));
            }
        }
    }
    assert!(!out.is_empty(), "no files in {manifest}");
    out
}

/// The row of backup [`ID`] in `hwdr list --json`.
fn list_row(s: &Setup) -> Value {
    let out = s.c.hwdr("head1", &["list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == ID)
        .unwrap_or_else(|| panic!("{ID} not listed: {rows}"))
        .clone()
}

/// The table of `hwdr list`: its header and the line of backup [`ID`].
fn list_table(s: &Setup) -> (String, String, String) {
    let out = s.c.hwdr("head1", &["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let header = table
        .lines()
        .find(|l| l.starts_with("ID "))
        .unwrap_or_default()
        .to_owned();
    let row = table.lines().find(|l| l.starts_with(ID)).unwrap_or_default().to_owned();
    (table.clone(), header, row)
}

/// The value of a gauge of the leader's metrics text file, if it is there.
fn gauge(s: &Setup, name: &str) -> (String, Option<f64>) {
    let prom = fs::read_to_string(s.c.dir.path().join("state-head1/hwdr.prom")).unwrap();
    let value = prom
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}{{cluster=\"prod\"}} ")))
        .map(|v| v.trim().parse().unwrap());
    (prom, value)
}

#[test]
fn an_encrypted_compressed_repository_records_what_each_object_takes_in_the_store() {
    let s = backed_up_in(encrypted);
    let manifest = s.c.manifest(ID).unwrap();
    let lengths = stored_lengths(&s);
    let files = entries(&manifest);

    // Each file's stored size is its object's length in the store.
    let mut files_stored = 0;
    for (path, _, stored) in &files {
        let name = format!("backups/{ID}/{path}");
        assert_eq!(*stored, lengths.get(&name).copied(), "{path}");
        files_stored += stored.unwrap();
    }
    // Compressible files take less than they hold: users.sql, the largest
    // RonDB part, and the RonDB folder as a whole.
    let users = files.iter().find(|f| f.0 == "rondb/users.sql").unwrap();
    assert!(users.2.unwrap() < users.1, "users.sql: {users:?}");
    let part = files
        .iter()
        .filter(|f| f.0.ends_with(".Data"))
        .max_by_key(|f| f.1)
        .unwrap();
    assert!(part.2.unwrap() < part.1, "the largest part: {part:?}");
    let rondb: Vec<_> = files.iter().filter(|f| f.0.starts_with("rondb/")).collect();
    let (held, stored): (u64, u64) = (
        rondb.iter().map(|f| f.1).sum(),
        rondb.iter().map(|f| f.2.unwrap()).sum(),
    );
    assert!(stored < held, "the RonDB files: {stored} bytes stored of {held}");

    // The random blocks are stored as they are, with the seals: a few dozen
    // bytes more each (one segment each, all being below 1 MiB).
    let h = &manifest["hopsfs"];
    let new_blocks = h["new_blocks"].as_u64().unwrap();
    let new_bytes = h["new_bytes"].as_u64().unwrap();
    let blocks: Vec<u64> = lengths
        .iter()
        .filter(|(n, _)| n.starts_with("blocks/") && !n.ends_with(".meta"))
        .map(|(_, l)| *l)
        .collect();
    assert_eq!(blocks.len() as u64, new_blocks, "{h}");
    let new_stored = h["new_stored_bytes"].as_u64().unwrap();
    assert_eq!(new_stored, blocks.iter().sum::<u64>(), "{h}");
    assert!(
        new_stored > new_bytes && new_stored <= new_bytes + 100 * new_blocks,
        "blocks: {new_stored} bytes stored of {new_bytes}, {new_blocks} blocks"
    );

    // list: what the backup added, as read and as stored.
    let row = list_row(&s);
    let added_stored = row["added_stored_bytes"].as_u64().unwrap();
    assert_eq!(added_stored, files_stored + new_stored, "{row}");
    let added = row["added_bytes"].as_u64().unwrap();
    assert_eq!(added, files.iter().map(|f| f.1).sum::<u64>() + new_bytes, "{row}");
    let (table, header, line) = list_table(&s);
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns,
        ["ID", "STATUS", "STARTED", "FINISHED", "SIZE", "ADDED", "STORED", "VERSION", "NODES"],
        "{table}"
    );
    let size = row["size_bytes"].as_u64().unwrap();
    let numbers = format!(
        "{:>10}  {:>10}  {:>10}  {}",
        human(size),
        human(added),
        human(added_stored),
        env!("CARGO_PKG_VERSION")
    );
    assert!(line.contains(&numbers), "{numbers:?} not in {table}");
    assert!(!table.contains("STORED -"), "{table}");

    // The metric: what the backup added, as stored.
    let (prom, value) = gauge(&s, "hwdr_last_backup_stored_bytes");
    assert_eq!(value, Some(added_stored as f64), "{prom}");
    assert!(prom.contains("# HELP hwdr_last_backup_stored_bytes "), "{prom}");
    assert!(prom.contains("# TYPE hwdr_last_backup_stored_bytes gauge"), "{prom}");
}

/// `manifest.json` of backup [`ID`] in a plaintext repository rewritten as
/// an hwdr without stored sizes wrote it: no `stored`, no
/// `new_stored_bytes`, its checksum recomputed as docs/backup.md describes it.
fn as_before_stored_sizes(s: &Setup) {
    let path = s.c.repo.join(format!("backups/{ID}/manifest.json"));
    let mut value: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    value.as_object_mut().unwrap().remove("checksum");
    value["hopsfs"].as_object_mut().unwrap().remove("new_stored_bytes");
    for node in value["nodes"].as_array_mut().unwrap() {
        for step in node["steps"].as_array_mut().unwrap() {
            // `get_mut`: indexing would add `"files": null` to a step without files.
            for f in step
                .get_mut("files")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                f.as_object_mut().unwrap().remove("stored");
            }
        }
    }
    let body = serde_json::to_string_pretty(&value).unwrap();
    assert!(!body.contains("stored"), "{body}");
    let sum = hex::encode(Sha256::digest(body.as_bytes()));
    let file = format!(
        "{},\n  \"checksum\": \"sha256:{sum}\"\n}}\n",
        body.strip_suffix("\n}").unwrap()
    );
    fs::write(&path, file).unwrap();
}

#[test]
fn a_plaintext_repository_stores_what_it_reads_and_an_older_backup_shows_a_dash() {
    let s = backed_up_in(|repo| format!("path = \"{}\"\n", repo.display()));
    let manifest = s.c.manifest(ID).unwrap();
    for (path, size, stored) in entries(&manifest) {
        assert_eq!(stored, Some(size), "{path}");
    }
    let h = &manifest["hopsfs"];
    assert_eq!(h["new_stored_bytes"], h["new_bytes"], "{h}");
    let row = list_row(&s);
    assert_eq!(row["added_stored_bytes"], row["added_bytes"], "{row}");
    let (prom, value) = gauge(&s, "hwdr_last_backup_stored_bytes");
    assert_eq!(value, row["added_bytes"].as_f64(), "{prom}");

    // A backup made before stored sizes: unknown, never a guess.
    as_before_stored_sizes(&s);
    let row = list_row(&s);
    assert_eq!(row["status"], "complete", "{row}");
    assert!(row["added_stored_bytes"].is_null(), "{row}");
    assert!(row["added_bytes"].as_u64().unwrap() > 0, "{row}");
    let (table, _, line) = list_table(&s);
    let cells: Vec<&str> = line.split_whitespace().collect();
    // ID, STATUS, STARTED (2), FINISHED (2), SIZE (2), ADDED (2), STORED.
    assert_eq!(cells.get(10), Some(&"-"), "{table}");
    assert!(
        table.contains("STORED -: unknown: the backup was made by an hwdr (or with an agent) that did not record"),
        "{table}"
    );
    // The metrics text file is written again by a verify: no stored bytes.
    let verify = s.c.hwdr("head1", &["verify", ID]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    let (prom, value) = gauge(&s, "hwdr_last_backup_stored_bytes");
    assert_eq!(value, None, "{prom}");
    assert!(gauge(&s, "hwdr_last_backup_added_bytes").1.is_some(), "{prom}");
}

/// The value of `field=` on `line` (the log's fields on stderr).
fn field(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .map(|v| v.trim_matches('"').parse().unwrap())
}

/// A backup of the four-node cluster, its log on stderr (no terminal).
fn backup_with_log() -> (scenario::Setup, String) {
    let s = scenario::cluster(80);
    let out = s.c.hwdr("head1", &["backup", "--id", ID]);
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    (s, log)
}

#[test]
fn a_backups_size_is_one_number_in_its_log_list_json_and_metric() {
    let (s, log) = backup_with_log();
    let complete: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("backup {ID} complete: ")))
        .collect();
    assert_eq!(complete.len(), 1, "{log}");
    let exact = field(complete[0], "hwdr_size_bytes").unwrap_or_else(|| panic!("{}", complete[0]));
    // The bytes of its own files and of the blocks it names: more than either.
    let manifest = s.c.manifest(ID).unwrap();
    let own: u64 = entries(&manifest).iter().map(|f| f.1).sum();
    let blocks = manifest["hopsfs"]["distinct_bytes"].as_u64().unwrap();
    assert_eq!(exact, own + blocks, "{}", complete[0]);
    assert!(complete[0].contains(&format!(", {}", human(exact))), "{}", complete[0]);

    let out = s.c.hwdr("head1", &["list", "--json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["id"], ID, "{rows}");
    assert_eq!(rows[0]["size_bytes"].as_u64(), Some(exact), "{rows}");

    let table = text(&s.c.hwdr("head1", &["list"]).stdout);
    let line = table.lines().find(|l| l.starts_with(ID)).unwrap();
    let cells: Vec<&str> = line.split_whitespace().collect();
    // ID, STATUS, STARTED (2), FINISHED (2), then SIZE as number and unit.
    assert_eq!(format!("{} {}", cells[6], cells[7]), human(exact), "{table}");
    assert!(!line.contains(&exact.to_string()), "raw bytes in {table}");

    let prom = fs::read_to_string(s.c.dir.path().join("state-head1/hwdr.prom")).unwrap();
    let metric = prom
        .lines()
        .find_map(|l| l.strip_prefix("hwdr_last_backup_size_bytes{cluster=\"prod\"} "))
        .unwrap_or_else(|| panic!("{prom}"));
    assert_eq!(metric.trim().parse::<f64>().unwrap(), exact as f64, "{prom}");
}

/// Pins issue 16's observations: "backup … complete" and the prune summary
/// were each logged twice, some fleet steps had no started and done lines,
/// and SHOW DATABASES' output landed in the log as bare lines.
#[test]
fn each_summary_line_of_a_backup_is_logged_once_and_every_step_starts_and_ends() {
    let (_s, log) = backup_with_log();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count(&format!("backup {ID} complete: ")), 1, "{log}");
    assert_eq!(count(&format!("backup {ID} started")), 1, "{log}");
    // The prune's summary, however worded.
    assert_eq!(count("leftover file"), 1, "{log}");
    assert_eq!(count("prune removed: "), 1, "{log}");
    for step in [
        "users",
        "schemas",
        "ndb-backup",
        "rondb-parts",
        "hopsfs-list",
        "hopsfs-upload",
    ] {
        let (started, done) = (
            count(&format!("step {step} started")),
            count(&format!("step {step} done")),
        );
        assert_eq!((started, done), (1, 1), "step {step}:\n{log}");
    }
    // The data steps say what they did in binary units.
    let parts = log.lines().find(|l| l.contains("step rondb-parts done: ")).unwrap();
    let bytes = field(parts, "bytes").unwrap();
    assert!(parts.contains(&format!(" files, {}", human(bytes))), "{parts}");
    // SHOW DATABASES' answer is data: one line names the databases.
    assert!(
        !log.lines()
            .any(|l| l.contains("program=mysql") && l.contains("stream=\"stdout\"")),
        "{log}"
    );
    assert_eq!(count("dumping the schemas of "), 1, "{log}");
}
