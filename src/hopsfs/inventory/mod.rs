//! A data node's inventory: its storage folders, VERSION files and the exact
//! list of its finalized blocks, one per node and backup
//! (`backups/<id>/hopsfs/<node>/inventory.tsv`). Written while the folders
//! are scanned and read as a stream, so a million blocks never sit in memory
//! at once. The last line (`end`) proves the file is whole.
//!
//! Format 2 (since issue 17) keeps the blocks out of the file: each pool's
//! blocks are content-addressed pieces shared by every backup that lists
//! them ([`pieces`]), and the file names the pool's tree of pieces, so a
//! backup with nothing new stores a few hundred bytes per node. Format 1
//! (hwdr before) lists every block in the file; both are read by the same
//! functions, which give every reader the same lines.
//!
//! ```text
//! (fields are separated by one tab, shown here as <TAB>)
//! hwdr-hopsfs-inventory<TAB>2                          (format 1: ...<TAB>1)
//! node<TAB><name>
//! dir<TAB><dir><TAB><mode><TAB><path>
//! version<TAB><dir><TAB><mode><TAB><size><TAB><sha256><TAB><file in the backup>
//! pool<TAB><dir><TAB><pool><TAB><BP-...><TAB><mode><TAB><size><TAB><sha256><TAB><file in the backup>
//! tree<TAB><name><TAB><blocks><TAB><bytes>             (format 2: the blocks of the pool above)
//! block<TAB><dir><TAB><pool><TAB><id><TAB><genstamp><TAB><len><TAB><mode><TAB><meta len><TAB><meta mode><TAB><path below finalized/ or ->   (format 1)
//! end<TAB><blocks><TAB><bytes>
//! ```
//!
//! `<dir>` and `<pool>` are indexes of the `dir` and `pool` lines; modes are
//! octal; a block's path is `-` when it is where HopsFS places it
//! ([`super::layout::canonical_rel_path`]).

pub mod pieces;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};

use anyhow::{anyhow, bail, Context, Result};

use super::store::BlockKey;
use crate::repo::backup::BackupReader;
use crate::repo::manifest::FileEntry;
pub use pieces::{BadPiece, PieceReader, PieceWriter, Stored};
use pieces::{PieceRef, PoolPieces};

/// The first line of a format 2 inventory (its blocks in pieces).
const MAGIC: &str = "hwdr-hopsfs-inventory\t2";
/// The first line of a format 1 inventory (every block in the file).
const MAGIC_1: &str = "hwdr-hopsfs-inventory\t1";

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

/// Writes an inventory line by line, each pool's blocks into pieces.
pub struct Writer<W: Write> {
    out: W,
    blocks: u64,
    bytes: u64,
    line: String,
    pieces: PieceWriter,
    /// The pool whose blocks are being written (storage folder and pool
    /// index), and its pieces.
    pool: Option<((u16, u16), PoolPieces)>,
}

impl<W: Write> Writer<W> {
    /// Starts the inventory of `node`, its pieces stored by `pieces`.
    pub fn new(mut out: W, node: &str, pieces: PieceWriter) -> Result<Self> {
        writeln!(out, "{MAGIC}\nnode\t{node}")?;
        Ok(Writer {
            out,
            blocks: 0,
            bytes: 0,
            line: String::with_capacity(128),
            pieces,
            pool: None,
        })
    }

    /// Writes one line (not `Node` or `End`, which the writer adds itself).
    /// A block must belong to the last pool written.
    pub fn write(&mut self, line: &Line) -> Result<()> {
        if let Line::Block(b) = line {
            return self.block(b);
        }
        self.end_pool()?;
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
                self.pool = Some(((p.dir, p.index), PoolPieces::default()));
            }
            Line::Block(_) | Line::Node(_) | Line::End { .. } => bail!("the writer adds node and end lines itself"),
        }
        l.push('\n');
        self.out.write_all(l.as_bytes())?;
        Ok(())
    }

    fn block(&mut self, b: &BlockLine) -> Result<()> {
        let Some((ids, pieces)) = self.pool.as_mut() else {
            bail!("block {} written before its pool", b.id);
        };
        if *ids != (b.dir, b.pool) {
            bail!("block {} of pool {} written after pool {}", b.id, b.pool, ids.1);
        }
        self.line.clear();
        write_block_fields(&mut self.line, b)?;
        pieces.add(&self.line, b.id, b.len, &mut self.pieces)?;
        self.blocks += 1;
        self.bytes += b.len;
        Ok(())
    }

    /// Ends the pool being written: its tree stored and named.
    fn end_pool(&mut self) -> Result<()> {
        let Some((_, pieces)) = self.pool.take() else {
            return Ok(());
        };
        if let Some(tree) = pieces.finish(&mut self.pieces)? {
            writeln!(self.out, "tree\t{}\t{}\t{}", tree.name, tree.blocks, tree.bytes)?;
        }
        Ok(())
    }

    /// Writes the `end` line and returns the output with the totals and
    /// what was stored of the pieces.
    pub fn finish(mut self) -> Result<(W, u64, u64, Stored)> {
        self.end_pool()?;
        writeln!(self.out, "end\t{}\t{}", self.blocks, self.bytes)?;
        self.out.flush()?;
        Ok((self.out, self.blocks, self.bytes, self.pieces.stored()))
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

/// An inventory opened for reading: its lines, and where its pieces are.
pub struct Opened {
    input: Box<dyn BufRead + Send>,
    pieces: PieceReader,
}

impl Opened {
    /// The inventory `input`, its pieces read by `pieces`.
    pub fn new(input: impl BufRead + Send + 'static, pieces: PieceReader) -> Opened {
        Opened {
            input: Box::new(input),
            pieces,
        }
    }
}

/// Reads an inventory line by line, of either format: a format 2
/// inventory's blocks are read from its pieces, each checked, and given as
/// `block` lines after their pool, as format 1 lists them. The last item is
/// the `end` line, and a file without it is an error (truncated).
pub fn read(input: &mut Opened, each: impl FnMut(Line) -> Result<()>) -> Result<(u64, u64)> {
    read_lines(&mut input.input, &mut input.pieces, each)
}

/// One record of an inventory file.
enum Record {
    Line(Line),
    /// A format 2 `tree` line.
    Tree(PieceRef),
}

fn read_lines<R: BufRead>(
    input: R,
    pieces: &mut PieceReader,
    mut each: impl FnMut(Line) -> Result<()>,
) -> Result<(u64, u64)> {
    let mut lines = input.lines();
    let first = lines.next().transpose()?.unwrap_or_default();
    let format = match first.as_str() {
        MAGIC => 2,
        MAGIC_1 => 1,
        _ => bail!("not an hwdr HopsFS inventory (first line {first:?})"),
    };
    let (mut blocks, mut bytes) = (0u64, 0u64);
    // The storage folder and index of the last pool line.
    let mut pool: Option<(u16, u16)> = None;
    for (n, text) in lines.enumerate() {
        let text = text?;
        let at = || format!("inventory line {}: {text:?}", n + 2);
        let record = parse(&text, format).with_context(at)?;
        match record {
            Record::Line(Line::End { blocks: b, bytes: y }) => {
                if (b, y) != (blocks, bytes) {
                    bail!("inventory end line says {b} blocks, {y} bytes; the file lists {blocks}, {bytes}");
                }
                return Ok((blocks, bytes));
            }
            Record::Line(line) => {
                match &line {
                    Line::Pool(p) => pool = Some((p.dir, p.index)),
                    Line::Block(b) => {
                        blocks += 1;
                        bytes += b.len;
                    }
                    _ => {}
                }
                each(line)?;
            }
            Record::Tree(tree) => {
                let ids = pool.take().ok_or_else(|| anyhow!("{}: a tree of no pool", at()))?;
                pieces.blocks(&tree, ids, &mut |b| each(Line::Block(b)))?;
                blocks += tree.blocks;
                bytes += tree.bytes;
            }
        }
    }
    bail!("inventory is truncated: it has no end line")
}

/// Streams the blocks of a backup's inventory that its manifest lists as
/// `expected`: each block's identity (with its pool's name) and length. The
/// inventory is checked against its size and SHA-256 as it streams, and
/// each of its pieces against its name before its blocks are given; a
/// difference fails the call (an inventory's at the end, after the
/// callbacks), so what the callbacks saw counts only if the call succeeds.
pub fn for_each_block(
    backup: &BackupReader,
    expected: &FileEntry,
    each: impl FnMut(BlockKey, u64) -> Result<()>,
) -> Result<(u64, u64)> {
    for_each_block_in(&mut PieceReader::new(backup.backend()), backup, expected, each)
}

/// [`for_each_block`] with its pieces read by `pieces` (one reader over
/// several inventories, each piece read once: [`PieceReader::once`]).
pub fn for_each_block_in(
    pieces: &mut PieceReader,
    backup: &BackupReader,
    expected: &FileEntry,
    each: impl FnMut(BlockKey, u64) -> Result<()>,
) -> Result<(u64, u64)> {
    let mut input = checked(backup, expected)?;
    let read = blocks_of(&mut input, pieces, each);
    drain_input(&mut input, expected)?;
    read.with_context(|| format!("reading {}", expected.path))
}

/// The names of the trees and pieces the inventory `expected` of a backup
/// names (none in format 1): the file and its trees are read and checked,
/// not the pieces.
pub fn pieces_named(backup: &BackupReader, expected: &FileEntry) -> Result<Vec<String>> {
    let mut input = checked(backup, expected)?;
    let reader = PieceReader::new(backup.backend());
    let mut names = Vec::new();
    let mut format = 0;
    let mut text = String::new();
    while {
        text.clear();
        input.read_line(&mut text)? > 0
    } {
        let line = text.trim_end_matches('\n');
        match (format, line) {
            (0, MAGIC) => format = 2,
            (0, MAGIC_1) => format = 1,
            (0, _) => bail!("not an hwdr HopsFS inventory (first line {line:?})"),
            _ => {
                if let Record::Tree(tree) = parse(line, format)? {
                    names.extend(reader.tree(&tree.name)?.into_iter().map(|r| r.name));
                    names.push(tree.name);
                }
            }
        }
    }
    drain_input(&mut input, expected)?;
    Ok(names)
}

/// The inventory `expected` of a backup, buffered, checked at its end (read
/// it through with [`drain`] after the end line).
pub fn open(backup: &BackupReader, expected: &FileEntry) -> Result<Opened> {
    Ok(Opened::new(
        checked(backup, expected)?,
        PieceReader::new(backup.backend()),
    ))
}

/// The inventory `rel` of an unfinished backup, unchecked (no manifest
/// lists it yet).
pub fn open_unchecked(backup: &BackupReader, rel: &str) -> Result<Opened> {
    let input = backup.open(rel).with_context(|| format!("opening {rel}"))?;
    Ok(Opened::new(BufReader::new(input), PieceReader::new(backup.backend())))
}

fn checked(backup: &BackupReader, expected: &FileEntry) -> Result<BufReader<impl io::Read + Send>> {
    let source = backup
        .open_checked(expected)
        .with_context(|| format!("opening {}", expected.path))?;
    Ok(BufReader::with_capacity(1 << 20, source))
}

/// Reads what follows the end line: the check of an [`open`]ed inventory
/// happens at its end.
pub fn drain(input: &mut Opened, expected: &FileEntry) -> Result<()> {
    drain_input(&mut input.input, expected)
}

fn drain_input(input: &mut impl BufRead, expected: &FileEntry) -> Result<()> {
    io::copy(input, &mut io::sink()).with_context(|| format!("reading {}", expected.path))?;
    Ok(())
}

/// Streams the blocks of an inventory read from `input`, its pieces read by
/// `pieces`; `input` is not checked here (an unfinished backup's, which no
/// manifest lists yet, or checked by the caller).
pub fn blocks_of<R: BufRead>(
    input: R,
    pieces: &mut PieceReader,
    mut each: impl FnMut(BlockKey, u64) -> Result<()>,
) -> Result<(u64, u64)> {
    let mut pools: HashMap<u16, String> = HashMap::new();
    read_lines(input, pieces, |line| match line {
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

fn parse(text: &str, format: u32) -> Result<Record> {
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
    Ok(Record::Line(match f[0] {
        "tree" if format == 2 => return Ok(Record::Tree(pieces::parse_ref(text, "tree")?)),
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
        "block" if format == 1 => {
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
    }))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::Arc;

    use super::*;
    use crate::repo::store::memory::Memory;
    use crate::repo::store::{Backend, ObjectKey};

    fn version() -> VersionLine {
        VersionLine {
            dir: 0,
            mode: 0o644,
            size: 10,
            sha256: "ab".into(),
            stored: "hopsfs/n/VERSION".into(),
        }
    }

    fn pool(index: u16, id: &str) -> Line {
        Line::Pool(PoolLine {
            dir: 0,
            index,
            id: id.into(),
            version: version(),
        })
    }

    fn block(pool: u16, id: u64, genstamp: u64, len: u64) -> BlockLine {
        BlockLine {
            dir: 0,
            pool,
            id,
            genstamp,
            len,
            mode: 0o644,
            meta_len: 15,
            meta_mode: 0o644,
            path: None,
        }
    }

    /// Writes `lines` as node `n`'s inventory, pieces into `store`.
    fn write(store: &Arc<Memory>, lines: &[Line]) -> (Vec<u8>, Stored) {
        let mut w = Writer::new(Vec::new(), "n", PieceWriter::new(store.clone())).unwrap();
        for l in lines {
            w.write(l).unwrap();
        }
        let (bytes, _, _, stored) = w.finish().unwrap();
        (bytes, stored)
    }

    /// Every line read back from `bytes`.
    fn read_back(store: &Arc<Memory>, bytes: &[u8]) -> Result<Vec<Line>> {
        let mut back = Vec::new();
        let mut input = Opened::new(Cursor::new(bytes.to_vec()), PieceReader::new(store.clone()));
        read(&mut input, |l| {
            back.push(l);
            Ok(())
        })?;
        Ok(back)
    }

    fn pieces_in(store: &Memory) -> Vec<String> {
        let mut names = Vec::new();
        store
            .list(ObjectKey::PIECES, &mut |o| {
                names.push(o.key.as_str().to_owned());
                Ok(())
            })
            .unwrap();
        names.sort();
        names
    }

    #[test]
    fn round_trip_through_pieces_and_truncation() {
        let lines = vec![
            Line::Dir(DirLine {
                index: 0,
                mode: 0o700,
                path: "/data/dn".into(),
            }),
            Line::Version(version()),
            pool(0, "BP-1-10.0.0.1-2"),
            Line::Block(block(0, 1_073_741_825, 1001, 513)),
            Line::Block(BlockLine {
                mode: 0o600,
                meta_len: 7,
                meta_mode: 0o600,
                path: Some("subdir0/subdir0/blk_7".into()),
                ..block(0, 7, 1002, 0)
            }),
            pool(1, "BP-2-10.0.0.1-3"),
            pool(2, "BP-3-10.0.0.1-4"),
            Line::Block(block(2, 9, 1, 5)),
        ];
        let store = Arc::new(Memory::new());
        let (bytes, stored) = write(&store, &lines);
        // Two pools with blocks: a piece and a tree each.
        assert_eq!((stored.named, stored.new), (4, 4));
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("hwdr-hopsfs-inventory\t2\n"), "{text}");
        assert!(!text.contains("\n1073741825\t"), "no block in the file: {text}");
        let back = read_back(&store, &bytes).unwrap();
        assert_eq!(back[0], Line::Node("n".into()));
        assert_eq!(&back[1..], &lines[..]);

        let cut = &bytes[..bytes.len() - 8];
        assert!(read_back(&store, cut).is_err());
    }

    #[test]
    fn a_format_1_inventory_reads_as_before() {
        let text = "hwdr-hopsfs-inventory\t1\nnode\tn\ndir\t0\t700\t/data/dn\n\
                    pool\t0\t0\tBP-1\t644\t10\tab\thopsfs/n/VERSION\n\
                    block\t0\t0\t7\t1002\t5\t600\t7\t600\tsubdir0/subdir0/blk_7\nend\t1\t5\n";
        let store = Arc::new(Memory::new());
        let back = read_back(&store, text.as_bytes()).unwrap();
        assert_eq!(
            back.last().unwrap(),
            &Line::Block(BlockLine {
                mode: 0o600,
                meta_len: 7,
                meta_mode: 0o600,
                path: Some("subdir0/subdir0/blk_7".into()),
                ..block(0, 7, 1002, 5)
            })
        );
        // A tree line has no place in format 1, a block line none in format 2.
        let mixed = text.replace("\t1\nnode", "\t2\nnode");
        assert!(read_back(&store, mixed.as_bytes()).is_err());
    }

    /// Many blocks in one pool, `changed` ones with another genstamp.
    fn many(changed: &[u64]) -> Vec<Line> {
        let mut lines = vec![pool(0, "BP-1")];
        for id in 1_073_741_825..1_073_741_825 + 20_000 {
            let gs = if changed.contains(&id) { 2002 } else { 1001 };
            lines.push(Line::Block(block(0, id, gs, 100)));
        }
        lines
    }

    #[test]
    fn a_change_stores_only_the_piece_that_holds_it() {
        let store = Arc::new(Memory::new());
        let (first, stored) = write(&store, &many(&[]));
        assert!(stored.new > 3, "{stored:?}");
        let before = pieces_in(&store);
        // Nothing new: nothing stored, the same file.
        let (again, stored) = write(&store, &many(&[]));
        assert_eq!((stored.new, again.clone()), (0, first.clone()));
        // One block changed: its piece and the tree.
        let (second, stored) = write(&store, &many(&[1_073_745_000]));
        assert_eq!(stored.new, 2, "{stored:?}");
        assert_eq!(pieces_in(&store).len(), before.len() + 2);
        let back = read_back(&store, &second).unwrap();
        let gs: Vec<u64> = back
            .iter()
            .filter_map(|l| match l {
                Line::Block(b) if b.genstamp == 2002 => Some(b.id),
                _ => None,
            })
            .collect();
        assert_eq!(gs, [1_073_745_000]);
        assert_eq!(back.len(), 2 + 20_000);
    }

    #[test]
    fn a_damaged_or_missing_piece_fails_the_read_naming_it() {
        let store = Arc::new(Memory::new());
        let (bytes, _) = write(&store, &many(&[]));
        let victim = pieces_in(&store).into_iter().next().unwrap();
        let key = ObjectKey::parse(&victim).unwrap();
        let mut body = Vec::new();
        store.get(&key).unwrap().read_to_end(&mut body).unwrap();
        let text = String::from_utf8(body).unwrap().replacen("\t100\t", "\t101\t", 1);
        store
            .put(&key, &mut text.as_bytes(), crate::repo::store::PutOptions::default())
            .unwrap();
        let err = format!("{:#}", read_back(&store, &bytes).unwrap_err());
        assert!(err.contains(&victim) && err.contains("damaged"), "{err}");
        store.delete(&key).unwrap();
        let err = format!("{:#}", read_back(&store, &bytes).unwrap_err());
        assert!(err.contains(&victim) && err.contains("missing"), "{err}");
    }

    /// The inventory of a node with `n` blocks in one pool, as a data node
    /// holds them (sequential ids, lengths up to 128 MiB).
    fn node_of(n: u64) -> impl Iterator<Item = Line> {
        std::iter::once(pool(0, "BP-954254152-10.0.0.1-1702277713863")).chain((0..n).map(|i| {
            let len = (i * 7_919_993) % (128 << 20);
            Line::Block(BlockLine {
                meta_len: 7 + len.div_ceil(512) * 4,
                ..block(0, 1_073_741_825 + i, 1001 + i, len)
            })
        }))
    }

    #[test]
    fn a_nothing_new_backup_of_a_million_blocks_stores_no_piece_and_a_small_file() {
        let store = Arc::new(Memory::new());
        let mut sizes = Vec::new();
        for _ in 0..2 {
            let mut w = Writer::new(Vec::new(), "n", PieceWriter::new(store.clone())).unwrap();
            for l in node_of(1_000_000) {
                w.write(&l).unwrap();
            }
            let (bytes, blocks, _, stored) = w.finish().unwrap();
            assert_eq!(blocks, 1_000_000);
            sizes.push((bytes.len(), stored));
        }
        let (first, again) = (sizes[0].1, sizes[1].1);
        // The first backup stores some 250 pieces of ~4,096 blocks and a tree.
        assert!((150..400).contains(&first.new), "{first:?}");
        // The next with nothing new: none, and a file of a few hundred bytes.
        assert_eq!(again.new, 0, "{again:?}");
        assert!(sizes[1].0 < 1024, "{sizes:?}");
        eprintln!(
            "a million blocks: {} pieces, {} bytes of pieces in all; the inventory file {} bytes; nothing new: {} \
             pieces stored, {} bytes",
            first.new, first.new_bytes, sizes[0].0, again.new, again.new_bytes
        );
    }

    #[test]
    fn read_once_skips_pieces_already_read_and_names_them_all() {
        let store = Arc::new(Memory::new());
        let (bytes, _) = write(&store, &many(&[]));
        let mut pieces = PieceReader::once(store.clone());
        let count = |pieces: &mut PieceReader| {
            let mut n = 0;
            blocks_of(Cursor::new(bytes.clone()), pieces, |_, _| {
                n += 1;
                Ok(())
            })
            .unwrap();
            n
        };
        assert_eq!(count(&mut pieces), 20_000);
        assert_eq!(count(&mut pieces), 0);
        let named = pieces.into_named();
        let stored: Vec<String> = pieces_in(&store)
            .iter()
            .map(|k| k.rsplit('/').next().unwrap().to_owned())
            .collect();
        assert_eq!(named.len(), stored.len());
        assert!(stored.iter().all(|n| named.contains(n)));
    }

    #[test]
    fn checked_streaming_fails_after_the_blocks_when_the_file_differs_from_the_manifest() {
        let lines: Vec<Line> = std::iter::once(pool(0, "BP-1"))
            .chain((1..=3).map(|id| Line::Block(block(0, id, 1, 10))))
            .collect();
        let backend = Arc::new(Memory::new());
        let (bytes, _) = write(&backend, &lines);
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

        // One byte changed in the file (its node's name): every block is
        // still seen, then the call fails.
        let text = String::from_utf8(bytes.clone())
            .unwrap()
            .replacen("node\tn", "node\tm", 1);
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
    fn tabs_in_paths_and_blocks_of_another_pool_are_refused() {
        let store = Arc::new(Memory::new());
        let mut w = Writer::new(Vec::new(), "n", PieceWriter::new(store)).unwrap();
        let bad = Line::Dir(DirLine {
            index: 0,
            mode: 0o700,
            path: "/a\tb".into(),
        });
        assert!(w.write(&bad).is_err());
        assert!(w.write(&Line::Block(block(0, 1, 1, 1))).is_err());
        w.write(&pool(0, "BP-1")).unwrap();
        assert!(w.write(&Line::Block(block(1, 1, 1, 1))).is_err());
    }
}
