//! The agent's side of mutual TLS: a rustls server configuration that asks
//! every caller for a certificate of the cluster's CA (refusing one of
//! another CA, an expired one, or none, at the handshake), rebuilt when the
//! files change ([`ServerTls::reload_if_changed`]) without touching the
//! connections already open.

use std::sync::{Arc, RwLock};

use anyhow::{bail, Context, Result};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::files::{Material, Stamp};
use super::identity::CertInfo;
use crate::config::Config;
use crate::exit::HwdrError;

/// The agent's TLS configuration, swapped whole on reload.
#[derive(Debug)]
pub struct ServerTls {
    config: Config,
    state: RwLock<State>,
}

#[derive(Debug, Clone)]
struct State {
    server: Arc<ServerConfig>,
    stamp: Stamp,
    leaf: CertInfo,
}

impl ServerTls {
    /// Reads `[tls]` and builds the server configuration; every problem is a
    /// configuration error (the agent does not start).
    pub fn load(config: &Config) -> Result<ServerTls> {
        let state = build(config).map_err(|e| HwdrError::Config(format!("{e:#}")))?;
        Ok(ServerTls {
            config: config.clone(),
            state: RwLock::new(state),
        })
    }

    fn state(&self) -> State {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The configuration new connections are accepted with.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.state().server
    }

    /// This node's certificate as served now.
    pub fn leaf(&self) -> CertInfo {
        self.state().leaf
    }

    /// Rebuilds from the files if they changed since the last load (or
    /// always, with `force`): the new certificate, or None if nothing
    /// changed. On an error the current configuration stays.
    pub fn reload_if_changed(&self, force: bool) -> Result<Option<CertInfo>> {
        let tls = super::files::settings(&self.config)?;
        if !force && Stamp::of(tls) == self.state().stamp {
            return Ok(None);
        }
        let new = build(&self.config)?;
        let leaf = new.leaf.clone();
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(Some(leaf))
    }
}

/// Reads the files and builds the configuration, checking that this node's
/// certificate names this node.
fn build(config: &Config) -> Result<State> {
    let tls = super::files::settings(config)?;
    let stamp = Stamp::of(tls);
    let material = Material::load(config)?;
    let leaf = CertInfo::parse(&material.chain[0]).with_context(|| {
        format!(
            "{}: {}",
            config.origins.key("tls", "certificate"),
            tls.certificate.display()
        )
    })?;
    let this = config.this();
    if !leaf.names_node(this) {
        bail!(
            "{}: {} ({}, {}) does not name this node '{}' (address {}): issue it with a SAN of the node's name or address host",
            config.origins.key("tls", "certificate"),
            tls.certificate.display(),
            leaf.subject,
            leaf.sans(),
            this.name,
            this.address
        );
    }
    let server = server_config(config, material)?;
    Ok(State { server, stamp, leaf })
}

fn server_config(config: &Config, material: Material) -> Result<Arc<ServerConfig>> {
    let builder = WebPkiClientVerifier::builder_with_provider(material.roots.clone(), super::provider());
    let builder = if config.agent.metrics_without_certificate {
        // /metrics for a scraper without a certificate; the API still wants one (agent/access.rs).
        builder.allow_unauthenticated()
    } else {
        builder
    };
    let inner = builder.build().context("building the client certificate verifier")?;
    let server = ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(Arc::new(Naming { inner }))
        .with_single_cert(material.chain, material.key)
        .with_context(|| {
            format!(
                "{} and {}: the key does not fit the certificate",
                config.origins.key("tls", "certificate"),
                config.origins.key("tls", "key")
            )
        })?;
    Ok(Arc::new(server))
}

/// The client verifier that adds who the refused certificate claims to be
/// (subject and issuer) to the refusal the agent logs.
#[derive(Debug)]
struct Naming {
    inner: Arc<dyn ClientCertVerifier>,
}

/// A refused client certificate: whose, and why.
struct Refusal {
    who: String,
    why: rustls::Error,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client certificate {} refused: {}", self.who, self.why)
    }
}

// rustls shows the inner error with `{:?}`: make that the sentence too.
impl std::fmt::Debug for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Refusal {}

impl ClientCertVerifier for Naming {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|why| {
                let who = CertInfo::parse(end_entity).map_or_else(
                    |_| "(unparsable)".to_owned(),
                    |c| format!("'{}' ({}) issued by '{}'", c.subject, c.sans(), c.issuer),
                );
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refusal { who, why }))))
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
