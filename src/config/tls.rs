//! `[tls]`: this node's certificate and key, and the cluster's CA, for
//! mutual TLS between the leader and the agents (src/tls/).

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawTls;
use super::validate::Errors;

/// Where Hopsworks' own PKI puts the host certificate of the node agent
/// (kagent), signed by the cluster's CA.
pub const HOPSWORKS_CERTIFICATE: &str = "/srv/hops/super_crypto/kagent/kagent_certificate_bundle.pem";
/// The key of [`HOPSWORKS_CERTIFICATE`].
pub const HOPSWORKS_KEY: &str = "/srv/hops/super_crypto/kagent/kagent_priv.pem";
/// Hopsworks' CA bundle (intermediate and root), installed on every host.
pub const HOPSWORKS_CA: &str = "/srv/hops/super_crypto/kagent/hops_ca_bundle.pem";

/// `[tls]`: the files of this node's identity and the roots it trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// This node's certificate chain (PEM), leaf first.
    pub certificate: PathBuf,
    /// Its private key (PEM); owned by root, mode 0600.
    pub key: PathBuf,
    /// The CA certificates (PEM) a peer's certificate must chain to.
    pub ca: PathBuf,
    /// How often the agent looks for changed files (rotation).
    pub reload_interval: Duration,
}

impl TlsSettings {
    /// Validates `[tls]`; every key defaults to Hopsworks' own files.
    pub(super) fn from_raw(t: RawTls, errors: &mut Errors) -> TlsSettings {
        let mut s = errors.section("tls");
        TlsSettings {
            certificate: s.abs_path("certificate", t.certificate, HOPSWORKS_CERTIFICATE),
            key: s.abs_path("key", t.key, HOPSWORKS_KEY),
            ca: s.abs_path("ca", t.ca, HOPSWORKS_CA),
            reload_interval: s.duration("reload_interval", t.reload_interval, Duration::from_secs(30)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_with, load_with};
    use super::*;

    #[test]
    fn an_empty_tls_table_means_hopsworks_files() {
        assert_eq!(load_with("").unwrap().tls, None);
        let tls = load_with("[tls]\n").unwrap().tls.unwrap();
        assert_eq!(tls.certificate, PathBuf::from(HOPSWORKS_CERTIFICATE));
        assert_eq!(tls.key, PathBuf::from(HOPSWORKS_KEY));
        assert_eq!(tls.ca, PathBuf::from(HOPSWORKS_CA));
        assert_eq!(tls.reload_interval, Duration::from_secs(30));
    }

    #[test]
    fn relative_paths_are_named() {
        assert_eq!(
            errors_with("[tls]\nkey = \"node.key\"\n"),
            ["hwdr.d/50-test.toml: [tls] key: 'node.key' must be an absolute path"]
        );
    }
}
