//! The leader's side of mutual TLS: it presents its own certificate and
//! accepts an agent only if the agent's certificate chains to the cluster's
//! CA and names the node the leader meant to reach (its `[[nodes]]` name or
//! address host). An impostor with a valid certificate of another node is
//! refused at the handshake, before any request (or token) is sent.

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::files::Material;
use super::identity::CertInfo;
use crate::config::{Config, NodeSpec};

/// A client configuration for talking to `node` only, with this node's
/// certificate as the client identity.
pub fn config_for(material: &Material, node: &NodeSpec) -> Result<ClientConfig> {
    let verifier = NodeVerifier::new(material, node)?;
    let config = ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(material.chain.clone(), material.key.clone_key())
        .context("this node's TLS key does not fit its certificate")?;
    Ok(config)
}

/// Whether a leader would accept `chain` (leaf first) as `node`'s: the same
/// check as at the handshake, for `hwdr config check`.
pub fn check_node_certificate(config: &Config, material: &Material, node: &NodeSpec) -> Result<()> {
    let verifier = NodeVerifier::new(material, node)?;
    let (leaf, rest) = material.chain.split_first().context("no certificate")?;
    let host = super::identity::address_host(&node.address).to_owned();
    let name = ServerName::try_from(host).context("the node's address host as a TLS name")?;
    verifier
        .verify_server_cert(leaf, rest, &name, &[], UnixTime::now())
        .map(|_| ())
        .with_context(|| {
            format!(
                "{}: not valid for node '{}'",
                config.origins.key("tls", "certificate"),
                node.name
            )
        })
}

/// Accepts the certificate of one node.
#[derive(Debug)]
struct NodeVerifier {
    inner: Arc<WebPkiServerVerifier>,
    node: NodeSpec,
}

impl NodeVerifier {
    fn new(material: &Material, node: &NodeSpec) -> Result<NodeVerifier> {
        let inner = WebPkiServerVerifier::builder_with_provider(material.roots.clone(), super::provider())
            .build()
            .context("building the server certificate verifier")?;
        Ok(NodeVerifier {
            inner,
            node: node.clone(),
        })
    }

    /// The refusal of a certificate that chains to the CA but names
    /// another node: says whose it is.
    fn wrong_node(&self, end_entity: &CertificateDer<'_>) -> rustls::Error {
        let who = CertInfo::parse(end_entity).map_or_else(
            |_| "an unparsable certificate".to_owned(),
            |c| format!("'{}' ({})", c.subject, c.sans()),
        );
        let message = format!(
            "the agent at {} presented {who}, which does not name node '{}': an impostor, or a wrong [[nodes]] address",
            self.node.address, self.node.name
        );
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(WrongNode(message)))))
    }
}

struct WrongNode(String);

impl std::fmt::Display for WrongNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// rustls shows the inner error with `{:?}`: make that the sentence too.
impl std::fmt::Debug for WrongNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WrongNode {}

fn not_for_name(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The URL's host is the address host; failing that, the node's name.
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(e) if not_for_name(&e) => {}
            other => return other,
        }
        let name = ServerName::try_from(self.node.name.as_str().to_owned()).map_err(|_| self.wrong_node(end_entity))?;
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, &name, ocsp, now)
        {
            Err(e) if not_for_name(&e) => Err(self.wrong_node(end_entity)),
            other => other,
        }
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
