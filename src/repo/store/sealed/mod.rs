//! Every object sealed before it leaves the node: a [`Backend`] over any
//! other that encrypts and authenticates what it stores (XChaCha20-Poly1305,
//! in segments) and compresses what pays (zstd, per segment). See
//! [`format`] for the bytes.
//!
//! XChaCha20-Poly1305 rather than AES-256-GCM: its 192-bit nonces can be
//! drawn at random for every segment of every object under one key for the
//! repository's whole life (GCM's 96 bits cannot, past some billions of
//! segments), and it is fast and constant-time without AES instructions.
//!
//! What the layer keeps and what it hides:
//! - Names stay plain: block ids, backup ids and file names, and object
//!   sizes, can be read by whoever reads the storage; contents cannot. A
//!   keyed name would hide block ids but not their count or sizes, and
//!   would cost the store's listing as the index of the blocks.
//! - Names derived from content (inventory pieces, [`Backend::content_name`])
//!   are keyed: HMAC-SHA256 under a subkey of the data key, so a name cannot
//!   confirm a guess of what the object holds.
//! - The objects that must be read before any key is at hand stay plain:
//!   the marker `hwdr-repo.json`, the wrapped keys `keys/`, and the lock
//!   (`lock`, `locks/`, the init probe: host, pid and operation).
//! - [`Backend::put`] and [`Backend::head`] report the plaintext's size and
//!   SHA-256 (put also the bytes stored: [`Written::stored`]);
//!   [`Backend::list`] reports the bytes in the store.

mod aead;
pub mod format;
mod stream;
#[cfg(test)]
mod tests;

use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use aead::Cipher;

pub use format::DataKey;
use format::{read_full, Frame, Header, FOOTER_LEN, FRAME_LEN, HEADER_LEN};
use stream::{read_header, Opener, Sealer};
pub use stream::{tampered, Settings, Tampered};

use super::{Backend, Batch, ObjectKey, ObjectMeta, Put, PutOptions, StoreError, Written};
use crate::repo::lock::PROBE_PREFIX;

/// A backend whose objects are sealed with the repository's data key.
#[derive(Clone)]
pub struct Sealed {
    inner: Arc<dyn Backend>,
    cipher: Arc<Cipher>,
    names: Arc<aws_lc_rs::hmac::Key>,
    settings: Settings,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}

/// Whether `key` is stored plain: read before any key is at hand.
pub fn is_plain(key: &ObjectKey) -> bool {
    let name = key.as_str();
    *key == ObjectKey::marker()
        || *key == ObjectKey::lock()
        || name.starts_with("keys/")
        || name.starts_with(ObjectKey::LEASES)
        || name.starts_with(PROBE_PREFIX)
}

fn io_error(location: String, e: io::Error) -> StoreError {
    StoreError::Io(location, e)
}

impl Sealed {
    /// `inner`'s objects, sealed with `key`.
    pub fn new(inner: Arc<dyn Backend>, key: &DataKey, settings: Settings) -> Sealed {
        let settings = Settings {
            segment_shift: settings
                .segment_shift
                .clamp(*format::SHIFTS.start(), *format::SHIFTS.end()),
            ..settings
        };
        Sealed {
            inner,
            cipher: Arc::new(key.cipher()),
            names: Arc::new(key.name_key()),
            settings,
        }
    }

    fn sealer<'a>(&self, key: &ObjectKey, data: &'a mut dyn Read) -> Sealer<'a> {
        Sealer::new(self.cipher.clone(), key, self.settings, data)
    }

    /// Reads `range` of the stored object (to its end at most).
    fn stored_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        let want = (range.end - range.start) as usize;
        let mut bytes = vec![0u8; want];
        let n = read_full(&mut self.inner.get_range(key, range)?, &mut bytes)
            .map_err(|e| io_error(format!("reading {}", self.location_of(key)), e))?;
        bytes.truncate(n);
        Ok(bytes)
    }

    /// The plaintext size a stored object of `stored` bytes declares.
    fn plain_size(&self, key: &ObjectKey, stored: u64) -> Result<u64, StoreError> {
        let location = self.location_of(key);
        if stored < (HEADER_LEN + FRAME_LEN + FOOTER_LEN) as u64 {
            return Err(io_error(location.clone(), tampered(&location, None, "truncated")));
        }
        let footer = self.stored_range(key, stored - FOOTER_LEN as u64..stored)?;
        let footer: [u8; FOOTER_LEN] = footer
            .try_into()
            .map_err(|_| io_error(location.clone(), tampered(&location, None, "truncated")))?;
        Ok(u64::from_le_bytes(footer))
    }

    /// Where segment `index` starts in the stored object: computed where no
    /// segment is compressed, found by walking the frames otherwise.
    fn segment_offset(&self, key: &ObjectKey, header: &Header, index: u64) -> Result<u64, StoreError> {
        if !header.compressed {
            return Ok(HEADER_LEN as u64 + index * header.raw_stride());
        }
        let location = self.location_of(key);
        let mut offset = HEADER_LEN as u64;
        for n in 0..index {
            let bytes = self.stored_range(key, offset..offset + FRAME_LEN as u64)?;
            let frame = <[u8; FRAME_LEN]>::try_from(bytes.as_slice())
                .ok()
                .and_then(|b| Frame::decode(&b))
                .filter(|f| !f.last)
                .ok_or_else(|| io_error(location.clone(), tampered(&location, Some(n), "bad frame")))?;
            offset += FRAME_LEN as u64 + u64::from(frame.sealed_len);
        }
        Ok(offset)
    }
}

impl Backend for Sealed {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn location_of(&self, key: &ObjectKey) -> String {
        self.inner.location_of(key)
    }

    fn check_location(&self) -> Result<(), String> {
        self.inner.check_location()
    }

    fn put(&self, key: &ObjectKey, data: &mut dyn Read, options: PutOptions) -> Result<Written, StoreError> {
        if is_plain(key) {
            return self.inner.put(key, data, options);
        }
        let mut sealer = self.sealer(key, data);
        let sealed = self.inner.put(key, &mut sealer, options)?;
        Ok(Written {
            stored: sealed.stored,
            ..sealer.finish()
        })
    }

    fn batch(&self) -> Box<dyn Batch + '_> {
        Box::new(SealedBatch {
            owner: self,
            inner: self.inner.batch(),
        })
    }

    fn content_name(&self, data: &[u8]) -> Result<String, StoreError> {
        Ok(hex::encode(aws_lc_rs::hmac::sign(&self.names, data).as_ref()))
    }

    fn get(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, StoreError> {
        let stored = self.inner.get(key)?;
        if is_plain(key) {
            return Ok(stored);
        }
        let location = self.location_of(key);
        let opener =
            Opener::whole(stored, self.cipher.clone(), key, location.clone()).map_err(|e| io_error(location, e))?;
        Ok(Box::new(opener))
    }

    fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Box<dyn Read + Send>, StoreError> {
        if is_plain(key) {
            return self.inner.get_range(key, range);
        }
        let stored = self
            .inner
            .head(key)?
            .ok_or_else(|| StoreError::NotFound(key.to_string()))?
            .size;
        let total = self.plain_size(key, stored)?;
        if range.start >= range.end.min(total) {
            return Ok(Box::new(io::empty()));
        }
        let location = self.location_of(key);
        let header = read_header(&mut &self.stored_range(key, 0..HEADER_LEN as u64)?[..], &location)
            .map_err(|e| io_error(location.clone(), e))?;
        let first = range.start / header.segment_size();
        let offset = self.segment_offset(key, &header, first)?;
        let reader = self.inner.get_range(key, offset..stored)?;
        let skip = range.start - first * header.segment_size();
        let take = range.end.min(total) - range.start;
        let opener = Opener::at(reader, self.cipher.clone(), key, location, header, first, skip, take);
        Ok(Box::new(opener))
    }

    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        let Some(meta) = self.inner.head(key)? else {
            return Ok(None);
        };
        if is_plain(key) {
            return Ok(Some(meta));
        }
        let size = self.plain_size(key, meta.size)?;
        Ok(Some(ObjectMeta { size, ..meta }))
    }

    fn list(&self, prefix: &str, each: &mut dyn FnMut(ObjectMeta) -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.inner.list(prefix, each)
    }

    fn list_children(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_children(prefix)
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.inner.delete(key)
    }

    fn remove_leftovers(&self, before: SystemTime, dry_run: bool) -> anyhow::Result<(u64, u64)> {
        self.inner.remove_leftovers(before, dry_run)
    }

    fn delete_prefix(&self, prefix: &str) -> anyhow::Result<()> {
        self.inner.delete_prefix(prefix)
    }
}

/// A batch of the inner backend, each object sealed on its way.
struct SealedBatch<'a> {
    owner: &'a Sealed,
    inner: Box<dyn Batch + 'a>,
}

impl Batch for SealedBatch<'_> {
    fn put_group(&mut self, puts: &mut [Put<'_>]) -> Result<Vec<Written>, StoreError> {
        if puts.iter().any(|p| is_plain(p.key)) {
            return Err(StoreError::BadName(format!(
                "{}: not sealed, so not in a batch",
                puts.iter().map(|p| p.key.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let mut sealers: Vec<_> = puts
            .iter_mut()
            .map(|p| (p.key, p.options, self.owner.sealer(p.key, &mut *p.data)))
            .collect();
        let mut inner: Vec<Put<'_>> = sealers
            .iter_mut()
            .map(|(key, options, sealer)| Put {
                key,
                data: sealer,
                options: *options,
            })
            .collect();
        let sealed = self.inner.put_group(&mut inner)?;
        drop(inner);
        Ok(sealers
            .into_iter()
            .zip(sealed)
            .map(|((_, _, s), sealed)| Written {
                stored: sealed.stored,
                ..s.finish()
            })
            .collect())
    }

    fn pending(&self) -> usize {
        self.inner.pending()
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.inner.flush()
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.inner.commit()
    }
}
