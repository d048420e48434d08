//! Deduplicated inventories: a pool's blocks stored as content-addressed
//! pieces in `inventories/<hh>/<name>`, shared by every backup (and every
//! node) that lists the same blocks, so an unchanged part of a data node
//! costs a backup a reference, not a copy.
//!
//! A pool's blocks, in the order the node listed them, are cut into pieces
//! after every block whose id hashes to a multiple of [`TARGET`] (and at
//! [`MAX_BLOCKS`] at the latest): the cuts depend on the block ids only, so
//! adding, changing or removing a block changes the one piece that holds it,
//! and every other piece keeps its bytes and its name. A pool's pieces are
//! listed in its tree, itself a piece; the backup's inventory names the tree
//! (`tree` line). A backup with nothing new names the trees of the one
//! before and stores nothing here.
//!
//! ```text
//! piece: hwdr-hopsfs-inventory-piece<TAB>1
//!        <id><TAB><genstamp><TAB><len><TAB><mode><TAB><meta len><TAB><meta mode><TAB><path or ->   (one per block)
//! tree:  hwdr-hopsfs-inventory-tree<TAB>1
//!        piece<TAB><name><TAB><blocks><TAB><bytes>                                             (one per piece)
//! ```
//!
//! A piece's name is [`Backend::content_name`] of its bytes (SHA-256; a
//! keyed hash in an encrypted repository), checked whenever it is read. A
//! piece is written once, after a look (`head`) finds it missing, and never
//! changed; one found with another size is written again (same name, same
//! content). Prune sweeps the pieces no remaining backup names.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use tracing::warn;

use super::{parse_block_fields, BlockLine};
use crate::hopsfs::fsuser::FsUser;
use crate::repo::store::{Backend, ObjectKey, PutOptions, StoreError};

/// About how many blocks a piece holds: 4096 blocks are some 180 KB of text,
/// a few hundred pieces per million blocks and node.
pub const TARGET: u64 = 4096;

/// The most blocks a piece holds, whatever the ids.
pub const MAX_BLOCKS: u64 = 4 * TARGET;

const PIECE_MAGIC: &str = "hwdr-hopsfs-inventory-piece\t1";
const TREE_MAGIC: &str = "hwdr-hopsfs-inventory-tree\t1";

/// The most a piece or tree may take when read (a damaged or foreign object
/// must not fill the memory).
const MAX_OBJECT: u64 = 64 << 20;

/// Whether a piece ends after block `id`: its SplitMix64 hash is a multiple
/// of [`TARGET`]. Fixed forever: another rule would cost one backup's worth
/// of pieces once, not correctness.
pub fn cut_after(id: u64) -> bool {
    let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % TARGET == 0
}

/// A piece (or tree) as a reference names it: its name and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceRef {
    pub name: String,
    pub blocks: u64,
    pub bytes: u64,
}

/// What a [`PieceWriter`] did: pieces and trees named, and those it stored
/// (the others were in the repository already).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub named: u64,
    pub new: u64,
    /// Their size, and the bytes they take in the store.
    pub new_bytes: u64,
    pub new_stored: u64,
}

/// Stores pieces in the repository, each once.
pub struct PieceWriter {
    backend: Arc<dyn Backend>,
    stored: Stored,
}

impl PieceWriter {
    /// Stores into `backend`'s `inventories/`.
    pub fn new(backend: Arc<dyn Backend>) -> PieceWriter {
        PieceWriter {
            backend,
            stored: Stored::default(),
        }
    }

    /// What it did so far.
    pub fn stored(&self) -> Stored {
        self.stored
    }

    /// Stores `body` unless the repository holds it already (with its
    /// size), durably; its name.
    fn store(&mut self, body: &[u8]) -> Result<String> {
        // The listing reads the data node as `hdfs`; the repository is
        // written as hwdr itself.
        let _me = FsUser::switch(nix::unistd::Uid::effective(), nix::unistd::Gid::effective())?;
        crate::fault::point("inventory-piece-store", None)?;
        let name = self.backend.content_name(body)?;
        let key = ObjectKey::inventory_piece(&name)?;
        self.stored.named += 1;
        let location = || self.backend.location_of(&key);
        match self
            .backend
            .head(&key)
            .with_context(|| format!("looking for {}", location()))?
        {
            Some(m) if m.size == body.len() as u64 => return Ok(name),
            Some(m) => warn!(
                "{} has {} bytes, its content {}: it is damaged and written again",
                location(),
                m.size,
                body.len()
            ),
            None => {}
        }
        let written = self
            .backend
            .put(&key, &mut &body[..], PutOptions::default())
            .with_context(|| format!("storing {}", location()))?;
        self.stored.new += 1;
        self.stored.new_bytes += written.size;
        self.stored.new_stored += written.stored;
        Ok(name)
    }
}

/// The blocks of one pool as they are written: the open piece and the tree
/// so far.
#[derive(Default)]
pub(super) struct PoolPieces {
    piece: String,
    piece_count: (u64, u64),
    tree: String,
    tree_count: (u64, u64),
}

impl PoolPieces {
    /// Adds a block (`fields`: its line without the newline, see
    /// [`super::write_block_fields`]), storing the piece it ends.
    pub(super) fn add(&mut self, fields: &str, id: u64, len: u64, store: &mut PieceWriter) -> Result<()> {
        if self.piece.is_empty() {
            self.piece.push_str(PIECE_MAGIC);
            self.piece.push('\n');
        }
        self.piece.push_str(fields);
        self.piece.push('\n');
        self.piece_count.0 += 1;
        self.piece_count.1 += len;
        if cut_after(id) || self.piece_count.0 >= MAX_BLOCKS {
            self.cut(store)?;
        }
        Ok(())
    }

    fn cut(&mut self, store: &mut PieceWriter) -> Result<()> {
        if self.piece_count.0 == 0 {
            return Ok(());
        }
        let name = store.store(self.piece.as_bytes())?;
        let (blocks, bytes) = self.piece_count;
        if self.tree.is_empty() {
            self.tree.push_str(TREE_MAGIC);
            self.tree.push('\n');
        }
        self.tree.push_str(&format!("piece\t{name}\t{blocks}\t{bytes}\n"));
        self.tree_count.0 += blocks;
        self.tree_count.1 += bytes;
        self.piece.clear();
        self.piece_count = (0, 0);
        Ok(())
    }

    /// Ends the pool: its last piece and its tree stored; the tree's
    /// reference, `None` for a pool without blocks.
    pub(super) fn finish(mut self, store: &mut PieceWriter) -> Result<Option<PieceRef>> {
        self.cut(store)?;
        if self.tree_count.0 == 0 {
            return Ok(None);
        }
        Ok(Some(PieceRef {
            name: store.store(self.tree.as_bytes())?,
            blocks: self.tree_count.0,
            bytes: self.tree_count.1,
        }))
    }
}

/// A piece that is missing or does not match its name (damage, not an
/// outage): verify names the backups that use it.
#[derive(Debug, thiserror::Error)]
#[error("inventory piece {location} is {what}")]
pub struct BadPiece {
    pub name: String,
    pub location: String,
    pub what: &'static str,
}

/// Reads the pieces inventories name, each checked against its name.
pub struct PieceReader {
    backend: Arc<dyn Backend>,
    /// Every piece named so far, when each is to be read only once.
    once: Option<HashSet<String>>,
}

impl PieceReader {
    /// Reads from `backend`'s `inventories/`.
    pub fn new(backend: Arc<dyn Backend>) -> PieceReader {
        PieceReader { backend, once: None }
    }

    /// Reads each piece at most once, however many inventories read through
    /// it name it, and keeps their names (prune's mark: the blocks of a piece
    /// read once are marked).
    pub fn once(backend: Arc<dyn Backend>) -> PieceReader {
        PieceReader {
            backend,
            once: Some(HashSet::new()),
        }
    }

    /// The names of every piece and tree named so far (with [`PieceReader::once`]).
    pub fn into_named(self) -> HashSet<String> {
        self.once.unwrap_or_default()
    }

    /// Streams the blocks of `tree`, each with storage folder and pool
    /// `ids`; every piece checked against its name and its reference.
    pub(super) fn blocks(
        &mut self,
        tree: &PieceRef,
        ids: (u16, u16),
        each: &mut dyn FnMut(BlockLine) -> Result<()>,
    ) -> Result<()> {
        if self.skip(&tree.name) {
            return Ok(());
        }
        let body = self.load(&tree.name)?;
        let refs = parse_tree(&body).with_context(|| format!("inventory tree {}", self.location(&tree.name)))?;
        let sum = refs.iter().fold((0, 0), |(n, y), r| (n + r.blocks, y + r.bytes));
        if sum != (tree.blocks, tree.bytes) {
            bail!(
                "inventory tree {} lists {} blocks, {} bytes; the inventory says {}, {}",
                self.location(&tree.name),
                sum.0,
                sum.1,
                tree.blocks,
                tree.bytes
            );
        }
        for r in &refs {
            if self.skip(&r.name) {
                continue;
            }
            let body = self.load(&r.name)?;
            let got =
                parse_piece(&body, ids, each).with_context(|| format!("inventory piece {}", self.location(&r.name)))?;
            if got != (r.blocks, r.bytes) {
                bail!(
                    "inventory piece {} holds {} blocks, {} bytes; its tree says {}, {}",
                    self.location(&r.name),
                    got.0,
                    got.1,
                    r.blocks,
                    r.bytes
                );
            }
        }
        Ok(())
    }

    fn skip(&mut self, name: &str) -> bool {
        match &mut self.once {
            Some(seen) => !seen.insert(name.to_owned()),
            None => false,
        }
    }

    fn location(&self, name: &str) -> String {
        match ObjectKey::inventory_piece(name) {
            Ok(key) => self.backend.location_of(&key),
            Err(_) => format!("{}{name}", ObjectKey::PIECES),
        }
    }

    /// The piece `name`'s bytes, checked against its name.
    fn load(&self, name: &str) -> Result<Vec<u8>> {
        let key = ObjectKey::inventory_piece(name)?;
        let location = self.backend.location_of(&key);
        let mut body = Vec::new();
        match self.backend.get(&key) {
            Ok(r) => r
                .take(MAX_OBJECT + 1)
                .read_to_end(&mut body)
                .with_context(|| format!("reading inventory piece {location}"))?,
            Err(StoreError::NotFound(_)) => {
                return Err(BadPiece {
                    name: name.to_owned(),
                    location,
                    what: "missing",
                }
                .into())
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("reading inventory piece {location}"))),
        };
        if body.len() as u64 > MAX_OBJECT || self.backend.content_name(&body)? != name {
            return Err(BadPiece {
                name: name.to_owned(),
                location,
                what: "damaged: its content does not match its name",
            }
            .into());
        }
        Ok(body)
    }

    /// The pieces tree `name` lists (read and checked, its pieces not read).
    pub(super) fn tree(&self, name: &str) -> Result<Vec<PieceRef>> {
        parse_tree(&self.load(name)?).with_context(|| format!("inventory tree {}", self.location(name)))
    }
}

/// The lines of a piece or tree after its first line, which must be `magic`.
fn body_lines<'a>(body: &'a [u8], magic: &str) -> Result<impl Iterator<Item = &'a str>> {
    let text = std::str::from_utf8(body).map_err(|_| anyhow!("not text"))?;
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    if first != magic {
        bail!("not what it should be (first line {first:?})");
    }
    Ok(lines)
}

fn parse_tree(body: &[u8]) -> Result<Vec<PieceRef>> {
    let mut refs = Vec::new();
    for (n, line) in body_lines(body, TREE_MAGIC)?.enumerate() {
        let r = parse_ref(line, "piece").with_context(|| format!("line {}: {line:?}", n + 2))?;
        refs.push(r);
    }
    Ok(refs)
}

/// A `<what><TAB><name><TAB><blocks><TAB><bytes>` line (of a tree, or the
/// `tree` line of an inventory).
pub(super) fn parse_ref(line: &str, what: &str) -> Result<PieceRef> {
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() != 4 || f[0] != what {
        bail!("expected {what} and 3 fields");
    }
    ObjectKey::inventory_piece(f[1])?;
    let num = |i: usize| -> Result<u64> { f[i].parse().map_err(|e| anyhow!("field {i}: {e}")) };
    Ok(PieceRef {
        name: f[1].to_owned(),
        blocks: num(2)?,
        bytes: num(3)?,
    })
}

/// Streams a piece's blocks; its blocks and bytes.
fn parse_piece(
    body: &[u8],
    (dir, pool): (u16, u16),
    each: &mut dyn FnMut(BlockLine) -> Result<()>,
) -> Result<(u64, u64)> {
    let (mut blocks, mut bytes) = (0u64, 0u64);
    for (n, line) in body_lines(body, PIECE_MAGIC)?.enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let b = parse_block_fields(&f, dir, pool).with_context(|| format!("line {}: {line:?}", n + 2))?;
        blocks += 1;
        bytes += b.len;
        each(b)?;
    }
    Ok((blocks, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::store::memory::Memory;
    use crate::repo::store::sealed::{DataKey, Sealed, Settings};

    #[test]
    fn a_sealed_store_names_pieces_by_a_keyed_hash_and_stores_each_once() {
        let inner = Arc::new(Memory::new());
        let sealed = Arc::new(Sealed::new(
            inner.clone(),
            &DataKey::generate().unwrap(),
            Settings::default(),
        ));
        let body = format!("{PIECE_MAGIC}\n7\t1002\t5\t600\t7\t600\t-\n");
        let mut w = PieceWriter::new(sealed.clone());
        let name = w.store(body.as_bytes()).unwrap();
        assert_ne!(
            name,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()))
        );
        // Found again (its plaintext size), not stored again.
        assert_eq!(w.store(body.as_bytes()).unwrap(), name);
        assert_eq!((w.stored().named, w.stored().new), (2, 1));
        // Another key, another name.
        let other = Sealed::new(inner, &DataKey::generate().unwrap(), Settings::default());
        assert_ne!(other.content_name(body.as_bytes()).unwrap(), name);
        // Read back through the seal, checked against its name.
        let mut seen = Vec::new();
        let tree = format!("{TREE_MAGIC}\npiece\t{name}\t1\t5\n");
        let tree_name = w.store(tree.as_bytes()).unwrap();
        let mut r = PieceReader::new(sealed);
        let t = PieceRef {
            name: tree_name,
            blocks: 1,
            bytes: 5,
        };
        r.blocks(&t, (0, 0), &mut |b| {
            seen.push(b.id);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [7]);
    }

    #[test]
    fn cuts_depend_on_the_id_alone_and_average_the_target() {
        let cuts = (1_073_741_825u64..1_073_741_825 + 1_000_000)
            .filter(|id| cut_after(*id))
            .count();
        // A million ids: about 244 cuts.
        assert!((150..350).contains(&cuts), "{cuts}");
        assert_eq!(cut_after(42), cut_after(42));
    }
}
