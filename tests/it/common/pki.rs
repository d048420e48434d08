//! Certificates made at test time with rcgen: a cluster CA, node
//! certificates (valid, expired, of another CA), the `[tls]` drop-ins that
//! point each node at its files, and a TLS client that presents any of them.

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

use super::cluster::{http_over, Cluster};

/// A CA that issues node certificates into a folder.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
#[derive(Clone)]
pub struct Identity {
    pub cert: String,
    pub key: String,
}

impl Pki {
    /// A new CA named `name`, its certificate written to `<dir>/ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        fs::create_dir_all(dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = params.self_signed(&key).unwrap().pem();
        fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        Pki {
            dir: dir.to_owned(),
            ca_pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate with CN `cn` and SANs `dns` (DNS) and `ips`, for server
    /// and client use; `expired` makes one that ended in 2021.
    pub fn issue(&self, cn: &str, dns: &[&str], ips: &[&str], expired: bool) -> Identity {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(ip.parse().unwrap()));
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        Identity {
            cert: params.signed_by(&key, &self.issuer).unwrap().pem(),
            key: key.serialize_pem(),
        }
    }

    /// The certificate of cluster node `name` at `address` (`ip:port`):
    /// DNS SAN the name, IP SAN the address's host.
    pub fn node(&self, name: &str, address: &str) -> Identity {
        let ip = address.rsplit_once(':').unwrap().0;
        self.issue(name, &[name], &[ip], false)
    }

    /// Writes `identity` as node `name`'s files: `<dir>/<name>/node.pem`
    /// and `node.key` (root's, 0600), replacing what is there.
    pub fn install(&self, name: &str, identity: &Identity) -> (PathBuf, PathBuf) {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("node.pem"), dir.join("node.key"));
        write_private(&key, &identity.key);
        let tmp = dir.join("node.pem.tmp");
        fs::write(&tmp, &identity.cert).unwrap();
        fs::rename(&tmp, &cert).unwrap();
        (cert, key)
    }

    /// Every node of `c` gets its certificate and a `60-tls.toml` drop-in
    /// with `[tls]` and `[agent] auth = auth`; returns each node's identity.
    pub fn equip(&self, c: &Cluster, auth: &str) -> Vec<(String, Identity)> {
        let mut all = Vec::new();
        for (name, node) in &c.nodes {
            let identity = self.node(name, &node.address);
            self.install(name, &identity);
            c.dropin(name, "60-tls.toml", &self.dropin(name, auth));
            all.push((name.clone(), identity));
        }
        all
    }

    /// The drop-in of node `name`.
    pub fn dropin(&self, name: &str, auth: &str) -> String {
        let dir = self.dir.join(name);
        format!(
            "[tls]\ncertificate = \"{}\"\nkey = \"{}\"\nca = \"{}\"\nreload_interval = \"1s\"\n\n[agent]\nauth = \"{auth}\"\n",
            dir.join("node.pem").display(),
            dir.join("node.key").display(),
            self.dir.join("ca.pem").display()
        )
    }
}

fn write_private(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// The outcome of one TLS request: the answer, or why the connection failed.
pub type Answer = Result<(u16, Value), String>;

/// An HTTP request over TLS to `address`, trusting `ca_pem`, presenting
/// `identity` (or no certificate).
pub fn tls_http(
    address: &str,
    ca_pem: &str,
    identity: Option<&Identity>,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let (stream, _) = connect(address, ca_pem, identity)?;
    http_over(stream, address, method, path, auth, body).map_err(|e| e.to_string())
}

/// A TLS connection to `address` after its handshake, and the subject of
/// the certificate the server presented.
pub fn connect(
    address: &str,
    ca_pem: &str,
    identity: Option<&Identity>,
) -> Result<(rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => {
            let chain = CertificateDer::pem_slice_iter(id.cert.as_bytes())
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let host = address.rsplit_once(':').unwrap().0.to_owned();
    let name = ServerName::try_from(host).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(address).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    // Complete the handshake (and, in TLS 1.3, read the server's verdict on
    // our certificate) before the request goes out.
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(|e| e.to_string())?;
    }
    let subject = stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| x509_parser::parse_x509_certificate(c).unwrap().1.subject().to_string())
        .unwrap_or_default();
    Ok((stream, subject))
}
