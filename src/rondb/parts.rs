//! A RonDB data node's part of a native backup: finding it on the node,
//! checking it is complete, and copying it into the repository.
//!
//! Layouts (facts, section 1), below `<BackupDataDir>/BACKUP/BACKUP-<id>/`:
//! single-threaded `BACKUP-<id>.<node>.ctl`, `BACKUP-<id>-0.<node>.Data`,
//! `BACKUP-<id>.<node>.log`; multithreaded the same three files in every
//! `BACKUP-<id>-PART-<p>-OF-<n>/`. A part is complete only with all three
//! in every PART folder.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::job::JobControl;
use crate::parallel;
use crate::repo::backup::BackupWriter;
use crate::repo::manifest::FileEntry;
use crate::repo::store::Access;

/// The folder RonDB writes backup `ndb_id` into below `backup_dir`.
pub fn node_backup_dir(backup_dir: &Path, ndb_id: u32) -> PathBuf {
    backup_dir.join("BACKUP").join(format!("BACKUP-{ndb_id}"))
}

/// The folder of backup `ndb_id` inside a backup folder of the repository.
pub fn repo_rel_dir(ndb_id: u32) -> String {
    format!("rondb/BACKUP-{ndb_id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Ctl,
    Data,
    Log,
}

/// One data node's files: paths relative to the backup's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePart {
    pub node_id: u32,
    /// 1 for the single-file layout, else the PART count.
    pub parts: u32,
    pub files: Vec<String>,
}

/// What kind of backup file `name` is, and of which data node.
fn classify(name: &str, ndb_id: u32) -> Option<(Kind, u32)> {
    let prefix = format!("BACKUP-{ndb_id}");
    let rest = name.strip_prefix(&prefix)?;
    let (stem, kind) = if let Some(s) = rest.strip_suffix(".ctl") {
        (s, Kind::Ctl)
    } else if let Some(s) = rest.strip_suffix(".log") {
        (s, Kind::Log)
    } else if let Some(s) = rest.strip_suffix(".Data") {
        (s, Kind::Data)
    } else {
        return None;
    };
    // stem is ".<node>" (ctl, log) or "-<k>.<node>" (Data).
    let node = match kind {
        Kind::Data => {
            let (k, node) = stem.strip_prefix('-')?.split_once('.')?;
            k.parse::<u32>().ok()?;
            node
        }
        _ => stem.strip_prefix('.')?,
    };
    if node.is_empty() || !node.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((kind, node.parse().ok()?))
}

/// The data node id whose backup file `name` is (`.ctl`, `.Data`, `.log`).
pub fn node_of_file(name: &str, ndb_id: u32) -> Option<u32> {
    classify(name, ndb_id).map(|(_, node)| node)
}

/// `(p, n)` of a `BACKUP-<id>-PART-<p>-OF-<n>` folder name.
fn part_dir(name: &str, ndb_id: u32) -> Option<(u32, u32)> {
    let rest = name.strip_prefix(&format!("BACKUP-{ndb_id}-PART-"))?;
    let (p, n) = rest.split_once("-OF-")?;
    let (p, n) = (p.parse().ok()?, n.parse().ok()?);
    (1..=n).contains(&p).then_some((p, n))
}

/// Files per (node, kind) found directly in `dir`.
fn scan_files(dir: &Path, ndb_id: u32) -> Result<BTreeMap<u32, BTreeMap<Kind, Vec<String>>>> {
    let mut found: BTreeMap<u32, BTreeMap<Kind, Vec<String>>> = BTreeMap::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_file() {
            continue;
        }
        if let Some((kind, node)) = classify(&name, ndb_id) {
            found.entry(node).or_default().entry(kind).or_default().push(name);
        }
    }
    Ok(found)
}

/// Finds and checks the parts of `node_ids` in the node's backup folder `dir`.
/// Files of other data nodes are an error too: the config would be wrong.
pub fn find_parts(dir: &Path, ndb_id: u32, node_ids: &BTreeSet<u32>) -> Result<Vec<NodePart>> {
    if !dir.is_dir() {
        bail!("RonDB wrote no backup folder {} on this node", dir.display());
    }
    let top = scan_files(dir, ndb_id)?;
    let mut part_dirs: BTreeMap<u32, (u32, String)> = BTreeMap::new();
    let mut counts = BTreeSet::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((p, n)) = part_dir(&name, ndb_id).filter(|_| entry.path().is_dir()) {
            part_dirs.insert(p, (n, name));
            counts.insert(n);
        }
    }
    if counts.len() > 1 {
        bail!(
            "{}: PART folders disagree on the part count ({counts:?})",
            dir.display()
        );
    }
    let mut per_part = Vec::new();
    for (p, (_, name)) in &part_dirs {
        per_part.push((*p, name.clone(), scan_files(&dir.join(name), ndb_id)?));
    }

    let mut seen: BTreeSet<u32> = top.keys().copied().collect();
    for (_, _, files) in &per_part {
        seen.extend(files.keys().copied());
    }
    let strangers: Vec<_> = seen.difference(node_ids).collect();
    if !strangers.is_empty() {
        bail!(
            "{} holds files of data node(s) {strangers:?}, which the config does not place on this node",
            dir.display()
        );
    }

    let mut parts = Vec::new();
    for &node in node_ids {
        let mut files = Vec::new();
        let part_count = if let Some(single) = top.get(&node) {
            if !per_part.is_empty() {
                bail!(
                    "data node {node}: both single-file and PART layouts in {}",
                    dir.display()
                );
            }
            complete(single, node, "the single-file part", dir)?;
            files.extend(single.values().flatten().cloned());
            1
        } else if let Some(&n) = counts.first() {
            for p in 1..=n {
                let Some((_, name, found)) = per_part.iter().find(|(q, _, _)| *q == p) else {
                    bail!("data node {node}: PART-{p}-OF-{n} is missing in {}", dir.display());
                };
                let empty = BTreeMap::new();
                let mine = found.get(&node).unwrap_or(&empty);
                complete(mine, node, &format!("part {p} of {n}"), &dir.join(name))?;
                files.extend(mine.values().flatten().map(|f| format!("{name}/{f}")));
            }
            n
        } else {
            bail!("data node {node} wrote no backup files in {}", dir.display());
        };
        files.sort();
        parts.push(NodePart {
            node_id: node,
            parts: part_count,
            files,
        });
    }
    Ok(parts)
}

fn complete(files: &BTreeMap<Kind, Vec<String>>, node: u32, what: &str, dir: &Path) -> Result<()> {
    for (kind, label) in [(Kind::Ctl, ".ctl"), (Kind::Data, ".Data"), (Kind::Log, ".log")] {
        if files.get(&kind).is_none_or(Vec::is_empty) {
            bail!("data node {node}: {what} lacks its {label} file (in {})", dir.display());
        }
    }
    Ok(())
}

/// Copies the checked parts from the node folder `src` into the backup,
/// hashing every file, `threads` files at once; each is durable once put.
/// The entries come in the parts' order.
pub fn copy_parts(
    src: &Path,
    backup: &BackupWriter,
    ndb_id: u32,
    parts: &[NodePart],
    threads: usize,
    control: &JobControl,
) -> Result<Vec<FileEntry>> {
    let rel_root = repo_rel_dir(ndb_id);
    let files = parts.iter().flat_map(|part| &part.files);
    parallel::map(threads, control, files, |file| {
        crate::fault::point("rondb-copy-part", Some(control))?;
        let entry = backup.put_file(&format!("{rel_root}/{file}"), &src.join(file), Access::Group, control)?;
        control.file_done(entry.size);
        Ok(entry)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_backup_file_names() {
        assert_eq!(classify("BACKUP-7.2.ctl", 7), Some((Kind::Ctl, 2)));
        assert_eq!(classify("BACKUP-7-0.12.Data", 7), Some((Kind::Data, 12)));
        assert_eq!(classify("BACKUP-7.2.log", 7), Some((Kind::Log, 2)));
        assert_eq!(classify("BACKUP-70.2.log", 7), None);
        assert_eq!(classify("BACKUP-7.x.log", 7), None);
        assert_eq!(classify("BACKUP-7-0.2.Data.tmp", 7), None);
        assert_eq!(part_dir("BACKUP-7-PART-2-OF-4", 7), Some((2, 4)));
        assert_eq!(part_dir("BACKUP-7-PART-5-OF-4", 7), None);
    }

    fn touch(dir: &Path, rel: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, rel).unwrap();
    }

    #[test]
    fn finds_complete_parts_in_both_layouts() {
        let d = tempfile::tempdir().unwrap();
        for n in [2, 3] {
            for p in 1..=2 {
                let part = format!("BACKUP-9-PART-{p}-OF-2");
                for f in [
                    format!("BACKUP-9.{n}.ctl"),
                    format!("BACKUP-9-0.{n}.Data"),
                    format!("BACKUP-9.{n}.log"),
                ] {
                    touch(d.path(), &format!("{part}/{f}"));
                }
            }
        }
        let parts = find_parts(d.path(), 9, &BTreeSet::from([2, 3])).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].parts, 2);
        assert_eq!(parts[0].files.len(), 6);

        let s = tempfile::tempdir().unwrap();
        for f in ["BACKUP-9.4.ctl", "BACKUP-9-0.4.Data", "BACKUP-9.4.log"] {
            touch(s.path(), f);
        }
        let parts = find_parts(s.path(), 9, &BTreeSet::from([4])).unwrap();
        assert_eq!(parts[0].parts, 1);
    }

    #[test]
    fn incomplete_or_foreign_parts_are_refused() {
        let d = tempfile::tempdir().unwrap();
        for p in 1..=2 {
            touch(d.path(), &format!("BACKUP-9-PART-{p}-OF-2/BACKUP-9.2.ctl"));
            touch(d.path(), &format!("BACKUP-9-PART-{p}-OF-2/BACKUP-9-0.2.Data"));
        }
        touch(d.path(), "BACKUP-9-PART-1-OF-2/BACKUP-9.2.log");
        let err = find_parts(d.path(), 9, &BTreeSet::from([2])).unwrap_err().to_string();
        assert!(err.contains("data node 2: part 2 of 2 lacks its .log file"), "{err}");

        touch(d.path(), "BACKUP-9-PART-2-OF-2/BACKUP-9.2.log");
        let err = find_parts(d.path(), 9, &BTreeSet::from([2, 3]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("data node 3"), "{err}");

        touch(d.path(), "BACKUP-9-PART-1-OF-2/BACKUP-9.5.log");
        let err = find_parts(d.path(), 9, &BTreeSet::from([2])).unwrap_err().to_string();
        assert!(err.contains("data node(s) [5]"), "{err}");
    }
}
