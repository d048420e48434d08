//! The password of RonDB's own backup encryption (`START BACKUP ... ENCRYPT
//! PASSWORD`, `ndb_restore --decrypt`): read from `[rondb]
//! backup_password_file` (root's, mode 0600) on the node that needs it,
//! when it needs it, and handed to RonDB only on a program's standard
//! input, never in an argv, a log line or an error.

use std::path::Path;

use anyhow::{bail, Result};

use crate::config::Config;
use crate::exit::HwdrError;
use crate::repo::manifest::Manifest;
use crate::runner::Secret;

/// The longest password RonDB takes.
pub const MAX_LEN: usize = 256;

/// A RonDB backup password, checked against RonDB's rules. `Debug` shows
/// nothing; the bytes are zeroed when dropped.
#[derive(Debug, Clone)]
pub struct BackupPassword(Secret);

impl BackupPassword {
    /// Reads and checks the password file; `key` names the config key
    /// (`hwdr.toml: [rondb] backup_password_file`) in the errors.
    pub fn read(path: &Path, key: &str) -> Result<BackupPassword> {
        let mut bytes = crate::fsutil::read_private(path, key)?;
        let secret = {
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            Secret::new(bytes)
        };
        let text = secret.expose();
        if text.is_empty() {
            bail!("{key}: {} is empty", path.display());
        }
        if text.len() > MAX_LEN {
            bail!(
                "{key}: the password in {} has {} characters; RonDB takes at most {MAX_LEN}",
                path.display(),
                text.len()
            );
        }
        if let Some(at) = text.iter().position(|b| !allowed(*b)) {
            bail!(
                "{key}: the password in {} has a character RonDB does not take at position {}: it may hold printable \
                 ASCII characters other than ! \" $ % ' \\ ^ ` (one line, no tabs)",
                path.display(),
                at + 1
            );
        }
        Ok(BackupPassword(secret))
    }

    /// The password itself, to hide in a program's output.
    pub fn secret(&self) -> Secret {
        self.0.clone()
    }

    /// The password and a newline: what `--backup-password-from-stdin` reads.
    pub fn line(&self) -> Secret {
        self.with(b"", b"\n")
    }

    /// The password between `before` and `after`, as one secret.
    pub fn with(&self, before: &[u8], after: &[u8]) -> Secret {
        let password = self.0.expose();
        let mut bytes = Vec::with_capacity(before.len() + password.len() + after.len());
        bytes.extend_from_slice(before);
        bytes.extend_from_slice(password);
        bytes.extend_from_slice(after);
        Secret::new(bytes)
    }
}

/// RonDB's rule for `ENCRYPT PASSWORD`: the printable ASCII characters with
/// codes 32, 35, 38, 40-91, 93, 95 and 97-126.
fn allowed(b: u8) -> bool {
    matches!(b, 32 | 35 | 38 | 40..=91 | 93 | 95 | 97..=126)
}

/// The password a backup encrypts RonDB's backup with: `None` when `[rondb]
/// backup_password_file` is not set. A file that is not right is a
/// configuration error.
pub fn for_backup(config: &Config) -> Result<Option<BackupPassword>> {
    let Some(path) = &config.rondb.backup_password_file else {
        return Ok(None);
    };
    let key = config.origins.key("rondb", "backup_password_file");
    BackupPassword::read(path, &key)
        .map(Some)
        .map_err(|e| HwdrError::Config(format!("{e:#}")).into())
}

/// The password this node decrypts the RonDB part of the backup of
/// `manifest` with: `None` when it is not encrypted. A node without a
/// usable password file is refused, naming the backup, the node and the key,
/// before anything runs.
pub fn for_restore(config: &Config, manifest: &Manifest) -> Result<Option<BackupPassword>> {
    if !manifest.rondb.encrypted {
        return Ok(None);
    }
    let key = config.origins.key("rondb", "backup_password_file");
    let refused = |why: String| -> anyhow::Error {
        HwdrError::Refused(format!(
            "backup {}: its RonDB backup is encrypted with RonDB's own backup encryption, and node {} cannot \
             decrypt it: {why}",
            manifest.backup_id, config.this_node
        ))
        .into()
    };
    let Some(path) = &config.rondb.backup_password_file else {
        return Err(refused(format!(
            "{key} is not set (set it to a file holding the password the backup was taken with)"
        )));
    };
    BackupPassword::read(path, &key)
        .map(Some)
        .map_err(|e| refused(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(mode: u32, bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rondb-backup.pw");
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    fn root() -> bool {
        nix::unistd::Uid::effective().is_root()
    }

    #[test]
    fn the_trailing_newline_is_not_part_of_the_password() {
        if !root() {
            return;
        }
        let (_d, path) = file(0o600, b"correct horse & battery [staple]\r\n");
        let pw = BackupPassword::read(&path, "k").unwrap();
        assert_eq!(pw.secret().expose(), b"correct horse & battery [staple]");
        assert_eq!(pw.line().expose(), b"correct horse & battery [staple]\n");
        assert_eq!(pw.with(b"P='", b"'").expose(), b"P='correct horse & battery [staple]'");
        assert!(!format!("{pw:?}").contains("horse"));
    }

    #[test]
    fn bad_files_are_named_and_the_password_never_shown() {
        if !root() {
            return;
        }
        let cases: [(u32, &[u8], &str); 5] = [
            (0o644, b"pw", "has mode 0644; it must be readable by its owner only"),
            (0o600, b"\n", "is empty"),
            (0o600, b"it's", "has a character RonDB does not take at position 3"),
            (0o600, b"tab\there", "has a character RonDB does not take at position 4"),
            (0o600, &[b'a'; 257], "has 257 characters; RonDB takes at most 256"),
        ];
        for (mode, bytes, expected) in cases {
            let (_d, path) = file(mode, bytes);
            let err = BackupPassword::read(&path, "hwdr.toml: [rondb] backup_password_file")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("hwdr.toml: [rondb] backup_password_file: "), "{err}");
            assert!(
                err.contains(&path.display().to_string()) && err.contains(expected),
                "{err}"
            );
            assert!(
                bytes.len() < 3 || !err.contains(&*String::from_utf8_lossy(bytes)),
                "{err}"
            );
        }
        let (_d, path) = file(0o600, b"pw");
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(1)), None).unwrap();
        let err = BackupPassword::read(&path, "k").unwrap_err().to_string();
        assert!(err.contains("owned by uid 1; it must be owned by root"), "{err}");
    }

    #[test]
    fn rondbs_character_rule() {
        let ok: Vec<u8> = (0u8..=127).filter(|b| allowed(*b)).collect();
        assert_eq!(
            String::from_utf8(ok).unwrap(),
            " #&()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz{|}~"
        );
    }
}
