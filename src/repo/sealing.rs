//! The one place that decides whether a repository's objects are sealed:
//! [`OnDemand`] reads the marker the first time an object other than the
//! plain ones (marker, keys, lock) is touched, and, for an encrypted
//! repository, opens the data key with this node's `key_file` or
//! `passphrase_file` and seals through [`Sealed`] from then on. Every
//! command and every agent job reaches the repository through it
//! ([`super::Repository::of`]), so none can write or read a sealed
//! repository's objects in the clear.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use anyhow::{Context, Result};

use super::keys::{self, KeySource};
use super::store::sealed::{is_plain, DataKey, Sealed, Settings};
use super::store::{Backend, Batch, ObjectKey, ObjectMeta, Put, PutOptions, StoreError, Written};
use super::{RepoMarker, MARKER};

/// A backend that seals its objects if the repository's marker says so.
#[derive(Debug)]
pub(crate) struct OnDemand {
    inner: Arc<dyn Backend>,
    key: Option<KeySource>,
    compression: Option<i32>,
    resolved: OnceLock<Arc<dyn Backend>>,
}

impl OnDemand {
    pub fn new(inner: Arc<dyn Backend>, key: Option<KeySource>, compression: Option<i32>) -> OnDemand {
        OnDemand {
            inner,
            key,
            compression,
            resolved: OnceLock::new(),
        }
    }

    /// The backend to store data objects through: the inner one for a
    /// plaintext repository, sealed for an encrypted one. An error (no key,
    /// a wrong key) is not kept: the next call tries again.
    pub fn resolve(&self) -> Result<&Arc<dyn Backend>> {
        if let Some(b) = self.resolved.get() {
            return Ok(b);
        }
        let backend = match read_marker(self.inner.as_ref())? {
            Some(m) if m.encrypted == Some(true) => {
                let key = open_key(self.inner.as_ref(), self.key.as_ref())?;
                let settings = Settings {
                    compression: self.compression,
                    ..Settings::default()
                };
                Arc::new(Sealed::new(self.inner.clone(), &key, settings)) as Arc<dyn Backend>
            }
            _ => self.inner.clone(),
        };
        Ok(self.resolved.get_or_init(|| backend))
    }

    fn data(&self, key: &ObjectKey) -> Result<&Arc<dyn Backend>, StoreError> {
        if is_plain(key) {
            return Ok(&self.inner);
        }
        self.resolve()
            .map_err(|e| StoreError::Io(self.inner.location(), io::Error::other(format!("{e:#}"))))
    }
}

/// The repository's marker as stored, `None` if there is none.
pub(super) fn read_marker(backend: &dyn Backend) -> Result<Option<RepoMarker>> {
    let mut bytes = Vec::new();
    match backend.get(&ObjectKey::marker()) {
        Ok(mut r) => r
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}/{MARKER}", backend.location()))?,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}/{MARKER}", backend.location()))),
    };
    let marker = serde_json::from_slice(&bytes).with_context(|| format!("parsing {}/{MARKER}", backend.location()))?;
    Ok(Some(marker))
}

/// The data key of the encrypted repository in `backend`, opened with
/// `source`, and the id of the wrap that opened it.
pub(super) fn open_key_id(backend: &dyn Backend, source: Option<&KeySource>) -> Result<(DataKey, String)> {
    let Some(source) = source else {
        anyhow::bail!(
            "repository {} is encrypted: set [repository] key_file or passphrase_file",
            backend.location()
        );
    };
    let secret = source.read()?;
    let wraps = keys::list(backend)?;
    keys::open(&wraps, &secret, source.path())
}

fn open_key(backend: &dyn Backend, source: Option<&KeySource>) -> Result<DataKey> {
    Ok(open_key_id(backend, source)?.0)
}

impl Backend for OnDemand {
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
        self.data(key)?.put(key, data, options)
    }

    fn batch(&self) -> Box<dyn Batch + '_> {
        match self.resolve() {
            Ok(b) => b.batch(),
            Err(e) => Box::new(Refused(format!("{e:#}"), self.inner.location())),
        }
    }

    fn get(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, StoreError> {
        self.data(key)?.get(key)
    }

    fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Box<dyn Read + Send>, StoreError> {
        self.data(key)?.get_range(key, range)
    }

    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        self.data(key)?.head(key)
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

    fn content_name(&self, data: &[u8]) -> Result<String, StoreError> {
        self.resolve()
            .map_err(|e| StoreError::Io(self.inner.location(), io::Error::other(format!("{e:#}"))))?
            .content_name(data)
    }

    fn remove_leftovers(&self, before: SystemTime, dry_run: bool) -> anyhow::Result<(u64, u64)> {
        self.inner.remove_leftovers(before, dry_run)
    }

    fn delete_prefix(&self, prefix: &str) -> anyhow::Result<()> {
        self.inner.delete_prefix(prefix)
    }
}

/// The batch of a repository whose key does not open: every put fails.
struct Refused(String, String);

impl Batch for Refused {
    fn put_group(&mut self, _puts: &mut [Put<'_>]) -> Result<Vec<Written>, StoreError> {
        Err(StoreError::Io(self.1.clone(), io::Error::other(self.0.clone())))
    }

    fn pending(&self) -> usize {
        0
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::repo::keys::{Secret, WrappedKey};
    use crate::repo::store::memory::Memory;

    fn put(store: &dyn Backend, name: &str, body: &[u8]) {
        let key = ObjectKey::parse(name).unwrap();
        store.put(&key, &mut &body[..], PutOptions::default()).unwrap();
    }

    fn get(store: &dyn Backend, name: &str) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        let key = ObjectKey::parse(name).unwrap();
        let mut r = store.get(&key).map_err(|e| {
            format!(
                "{e}: {}",
                std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()
            )
        })?;
        r.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        Ok(bytes)
    }

    #[test]
    fn a_plaintext_repository_passes_through_and_an_encrypted_one_seals() {
        let plain: Arc<dyn Backend> = Arc::new(Memory::new());
        put(plain.as_ref(), MARKER, br#"{"format":2,"cluster":"c"}"#);
        let on = OnDemand::new(plain.clone(), None, Some(3));
        put(&on, "backups/x/users.sql", b"CREATE USER 'hopsworks'");
        assert_eq!(
            get(plain.as_ref(), "backups/x/users.sql").unwrap(),
            b"CREATE USER 'hopsworks'"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("repo.key");
        std::fs::write(&file, [7u8; 32]).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let inner: Arc<dyn Backend> = Arc::new(Memory::new());
        let data = DataKey::generate().unwrap();
        keys::store(
            inner.as_ref(),
            &WrappedKey::wrap(&data, &Secret::Key([7; 32]), chrono::Utc::now()).unwrap(),
        )
        .unwrap();
        put(
            inner.as_ref(),
            MARKER,
            br#"{"format":3,"cluster":"c","encrypted":true}"#,
        );
        let sealed = OnDemand::new(inner.clone(), Some(KeySource::File(file.clone())), Some(3));
        put(&sealed, "backups/x/users.sql", b"CREATE USER 'hopsworks'");
        assert_eq!(get(&sealed, "backups/x/users.sql").unwrap(), b"CREATE USER 'hopsworks'");
        assert!(get(inner.as_ref(), "backups/x/users.sql")
            .unwrap()
            .starts_with(b"HWDRSEAL"));
        // The marker and the keys stay plain.
        assert!(get(&sealed, MARKER).unwrap().starts_with(b"{"));

        let keyless = OnDemand::new(inner.clone(), None, None);
        let e = get(&keyless, "backups/x/users.sql").unwrap_err();
        assert!(
            e.contains("is encrypted: set [repository] key_file or passphrase_file"),
            "{e}"
        );
        std::fs::write(&file, [8u8; 32]).unwrap();
        let wrong = OnDemand::new(inner, Some(KeySource::File(file)), None);
        let e = get(&wrong, "backups/x/users.sql").unwrap_err();
        assert!(e.contains("opens none of the repository's keys"), "{e}");
    }
}
