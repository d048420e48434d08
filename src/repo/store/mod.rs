//! The repository's storage seam: every byte hwdr keeps in the repository
//! goes through a [`Backend`], named by an [`ObjectKey`].
//!
//! A backend stores objects: named byte strings, written whole or not at all.
//! [`posix`] keeps them as files below a folder (temp name, fsync, rename,
//! fsync of the folder); [`object`] in a bucket of S3, GCS or Azure Blob;
//! [`memory`] in a map, for fast tests. All pass the same conformance suite
//! (`tests/it/store_conformance.rs`, object storage against a real S3
//! server).
//!
//! Names are `/`-separated, relative to the repository's root:
//!
//! ```text
//! hwdr-repo.json                                   the marker
//! lock                                             the repository lock's create-only guard
//! locks/<host>-<pid>-<random>.json                 a contender's lease (the lock)
//! backups/<id>/manifest.json                       written last
//! backups/<id>/<file>                              the backup's files
//! blocks/<BP-…>/subdir<a>/subdir<b>/blk_<id>_<gs>[.meta]   the block store
//! inventories/<hh>/<name>                          inventory pieces, named by content
//! ```

pub mod memory;
pub mod object;
pub mod posix;
pub mod sealed;

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read};
use std::ops::Range;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::backup_id::BackupId;
use crate::hopsfs::store::BlockKey;

/// The name of an object in the repository: relative, `/`-separated, without
/// empty, `.` or `..` parts, so a backend can map it onto a path safely.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// `hwdr-repo.json`: the marker that makes a location a repository.
    pub fn marker() -> ObjectKey {
        ObjectKey("hwdr-repo.json".into())
    }

    /// `lock`: who holds the repository.
    pub fn lock() -> ObjectKey {
        ObjectKey("lock".into())
    }

    /// `locks/`: the folder of the lock's leases (a prefix).
    pub const LEASES: &'static str = "locks/";

    /// `locks/<name>.json`: the lease of one contender for the lock; `name`
    /// (`<host>-<pid>-<random>`) must be one part of a name, not hidden.
    pub fn lease(name: &str) -> Result<ObjectKey, StoreError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(StoreError::BadName(format!("{}{name}.json", ObjectKey::LEASES)));
        }
        ObjectKey::parse(&format!("{}{name}.json", ObjectKey::LEASES))
    }

    /// The folder of backup `id` (a prefix, ending in `/`).
    pub fn backup_prefix(id: BackupId) -> String {
        format!("backups/{id}/")
    }

    /// `backups/<id>/manifest.json`.
    pub fn manifest(id: BackupId) -> ObjectKey {
        ObjectKey(format!("backups/{id}/manifest.json"))
    }

    /// A file of backup `id`, `rel` below its folder (validated).
    pub fn backup_file(id: BackupId, rel: &str) -> Result<ObjectKey, StoreError> {
        ObjectKey::parse(&format!("backups/{id}/{rel}"))
    }

    /// A stored block.
    pub fn block(key: &BlockKey) -> ObjectKey {
        ObjectKey(format!(
            "blocks/{}/subdir{}/subdir{}/blk_{}_{}",
            key.pool,
            (key.id >> 16) & 0xff,
            (key.id >> 8) & 0xff,
            key.id,
            key.genstamp
        ))
    }

    /// A stored block's `.meta`.
    pub fn block_meta(key: &BlockKey) -> ObjectKey {
        ObjectKey(format!("{}.meta", ObjectKey::block(key).0))
    }

    /// `inventories/`: the folder of the inventory pieces (a prefix).
    pub const PIECES: &'static str = "inventories/";

    /// `inventories/<hh>/<name>`: an inventory piece named by its content
    /// ([`Backend::content_name`]: 64 lowercase hex digits, `hh` the first two).
    pub fn inventory_piece(name: &str) -> Result<ObjectKey, StoreError> {
        let hex = name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(StoreError::BadName(format!("{}{name}", ObjectKey::PIECES)));
        }
        Ok(ObjectKey(format!("{}{}/{name}", ObjectKey::PIECES, &name[..2])))
    }

    /// A name read back from a listing or built from parts: checked to be
    /// relative and to climb nowhere.
    pub fn parse(name: &str) -> Result<ObjectKey, StoreError> {
        let ok = !name.is_empty()
            && !name.starts_with('/')
            && !name.contains('\0')
            && name.split('/').all(|p| !p.is_empty() && p != "." && p != "..");
        if !ok {
            return Err(StoreError::BadName(name.to_owned()));
        }
        Ok(ObjectKey(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who may read a stored object where the backend has modes: the repository
/// is root's; `Private` is for what holds secrets (password hashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Readable by its owner and group (`0640`).
    #[default]
    Group,
    /// Readable by its owner only (`0600`).
    Owner,
}

/// How [`Backend::put`] writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PutOptions {
    /// Who may read it.
    pub access: Access,
    /// Fail with [`StoreError::AlreadyExists`] if the object exists.
    pub create_only: bool,
}

impl PutOptions {
    /// Create-only: for a lock or the marker.
    pub fn create_only() -> PutOptions {
        PutOptions {
            create_only: true,
            ..PutOptions::default()
        }
    }

    /// Readable by its owner only.
    pub fn private() -> PutOptions {
        PutOptions {
            access: Access::Owner,
            ..PutOptions::default()
        }
    }
}

/// What was stored: the size and SHA-256 (lowercase hex) of what was put,
/// and the bytes it takes in the store (the same but where a layer such as
/// [`sealed`] compresses and encrypts on the way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    pub sha256: String,
    /// The bytes the object takes in the store.
    pub stored: u64,
}

/// An object as a listing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: ObjectKey,
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// Why a backend call failed. Callers match on the first two; everything
/// else carries its cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// There is no such object.
    #[error("{0} does not exist in the repository")]
    NotFound(String),
    /// A create-only put found the object there.
    #[error("{0} already exists in the repository")]
    AlreadyExists(String),
    /// A name that is not a repository name.
    #[error("{0:?} is not a valid name in the repository")]
    BadName(String),
    /// Reading the data to store failed (the source, not the repository):
    /// nothing was stored.
    #[error("reading what was to be stored as {0}")]
    Source(String, #[source] io::Error),
    /// The repository failed.
    #[error("{0}")]
    Io(String, #[source] io::Error),
}

impl StoreError {
    /// Whether the object did not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound(_))
    }
}

/// Storage for the repository's objects. Every method is synchronous and
/// may block (the caller runs it on a thread, not on the async runtime).
pub trait Backend: Send + Sync + fmt::Debug {
    /// Where the repository is, for messages (`/mnt/hwdr`, `s3://b/p`).
    fn location(&self) -> String;

    /// Where object `key` is, for messages (`/mnt/hwdr/backups/…`).
    fn location_of(&self, key: &ObjectKey) -> String {
        format!("{}/{key}", self.location())
    }

    /// Whether the repository's location exists and can be used (a mounted
    /// folder, a reachable bucket); why not otherwise.
    fn check_location(&self) -> Result<(), String>;

    /// Stores everything `data` yields as `key`, atomically and durably: once
    /// this returns, the object is whole under its name and survives a crash;
    /// if it fails (also when `data` fails), nothing new is under the name.
    fn put(&self, key: &ObjectKey, data: &mut dyn Read, options: PutOptions) -> Result<Written, StoreError>;

    /// A batch of puts made durable together by [`Batch::commit`] (the
    /// durability barrier): cheaper than a durable put each. An object of a
    /// batch is never visible before its bytes are durable, and visible at
    /// the latest when `commit` returns. Dropped uncommitted, the batch
    /// leaves nothing behind of what is not visible yet.
    fn batch(&self) -> Box<dyn Batch + '_>;

    /// The object's content.
    fn get(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, StoreError>;

    /// Bytes `range` of the object (shorter at its end).
    fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Box<dyn Read + Send>, StoreError>;

    /// The object's size and time, `None` if it does not exist.
    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError>;

    /// Every object whose name starts with `prefix`, in no particular order,
    /// streamed to `each` (a store may hold millions).
    fn list(&self, prefix: &str, each: &mut dyn FnMut(ObjectMeta) -> anyhow::Result<()>) -> anyhow::Result<()>;

    /// The names of the children right below `prefix` (which ends in `/`),
    /// folders and objects alike, sorted: `backups/` gives the backup ids.
    fn list_children(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// The name of a content-addressed object holding `data` (an inventory
    /// piece): the SHA-256 of `data` in lowercase hex; a store that hides
    /// contents ([`sealed`]) names it by a keyed hash instead, so a name
    /// cannot confirm a guess of the content.
    fn content_name(&self, data: &[u8]) -> Result<String, StoreError> {
        Ok(hex::encode(Sha256::digest(data)))
    }

    /// Removes the object; one that does not exist is no error.
    fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;

    /// Removes what puts interrupted by a crash left behind (temp files of a
    /// folder) and was last written before `before`: how many and their
    /// bytes. With `dry_run`, only counts them. Nothing, where a put leaves
    /// nothing behind.
    fn remove_leftovers(&self, _before: SystemTime, _dry_run: bool) -> anyhow::Result<(u64, u64)> {
        Ok((0, 0))
    }

    /// Removes every object below `prefix` (ending in `/`).
    fn delete_prefix(&self, prefix: &str) -> anyhow::Result<()> {
        let mut keys = Vec::new();
        self.list(prefix, &mut |o| {
            keys.push(o.key);
            Ok(())
        })?;
        for key in keys {
            self.delete(&key)?;
        }
        Ok(())
    }
}

/// One object of [`Batch::put_group`].
pub struct Put<'a> {
    pub key: &'a ObjectKey,
    pub data: &'a mut dyn Read,
    pub options: PutOptions,
}

/// Puts made durable together: see [`Backend::batch`].
pub trait Batch {
    /// Writes `data` as `key`; durable and visible at [`Batch::commit`].
    fn put(&mut self, key: &ObjectKey, data: &mut dyn Read, options: PutOptions) -> Result<Written, StoreError> {
        let mut written = self.put_group(&mut [Put { key, data, options }])?;
        written.pop().ok_or_else(|| StoreError::BadName(key.to_string()))
    }

    /// Writes several objects that belong together (a block and its
    /// `.meta`): if any of them fails, none of them is kept; at the commit
    /// they become visible in this order.
    fn put_group(&mut self, puts: &mut [Put<'_>]) -> Result<Vec<Written>, StoreError>;

    /// How many puts wait for the commit.
    fn pending(&self) -> usize;

    /// Makes every put so far durable, then visible under its name, like
    /// [`Batch::commit`], except that the names may become durable only at
    /// a later flush or commit: for a batch that is committed in the end.
    fn flush(&mut self) -> Result<(), StoreError> {
        self.commit()
    }

    /// Makes every put so far durable, then visible under its name, and
    /// every name durable.
    fn commit(&mut self) -> Result<(), StoreError>;
}

/// Reads a source through SHA-256, counting its bytes: what a backend's put
/// reports in [`Written`].
pub struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> Hashing<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The size and SHA-256 of everything read, stored as it is.
    pub fn finish(self) -> Written {
        Written {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
            stored: self.size,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Copies all of `data` into `out` through a [`Hashing`] reader; errors of
/// `data` are [`StoreError::Source`], of `out` [`StoreError::Io`].
pub fn copy_hashed(key: &ObjectKey, data: &mut dyn Read, out: &mut dyn io::Write) -> Result<Written, StoreError> {
    thread_local! {
        // One buffer per thread, not a freshly zeroed MiB per object (two
        // per small block: more time than the block's own bytes take).
        static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => {
            buf.resize(COPY_BUF, 0);
            copy_hashed_with(&mut buf, key, data, out)
        }
        // A source that itself copies (nested): a buffer of its own.
        Err(_) => copy_hashed_with(&mut vec![0u8; COPY_BUF], key, data, out),
    })
}

/// The buffer of [`copy_hashed`].
const COPY_BUF: usize = 1 << 20;

fn copy_hashed_with(
    buf: &mut [u8],
    key: &ObjectKey,
    data: &mut dyn Read,
    out: &mut dyn io::Write,
) -> Result<Written, StoreError> {
    let mut source = Hashing::new(data);
    loop {
        let n = match source.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::Source(key.to_string(), e)),
        };
        out.write_all(&buf[..n])
            .map_err(|e| StoreError::Io(format!("writing {key}"), e))?;
    }
    Ok(source.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_climb_nowhere() {
        for bad in ["", "/etc/passwd", "a//b", "a/../b", "..", "./a", "a/", "a\0b"] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ObjectKey::parse("backups/1/x").unwrap().as_str(), "backups/1/x");
        let id: BackupId = "2611231819".parse().unwrap();
        assert!(ObjectKey::backup_file(id, "../lock").is_err());
        assert_eq!(ObjectKey::lease("h-1-ab").unwrap().as_str(), "locks/h-1-ab.json");
        for bad in ["a/b", "..", ""] {
            assert!(ObjectKey::lease(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ObjectKey::backup_file(id, "rondb/users.sql").unwrap().as_str(),
            "backups/2611231819/rondb/users.sql"
        );
        let block = BlockKey {
            pool: "BP-1-10.0.0.1-2".into(),
            id: 0x0012_3456,
            genstamp: 1001,
        };
        assert_eq!(
            ObjectKey::block_meta(&block).as_str(),
            "blocks/BP-1-10.0.0.1-2/subdir18/subdir52/blk_1193046_1001.meta"
        );
        let name = "ab".repeat(32);
        assert_eq!(
            ObjectKey::inventory_piece(&name).unwrap().as_str(),
            format!("inventories/ab/{name}")
        );
        for bad in ["ab", "../x", &"AB".repeat(32), &"ab".repeat(33)] {
            assert!(ObjectKey::inventory_piece(bad).is_err(), "{bad:?}");
        }
    }
}
