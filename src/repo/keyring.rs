//! `hwdr key …`: the wraps of an encrypted repository's data key. Adding,
//! removing and rotating re-wrap the same data key: no object is sealed
//! again.

use anyhow::{bail, Result};

use super::keys::{self, KeySource, WrappedKey};
use super::{sealing, Repository};
use crate::config::Config;

/// The configured repository, checked, if it is encrypted.
fn encrypted(config: &Config) -> Result<Repository> {
    let repo = Repository::open(config)?;
    if !repo.encrypted()? {
        bail!(
            "repository {} is not encrypted: it has no keys (encryption is chosen at `hwdr repo init --encrypt`)",
            repo.location()
        );
    }
    Ok(repo)
}

impl Repository {
    /// The wraps of the configured encrypted repository's data key, oldest
    /// first, and the id of the one this node's key opens.
    pub fn keys(config: &Config) -> Result<(Vec<WrappedKey>, String)> {
        let repo = encrypted(config)?;
        let (_, used) = sealing::open_key_id(repo.backend(), config.repository.key.as_ref())?;
        Ok((keys::list(repo.backend())?, used))
    }

    /// Wraps the data key (opened with this node's key) with `new` too.
    pub fn add_key(config: &Config, new: &KeySource) -> Result<WrappedKey> {
        let repo = encrypted(config)?;
        let (data, _) = sealing::open_key_id(repo.backend(), config.repository.key.as_ref())?;
        let wrap = WrappedKey::wrap(&data, &new.read()?, chrono::Utc::now())?;
        keys::store(repo.backend(), &wrap)?;
        Ok(wrap)
    }

    /// Removes wrap `id`: never the last, never the one this node's key
    /// opens unless it opens another.
    pub fn remove_key(config: &Config, id: &str) -> Result<()> {
        let repo = encrypted(config)?;
        let wraps = keys::list(repo.backend())?;
        if !wraps.iter().any(|w| w.id == id) {
            bail!("repository {} has no key {id} (see `hwdr key list`)", repo.location());
        }
        if wraps.len() == 1 {
            bail!("key {id} is the repository's last key: without one, every backup is lost");
        }
        let rest: Vec<_> = wraps.into_iter().filter(|w| w.id != id).collect();
        if let Some(source) = &config.repository.key {
            if keys::open(&rest, &source.read()?, source.path()).is_err() {
                bail!(
                    "key {id} is the one {} opens: removing it would lock this node out; use `hwdr key rotate`, or \
                     point [repository] at another key first",
                    source.path().display()
                );
            }
        }
        keys::remove(repo.backend(), id)
    }

    /// Wraps the data key with `new`, then removes the wrap this node's key
    /// opens: returns the new wrap and the removed id.
    pub fn rotate_key(config: &Config, new: &KeySource) -> Result<(WrappedKey, String)> {
        let repo = encrypted(config)?;
        let (data, old) = sealing::open_key_id(repo.backend(), config.repository.key.as_ref())?;
        let wrap = WrappedKey::wrap(&data, &new.read()?, chrono::Utc::now())?;
        keys::store(repo.backend(), &wrap)?;
        keys::remove(repo.backend(), &old)?;
        Ok((wrap, old))
    }
}
