//! Mutual TLS between the leader and the agents, and the small PKI for clusters without Hopsworks' own.

pub mod pki;
