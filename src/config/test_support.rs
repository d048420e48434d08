//! A small valid configuration and a drop-in over it, for the sections' tests.

use std::path::Path;

use super::Config;
use crate::exit::HwdrError;

/// A valid configuration: `head1` (this host, the leader) and `ndb1`.
pub const MINIMAL: &str = r#"
[cluster]
name = "prod"
[[nodes]]
name = "head1"
address = "127.0.0.1:7878"
roles = ["head"]
[[nodes]]
name = "ndb1"
address = "127.0.0.2:7878"
roles = ["rondb"]
rondb_node_ids = [2, 3]
[node]
name = "head1"
[repository]
path = "/mnt/hwdr"
"#;

/// Loads `text` as `hwdr.toml` in `dir`.
pub fn config_in(dir: &Path, text: &str) -> Result<Config, HwdrError> {
    let path = dir.join("hwdr.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path)
}

/// Loads [`MINIMAL`] with `dropin` as `hwdr.d/50-test.toml`.
pub fn load_with(dropin: &str) -> Result<Config, HwdrError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("hwdr.d")).unwrap();
    std::fs::write(dir.path().join("hwdr.d/50-test.toml"), dropin).unwrap();
    config_in(dir.path(), MINIMAL)
}

/// The errors of [`MINIMAL`] with `dropin`, one per line; none is a failure.
pub fn errors_with(dropin: &str) -> Vec<String> {
    match load_with(dropin) {
        Ok(_) => panic!("the configuration with {dropin:?} is valid"),
        Err(e) => e.to_string().lines().map(String::from).collect(),
    }
}
