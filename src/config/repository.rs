//! `[repository]`: where the backups are kept.

use std::path::PathBuf;

use super::raw::RawRepository;
use super::validate::Errors;

/// `[repository] path`: required and absolute.
pub(super) fn path(raw: RawRepository, errors: &mut Errors) -> PathBuf {
    let mut s = errors.section("repository");
    match raw.path {
        None => {
            s.err("path", "is required");
            PathBuf::new()
        }
        some => s.abs_path("path", some, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_with, MINIMAL};
    use super::super::Config;

    #[test]
    fn the_path_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hwdr.toml");
        std::fs::write(&path, MINIMAL.replace("[repository]\npath = \"/mnt/hwdr\"\n", "")).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert_eq!(err, "hwdr.toml: [repository] path: is required");
        assert_eq!(
            errors_with("[repository]\npath = \"mnt\"\n"),
            ["hwdr.d/50-test.toml: [repository] path: 'mnt' must be an absolute path"]
        );
    }
}
