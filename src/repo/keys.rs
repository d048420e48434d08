//! The repository's data key, wrapped by key-encryption keys: each wrap is
//! one plain object `keys/<id>.json` in the repository. A key file (32
//! random bytes, raw or hex) opens the data key if it opens one of them.
//!
//! Not wired yet: nothing writes or reads these objects outside the tests
//! (see docs/architecture.md, "Sealed objects").

use std::path::Path;

use anyhow::{bail, Context, Result};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use super::store::sealed::format::random;
use super::store::sealed::DataKey;

/// One wrap of the data key: what `keys/<id>.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedKey {
    pub id: String,
    pub created: chrono::DateTime<chrono::Utc>,
    /// How the key-encryption key is had: `file`.
    pub kind: String,
    /// Nonce (24 bytes) and the sealed data key, hex.
    pub wrapped: String,
}

fn associated_data(id: &str, kind: &str) -> Vec<u8> {
    format!("hwdr-key-v1\0{kind}\0{id}").into_bytes()
}

impl WrappedKey {
    /// `data` wrapped by `kek`, under a new random id.
    pub fn wrap(data: &DataKey, kek: &[u8; 32], now: chrono::DateTime<chrono::Utc>) -> Result<WrappedKey> {
        let mut id = [0u8; 8];
        random(&mut id)?;
        let (id, kind) = (hex::encode(id), "file".to_owned());
        let mut nonce = [0u8; 24];
        random(&mut nonce)?;
        let sealed = XChaCha20Poly1305::new(Key::from_slice(kek))
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: data.bytes(),
                    aad: &associated_data(&id, &kind),
                },
            )
            .map_err(|_| anyhow::anyhow!("wrapping the data key"))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&sealed);
        Ok(WrappedKey {
            id,
            created: now,
            kind,
            wrapped: hex::encode(wrapped),
        })
    }

    /// The data key, if `kek` opens this wrap.
    pub fn unwrap_with(&self, kek: &[u8; 32]) -> Option<DataKey> {
        let bytes = hex::decode(&self.wrapped).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(24);
        let plain = XChaCha20Poly1305::new(Key::from_slice(kek))
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &associated_data(&self.id, &self.kind),
                },
            )
            .ok()?;
        Some(DataKey::from_bytes(plain.try_into().ok()?))
    }
}

/// The data key that `kek` (read from `path`) opens among `wraps`; an error
/// naming the file if it opens none.
pub fn open(wraps: &[WrappedKey], kek: &[u8; 32], path: &Path) -> Result<DataKey> {
    wraps
        .iter()
        .find_map(|w| w.unwrap_with(kek))
        .with_context(|| format!("the key in {} opens none of the repository's keys", path.display()))
}

/// Reads a key file: 32 bytes, raw or as 64 hex digits (a trailing newline
/// allowed); only its owner may read or write it.
pub fn read_key_file(path: &Path) -> Result<[u8; 32]> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("reading key file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "key file {} is readable by others (mode {:o}): chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading key file {}", path.display()))?;
    if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
        return Ok(raw);
    }
    let text = String::from_utf8_lossy(&bytes);
    hex::decode(text.trim())
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
        .with_context(|| format!("key file {}: not 32 bytes, raw or as 64 hex digits", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_wrap_opens_with_its_key_only() {
        let data = DataKey::generate().unwrap();
        let wrap = WrappedKey::wrap(&data, &[1; 32], chrono::Utc::now()).unwrap();
        let json = serde_json::to_string(&wrap).unwrap();
        let back: WrappedKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back.unwrap_with(&[1; 32]).unwrap().bytes(), data.bytes());
        assert!(back.unwrap_with(&[2; 32]).is_none());
        let e = open(&[back], &[2; 32], Path::new("/etc/hwdr/repo.key")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the key in /etc/hwdr/repo.key opens none of the repository's keys"
        );
    }

    #[test]
    fn key_files_are_raw_or_hex_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo.key");
        std::fs::write(&path, format!("{}\n", hex::encode([3u8; 32]))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key_file(&path).unwrap(), [3; 32]);
        std::fs::write(&path, [4u8; 32]).unwrap();
        assert_eq!(read_key_file(&path).unwrap(), [4; 32]);
        std::fs::write(&path, b"short").unwrap();
        assert!(read_key_file(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_key_file(&path).unwrap_err().to_string().contains("chmod 600"));
    }
}
