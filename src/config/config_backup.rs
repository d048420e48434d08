//! `[config_backup]`: the files copied into every backup.

use std::path::PathBuf;

use super::raw::RawConfigBackup;
use super::validate::Errors;

/// `[config_backup] paths`: absolute paths, none by default.
pub(super) fn paths(raw: RawConfigBackup, errors: &mut Errors) -> Vec<PathBuf> {
    let mut s = errors.section("config_backup");
    raw.paths
        .unwrap_or_default()
        .into_iter()
        .map(|p| s.abs_path("paths", Some(p), ""))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_with, load_with};
    use std::path::Path;

    #[test]
    fn paths_are_absolute() {
        assert!(load_with("").unwrap().config_paths.is_empty());
        let c = load_with("[config_backup]\npaths = [\"/etc/hopsworks\"]\n").unwrap();
        assert_eq!(c.config_paths, [Path::new("/etc/hopsworks")]);
        assert_eq!(
            errors_with("[config_backup]\npaths = [\"/etc/a\", \"etc/b\", \"c\"]\n"),
            [
                "hwdr.d/50-test.toml: [config_backup] paths: 'etc/b' must be an absolute path",
                "hwdr.d/50-test.toml: [config_backup] paths: 'c' must be an absolute path",
            ]
        );
    }
}
