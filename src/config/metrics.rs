//! `[metrics]`: where hwdr writes its Prometheus text file.

use std::path::PathBuf;

use super::raw::RawMetrics;
use super::validate::Errors;

/// `[metrics] textfile`: an absolute path, by default in node-exporter's folder.
pub(super) fn textfile(raw: RawMetrics, errors: &mut Errors) -> PathBuf {
    errors
        .section("metrics")
        .abs_path("textfile", raw.textfile, "/var/lib/prometheus/node-exporter/hwdr.prom")
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_with, load_with};
    use std::path::Path;

    #[test]
    fn textfile_is_absolute() {
        let c = load_with("").unwrap();
        assert_eq!(
            c.metrics_textfile,
            Path::new("/var/lib/prometheus/node-exporter/hwdr.prom")
        );
        assert_eq!(
            errors_with("[metrics]\ntextfile = \"hwdr.prom\"\n"),
            ["hwdr.d/50-test.toml: [metrics] textfile: 'hwdr.prom' must be an absolute path"]
        );
    }
}
