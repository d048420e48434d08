//! The repository's block store: every distinct finalized block once, named
//! by what makes it immutable, `(block pool, block id, generation stamp)`:
//!
//! ```text
//! <repository>/blocks/<BP-…>/subdir<d1>/subdir<d2>/blk_<id>_<genstamp>
//! <repository>/blocks/<BP-…>/subdir<d1>/subdir<d2>/blk_<id>_<genstamp>.meta
//! ```
//!
//! A block lands atomically and durably: both files are written under temp
//! names and checked against the block's own CRCs while they are copied
//! ([`BlockStore::write_temp`]); a [`Batch`] of such blocks is made durable
//! with one `syncfs` of the repository's file system, and only then are the
//! `.meta` and last the block renamed into place. So a block file under its
//! final name always holds bytes that reached the disk: a crash leaves temp
//! files (swept by `hwdr prune`), never a wrong block under a final name. The
//! block file is the commit mark: a `.meta` alone does not count. The job
//! syncs once more at its end, so the renames are durable before it reports
//! success (and so before any manifest names the blocks).
//!
//! Files are `0640`, folders `0750`, whatever the umask: blocks hold the
//! company's data.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::meta::BlockVerifier;
use crate::job::JobControl;
use crate::repo::{fsutil, mkdir};

/// Mode of stored blocks and `.meta` files.
const FILE_MODE: u32 = 0o640;
/// Mode of the store's folders.
const DIR_MODE: u32 = 0o750;
/// A batch is made durable and renamed into place once it holds this many
/// blocks or bytes: one `syncfs` per batch instead of one `fsync` per file.
const BATCH_FILES: usize = 256;
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

/// The block store of a repository.
#[derive(Debug, Clone)]
pub struct BlockStore {
    root: PathBuf,
}

impl BlockStore {
    /// The store below `<repository>/blocks`.
    pub fn new(repository: &Path) -> BlockStore {
        BlockStore {
            root: repository.join("blocks"),
        }
    }

    /// Path of a stored block.
    pub fn block_path(&self, key: &BlockKey) -> PathBuf {
        self.root.join(&key.pool).join(format!(
            "subdir{}/subdir{}/blk_{}_{}",
            (key.id >> 16) & 0xff,
            (key.id >> 8) & 0xff,
            key.id,
            key.genstamp
        ))
    }

    /// Path of a stored block's `.meta`.
    pub fn meta_path(&self, key: &BlockKey) -> PathBuf {
        let mut p = self.block_path(key).into_os_string();
        p.push(".meta");
        PathBuf::from(p)
    }

    /// Whether the block is stored whole: the block with its length and its
    /// `.meta`.
    pub fn has(&self, key: &BlockKey, len: u64) -> bool {
        fs::metadata(self.block_path(key)).is_ok_and(|m| m.is_file() && m.len() == len)
            && fs::metadata(self.meta_path(key)).is_ok_and(|m| m.is_file())
    }

    /// Writes one replica read from `block` and `meta`, expected to be `len`
    /// bytes, under temp names next to its final place, checking every chunk
    /// against the meta's CRCs while copying. Nothing is under a final name
    /// yet: add the result to a [`Batch`].
    pub fn write_temp(
        &self,
        key: &BlockKey,
        block: &mut File,
        meta: &mut File,
        len: u64,
        control: &JobControl,
    ) -> Result<Pending, PutError> {
        let mut meta_bytes = Vec::new();
        meta.read_to_end(&mut meta_bytes).context("reading the .meta")?;
        let mut verifier = BlockVerifier::new(&meta_bytes).map_err(|e| PutError::Corrupt(format!("{e:#}")))?;
        let dst = self.block_path(key);
        let dst_meta = self.meta_path(key);
        mkdir(dst.parent().unwrap_or(&self.root), DIR_MODE)?;
        let (tmp, mut out) = fsutil::create_temp(&dst, FILE_MODE)?;
        let mut pending = Pending {
            tmp,
            dst,
            tmp_meta: None,
            dst_meta,
            len,
        };
        copy_verified(block, &mut out, &mut verifier, len, control)?;
        let got = verifier.finish().map_err(|e| PutError::Corrupt(format!("{e:#}")))?;
        if got != len {
            return Err(PutError::Corrupt(format!(
                "it is {got} bytes, the data node listed {len}"
            )));
        }
        let (tmp_meta, mut meta_out) = fsutil::create_temp(&pending.dst_meta, FILE_MODE)?;
        pending.tmp_meta = Some(tmp_meta);
        meta_out
            .write_all(&meta_bytes)
            .map_err(|e| PutError::Io(anyhow::Error::from(e).context("writing the .meta")))?;
        Ok(pending)
    }

    /// Makes everything written to the repository's file system durable.
    pub fn sync(&self) -> Result<()> {
        mkdir(&self.root, DIR_MODE)?;
        let dir = File::open(&self.root).with_context(|| format!("opening {}", self.root.display()))?;
        // SAFETY: syncfs only reads the descriptor, which `dir` keeps open.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("syncfs on the repository");
        }
        Ok(())
    }
}

/// A block written under temp names, not yet in place. Dropped before its
/// batch commits, it removes its temp files.
#[derive(Debug)]
pub struct Pending {
    tmp: PathBuf,
    dst: PathBuf,
    tmp_meta: Option<PathBuf>,
    dst_meta: PathBuf,
    len: u64,
}

impl Pending {
    fn rename_into_place(mut self) -> Result<()> {
        if let Some(tmp_meta) = self.tmp_meta.take() {
            fs::rename(&tmp_meta, &self.dst_meta)
                .with_context(|| format!("renaming into {}", self.dst_meta.display()))?;
        }
        fs::rename(&self.tmp, &self.dst).with_context(|| format!("renaming into {}", self.dst.display()))?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
        if let Some(tmp_meta) = &self.tmp_meta {
            let _ = fs::remove_file(tmp_meta);
        }
    }
}

/// Blocks written under temp names, renamed into place together once they
/// are durable. Dropped uncommitted (an error, a cancelled job), it removes
/// its temp files.
#[derive(Debug)]
pub struct Batch<'a> {
    store: &'a BlockStore,
    pending: Vec<Pending>,
    bytes: u64,
}

impl<'a> Batch<'a> {
    /// An empty batch for `store`.
    pub fn new(store: &'a BlockStore) -> Batch<'a> {
        Batch {
            store,
            pending: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds a written block; commits the batch when it is full.
    pub fn push(&mut self, pending: Pending) -> Result<()> {
        self.bytes += pending.len;
        self.pending.push(pending);
        if self.pending.len() >= BATCH_FILES || self.bytes >= BATCH_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    /// Makes the batch's bytes durable (`syncfs`), then renames every block
    /// into place, its `.meta` first.
    pub fn commit(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        crate::fault::point("store-before-sync", None)?;
        self.store.sync()?;
        crate::fault::point("store-before-rename", None)?;
        for pending in self.pending.drain(..) {
            pending.rename_into_place()?;
        }
        self.bytes = 0;
        Ok(())
    }
}

/// Copies `input` to `output`, feeding every byte to `verifier`. A CRC
/// mismatch is [`PutError::Corrupt`]; a read or write failure is not.
fn copy_verified(
    input: &mut File,
    output: &mut File,
    verifier: &mut BlockVerifier,
    len: u64,
    control: &JobControl,
) -> Result<(), PutError> {
    // Most blocks are small: a buffer of their size (one spare byte sees the
    // end in one read), at most 1 MiB.
    let mut buf = vec![0u8; len.saturating_add(1).min(1 << 20) as usize];
    loop {
        control.check()?;
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PutError::Io(anyhow::Error::from(e).context("reading the block"))),
        };
        verifier
            .update(&buf[..n])
            .map_err(|e| PutError::Corrupt(format!("{e:#}")))?;
        output
            .write_all(&buf[..n])
            .map_err(|e| PutError::Io(anyhow::Error::from(e).context("writing the block")))?;
    }
}
