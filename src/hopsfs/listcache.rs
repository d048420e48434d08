//! The listing cache of a data node: what each folder below `finalized/`
//! held at the last listing, keyed by the folder's device, inode, mtime and
//! ctime. Creating, removing or renaming a file in a folder changes its mtime
//! and ctime, and a finalized block never changes in place (an append gives it
//! a new generation stamp, which renames its `.meta`), so a folder whose stamp
//! is unchanged holds the same blocks: it is not read again, only `stat`ed.
//! (The same reasoning as rsync's and restic's size-and-mtime checks, applied
//! to folders.) A mode changed with `chmod` on a block file of an unchanged
//! folder is not seen.
//!
//! A folder is trusted only if its mtime and ctime lie well before the start
//! of the listing that recorded it ([`SETTLE`]): a change made within the same
//! clock tick as the recorded mtime could leave the mtime as it was.
//!
//! One file per subtree of `finalized/` (`subdir<n>`), below
//! `<[restore] state_dir>/hopsfs-list/<sha256 of the finalized path>/`,
//! tab-separated, in listing order:
//!
//! ```text
//! hwdr-list-cache<TAB>1<TAB><trusted before, ns since the epoch>
//! d<TAB><folder below finalized/><TAB><dev><TAB><ino><TAB><mtime ns><TAB><ctime ns>
//! s<TAB><subfolder name>
//! b<TAB><id><TAB><genstamp><TAB><len><TAB><mode><TAB><meta len><TAB><meta mode><TAB><path or ->
//! k<TAB><what was left out>
//! end<TAB><folders>
//! ```
//!
//! A cache that is missing, unreadable or damaged costs only a full listing.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use super::inventory::{self, BlockLine};

const MAGIC: &str = "hwdr-list-cache\t1";

/// How long before a listing's start a folder must have last changed to be
/// trusted by the next listing.
pub const SETTLE: Duration = Duration::from_secs(10);

/// Identity and change times of a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl Stamp {
    /// The stamp of folder `path`.
    pub fn of(path: &Path) -> Result<Stamp> {
        let m = fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
        Ok(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }
}

/// What one folder held: its subfolders (names), blocks and left-out files.
/// Blocks carry pool and folder index 0; the listing sets its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folder {
    pub subdirs: Vec<String>,
    pub blocks: Vec<BlockLine>,
    pub skipped: Vec<String>,
}

/// One subtree's cache as read.
#[derive(Debug, Default)]
pub struct Cache {
    trusted_before_ns: i128,
    folders: HashMap<PathBuf, (Stamp, Folder)>,
}

impl Cache {
    /// What folder `rel` held, if its stamp is `now` and it had settled
    /// before the recording listing started.
    pub fn get(&self, rel: &Path, now: &Stamp) -> Option<&Folder> {
        let (stamp, folder) = self.folders.get(rel)?;
        (stamp == now && stamp.mtime_ns < self.trusted_before_ns && stamp.ctime_ns < self.trusted_before_ns)
            .then_some(folder)
    }
}

/// The cache folder of the `finalized/` folder `finalized`.
pub fn dir_for(state_dir: &Path, finalized: &Path) -> PathBuf {
    let digest = Sha256::digest(finalized.as_os_str().as_encoded_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    state_dir.join("hopsfs-list").join(hex)
}

/// The cache file of subtree `name` (a subfolder of `finalized/`).
pub fn file_for(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.tsv"))
}

/// Wall-clock time in ns since the epoch.
pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Reads a cache file; `None` if there is none.
pub fn load(path: &Path) -> Result<Option<Cache>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    parse(BufReader::new(file))
        .map(Some)
        .with_context(|| format!("reading {}", path.display()))
}

fn parse(input: impl BufRead) -> Result<Cache> {
    let mut lines = input.lines();
    let head = lines.next().ok_or_else(|| anyhow!("empty"))??;
    let trusted = head
        .strip_prefix(MAGIC)
        .and_then(|r| r.strip_prefix('\t'))
        .ok_or_else(|| anyhow!("not a listing cache"))?;
    let mut cache = Cache {
        trusted_before_ns: trusted.parse().context("bad header")?,
        folders: HashMap::new(),
    };
    let mut current: Option<(PathBuf, Stamp, Folder)> = None;
    let mut ended = false;
    for (n, line) in lines.enumerate() {
        let line = line?;
        if ended {
            bail!("line {}: text after the end", n + 2);
        }
        let f: Vec<&str> = line.split('\t').collect();
        let num = |i: usize| -> Result<u64> { Ok(f.get(i).ok_or_else(|| anyhow!("field missing"))?.parse()?) };
        let wide = |i: usize| -> Result<i128> { Ok(f.get(i).ok_or_else(|| anyhow!("field missing"))?.parse()?) };
        let parsed: Result<()> = (|| {
            match (f[0], f.len()) {
                ("d", 6) => {
                    if let Some((rel, stamp, folder)) = current.take() {
                        cache.folders.insert(rel, (stamp, folder));
                    }
                    let stamp = Stamp {
                        dev: num(2)?,
                        ino: num(3)?,
                        mtime_ns: wide(4)?,
                        ctime_ns: wide(5)?,
                    };
                    current = Some((PathBuf::from(f[1]), stamp, Folder::default()));
                }
                ("s", 2) => folder(&mut current)?.subdirs.push(f[1].to_owned()),
                ("b", 8) => {
                    let block = inventory::parse_block_fields(&f[1..], 0, 0)?;
                    folder(&mut current)?.blocks.push(block);
                }
                ("k", 2) => folder(&mut current)?.skipped.push(f[1].to_owned()),
                ("end", 2) => {
                    if let Some((rel, stamp, folder)) = current.take() {
                        cache.folders.insert(rel, (stamp, folder));
                    }
                    if num(1)? != cache.folders.len() as u64 {
                        bail!("the end line counts other folders");
                    }
                    ended = true;
                }
                _ => bail!("unknown line"),
            }
            Ok(())
        })();
        parsed.with_context(|| format!("line {}", n + 2))?;
    }
    if !ended {
        bail!("truncated: no end line");
    }
    Ok(cache)
}

fn folder(current: &mut Option<(PathBuf, Stamp, Folder)>) -> Result<&mut Folder> {
    current
        .as_mut()
        .map(|(_, _, f)| f)
        .ok_or_else(|| anyhow!("line before the first folder"))
}

/// Writes one subtree's cache: folders in listing order, then
/// [`CacheWriter::commit`] renames it into place.
pub struct CacheWriter {
    tmp: PathBuf,
    path: PathBuf,
    out: BufWriter<File>,
    folders: u64,
    /// A name the format cannot hold (tab or newline): the file is dropped.
    unusable: bool,
}

impl CacheWriter {
    /// Starts the cache file `path` of a listing that started at `started_ns`.
    pub fn create(path: &Path, started_ns: i128) -> Result<CacheWriter> {
        let dir = path
            .parent()
            .ok_or_else(|| anyhow!("{} has no folder", path.display()))?;
        crate::fsutil::mkdir(dir, 0o700)?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            std::process::id()
        ));
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut out = BufWriter::new(file);
        writeln!(out, "{MAGIC}\t{}", started_ns - SETTLE.as_nanos() as i128)?;
        Ok(CacheWriter {
            tmp,
            path: path.to_owned(),
            out,
            folders: 0,
            unusable: false,
        })
    }

    /// Records folder `rel` with its stamp and content.
    pub fn folder(&mut self, rel: &Path, stamp: &Stamp, folder: &Folder) -> Result<()> {
        let bad = |s: &str| s.contains(['\t', '\n', '\r']);
        let rel = rel.to_string_lossy();
        if bad(&rel)
            || folder.subdirs.iter().any(|s| bad(s))
            || folder.skipped.iter().any(|s| bad(s))
            || folder.blocks.iter().any(|b| b.path.as_deref().is_some_and(bad))
        {
            self.unusable = true;
            return Ok(());
        }
        let o = &mut self.out;
        writeln!(
            o,
            "d\t{rel}\t{}\t{}\t{}\t{}",
            stamp.dev, stamp.ino, stamp.mtime_ns, stamp.ctime_ns
        )?;
        for s in &folder.subdirs {
            writeln!(o, "s\t{s}")?;
        }
        let mut line = String::new();
        for b in &folder.blocks {
            line.clear();
            inventory::write_block_fields(&mut line, b)?;
            writeln!(o, "b\t{line}")?;
        }
        for k in &folder.skipped {
            writeln!(o, "k\t{k}")?;
        }
        self.folders += 1;
        Ok(())
    }

    /// Ends the file and puts it in place (or drops it, if unusable). On
    /// every path out, [`Drop`] removes what is left of the temp file.
    pub fn commit(mut self) -> Result<()> {
        if self.unusable {
            return Ok(());
        }
        writeln!(self.out, "end\t{}", self.folders)?;
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        fs::rename(&self.tmp, &self.path).with_context(|| format!("writing {}", self.path.display()))
    }
}

impl Drop for CacheWriter {
    /// A writer dropped before [`CacheWriter::commit`] leaves no temp file.
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Removes the cache files of `dir` whose subtree is not in `keep`.
pub fn remove_others(dir: &Path, keep: &[String]) -> Result<()> {
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for e in read {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let subtree = name.strip_suffix(".tsv").unwrap_or(&name);
        if !keep.iter().any(|k| k == subtree) {
            fs::remove_file(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(id: u64, path: Option<&str>) -> BlockLine {
        BlockLine {
            dir: 0,
            pool: 0,
            id,
            genstamp: 1001,
            len: 4096,
            mode: 0o644,
            meta_len: 39,
            meta_mode: 0o600,
            path: path.map(str::to_owned),
        }
    }

    #[test]
    fn round_trip_trust_and_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c/subdir1.tsv");
        let started = 2_000_000_000_000_000_000i128;
        let old = Stamp {
            dev: 1,
            ino: 2,
            mtime_ns: started - 60_000_000_000,
            ctime_ns: started - 60_000_000_000,
        };
        let fresh = Stamp {
            ino: 3,
            mtime_ns: started - 1_000_000_000,
            ..old
        };
        let a = Folder {
            subdirs: vec!["subdir0".into(), "subdir7".into()],
            blocks: vec![block(65536, None), block(9, Some("subdir1/blk_9"))],
            skipped: vec!["x: blk_3 has no .meta".into()],
        };
        let mut w = CacheWriter::create(&path, started).unwrap();
        w.folder(Path::new("subdir1"), &old, &a).unwrap();
        w.folder(Path::new("subdir1/subdir7"), &fresh, &Folder::default())
            .unwrap();
        w.commit().unwrap();

        let cache = load(&path).unwrap().unwrap();
        assert_eq!(cache.get(Path::new("subdir1"), &old), Some(&a));
        // Another stamp, an unknown folder, a folder changed within SETTLE of the listing.
        assert_eq!(cache.get(Path::new("subdir1"), &Stamp { ino: 9, ..old }), None);
        assert_eq!(cache.get(Path::new("subdir1/subdir0"), &old), None);
        assert_eq!(cache.get(Path::new("subdir1/subdir7"), &fresh), None);

        // Truncated or damaged: an error, never half a cache.
        let text = fs::read_to_string(&path).unwrap();
        let cut = &text[..text.rfind("end").unwrap()];
        fs::write(&path, cut).unwrap();
        assert!(format!("{:#}", load(&path).unwrap_err()).contains("truncated"));
        fs::write(&path, text.replace("b\t9\t", "b\tnine\t")).unwrap();
        assert!(load(&path).is_err());
        assert!(load(&tmp.path().join("none.tsv")).unwrap().is_none());

        // A name the format cannot hold: no file at all.
        fs::remove_file(&path).unwrap();
        let mut w = CacheWriter::create(&path, started).unwrap();
        w.folder(Path::new("sub\tdir"), &old, &a).unwrap();
        w.commit().unwrap();
        assert!(!path.exists());
        assert_eq!(
            fs::read_dir(path.parent().unwrap()).unwrap().count(),
            0,
            "no temp file left"
        );
    }
}
