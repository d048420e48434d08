//! The cluster's shared bearer token: read from `[agent] token_file`, which
//! must be non-empty and readable by its owner only.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
    /// Reads and checks the token file; `key` names the config key in errors.
    pub fn load(path: &Path, key: &str) -> Result<Token> {
        let meta = fs::metadata(path).with_context(|| format!("{key}: cannot read {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "{key}: {} has mode {mode:04o}; it must be readable by its owner only (chmod 600)",
                path.display()
            );
        }
        let text = fs::read_to_string(path).with_context(|| format!("{key}: cannot read {}", path.display()))?;
        let value = text.trim().to_owned();
        if value.is_empty() {
            bail!("{key}: {} is empty", path.display());
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("{key}: the token in {} must be one word", path.display());
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

    fn file(mode: u32, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn accepts_only_the_right_token() {
        let (_d, path) = file(0o600, "s3cret\n");
        let token = Token::load(&path, "k").unwrap();
        assert!(token.accepts(Some("Bearer s3cret")));
        for bad in [
            None,
            Some("s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Basic s3cret"),
        ] {
            assert!(!token.accepts(bad), "{bad:?}");
        }
    }

    #[test]
    fn refuses_open_or_empty_files() {
        let (_d, path) = file(0o640, "x");
        assert!(Token::load(&path, "k").unwrap_err().to_string().contains("mode 0640"));
        let (_d, path) = file(0o604, "x");
        assert!(Token::load(&path, "k").is_err());
        let (_d, path) = file(0o600, " \n");
        assert!(Token::load(&path, "k").unwrap_err().to_string().contains("is empty"));
        let (_d, path) = file(0o400, "ok");
        assert!(Token::load(&path, "k").is_ok());
    }
}
