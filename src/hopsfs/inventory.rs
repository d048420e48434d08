//! A data node's inventory: its storage folders, VERSION files and the exact
//! list of its finalized blocks, as one tab-separated text file per node and
//! backup (`backups/<id>/hopsfs/<node>/inventory.tsv`). Written while the
//! folders are scanned and read as a stream, so a million blocks never sit in
//! memory at once. The last line (`end`) proves the file is whole.
//!
//! ```text
//! (fields are separated by one tab, shown here as <TAB>)
//! hwdr-hopsfs-inventory<TAB>1
//! node<TAB><name>
//! dir<TAB><dir><TAB><mode><TAB><path>
//! version<TAB><dir><TAB><mode><TAB><size><TAB><sha256><TAB><file in the backup>
//! pool<TAB><dir><TAB><pool><TAB><BP-...><TAB><mode><TAB><size><TAB><sha256><TAB><file in the backup>
//! block<TAB><dir><TAB><pool><TAB><id><TAB><genstamp><TAB><len><TAB><mode><TAB><meta len><TAB><meta mode><TAB><path below finalized/ or ->
//! end<TAB><blocks><TAB><bytes>
//! ```
//!
//! `<dir>` and `<pool>` are indexes of the `dir` and `pool` lines; modes are
//! octal; a block's path is `-` when it is where HopsFS places it
//! ([`super::layout::canonical_rel_path`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};

use anyhow::{anyhow, bail, Context, Result};

use super::store::BlockKey;
use crate::repo::backup::BackupReader;
use crate::repo::manifest::FileEntry;

const MAGIC: &str = "hwdr-hopsfs-inventory\t1";

/// A storage folder (`dfs.datanode.data.dir` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirLine {
    pub index: u16,
    pub mode: u32,
    pub path: String,
}

/// A VERSION file stored in the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionLine {
    pub dir: u16,
    pub mode: u32,
    pub size: u64,
    pub sha256: String,
    /// Path relative to the backup folder.
    pub stored: String,
}

/// A block pool of a storage folder, with its VERSION file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolLine {
    pub dir: u16,
    pub index: u16,
    pub id: String,
    pub version: VersionLine,
}

/// One finalized block replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockLine {
    pub dir: u16,
    pub pool: u16,
    pub id: u64,
    pub genstamp: u64,
    pub len: u64,
    pub mode: u32,
    pub meta_len: u64,
    pub meta_mode: u32,
    /// Path below `finalized/` when it is not the canonical one.
    pub path: Option<String>,
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Node(String),
    Dir(DirLine),
    Version(VersionLine),
    Pool(PoolLine),
    Block(BlockLine),
    End { blocks: u64, bytes: u64 },
}

/// Writes an inventory line by line.
pub struct Writer<W: Write> {
    out: W,
    blocks: u64,
    bytes: u64,
    line: String,
}

impl<W: Write> Writer<W> {
    /// Starts the inventory of `node`.
    pub fn new(mut out: W, node: &str) -> Result<Self> {
        writeln!(out, "{MAGIC}\nnode\t{node}")?;
        Ok(Writer {
            out,
            blocks: 0,
            bytes: 0,
            line: String::with_capacity(128),
        })
    }

    /// Writes one line (not `Node` or `End`, which the writer adds itself).
    pub fn write(&mut self, line: &Line) -> Result<()> {
        self.line.clear();
        let l = &mut self.line;
        match line {
            Line::Dir(d) => write!(l, "dir\t{}\t{:o}\t{}", d.index, d.mode, clean(&d.path)?)?,
            Line::Version(v) => write!(l, "version\t{}", version_fields(v)?)?,
            Line::Pool(p) => {
                write!(l, "pool\t{}\t{}\t{}\t", p.dir, p.index, clean(&p.id)?)?;
                // The pool's VERSION fields, without the dir (already given).
                let fields = version_fields(&p.version)?;
                l.push_str(fields.split_once('\t').map_or("", |(_, rest)| rest));
            }
            Line::Block(b) => {
                write!(l, "block\t{}\t{}\t", b.dir, b.pool)?;
                write_block_fields(l, b)?;
                self.blocks += 1;
                self.bytes += b.len;
            }
            Line::Node(_) | Line::End { .. } => bail!("the writer adds node and end lines itself"),
        }
        l.push('\n');
        self.out.write_all(l.as_bytes())?;
        Ok(())
    }

    /// Writes the `end` line and returns the output with the totals.
    pub fn finish(mut self) -> Result<(W, u64, u64)> {
        writeln!(self.out, "end\t{}\t{}", self.blocks, self.bytes)?;
        self.out.flush()?;
        Ok((self.out, self.blocks, self.bytes))
    }
}

/// A block's own fields, tab-separated: id, genstamp, length, mode (octal),
/// `.meta` length and mode, path below `finalized/` or `-`. Shared with the
/// listing cache ([`super::listcache`]).
pub fn write_block_fields(out: &mut String, b: &BlockLine) -> Result<()> {
    write!(
        out,
        "{}\t{}\t{}\t{:o}\t{}\t{:o}\t{}",
        b.id,
        b.genstamp,
        b.len,
        b.mode,
        b.meta_len,
        b.meta_mode,
        match &b.path {
            Some(p) => clean(p)?,
            None => "-",
        }
    )?;
    Ok(())
}

/// Parses the fields [`write_block_fields`] writes, for a block of storage
/// folder `dir` and pool `pool`.
pub fn parse_block_fields(f: &[&str], dir: u16, pool: u16) -> Result<BlockLine> {
    if f.len() != 7 {
        bail!("expected 7 block fields, found {}", f.len());
    }
    let num = |i: usize| -> Result<u64> { f[i].parse().map_err(|e| anyhow!("field {i}: {e}")) };
    let mode = |i: usize| -> Result<u32> { u32::from_str_radix(f[i], 8).map_err(|e| anyhow!("field {i}: {e}")) };
    Ok(BlockLine {
        dir,
        pool,
        id: num(0)?,
        genstamp: num(1)?,
        len: num(2)?,
        mode: mode(3)?,
        meta_len: num(4)?,
        meta_mode: mode(5)?,
        path: (f[6] != "-").then(|| f[6].to_owned()),
    })
}

fn version_fields(v: &VersionLine) -> Result<String> {
    Ok(format!(
        "{}\t{:o}\t{}\t{}\t{}",
        v.dir,
        v.mode,
        v.size,
        clean(&v.sha256)?,
        clean(&v.stored)?
    ))
}

/// A field must not break the line format.
fn clean(s: &str) -> Result<&str> {
    if s.is_empty() || s.contains(['\t', '\n', '\r']) {
        bail!("cannot record {s:?} in an inventory (empty, or holds a tab or newline)");
    }
    Ok(s)
}

/// Reads an inventory line by line; the last item is the `end` line, and a
/// file without it is an error (truncated).
pub fn read<R: BufRead>(input: R, mut each: impl FnMut(Line) -> Result<()>) -> Result<(u64, u64)> {
    let mut lines = input.lines();
    let first = lines.next().transpose()?.unwrap_or_default();
    if first != MAGIC {
        bail!("not an hwdr HopsFS inventory (first line {first:?})");
    }
    let (mut blocks, mut bytes) = (0u64, 0u64);
    for (n, text) in lines.enumerate() {
        let text = text?;
        let line = parse(&text).with_context(|| format!("inventory line {}: {text:?}", n + 2))?;
        if let Line::End { blocks: b, bytes: y } = line {
            if (b, y) != (blocks, bytes) {
                bail!("inventory end line says {b} blocks, {y} bytes; the file lists {blocks}, {bytes}");
            }
            return Ok((blocks, bytes));
        }
        if let Line::Block(b) = &line {
            blocks += 1;
            bytes += b.len;
        }
        each(line)?;
    }
    bail!("inventory is truncated: it has no end line")
}

/// Streams the blocks of a backup's inventory that its manifest lists as
/// `expected`: each block's identity (with its pool's name) and length. The
/// inventory is checked against its size and SHA-256 as it streams; a
/// difference fails the call at the end (after the callbacks), so what the
/// callbacks saw counts only if the call succeeds.
pub fn for_each_block(
    backup: &BackupReader,
    expected: &FileEntry,
    each: impl FnMut(BlockKey, u64) -> Result<()>,
) -> Result<(u64, u64)> {
    let mut input = open(backup, expected)?;
    let read = blocks_of(&mut input, each);
    drain(&mut input, expected)?;
    read.with_context(|| format!("reading {}", expected.path))
}

/// The inventory `expected` of a backup, buffered, checked at its end (read
/// it through with [`drain`] after the end line).
pub fn open(backup: &BackupReader, expected: &FileEntry) -> Result<impl BufRead> {
    let source = backup
        .open_checked(expected)
        .with_context(|| format!("opening {}", expected.path))?;
    Ok(BufReader::with_capacity(1 << 20, source))
}

/// Reads what follows the end line: the check of an [`open`]ed inventory
/// happens at its end.
pub fn drain(input: &mut impl BufRead, expected: &FileEntry) -> Result<()> {
    io::copy(input, &mut io::sink()).with_context(|| format!("reading {}", expected.path))?;
    Ok(())
}

/// Streams the blocks of an inventory read from `input`, unchecked (an
/// unfinished backup's, which no manifest lists yet).
pub fn blocks_of<R: BufRead>(input: R, mut each: impl FnMut(BlockKey, u64) -> Result<()>) -> Result<(u64, u64)> {
    let mut pools: HashMap<u16, String> = HashMap::new();
    read(input, |line| match line {
        Line::Pool(p) => {
            pools.insert(p.index, p.id);
            Ok(())
        }
        Line::Block(b) => {
            let pool = pools
                .get(&b.pool)
                .cloned()
                .ok_or_else(|| anyhow!("block of unlisted pool {}", b.pool))?;
            each(
                BlockKey {
                    pool,
                    id: b.id,
                    genstamp: b.genstamp,
                },
                b.len,
            )
        }
        _ => Ok(()),
    })
}

fn parse(text: &str) -> Result<Line> {
    let f: Vec<&str> = text.split('\t').collect();
    let num = |i: usize| -> Result<u64> {
        f.get(i)
            .ok_or_else(|| anyhow!("field {i} missing"))?
            .parse()
            .map_err(|e| anyhow!("field {i}: {e}"))
    };
    let small = |i: usize| -> Result<u16> { u16::try_from(num(i)?).map_err(|_| anyhow!("field {i} too large")) };
    let mode = |i: usize| -> Result<u32> {
        u32::from_str_radix(f.get(i).ok_or_else(|| anyhow!("field {i} missing"))?, 8)
            .map_err(|e| anyhow!("field {i}: {e}"))
    };
    let text_at =
        |i: usize| -> Result<String> { Ok(f.get(i).ok_or_else(|| anyhow!("field {i} missing"))?.to_string()) };
    let version = |at: usize, dir: u16| -> Result<VersionLine> {
        Ok(VersionLine {
            dir,
            mode: mode(at)?,
            size: num(at + 1)?,
            sha256: text_at(at + 2)?,
            stored: text_at(at + 3)?,
        })
    };
    let want = |n: usize| -> Result<()> {
        if f.len() != n {
            bail!("expected {n} fields, found {}", f.len());
        }
        Ok(())
    };
    Ok(match f[0] {
        "node" => {
            want(2)?;
            Line::Node(text_at(1)?)
        }
        "dir" => {
            want(4)?;
            Line::Dir(DirLine {
                index: small(1)?,
                mode: mode(2)?,
                path: text_at(3)?,
            })
        }
        "version" => {
            want(6)?;
            Line::Version(version(2, small(1)?)?)
        }
        "pool" => {
            want(8)?;
            let dir = small(1)?;
            Line::Pool(PoolLine {
                dir,
                index: small(2)?,
                id: text_at(3)?,
                version: version(4, dir)?,
            })
        }
        "block" => {
            want(10)?;
            Line::Block(parse_block_fields(&f[3..], small(1)?, small(2)?)?)
        }
        "end" => {
            want(3)?;
            Line::End {
                blocks: num(1)?,
                bytes: num(2)?,
            }
        }
        other => bail!("unknown record {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let version = VersionLine {
            dir: 0,
            mode: 0o644,
            size: 10,
            sha256: "ab".into(),
            stored: "hopsfs/n/VERSION".into(),
        };
        let lines = vec![
            Line::Dir(DirLine {
                index: 0,
                mode: 0o700,
                path: "/data/dn".into(),
            }),
            Line::Version(version.clone()),
            Line::Pool(PoolLine {
                dir: 0,
                index: 0,
                id: "BP-1-10.0.0.1-2".into(),
                version,
            }),
            Line::Block(BlockLine {
                dir: 0,
                pool: 0,
                id: 1_073_741_825,
                genstamp: 1001,
                len: 513,
                mode: 0o644,
                meta_len: 15,
                meta_mode: 0o644,
                path: None,
            }),
            Line::Block(BlockLine {
                dir: 0,
                pool: 0,
                id: 7,
                genstamp: 1002,
                len: 0,
                mode: 0o600,
                meta_len: 7,
                meta_mode: 0o600,
                path: Some("subdir0/subdir0/blk_7".into()),
            }),
        ];
        let mut w = Writer::new(Vec::new(), "node1").unwrap();
        for l in &lines {
            w.write(l).unwrap();
        }
        let (bytes, blocks, total) = w.finish().unwrap();
        assert_eq!((blocks, total), (2, 513));
        let mut back = Vec::new();
        let totals = read(&bytes[..], |l| {
            back.push(l);
            Ok(())
        });
        assert_eq!(totals.unwrap(), (2, 513));
        assert_eq!(back[0], Line::Node("node1".into()));
        assert_eq!(&back[1..], &lines[..]);

        let cut = &bytes[..bytes.len() - 8];
        assert!(read(cut, |_| Ok(())).is_err());
    }

    #[test]
    fn checked_streaming_fails_after_the_blocks_when_the_file_differs_from_the_manifest() {
        let version = VersionLine {
            dir: 0,
            mode: 0o644,
            size: 10,
            sha256: "ab".into(),
            stored: "hopsfs/n/VERSION".into(),
        };
        let mut w = Writer::new(Vec::new(), "n").unwrap();
        w.write(&Line::Pool(PoolLine {
            dir: 0,
            index: 0,
            id: "BP-1".into(),
            version,
        }))
        .unwrap();
        for id in 1..=3 {
            w.write(&Line::Block(BlockLine {
                dir: 0,
                pool: 0,
                id,
                genstamp: 1,
                len: 10,
                mode: 0o644,
                meta_len: 7,
                meta_mode: 0o644,
                path: None,
            }))
            .unwrap();
        }
        let bytes = w.finish().unwrap().0;
        let backend = std::sync::Arc::new(crate::repo::store::memory::Memory::new());
        let id: crate::backup_id::BackupId = "2611231819".parse().unwrap();
        let writer = crate::repo::backup::BackupWriter::new(backend.clone(), id);
        let backup = BackupReader::new(backend, id);
        let rel = "hopsfs/n/inventory.tsv";
        let entry = writer
            .put_bytes(rel, &bytes, crate::repo::store::Access::Group)
            .unwrap();
        let mut seen = 0;
        let totals = for_each_block(&backup, &entry, |_, _| {
            seen += 1;
            Ok(())
        });
        assert_eq!((totals.unwrap(), seen), ((3, 30), 3));

        // One byte changed in a block's genstamp: every block is still seen,
        // then the call fails.
        let text = String::from_utf8(bytes.clone())
            .unwrap()
            .replacen("\t1\t10\t", "\t2\t10\t", 1);
        writer
            .put_bytes(rel, text.as_bytes(), crate::repo::store::Access::Group)
            .unwrap();
        let mut seen = 0;
        let err = for_each_block(&backup, &entry, |_, _| {
            seen += 1;
            Ok(())
        })
        .unwrap_err();
        assert_eq!(seen, 3);
        assert!(
            format!("{err:#}").contains("SHA-256 differs from the manifest"),
            "{err:#}"
        );

        // Bytes after the end line count too.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"x");
        writer
            .put_bytes(rel, &longer, crate::repo::store::Access::Group)
            .unwrap();
        let err = for_each_block(&backup, &entry, |_, _| Ok(())).unwrap_err();
        assert!(format!("{err:#}").contains("the manifest says"), "{err:#}");
    }

    #[test]
    fn tabs_in_paths_are_refused() {
        let mut w = Writer::new(Vec::new(), "n").unwrap();
        let bad = Line::Dir(DirLine {
            index: 0,
            mode: 0o700,
            path: "/a\tb".into(),
        });
        assert!(w.write(&bad).is_err());
    }
}
