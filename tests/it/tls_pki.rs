//! `hwdr tls init` and `hwdr tls issue`: the cluster CA and node
//! certificates, checked as a user would (files, modes, exit codes), parsed
//! with x509-parser and verified with rustls' own verifiers, as the agents
//! and the leader will verify them.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::common::{hwdr_bin, open_tempdir, text};

const DAY: i64 = 86_400;

/// A cluster of three nodes (an IP address, a DNS name) in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = open_tempdir();
        let config = dir.path().join("etc/hwdr.toml");
        fs::create_dir_all(config.parent().unwrap()).unwrap();
        let text = r#"
[cluster]
name = "prod"
[[nodes]]
name = "head1"
address = "127.0.0.1:7878"
roles = ["head"]
[[nodes]]
name = "ndb1"
address = "10.0.0.2:7878"
roles = ["rondb"]
rondb_node_ids = [2]
[[nodes]]
name = "dn1"
address = "dn1.prod.example:7878"
roles = ["hopsfs"]
[node]
name = "head1"
[repository]
path = "/mnt/hwdr"
"#;
        fs::write(&config, text).unwrap();
        Pki { dir, config }
    }

    fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("tls-ca")
    }

    fn hwdr(&self, args: &[&str]) -> Output {
        Command::new(hwdr_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// `hwdr tls <args>` with `--dir`/`--ca-dir` set to the test's CA folder.
    fn tls(&self, args: &[&str]) -> Output {
        let flag = if args[0] == "init" { "--dir" } else { "--ca-dir" };
        let ca_dir = self.ca_dir();
        let mut all = vec!["tls"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[flag, ca_dir.to_str().unwrap()]);
        self.hwdr(&all)
    }

    fn tls_ok(&self, args: &[&str]) -> String {
        let out = self.tls(args);
        assert!(
            out.status.success(),
            "hwdr tls {args:?} failed: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn issued(&self, node: &str) -> PathBuf {
        self.ca_dir().join("issued").join(node)
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn der(pem_text: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).unwrap();
    pem.contents
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Asserts that the certificate is valid from about now for about `days`.
fn assert_valid_for(cert: &X509Certificate<'_>, days: i64) {
    let from = cert.validity().not_before.timestamp();
    let to = cert.validity().not_after.timestamp();
    assert!((now() - from).abs() < 3600, "not before {from}, now {}", now());
    assert!(
        ((to - from) - days * DAY).abs() < 3600,
        "{from}..{to} is not {days} days"
    );
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let ext = cert.subject_alternative_name().unwrap().expect("no SAN extension");
    ext.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                format!("IP:{}", std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap()))
            }
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

/// Verifies `cert` as rustls' WebPKI verifiers will in the agents: as a
/// server certificate for `name`, and as a client certificate.
fn verify(ca_pem: &str, cert_pem: &str, name: &str) -> Result<(), rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(der(ca_pem))).unwrap();
    let roots = Arc::new(roots);
    let cert = CertificateDer::from(der(cert_pem));
    let server = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .unwrap();
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    server.verify_server_cert(&cert, &[], &server_name, &[], UnixTime::now())?;
    let client = WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .unwrap();
    client.verify_client_cert(&cert, &[], UnixTime::now())?;
    Ok(())
}

#[test]
fn init_creates_the_ca_with_its_modes() {
    let pki = Pki::new();
    let out = pki.tls_ok(&["init"]);
    assert!(out.contains("hwdr cluster CA prod"), "{out}");
    let ca = pki.ca_dir();
    assert_eq!(mode(&ca), 0o700);
    assert_eq!(mode(&ca.join("ca.pem")), 0o644);
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    assert_eq!(
        fs::metadata(ca.join("ca.key")).unwrap().uid(),
        0,
        "the CA key is root's"
    );
    let names: Vec<_> = fs::read_dir(&ca).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "only ca.pem and ca.key, no temp file: {names:?}");

    let pem = fs::read_to_string(ca.join("ca.pem")).unwrap();
    let der = der(&pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=hwdr cluster CA prod");
    assert_eq!(cert.subject(), cert.issuer(), "self-signed");
    assert!(cert.is_ca());
    let usage = cert.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign() && usage.crl_sign(), "{usage:?}");
    assert_valid_for(&cert, 3650);
    // The key is the certificate's.
    let key = rcgen::KeyPair::from_pem(&fs::read_to_string(ca.join("ca.key")).unwrap()).unwrap();
    assert_eq!(cert.public_key().subject_public_key.data.as_ref(), key.public_key_raw());
}

#[test]
fn init_refuses_to_replace_a_ca_without_force() {
    let pki = Pki::new();
    pki.tls_ok(&["init"]);
    let cert = pki.ca_dir().join("ca.pem");
    let before = fs::read(&cert).unwrap();
    let out = pki.tls(&["init"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&cert.display().to_string()), "{err}");
    assert!(err.contains("invalidates every certificate"), "{err}");
    assert_eq!(fs::read(&cert).unwrap(), before, "the CA is unchanged");

    pki.tls_ok(&["init", "--force", "--days", "10"]);
    let after = fs::read_to_string(&cert).unwrap();
    assert_ne!(after.as_bytes(), before.as_slice(), "--force makes a new CA");
    let der = der(&after);
    assert_valid_for(&X509Certificate::from_der(&der).unwrap().1, 10);
}

#[test]
fn issue_makes_a_node_certificate_the_ca_verifies() {
    let pki = Pki::new();
    pki.tls_ok(&["init"]);
    let out = pki.tls_ok(&["issue", "ndb1", "--days", "30"]);
    let dir = pki.issued("ndb1");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("node.key")), 0o600);
    assert_eq!(mode(&dir.join("node.pem")), 0o644);
    let ca_pem = fs::read_to_string(pki.ca_dir().join("ca.pem")).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("ca.pem")).unwrap(),
        ca_pem,
        "ca.pem is the CA's"
    );
    for line in [
        "certificate = \"/etc/hwdr/tls/node.pem\"",
        "key = \"/etc/hwdr/tls/node.key\"",
        "ca = \"/etc/hwdr/tls/ca.pem\"",
        "scp -p ",
        "root@10.0.0.2:/etc/hwdr/tls/",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }

    let node_pem = fs::read_to_string(dir.join("node.pem")).unwrap();
    let der_node = der(&node_pem);
    let (_, cert) = X509Certificate::from_der(&der_node).unwrap();
    let der_ca = der(&ca_pem);
    let (_, ca) = X509Certificate::from_der(&der_ca).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=ndb1");
    assert_eq!(cert.issuer(), ca.subject());
    assert_eq!(sans(&cert), ["DNS:ndb1", "IP:10.0.0.2"]);
    assert!(!cert.is_ca());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth, "{eku:?}");
    assert_valid_for(&cert, 30);
    let key = rcgen::KeyPair::from_pem(&fs::read_to_string(dir.join("node.key")).unwrap()).unwrap();
    assert_eq!(cert.public_key().subject_public_key.data.as_ref(), key.public_key_raw());

    verify(&ca_pem, &node_pem, "ndb1").unwrap();
    verify(&ca_pem, &node_pem, "10.0.0.2").unwrap();
    assert!(verify(&ca_pem, &node_pem, "head1").is_err(), "names only its node");
    // Another cluster's CA does not vouch for it.
    let other = Pki::new();
    other.tls_ok(&["init"]);
    let other_ca = fs::read_to_string(other.ca_dir().join("ca.pem")).unwrap();
    assert!(verify(&other_ca, &node_pem, "ndb1").is_err());
}

#[test]
fn issue_names_a_dns_address_and_installs_this_node_locally() {
    let pki = Pki::new();
    pki.tls_ok(&["init"]);
    pki.tls_ok(&["issue", "dn1"]);
    let pem = fs::read_to_string(pki.issued("dn1").join("node.pem")).unwrap();
    let der = der(&pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(sans(&cert), ["DNS:dn1", "DNS:dn1.prod.example"]);
    assert_valid_for(&cert, 825);
    let ca_pem = fs::read_to_string(pki.ca_dir().join("ca.pem")).unwrap();
    verify(&ca_pem, &pem, "dn1.prod.example").unwrap();

    // This host is head1: the files are installed here, not copied.
    let out = pki.tls_ok(&["issue", "head1"]);
    assert!(out.contains("install -m 0600 -t /etc/hwdr/tls "), "{out}");
    assert!(!out.contains("scp"), "{out}");
}

#[test]
fn issue_refuses_an_unknown_node_listing_the_known_ones() {
    let pki = Pki::new();
    pki.tls_ok(&["init"]);
    let out = pki.tls(&["issue", "ndb9"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("no node 'ndb9'"), "{err}");
    assert!(err.contains("the nodes are: head1, ndb1, dn1"), "{err}");
    assert!(!pki.ca_dir().join("issued").exists(), "nothing was written");
}

#[test]
fn issue_all_issues_one_per_node() {
    let pki = Pki::new();
    pki.tls_ok(&["init"]);
    pki.tls_ok(&["issue", "--all"]);
    let ca_pem = fs::read_to_string(pki.ca_dir().join("ca.pem")).unwrap();
    let mut issued: Vec<String> = fs::read_dir(pki.ca_dir().join("issued"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    issued.sort();
    assert_eq!(issued, ["dn1", "head1", "ndb1"]);
    for node in ["head1", "ndb1", "dn1"] {
        let dir = pki.issued(node);
        assert_eq!(mode(&dir.join("node.key")), 0o600, "{node}");
        let pem = fs::read_to_string(dir.join("node.pem")).unwrap();
        let der = der(&pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.subject().to_string(), format!("CN={node}"));
        verify(&ca_pem, &pem, node).unwrap();
    }
}

#[test]
fn issue_refuses_to_replace_a_nodes_files_without_force() {
    let pki = Pki::new();
    pki.tls_ok(&["init"]);
    pki.tls_ok(&["issue", "ndb1"]);
    let cert = pki.issued("ndb1").join("node.pem");
    let before = fs::read(&cert).unwrap();

    // --all checks every node first: it writes nothing, not even head1's.
    for args in [&["issue", "ndb1"][..], &["issue", "--all"]] {
        let out = pki.tls(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(&cert.display().to_string()),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(!pki.issued("head1").exists());
    assert_eq!(fs::read(&cert).unwrap(), before);

    pki.tls_ok(&["issue", "ndb1", "--force"]);
    assert_ne!(fs::read(&cert).unwrap(), before);
}

#[test]
fn issue_without_a_ca_says_to_create_one() {
    let pki = Pki::new();
    let out = pki.tls(&["issue", "ndb1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("hwdr tls init"), "{err}");
    assert!(
        err.contains(&pki.ca_dir().join("ca.pem").display().to_string()),
        "{err}"
    );
}

#[test]
fn issue_writes_where_out_says() {
    let pki = Pki::new();
    pki.tls_ok(&["init"]);
    let out_dir = pki.dir.path().join("to-ndb1");
    pki.tls_ok(&["issue", "ndb1", "--out", out_dir.to_str().unwrap()]);
    for file in ["node.pem", "node.key", "ca.pem"] {
        assert!(out_dir.join(file).is_file(), "{file}");
    }
    assert!(!pki.issued("ndb1").exists());
}
