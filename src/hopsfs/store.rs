//! The repository's block store: every distinct finalized block once, named
//! by what makes it immutable, `(block pool, block id, generation stamp)`
//! (see [`ObjectKey::block`]):
//!
//! ```text
//! blocks/<BP-…>/subdir<d1>/subdir<d2>/blk_<id>_<genstamp>
//! blocks/<BP-…>/subdir<d1>/subdir<d2>/blk_<id>_<genstamp>.meta
//! ```
//!
//! A block is read through a [`Verified`] reader, which checks every chunk
//! against the block's own CRCs as the bytes pass: on upload (a replica that
//! fails is not stored), on restore, and in `verify --full`. Uploads go in a
//! [`BlockBatch`]: the backend's batch makes a batch of blocks durable at
//! once (one `syncfs` for a folder) before they are visible under their
//! names, the `.meta` first and the block last: the block is the commit
//! mark, and a block under its final name always holds bytes that reached
//! the disk. A full batch is flushed (durable, then visible) and goes on;
//! its commit at the end also makes the names durable. A replica that
//! fails its check stores neither.

use std::io::{self, Read};
use std::sync::Arc;

use anyhow::Context;

use super::meta::BlockVerifier;
use crate::job::JobControl;
use crate::repo::store::{Backend, Batch, ObjectKey, Put, PutOptions, StoreError};

/// A batch is made durable and visible once it holds this many files
/// (blocks and `.meta`s) or block bytes: each time costs a `syncfs` of the
/// repository's file system, so not too often for small blocks, and not
/// too much work is redone after a crash.
const BATCH_FILES: usize = 4096;
const BATCH_BYTES: u64 = 256 << 20;

/// Identity of a block: pool, id, generation stamp.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    pub pool: String,
    pub id: u64,
    pub genstamp: u64,
}

impl std::fmt::Display for BlockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/blk_{}_{}", self.pool, self.id, self.genstamp)
    }
}

impl BlockKey {
    /// The block a store object holds (a block or its `.meta`), and whether
    /// it is the `.meta`: `None` for any other name. Wherever it lies below
    /// its pool (a block put in the wrong folder by hand is still a block).
    pub fn of_object(key: &ObjectKey) -> Option<(BlockKey, bool)> {
        let mut parts = key.as_str().split('/');
        let (Some("blocks"), Some(pool)) = (parts.next(), parts.next()) else {
            return None;
        };
        let name = parts.next_back()?;
        let (stem, is_meta) = match name.strip_suffix(".meta") {
            Some(stem) => (stem, true),
            None => (name, false),
        };
        let (id, genstamp) = stem.strip_prefix("blk_")?.split_once('_')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(id) || !digits(genstamp) {
            return None;
        }
        Some((
            BlockKey {
                pool: pool.to_owned(),
                id: id.parse().ok()?,
                genstamp: genstamp.parse().ok()?,
            },
            is_meta,
        ))
    }
}

/// Why a block could not be stored.
#[derive(Debug)]
pub enum PutError {
    /// The replica does not match its own CRCs (or its meta is unreadable):
    /// take it from another replica.
    Corrupt(String),
    /// Anything else (the repository, the disk): fail.
    Io(anyhow::Error),
}

impl From<anyhow::Error> for PutError {
    fn from(e: anyhow::Error) -> Self {
        PutError::Io(e)
    }
}

/// A block that fails its CRCs, carried in an [`io::Error`] of
/// [`io::ErrorKind::InvalidData`] by a [`Verified`] reader.
#[derive(Debug)]
pub struct Corrupt(pub String);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Corrupt {}

impl Corrupt {
    /// The CRC failure an error carries, if it is one.
    pub fn of<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e Corrupt> {
        let mut cause = Some(e);
        while let Some(c) = cause {
            if let Some(corrupt) = c.downcast_ref::<Corrupt>() {
                return Some(corrupt);
            }
            if let Some(io) = c.downcast_ref::<io::Error>() {
                if let Some(corrupt) = io.get_ref().and_then(|inner| inner.downcast_ref::<Corrupt>()) {
                    return Some(corrupt);
                }
            }
            cause = c.source();
        }
        None
    }
}

/// A block's bytes checked against its `.meta` as they are read: the read
/// that sees a bad chunk, or the end of a block shorter or longer than its
/// `.meta` (or than `len`) covers, fails with [`Corrupt`].
pub struct Verified<R> {
    inner: R,
    verifier: Option<BlockVerifier>,
    len: Option<u64>,
}

impl<R: Read> Verified<R> {
    /// Checks `inner` against the `.meta` bytes `meta` (and, if given, that
    /// it is `len` bytes long).
    pub fn new(inner: R, meta: &[u8], len: Option<u64>) -> Result<Verified<R>, Corrupt> {
        let verifier = BlockVerifier::new(meta).map_err(|e| Corrupt(format!("{e:#}")))?;
        Ok(Verified {
            inner,
            verifier: Some(verifier),
            len,
        })
    }
}

fn corrupt(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Corrupt(why))
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let Some(verifier) = self.verifier.as_mut() else {
            return Ok(n);
        };
        if n > 0 {
            verifier.update(&buf[..n]).map_err(|e| corrupt(format!("{e:#}")))?;
            return Ok(n);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let verifier = self
            .verifier
            .take()
            .ok_or_else(|| corrupt("read after the end".into()))?;
        let got = verifier.finish().map_err(|e| corrupt(format!("{e:#}")))?;
        match self.len {
            Some(len) if len != got => Err(corrupt(format!("it is {got} bytes, the data node listed {len}"))),
            _ => Ok(0),
        }
    }
}

/// The block store of a repository.
#[derive(Debug, Clone)]
pub struct BlockStore {
    backend: Arc<dyn Backend>,
}

impl BlockStore {
    /// The store in `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> BlockStore {
        BlockStore { backend }
    }

    /// The backend the store is in.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Whether the block is stored whole: the block with its length and its
    /// `.meta`.
    pub fn has(&self, key: &BlockKey, len: u64) -> Result<bool, StoreError> {
        Ok(self
            .backend
            .head(&ObjectKey::block(key))?
            .is_some_and(|m| m.size == len)
            && self.backend.head(&ObjectKey::block_meta(key))?.is_some())
    }

    /// The stored `.meta` of a block.
    pub fn meta(&self, key: &BlockKey) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        self.backend
            .get(&ObjectKey::block_meta(key))?
            .read_to_end(&mut bytes)
            .map_err(|e| StoreError::Io(format!("reading {}", ObjectKey::block_meta(key)), e))?;
        Ok(bytes)
    }

    /// The stored block, checked against its stored `.meta` as it is read.
    pub fn open(&self, key: &BlockKey) -> anyhow::Result<Verified<Box<dyn Read + Send>>> {
        let meta = self.meta(key).with_context(|| format!("the stored .meta of {key}"))?;
        let block = self.backend.get(&ObjectKey::block(key))?;
        Verified::new(block, &meta, None)
            .map_err(|e| anyhow::Error::new(e).context(format!("the stored .meta of {key}")))
    }

    /// Reads the stored block through, against its CRCs; its length.
    pub fn verify(&self, key: &BlockKey, control: &JobControl) -> anyhow::Result<u64> {
        let mut block = self.open(key)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            control.check()?;
            let n = match block.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(anyhow::Error::new(e).context(format!("reading the stored block {key}"))),
            };
            if n == 0 {
                return Ok(len);
            }
            len += n as u64;
        }
    }

    /// A batch of uploads (see the module's text).
    pub fn batch(&self) -> BlockBatch<'_> {
        BlockBatch {
            batch: self.backend.batch(),
            bytes: 0,
            location: self.backend.location(),
        }
    }
}

/// Blocks being stored, made durable and visible together.
pub struct BlockBatch<'a> {
    batch: Box<dyn Batch + 'a>,
    /// Block bytes since the last flush.
    bytes: u64,
    /// The repository, for messages.
    location: String,
}

impl BlockBatch<'_> {
    /// Stores one replica: its `.meta` (`meta`) and its bytes from `block`,
    /// expected to be `len` bytes, each chunk checked against the meta's CRCs
    /// on the way. A replica that fails is [`PutError::Corrupt`] and nothing
    /// of it is stored. Commits the batch once it is full. Returns the bytes
    /// the block (not its `.meta`) takes in the store.
    pub fn put(
        &mut self,
        key: &BlockKey,
        block: &mut dyn Read,
        meta: &[u8],
        len: u64,
        control: &JobControl,
    ) -> Result<u64, PutError> {
        let mut verified =
            Verified::new(Stoppable { inner: block, control }, meta, Some(len)).map_err(|e| PutError::Corrupt(e.0))?;
        let (block_key, meta_key) = (ObjectKey::block(key), ObjectKey::block_meta(key));
        // One group: a bad replica stores neither, and the `.meta` lands
        // first, so the block is the commit mark.
        let mut meta_source = meta;
        let stored = self.batch.put_group(&mut [
            Put {
                key: &meta_key,
                data: &mut meta_source,
                options: PutOptions::default(),
            },
            Put {
                key: &block_key,
                data: &mut verified,
                options: PutOptions::default(),
            },
        ]);
        let written = match stored {
            Ok(written) => written,
            Err(e) => {
                if let Some(bad) = Corrupt::of(&e) {
                    return Err(PutError::Corrupt(bad.0.clone()));
                }
                control.check()?;
                return Err(PutError::Io(
                    anyhow::Error::new(e).context(format!("storing {block_key}")),
                ));
            }
        };
        self.bytes += len;
        if self.batch.pending() >= BATCH_FILES || self.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        // The group's last object is the block.
        written.last().map(|w| w.stored).ok_or_else(|| {
            PutError::Io(anyhow::anyhow!(
                "storing {block_key}: the store reported nothing written"
            ))
        })
    }

    /// Makes every block so far durable, then visible (their names become
    /// durable at the commit).
    fn flush(&mut self) -> anyhow::Result<()> {
        let files = self.batch.pending();
        self.batch.flush().with_context(|| self.failed(files))?;
        self.bytes = 0;
        Ok(())
    }

    /// Makes every block so far durable, then visible, and their names
    /// durable.
    pub fn commit(&mut self) -> anyhow::Result<()> {
        let files = self.batch.pending();
        self.batch.commit().with_context(|| self.failed(files))?;
        self.bytes = 0;
        Ok(())
    }

    /// What a failed flush or commit of `files` files was doing.
    fn failed(&self, files: usize) -> String {
        format!("storing a batch of {files} block files in {}", self.location)
    }
}

/// A source that ends with an error when its job is stopped.
struct Stoppable<'a, R: ?Sized> {
    inner: &'a mut R,
    control: &'a JobControl,
}

impl<R: Read + ?Sized> Read for Stoppable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.control.check().map_err(|e| io::Error::other(format!("{e:#}")))?;
        self.inner.read(buf)
    }
}
