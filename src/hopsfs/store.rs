//! The repository's block store: every distinct finalized block once, named
//! by what makes it immutable, `(block pool, block id, generation stamp)`:
//!
//! ```text
//! <repository>/blocks/<BP-…>/subdir<d1>/subdir<d2>/blk_<id>_<genstamp>
//! <repository>/blocks/<BP-…>/subdir<d1>/subdir<d2>/blk_<id>_<genstamp>.meta
//! ```
//!
//! A block lands atomically: both files are written under temp names and
//! checked against the block's own CRCs while they are copied; then the
//! `.meta` and last the block are renamed into place. The block file is the
//! commit mark: a `.meta` alone does not count. Uploads do not fsync every
//! file; the job syncs the repository's file system once at its end, before it
//! reports success (and so before any manifest names the blocks).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::meta::BlockVerifier;
use crate::repo::{fsutil, mkdir};

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

    /// Stores one replica read from `block` and `meta`, expected to be `len`
    /// bytes, checking every chunk against the meta's CRCs while copying.
    pub fn put(&self, key: &BlockKey, block: &mut File, meta: &mut File, len: u64) -> Result<u64, PutError> {
        let mut meta_bytes = Vec::new();
        meta.read_to_end(&mut meta_bytes).context("reading the .meta")?;
        let mut verifier = BlockVerifier::new(&meta_bytes).map_err(|e| PutError::Corrupt(format!("{e:#}")))?;
        let dst = self.block_path(key);
        let dst_meta = self.meta_path(key);
        mkdir(dst.parent().unwrap_or(&self.root), 0o755)?;
        let (tmp, mut out) = fsutil::create_temp(&dst, 0o644)?;
        let fail = |e: PutError| {
            let _ = fs::remove_file(&tmp);
            e
        };
        copy_verified(block, &mut out, &mut verifier, len).map_err(fail)?;
        let got = verifier
            .finish()
            .map_err(|e| fail(PutError::Corrupt(format!("{e:#}"))))?;
        if got != len {
            return Err(fail(PutError::Corrupt(format!(
                "it is {got} bytes, the data node listed {len}"
            ))));
        }
        let (tmp_meta, mut meta_out) = fsutil::create_temp(&dst_meta, 0o644).map_err(|e| fail(PutError::Io(e)))?;
        if let Err(e) = meta_out.write_all(&meta_bytes) {
            let _ = fs::remove_file(&tmp_meta);
            return Err(fail(PutError::Io(anyhow::Error::from(e).context("writing the .meta"))));
        }
        drop((out, meta_out));
        fs::rename(&tmp_meta, &dst_meta).with_context(|| format!("renaming into {}", dst_meta.display()))?;
        fs::rename(&tmp, &dst).with_context(|| format!("renaming into {}", dst.display()))?;
        Ok(got)
    }

    /// Makes everything written to the repository's file system durable.
    pub fn sync(&self) -> Result<()> {
        mkdir(&self.root, 0o755)?;
        let dir = File::open(&self.root).with_context(|| format!("opening {}", self.root.display()))?;
        // SAFETY: syncfs only reads the descriptor, which `dir` keeps open.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("syncfs on the repository");
        }
        Ok(())
    }
}

/// Copies `input` to `output`, feeding every byte to `verifier`. A CRC
/// mismatch is [`PutError::Corrupt`]; a read or write failure is not.
fn copy_verified(input: &mut File, output: &mut File, verifier: &mut BlockVerifier, len: u64) -> Result<(), PutError> {
    // Most blocks are small: a buffer of their size (one spare byte sees the
    // end in one read), at most 1 MiB.
    let mut buf = vec![0u8; len.saturating_add(1).min(1 << 20) as usize];
    loop {
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
