//! Mutual TLS between the leader and the agents: this node's identity and
//! the cluster's roots ([`files`]), what a certificate says and which nodes
//! it names ([`identity`]), the agent's side with reloading ([`server`]) and
//! the leader's side, which accepts only the node it asked for ([`client`]);
//! and the small PKI for clusters without Hopsworks' own ([`pki`]: `hwdr
//! tls init|issue`). rustls with the aws-lc-rs provider; no OpenSSL.

pub mod client;
pub mod files;
pub mod identity;
pub mod pki;
pub mod server;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The crypto provider of every TLS configuration hwdr builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
