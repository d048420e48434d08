//! The repository in object storage (`[repository] url`): S3 and
//! S3-compatible servers, Google Cloud Storage, Azure Blob, through the
//! Apache Arrow project's `object_store` crate (credential chains, retries
//! with backoff of 5xx, timeouts and connection errors, multipart).
//!
//! A put of an object up to the part size is one request; a bigger one goes
//! up in parts, a few in flight, so memory stays bounded whatever the size,
//! and is aborted if anything fails: nothing is visible under the name until
//! the upload completes. Object stores make a completed put durable, so a
//! batch here is a series of puts and its commit has nothing left to do.
//!
//! Names are percent-encoded part by part on the way in (`object_store`'s
//! rule) and decoded on the way out of a listing, so any repository name
//! round-trips.

mod bridge;
mod build;
mod put;

use std::io::{self, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use object_store::path::{Path, PathPart};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use percent_encoding::percent_decode_str;

use super::{Backend, Batch, ObjectKey, ObjectMeta, Put, PutOptions, StoreError, Written};
use crate::config::ObjectSettings;

/// A repository in a bucket. The client is made at the first call (so
/// naming a repository never fails) and shared by every clone.
#[derive(Debug, Clone)]
pub struct ObjectBackend {
    settings: Arc<ObjectSettings>,
    store: Arc<Mutex<Option<Arc<dyn ObjectStore>>>>,
}

impl ObjectBackend {
    /// The repository `settings` names; nothing is contacted yet.
    pub fn new(settings: &ObjectSettings) -> ObjectBackend {
        ObjectBackend {
            settings: Arc::new(settings.clone()),
            store: Arc::new(Mutex::new(None)),
        }
    }

    /// The client, made once.
    fn store(&self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let mut slot = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = slot.as_ref() {
            return Ok(store.clone());
        }
        let store = build::store(&self.settings)
            .map_err(|e| StoreError::Io(format!("repository {}", self.location()), io::Error::other(e)))?;
        *slot = Some(store.clone());
        Ok(store)
    }

    /// An error of the call `doing` (`storing`, `reading`) on `key`.
    fn error(&self, doing: &str, key: &ObjectKey, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound(self.location_of(key)),
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
                StoreError::AlreadyExists(self.location_of(key))
            }
            e => StoreError::Io(
                format!("{doing} {}", self.location_of(key)),
                io::Error::other(explain(e)),
            ),
        }
    }
}

/// The error in words an operator can act on: refused credentials say so
/// (S3 servers answer 403 with `AccessDenied`, `InvalidAccessKeyId` or
/// `SignatureDoesNotMatch`, which `object_store` reports as generic).
fn explain(e: object_store::Error) -> String {
    let text = e.to_string();
    let refused = matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || [
        "403 Forbidden",
        "401 Unauthorized",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    ]
    .iter()
    .any(|m| text.contains(m));
    if refused {
        return format!("access denied: are the credentials right and allowed on this bucket? ({text})");
    }
    text
}

/// `key` as an `object_store` path, each part percent-encoded.
fn path(key: &ObjectKey) -> Path {
    Path::from_iter(key.as_str().split('/').map(PathPart::from))
}

/// The folder to list for a prefix (`backups/1/`, `blocks/`, empty for
/// everything, or one ending inside a name, `locks/head1-`, whose folder is
/// listed and the names filtered).
fn split_prefix(prefix: &str) -> Option<Path> {
    let folder = prefix.rfind('/').map_or("", |i| &prefix[..i]);
    (!folder.is_empty()).then(|| Path::from_iter(folder.split('/').map(PathPart::from)))
}

/// A listed path back into a repository name.
fn key_of(location: &Path) -> Result<ObjectKey, StoreError> {
    let decoded: Vec<String> = location
        .parts()
        .map(|p| percent_decode_str(p.as_ref()).decode_utf8_lossy().into_owned())
        .collect();
    ObjectKey::parse(&decoded.join("/"))
}

fn meta_of(m: object_store::ObjectMeta) -> Result<ObjectMeta, StoreError> {
    Ok(ObjectMeta {
        key: key_of(&m.location)?,
        size: m.size,
        modified: m.last_modified.into(),
    })
}

impl Backend for ObjectBackend {
    fn location(&self) -> String {
        self.settings.url.trim_end_matches('/').to_owned()
    }

    fn check_location(&self) -> Result<(), String> {
        let store = self.store().map_err(|e| format!("{e}: {}", source_text(&e)))?;
        bridge::wait(async move { store.list_with_delimiter(None).await })
            .map(|_| ())
            .map_err(|e| format!("cannot list repository {}: {}", self.location(), explain(e)))
    }

    fn put(&self, key: &ObjectKey, data: &mut dyn Read, options: PutOptions) -> Result<Written, StoreError> {
        put::put(self, key, data, options)
    }

    fn batch(&self) -> Box<dyn Batch + '_> {
        Box::new(ObjectBatch {
            backend: self,
            pending: 0,
        })
    }

    fn get(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, StoreError> {
        self.get_opts(key, GetOptions::default())
    }

    fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Box<dyn Read + Send>, StoreError> {
        if range.is_empty() {
            return Ok(Box::new(io::empty()));
        }
        // A range past the end is short, as the trait says, not an error.
        let size = match self.head(key)? {
            Some(meta) => meta.size,
            None => return Err(StoreError::NotFound(self.location_of(key))),
        };
        let range = range.start.min(size)..range.end.min(size);
        if range.is_empty() {
            return Ok(Box::new(io::empty()));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        self.get_opts(key, options)
    }

    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        let store = self.store()?;
        let p = path(key);
        match bridge::wait(async move { store.head(&p).await }) {
            Ok(m) => Ok(Some(meta_of(m)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("looking up", key, e)),
        }
    }

    fn list(&self, prefix: &str, each: &mut dyn FnMut(ObjectMeta) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let store = self.store()?;
        let folder = split_prefix(prefix);
        let listing = bridge::pump(store.list(folder.as_ref()), 1000)
            .map_err(|e| anyhow::anyhow!("listing {}/{prefix}: {e}", self.location()))?;
        for item in listing {
            let m = item.map_err(|e| anyhow::anyhow!("listing {}/{prefix}: {}", self.location(), explain(e)))?;
            let meta = meta_of(m)?;
            if meta.key.as_str().starts_with(prefix) {
                each(meta)?;
            }
        }
        Ok(())
    }

    fn list_children(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let store = self.store()?;
        let folder = split_prefix(prefix);
        let listed = bridge::wait(async move { store.list_with_delimiter(folder.as_ref()).await }).map_err(|e| {
            StoreError::Io(
                format!("listing {}/{prefix}", self.location()),
                io::Error::other(explain(e)),
            )
        })?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .chain(listed.objects.iter().map(|o| &o.location))
            .filter_map(|p| p.filename())
            .map(|n| percent_decode_str(n).decode_utf8_lossy().into_owned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let store = self.store()?;
        let p = path(key);
        match bridge::wait(async move { store.delete(&p).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("deleting", key, e)),
        }
    }

    fn delete_prefix(&self, prefix: &str) -> anyhow::Result<()> {
        let mut paths = Vec::new();
        self.list(prefix, &mut |o| {
            paths.push(path(&o.key));
            Ok(())
        })?;
        let store = self.store()?;
        bridge::wait(async move {
            let stream = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
            let mut deleted = store.delete_stream(stream);
            while let Some(result) = deleted.next().await {
                match result {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("deleting below {}/{prefix}: {}", self.location(), explain(e)))
    }
}

impl ObjectBackend {
    /// A streamed read of `key`; a missing object is [`StoreError::NotFound`]
    /// here, not at the first read.
    fn get_opts(&self, key: &ObjectKey, options: GetOptions) -> Result<Box<dyn Read + Send>, StoreError> {
        let store = self.store()?;
        let p = path(key);
        let got = bridge::wait(async move { store.get_opts(&p, options).await })
            .map_err(|e| self.error("reading", key, e))?;
        let read = bridge::StreamRead::new(got.into_stream(), self.location_of(key))
            .map_err(|e| self.error("reading", key, e))?;
        Ok(Box::new(read))
    }
}

/// The cause of a store error, for a one-line message.
fn source_text(e: &StoreError) -> String {
    std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default()
}

/// Puts made durable one by one (a completed put is durable in object
/// storage): the commit has nothing to do but count.
struct ObjectBatch<'a> {
    backend: &'a ObjectBackend,
    pending: usize,
}

impl Batch for ObjectBatch<'_> {
    fn put_group(&mut self, puts: &mut [Put<'_>]) -> Result<Vec<Written>, StoreError> {
        let mut written = Vec::with_capacity(puts.len());
        for i in 0..puts.len() {
            let p = &mut puts[i];
            match self.backend.put(p.key, p.data, p.options) {
                Ok(w) => written.push(w),
                Err(e) => {
                    // None of a group is kept if one fails.
                    for done in &puts[..i] {
                        let _ = self.backend.delete(done.key);
                    }
                    return Err(e);
                }
            }
        }
        self.pending += written.len();
        Ok(written)
    }

    fn pending(&self) -> usize {
        self.pending
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.pending = 0;
        Ok(())
    }
}
