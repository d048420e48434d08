//! The files of a node's TLS identity: its certificate chain, its key
//! (owned by root, mode 0600, like the token) and the CA certificates it
//! trusts, read and checked once per load; and a [`Stamp`] that tells when
//! any of them changed.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, TlsSettings};
use crate::exit::HwdrError;

/// A node's identity and the roots it trusts.
#[derive(Debug)]
pub struct Material {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub roots: Arc<RootCertStore>,
    /// The CA certificates as read (for reports).
    pub ca: Vec<CertificateDer<'static>>,
}

impl Material {
    /// Reads `[tls]` of `config`; every problem is a configuration error
    /// naming the key and the file.
    pub fn load(config: &Config) -> Result<Material> {
        let tls = settings(config)?;
        Self::read(tls, config).map_err(|e| HwdrError::Config(format!("{e:#}")).into())
    }

    fn read(tls: &TlsSettings, config: &Config) -> Result<Material> {
        let key_name = |k: &str| config.origins.key("tls", k);
        let chain = certificates(&tls.certificate, &key_name("certificate"))?;
        let ca = certificates(&tls.ca, &key_name("ca"))?;
        let key_bytes = crate::fsutil::read_private(&tls.key, &key_name("key"))?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes)
            .with_context(|| format!("{}: {} holds no PEM private key", key_name("key"), tls.key.display()))?;
        let mut roots = RootCertStore::empty();
        for cert in &ca {
            roots.add(cert.clone()).with_context(|| {
                format!(
                    "{}: a certificate in {} is not a usable CA",
                    key_name("ca"),
                    tls.ca.display()
                )
            })?;
        }
        Ok(Material {
            chain,
            key,
            roots: Arc::new(roots),
            ca,
        })
    }
}

/// `[tls]` of `config`, or a configuration error saying it is needed.
pub fn settings(config: &Config) -> Result<&TlsSettings> {
    config.tls.as_ref().ok_or_else(|| {
        HwdrError::Config(format!(
            "{}: '{}' needs a [tls] section (certificate, key, ca)",
            config.origins.key("agent", "auth"),
            config.agent.auth
        ))
        .into()
    })
}

/// The certificates of a PEM file, at least one.
pub fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).with_context(|| format!("{key}: cannot read {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{key}: {} is not PEM", path.display()))?;
    if certs.is_empty() {
        bail!("{key}: {} holds no certificate", path.display());
    }
    Ok(certs)
}

/// What the files looked like when last read: a change to any of them
/// (replaced, rewritten, touched) gives another stamp.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stamp(Vec<(u64, u64, i64, i64, u64)>);

impl Stamp {
    /// The stamp of `[tls]`'s files now; a missing file counts as a state too.
    pub fn of(tls: &TlsSettings) -> Stamp {
        let one = |p: &Path| {
            std::fs::metadata(p).map_or((0, 0, 0, 0, 0), |m| {
                (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size())
            })
        };
        Stamp(vec![one(&tls.certificate), one(&tls.key), one(&tls.ca)])
    }
}
