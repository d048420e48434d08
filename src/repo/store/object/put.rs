//! Storing one object: whole when it fits in one part, else a multipart
//! upload with a bounded number of parts in flight, streamed through the
//! SHA-256 of [`Hashing`] and aborted on any error.

use std::collections::VecDeque;
use std::io::{self, Read};

use object_store::{MultipartUpload, ObjectStoreExt, PutMode, PutPayload};
use tokio::task::JoinHandle;

use super::{bridge, path, ObjectBackend};
use crate::repo::store::{Backend, Hashing, ObjectKey, PutOptions, StoreError, Written};

/// Parts uploading while the next one is read: memory is at most this many
/// parts plus the one being filled.
const PARTS_IN_FLIGHT: usize = 2;

/// Stores `data` as `key` (see the module's text).
pub(super) fn put(
    backend: &ObjectBackend,
    key: &ObjectKey,
    data: &mut dyn Read,
    options: PutOptions,
) -> Result<Written, StoreError> {
    let part_size = backend.settings.part_size;
    let mut source = Hashing::new(data);
    let first = read_part(&mut source, part_size).map_err(|e| StoreError::Source(key.to_string(), e))?;
    if first.len() < part_size {
        put_whole(backend, key, first, options)?;
    } else if options.create_only {
        // Only small objects (a lock, the marker) are put create-only.
        return Err(StoreError::Io(
            format!("storing {}", backend.location_of(key)),
            io::Error::other("a create-only object must fit in one part"),
        ));
    } else {
        put_parts(backend, key, first, &mut source)?;
    }
    Ok(source.finish())
}

/// Up to `size` bytes of `source`: fewer only at its end.
fn read_part(source: &mut dyn Read, size: usize) -> io::Result<Vec<u8>> {
    let mut part = Vec::with_capacity(size);
    source.take(size as u64).read_to_end(&mut part)?;
    Ok(part)
}

/// One request; create-only asks the server to refuse an existing object
/// (not every server honours it: see the lock).
fn put_whole(backend: &ObjectBackend, key: &ObjectKey, bytes: Vec<u8>, options: PutOptions) -> Result<(), StoreError> {
    let store = backend.store()?;
    let p = path(key);
    let mode = if options.create_only {
        PutMode::Create
    } else {
        PutMode::Overwrite
    };
    let payload = PutPayload::from(bytes);
    bridge::wait(async move { store.put_opts(&p, payload, mode.into()).await })
        .map(|_| ())
        .map_err(|e| backend.error("storing", key, e))
}

/// A multipart upload of `first` and the rest of `source`.
fn put_parts(
    backend: &ObjectBackend,
    key: &ObjectKey,
    first: Vec<u8>,
    source: &mut dyn Read,
) -> Result<(), StoreError> {
    let store = backend.store()?;
    let p = path(key);
    let upload =
        bridge::wait(async move { store.put_multipart(&p).await }).map_err(|e| backend.error("storing", key, e))?;
    let mut parts = Parts {
        upload,
        in_flight: VecDeque::new(),
    };
    match parts.send_all(backend, key, first, source) {
        Ok(()) => parts.complete().map_err(|e| backend.error("storing", key, e)),
        Err(e) => {
            parts.abort();
            Err(e)
        }
    }
}

/// A multipart upload under way.
struct Parts {
    upload: Box<dyn MultipartUpload>,
    in_flight: VecDeque<JoinHandle<object_store::Result<()>>>,
}

impl Parts {
    /// Sends every part, reading the next while at most [`PARTS_IN_FLIGHT`]
    /// upload, and waits for them all.
    fn send_all(
        &mut self,
        backend: &ObjectBackend,
        key: &ObjectKey,
        first: Vec<u8>,
        source: &mut dyn Read,
    ) -> Result<(), StoreError> {
        let part_size = backend.settings.part_size;
        let mut part = first;
        while !part.is_empty() {
            let sent = self.upload.put_part(PutPayload::from(part));
            let handle = bridge::handle().map_err(|e| backend.error("storing", key, e))?;
            self.in_flight.push_back(handle.spawn(sent));
            if self.in_flight.len() >= PARTS_IN_FLIGHT {
                self.wait_oldest().map_err(|e| backend.error("storing", key, e))?;
            }
            part = read_part(source, part_size).map_err(|e| StoreError::Source(key.to_string(), e))?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest().map_err(|e| backend.error("storing", key, e))?;
        }
        Ok(())
    }

    /// Waits for the oldest part in flight.
    fn wait_oldest(&mut self) -> object_store::Result<()> {
        let Some(task) = self.in_flight.pop_front() else {
            return Ok(());
        };
        bridge::wait(async move { task.await.map_err(|e| object_store::Error::JoinError { source: e })? })
    }

    /// Makes the object visible.
    fn complete(self) -> object_store::Result<()> {
        let mut upload = self.upload;
        bridge::wait(async move { upload.complete().await }).map(|_| ())
    }

    /// Drops what was uploaded; nothing becomes visible.
    fn abort(self) {
        for task in &self.in_flight {
            task.abort();
        }
        let mut upload = self.upload;
        if let Err(e) = bridge::wait(async move { upload.abort().await }) {
            tracing::warn!("aborting a multipart upload: {e} (a bucket lifecycle rule removes what is left)");
        }
    }
}
