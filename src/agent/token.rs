//! The cluster's shared bearer token: read from `[agent] token_file`, which
//! must be owned by root, readable by its owner only, and hold one word of
//! at least [`MIN_LEN`] characters. Every problem is a configuration error
//! (exit code 3: systemd does not restart the agent for it).

use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::exit::HwdrError;

/// The shortest token accepted: 32 characters (docs/security.md's command makes 64
/// hex digits, 256 bits).
pub const MIN_LEN: usize = 32;

/// A loaded token.
#[derive(Clone)]
pub struct Token {
    value: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl Token {
    /// Reads and checks the token file; `key` names the config key in errors,
    /// which are [`HwdrError::Config`].
    pub fn load(path: &Path, key: &str) -> Result<Token> {
        Self::read_checked(path, key).map_err(|e| HwdrError::Config(format!("{e:#}")).into())
    }

    fn read_checked(path: &Path, key: &str) -> Result<Token> {
        let bytes = crate::fsutil::read_private(path, key)?;
        let text = String::from_utf8(bytes).with_context(|| format!("{key}: {} is not text", path.display()))?;
        let value = text.trim().to_owned();
        if value.is_empty() {
            bail!("{key}: {} is empty", path.display());
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("{key}: the token in {} must be one word", path.display());
        }
        if value.chars().count() < MIN_LEN {
            bail!(
                "{key}: the token in {} has {} characters; it needs at least {MIN_LEN} (make one with: head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1)",
                path.display(),
                value.chars().count()
            );
        }
        Ok(Token::from_value(value))
    }

    fn from_value(value: String) -> Token {
        let digest = Sha256::digest(value.as_bytes()).into();
        Token { value, digest }
    }

    /// The `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.value)
    }

    /// Whether an `Authorization` header carries this token. The comparison
    /// is over fixed-size digests in constant time, so neither the content
    /// nor the length of the token leaks through timing.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        bool::from(digest.ct_eq(&self.digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn file(mode: u32, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    const GOOD: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn accepts_only_the_right_token() {
        let (_d, path) = file(0o600, &format!("{GOOD}\n"));
        let token = Token::load(&path, "k").unwrap();
        assert!(token.accepts(Some(&format!("Bearer {GOOD}"))));
        for bad in [
            None,
            Some(GOOD),
            Some(&GOOD[1..]),
            Some(&*format!("Bearer {GOOD}2")),
            Some(&*format!("Basic {GOOD}")),
        ] {
            assert!(!token.accepts(bad), "{bad:?}");
        }
    }

    #[test]
    fn refuses_open_empty_short_or_foreign_files() {
        let (_d, path) = file(0o640, GOOD);
        assert!(Token::load(&path, "k").unwrap_err().to_string().contains("mode 0640"));
        let (_d, path) = file(0o604, GOOD);
        assert!(Token::load(&path, "k").is_err());
        let (_d, path) = file(0o600, " \n");
        assert!(Token::load(&path, "k").unwrap_err().to_string().contains("is empty"));
        let (_d, path) = file(0o600, "s3cret");
        let err = Token::load(&path, "k").unwrap_err();
        assert!(
            err.to_string().contains("has 6 characters; it needs at least 32"),
            "{err}"
        );
        assert_eq!(crate::exit::code_for(&err), crate::exit::Code::InvalidConfig);
        let (_d, path) = file(0o400, GOOD);
        if nix::unistd::Uid::effective().is_root() {
            assert!(Token::load(&path, "k").is_ok());
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(1)), None).unwrap();
            let err = Token::load(&path, "k").unwrap_err().to_string();
            assert!(err.contains("owned by uid 1; it must be owned by root"), "{err}");
        }
    }
}
