//! The repository's data key, wrapped by key-encryption keys: each wrap is
//! one plain object `keys/<id>.json` in the repository. A key file (32
//! random bytes, raw or hex) opens the data key if it opens one of the
//! `file` wraps; a passphrase file, stretched with argon2id (the parameters
//! and salt recorded in the wrap), if it opens one of the `passphrase` ones.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::sealed::format::random;
use super::store::sealed::DataKey;
use super::store::{Backend, ObjectKey, PutOptions};

/// The folder of the wraps in the repository.
pub const PREFIX: &str = "keys/";

/// Where this node's key-encryption key comes from (`[repository]
/// key_file` or `passphrase_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// 32 random bytes, raw or hex.
    File(PathBuf),
    /// A passphrase (the file's content, without a trailing newline).
    Passphrase(PathBuf),
}

impl KeySource {
    /// The file, for messages.
    pub fn path(&self) -> &Path {
        match self {
            KeySource::File(p) | KeySource::Passphrase(p) => p,
        }
    }

    /// Reads the secret the file holds.
    pub fn read(&self) -> Result<Secret> {
        match self {
            KeySource::File(p) => Ok(Secret::Key(read_key_file(p)?)),
            KeySource::Passphrase(p) => Ok(Secret::Passphrase(read_passphrase_file(p)?)),
        }
    }
}

/// A key-encryption secret, as read from its file. Never printed.
pub enum Secret {
    Key([u8; 32]),
    Passphrase(Vec<u8>),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// How a passphrase is stretched into a key: argon2id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane.
    fn default() -> KdfParams {
        KdfParams {
            m_kib: 64 << 10,
            t: 3,
            p: 1,
        }
    }
}

/// A passphrase wrap's stretching: argon2id with these parameters and salt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kdf {
    /// `argon2id`.
    pub algorithm: String,
    #[serde(flatten)]
    pub params: KdfParams,
    /// 16 random bytes, hex.
    pub salt: String,
}

/// Stretched passphrases of this process (the stretch costs 64 MiB and a
/// fraction of a second): by SHA-256 of passphrase, salt and parameters.
static STRETCHED: Mutex<Vec<([u8; 32], [u8; 32])>> = Mutex::new(Vec::new());

impl Kdf {
    fn new(params: KdfParams) -> Result<Kdf> {
        let mut salt = [0u8; 16];
        random(&mut salt)?;
        Ok(Kdf {
            algorithm: "argon2id".into(),
            params,
            salt: hex::encode(salt),
        })
    }

    /// The key `passphrase` stretches to.
    fn stretch(&self, passphrase: &[u8]) -> Result<[u8; 32]> {
        if self.algorithm != "argon2id" {
            bail!("unknown key derivation {:?}", self.algorithm);
        }
        let salt = hex::decode(&self.salt).context("the salt is not hex")?;
        let id: [u8; 32] = Sha256::new()
            .chain_update(passphrase)
            .chain_update(&salt)
            .chain_update(serde_json::to_vec(&self.params)?)
            .finalize()
            .into();
        let mut cache = STRETCHED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, key)) = cache.iter().find(|(i, _)| *i == id) {
            return Ok(*key);
        }
        let KdfParams { m_kib, t, p } = self.params;
        let params = argon2::Params::new(m_kib, t, p, Some(32)).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        let mut key = [0u8; 32];
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_into(passphrase, &salt, &mut key)
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        cache.push((id, key));
        Ok(key)
    }
}

/// One wrap of the data key: what `keys/<id>.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedKey {
    pub id: String,
    pub created: chrono::DateTime<chrono::Utc>,
    /// How the key-encryption key is had: `file` or `passphrase`.
    pub kind: String,
    /// For `passphrase`: how it is stretched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf: Option<Kdf>,
    /// Nonce (24 bytes) and the sealed data key, hex.
    pub wrapped: String,
}

fn associated_data(id: &str, kind: &str) -> Vec<u8> {
    format!("hwdr-key-v1\0{kind}\0{id}").into_bytes()
}

fn cipher(kek: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(Key::from_slice(kek))
}

impl WrappedKey {
    /// `data` wrapped by `secret` under a new random id (a passphrase
    /// stretched with the default argon2id parameters).
    pub fn wrap(data: &DataKey, secret: &Secret, now: chrono::DateTime<chrono::Utc>) -> Result<WrappedKey> {
        WrappedKey::wrap_with(data, secret, KdfParams::default(), now)
    }

    /// [`WrappedKey::wrap`] with the passphrase stretched with `params`.
    pub fn wrap_with(
        data: &DataKey,
        secret: &Secret,
        params: KdfParams,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<WrappedKey> {
        let mut id = [0u8; 8];
        random(&mut id)?;
        let id = hex::encode(id);
        let (kind, kdf, kek) = match secret {
            Secret::Key(k) => ("file", None, *k),
            Secret::Passphrase(p) => {
                let kdf = Kdf::new(params)?;
                let kek = kdf.stretch(p)?;
                ("passphrase", Some(kdf), kek)
            }
        };
        let mut nonce = [0u8; 24];
        random(&mut nonce)?;
        let aad = associated_data(&id, kind);
        let sealed = cipher(&kek)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: data.bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("wrapping the data key"))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&sealed);
        Ok(WrappedKey {
            id,
            created: now,
            kind: kind.to_owned(),
            kdf,
            wrapped: hex::encode(wrapped),
        })
    }

    /// The data key, if `secret` opens this wrap.
    pub fn unwrap_with(&self, secret: &Secret) -> Option<DataKey> {
        let kek = match (secret, self.kind.as_str(), &self.kdf) {
            (Secret::Key(k), "file", None) => *k,
            (Secret::Passphrase(p), "passphrase", Some(kdf)) => kdf.stretch(p).ok()?,
            _ => return None,
        };
        let bytes = hex::decode(&self.wrapped).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(24);
        let aad = associated_data(&self.id, &self.kind);
        let plain = cipher(&kek)
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            .ok()?;
        Some(DataKey::from_bytes(plain.try_into().ok()?))
    }
}

/// The data key that `secret` (read from `path`) opens among `wraps`, and
/// the id of the wrap that opened it; an error naming the file if none.
pub fn open(wraps: &[WrappedKey], secret: &Secret, path: &Path) -> Result<(DataKey, String)> {
    wraps
        .iter()
        .find_map(|w| w.unwrap_with(secret).map(|k| (k, w.id.clone())))
        .with_context(|| format!("the key in {} opens none of the repository's keys", path.display()))
}

/// The wraps stored in the repository, oldest first.
pub fn list(backend: &dyn Backend) -> Result<Vec<WrappedKey>> {
    let mut names = Vec::new();
    backend.list(PREFIX, &mut |o| {
        names.push(o.key);
        Ok(())
    })?;
    let mut wraps = Vec::new();
    for key in names.iter().filter(|k| k.as_str().ends_with(".json")) {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut backend.get(key)?, &mut bytes)
            .with_context(|| format!("reading {}", backend.location_of(key)))?;
        let wrap: WrappedKey =
            serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", backend.location_of(key)))?;
        wraps.push(wrap);
    }
    wraps.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    Ok(wraps)
}

fn object_key(id: &str) -> Result<ObjectKey> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{id:?} is not a key id (see `hwdr key list`)");
    }
    Ok(ObjectKey::parse(&format!("{PREFIX}{id}.json"))?)
}

/// Stores `wrap` as `keys/<id>.json` (never over another).
pub fn store(backend: &dyn Backend, wrap: &WrappedKey) -> Result<()> {
    let key = object_key(&wrap.id)?;
    let body = serde_json::to_vec_pretty(wrap)?;
    let options = PutOptions {
        create_only: true,
        ..PutOptions::default()
    };
    backend
        .put(&key, &mut &body[..], options)
        .with_context(|| format!("writing {}", backend.location_of(&key)))?;
    Ok(())
}

/// Removes the wrap `id`.
pub fn remove(backend: &dyn Backend, id: &str) -> Result<()> {
    let key = object_key(id)?;
    backend
        .delete(&key)
        .with_context(|| format!("removing {}", backend.location_of(&key)))
}

/// Refuses a secret file that others may read.
fn check_private(path: &Path, what: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {what} {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{what} {} is readable by others (mode {:o}): chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    Ok(())
}

/// Reads a key file: 32 bytes, raw or as 64 hex digits (a trailing newline
/// allowed); only its owner may read or write it.
pub fn read_key_file(path: &Path) -> Result<[u8; 32]> {
    check_private(path, "key file")?;
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

/// Reads a passphrase file: its content without a trailing newline, at
/// least 8 bytes; only its owner may read or write it.
pub fn read_passphrase_file(path: &Path) -> Result<Vec<u8>> {
    check_private(path, "passphrase file")?;
    let mut bytes = std::fs::read(path).with_context(|| format!("reading passphrase file {}", path.display()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.len() < 8 {
        bail!("passphrase file {}: shorter than 8 bytes", path.display());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
