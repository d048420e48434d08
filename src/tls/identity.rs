//! What a certificate says about whom it belongs to: subject, issuer,
//! validity and the names (DNS and IP SANs) that tie it to the nodes of
//! `[[nodes]]`. A certificate names a node when one of its SANs is the
//! node's name or the host of its address.

use std::net::IpAddr;

use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use crate::config::{NodeName, NodeSpec};

/// A certificate's identity, as `hwdr config check` and the refusals show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &CertificateDer<'_>) -> Result<CertInfo> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
        let time = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or_default();
        let mut info = CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: time(cert.validity().not_before.timestamp()),
            not_after: time(cert.validity().not_after.timestamp()),
            dns: Vec::new(),
            ips: Vec::new(),
        };
        let sans = cert
            .subject_alternative_name()
            .map_err(|e| anyhow!("bad subjectAltName: {e}"))?;
        for name in sans.iter().flat_map(|s| s.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(dns) => info.dns.push(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => info.ips.extend(ip_of(bytes)),
                _ => {}
            }
        }
        Ok(info)
    }

    /// Whether this certificate names `node`: a DNS SAN equal to its name or
    /// to its address's host, or an IP SAN equal to that host.
    pub fn names_node(&self, node: &NodeSpec) -> bool {
        let host = address_host(&node.address);
        let dns = |name: &str| self.dns.iter().any(|d| d.eq_ignore_ascii_case(name));
        dns(node.name.as_str())
            || match host.parse::<IpAddr>() {
                Ok(ip) => self.ips.contains(&ip),
                Err(_) => dns(host),
            }
    }

    /// The nodes of `nodes` this certificate names.
    pub fn nodes<'n>(&self, nodes: &'n [NodeSpec]) -> Vec<&'n NodeName> {
        nodes.iter().filter(|n| self.names_node(n)).map(|n| &n.name).collect()
    }

    /// The SANs, as `DNS:ndb1, IP:10.0.0.12`.
    pub fn sans(&self) -> String {
        let dns = self.dns.iter().map(|d| format!("DNS:{d}"));
        let ips = self.ips.iter().map(|i| format!("IP:{i}"));
        let all: Vec<String> = dns.chain(ips).collect();
        if all.is_empty() {
            "none".into()
        } else {
            all.join(", ")
        }
    }
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The host of a `host:port` address (`[v6]:port` without brackets).
pub fn address_host(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(dns: &[&str], ips: &[&str]) -> CertInfo {
        CertInfo {
            subject: "CN=x".into(),
            issuer: "CN=ca".into(),
            not_before: Utc::now(),
            not_after: Utc::now(),
            dns: dns.iter().map(|d| d.to_string()).collect(),
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        }
    }

    fn node(name: &str, address: &str) -> NodeSpec {
        NodeSpec {
            name: name.parse().unwrap(),
            address: address.into(),
            roles: Default::default(),
            rondb_node_ids: Vec::new(),
        }
    }

    #[test]
    fn a_certificate_names_a_node_by_name_or_address_host() {
        let ndb1 = node("ndb1", "10.0.0.12:7878");
        assert!(info(&["NDB1"], &[]).names_node(&ndb1));
        assert!(info(&[], &["10.0.0.12"]).names_node(&ndb1));
        assert!(!info(&["ndb2"], &["10.0.0.13"]).names_node(&ndb1));
        let named = node("ndb1", "ndb1.example.com:7878");
        assert!(info(&["ndb1.example.com"], &[]).names_node(&named));
        assert!(!info(&["ndb1.example.org"], &["10.0.0.12"]).names_node(&named));
        let v6 = node("ndb3", "[fd00::3]:7878");
        assert!(info(&[], &["fd00::3"]).names_node(&v6));
        assert_eq!(info(&["a"], &["10.0.0.1"]).sans(), "DNS:a, IP:10.0.0.1");
    }
}
