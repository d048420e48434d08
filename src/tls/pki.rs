//! A small PKI for clusters without Hopsworks' own (`hwdr tls init`, `hwdr
//! tls issue`): a cluster CA (ECDSA P-256, self-signed) and node
//! certificates it signs, naming the node as `[[nodes]]` does so the
//! identity checks of mutual TLS accept them. Time is a parameter
//! ([`Validity`]); the functions that only build certificates
//! ([`generate_ca`], [`generate_node`]) touch no file, so tests can make
//! expired, foreign or impostor certificates at will.

use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};

use crate::config::{Config, NodeName};
use crate::exit::HwdrError;
use crate::fsutil;

/// Where `hwdr tls init` puts the CA unless told otherwise.
pub const DEFAULT_CA_DIR: &str = "/etc/hwdr/tls-ca";
/// How long the CA is valid unless told otherwise (about ten years).
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// How long a node certificate is valid unless told otherwise (825 days,
/// the longest that common TLS clients accept for a server certificate).
pub const DEFAULT_NODE_DAYS: u32 = 825;
/// Where a node keeps its certificate, key and CA (the `[tls]` defaults).
pub const NODE_TLS_DIR: &str = "/etc/hwdr/tls";
/// The CA certificate's file name (in the CA folder and on every node).
pub const CA_CERT: &str = "ca.pem";
/// The CA key's file name in the CA folder.
pub const CA_KEY: &str = "ca.key";
/// A node certificate's file name.
pub const NODE_CERT: &str = "node.pem";
/// A node key's file name.
pub const NODE_KEY: &str = "node.key";

/// Certificates start this much before `now`: a node whose clock is a few
/// minutes behind must not refuse a certificate issued a moment ago.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// 9999-12-31 23:59:59 UTC, the last time X.509 can write.
const LAST_SECOND: u64 = 253_402_300_799;
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// When a certificate is issued and for how many days it is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// The time of issue (the certificate starts [`BACKDATE`] earlier).
    pub now: SystemTime,
    /// Days from `now` to the end of validity.
    pub days: u32,
}

impl Validity {
    /// Issued now, valid for `days`.
    pub fn days_from_now(days: u32) -> Validity {
        Validity {
            now: SystemTime::now(),
            days,
        }
    }

    /// The end of validity.
    pub fn not_after(&self) -> SystemTime {
        self.now + DAY * self.days
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertifiedPem {
    /// The certificate (`-----BEGIN CERTIFICATE-----`).
    pub cert: String,
    /// The PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
    pub key: String,
}

impl fmt::Debug for CertifiedPem {
    // Never print a private key, not even in a test failure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedPem")
            .field("cert", &self.cert)
            .field("key", &"<private>")
            .finish()
    }
}

/// One subject alternative name of a node certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    /// A DNS name (the node name, or a host name in `address`).
    Dns(String),
    /// An IP address (the host of `address` when it is one).
    Ip(IpAddr),
}

impl San {
    /// A DNS name, or an IP address if `host` parses as one.
    pub fn of_host(host: &str) -> San {
        match host.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(host.to_owned()),
        }
    }

    fn same(&self, other: &San) -> bool {
        match (self, other) {
            // DNS names compare without regard to case.
            (San::Dns(a), San::Dns(b)) => a.eq_ignore_ascii_case(b),
            (San::Ip(a), San::Ip(b)) => a == b,
            _ => false,
        }
    }

    fn to_rcgen(&self) -> Result<SanType> {
        Ok(match self {
            San::Dns(name) => SanType::DnsName(
                name.as_str()
                    .try_into()
                    .with_context(|| format!("'{name}' cannot be a DNS name in a certificate"))?,
            ),
            San::Ip(ip) => SanType::IpAddress(*ip),
        })
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => write!(f, "DNS:{name}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// The names a node's certificate carries: its node name, then the host of
/// its address (an IP SAN if it is an IP address, else a DNS SAN), each once.
pub fn node_sans(name: &NodeName, address: &str) -> Vec<San> {
    let mut sans: Vec<San> = Vec::new();
    for san in [
        San::of_host(name.as_str()),
        San::of_host(super::identity::address_host(address)),
    ] {
        if !sans.iter().any(|s| s.same(&san)) {
            sans.push(san);
        }
    }
    sans
}

/// The CA's common name: `hwdr cluster CA <cluster>` (without a cluster
/// name, `hwdr cluster CA`).
pub fn ca_common_name(cluster: Option<&str>) -> String {
    match cluster.map(str::trim).filter(|c| !c.is_empty()) {
        Some(cluster) => format!("hwdr cluster CA {cluster}"),
        None => "hwdr cluster CA".to_owned(),
    }
}

/// A new cluster CA: an ECDSA P-256 key and its self-signed certificate
/// (CA, signs only end-entity certificates; keyCertSign and cRLSign).
pub fn generate_ca(common_name: &str, validity: Validity) -> Result<CertifiedPem> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the CA key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_only(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, validity.now, validity.not_after())?;
    let cert = params
        .self_signed(&key)
        .with_context(|| format!("signing the CA certificate '{common_name}'"))?;
    Ok(CertifiedPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A new node certificate signed by `ca`: CN = the node name, the SANs
/// given (see [`node_sans`]), for TLS servers and clients alike (an agent
/// serves, and a head node also calls the others). Its end is cut to the
/// CA's, and a CA that has expired, or whose key is not its certificate's,
/// is refused.
pub fn generate_node(ca: &CertifiedPem, name: &NodeName, sans: &[San], validity: Validity) -> Result<CertifiedPem> {
    let (issuer, ca_end) = ca_issuer(ca)?;
    if validity.now >= ca_end {
        anyhow::bail!(
            "the CA expired on {}: create a new one (hwdr tls init --force) and issue every node again",
            date(ca_end)
        );
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_only(name.as_str());
    params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, validity.now, validity.not_after().min(ca_end))?;
    let key =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).with_context(|| format!("generating the key of {name}"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .with_context(|| format!("signing the certificate of node {name}"))?;
    Ok(CertifiedPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The CA as an issuer, and the end of its validity; checks that the key
/// is the one of the certificate.
fn ca_issuer(ca: &CertifiedPem) -> Result<(Issuer<'static, KeyPair>, SystemTime)> {
    let key = KeyPair::from_pem(&ca.key).context("reading the CA key (PEM)")?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca.cert.as_bytes()).context("reading the CA certificate (PEM)")?;
    let x509 = pem.parse_x509().context("parsing the CA certificate")?;
    if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        anyhow::bail!("the CA key does not belong to the CA certificate ({})", x509.subject());
    }
    if !x509.is_ca() {
        anyhow::bail!("{} is not a CA certificate (basic constraints)", x509.subject());
    }
    let end = u64::try_from(x509.validity().not_after.timestamp())
        .map_or(UNIX_EPOCH, |s| UNIX_EPOCH + Duration::from_secs(s));
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, key).context("reading the CA certificate as an issuer")?;
    Ok((issuer, end))
}

fn common_name_only(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// Sets the validity to [`BACKDATE`] before `now` … `until`.
fn set_validity(params: &mut CertificateParams, now: SystemTime, until: SystemTime) -> Result<()> {
    let since_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).context("a time before 1970");
    // rcgen takes `time::OffsetDateTime`: the epoch plus a duration builds one.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + since_epoch(now)?.saturating_sub(BACKDATE);
    let end = since_epoch(until)?;
    if end.as_secs() > LAST_SECOND {
        anyhow::bail!("a certificate cannot be valid past the year 9999: give fewer days");
    }
    params.not_after = epoch + end;
    Ok(())
}

/// `t` as a UTC date and time, for messages.
pub fn date(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

/// The files of a CA folder.
#[derive(Debug, Clone)]
pub struct CaFiles {
    /// `<dir>/ca.pem`, the CA certificate (0644).
    pub cert: PathBuf,
    /// `<dir>/ca.key`, the CA key (0600).
    pub key: PathBuf,
}

impl CaFiles {
    /// The files in CA folder `dir`.
    pub fn in_dir(dir: &Path) -> CaFiles {
        CaFiles {
            cert: dir.join(CA_CERT),
            key: dir.join(CA_KEY),
        }
    }

    /// Reads the CA (certificate and key).
    pub fn load(&self) -> Result<CertifiedPem> {
        let read = |path: &Path| match fs::read_to_string(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => Err(anyhow::anyhow!(
                "{} does not exist: create the cluster CA first (hwdr tls init), or give its folder with --ca-dir",
                path.display()
            )),
            other => other.with_context(|| format!("reading {}", path.display())),
        };
        let ca = CertifiedPem {
            cert: read(&self.cert)?,
            key: read(&self.key)?,
        };
        // Check it now, so the error names the files.
        ca_issuer(&ca).with_context(|| format!("the CA in {} and {}", self.cert.display(), self.key.display()))?;
        Ok(ca)
    }
}

/// `hwdr tls init`: creates a CA named `common_name` in `dir` (made 0700
/// if missing): `ca.key` (0600) and `ca.pem` (0644), each written durably.
/// An existing CA is replaced only with `force`.
pub fn init_ca(dir: &Path, common_name: &str, validity: Validity, force: bool) -> Result<CaFiles> {
    let files = CaFiles::in_dir(dir);
    if !force {
        refuse_existing(
            &[&files.cert, &files.key],
            "a cluster CA exists",
            "re-creating the CA invalidates every certificate it issued: every node then needs a new one \
             (hwdr tls issue --all); to do so, add --force",
        )?;
    }
    let ca = generate_ca(common_name, validity)?;
    fsutil::mkdir(dir, 0o700)?;
    // The key first: a certificate present means the CA is whole.
    fsutil::write_atomic(&files.key, ca.key.as_bytes(), 0o600)?;
    fsutil::write_atomic(&files.cert, ca.cert.as_bytes(), 0o644)?;
    Ok(files)
}

/// What [`issue`] wrote for one node.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The node.
    pub node: NodeName,
    /// The folder holding `node.pem`, `node.key` and `ca.pem`.
    pub dir: PathBuf,
    /// The certificate's subject alternative names.
    pub sans: Vec<San>,
    /// The end of the certificate's validity (cut to the CA's).
    pub not_after: SystemTime,
}

impl Issued {
    /// The files written, in the order to copy them.
    pub fn files(&self) -> [PathBuf; 3] {
        node_files(&self.dir)
    }
}

/// A node's files in folder `out`: `node.pem`, `node.key`, `ca.pem`.
pub fn node_files(out: &Path) -> [PathBuf; 3] {
    [NODE_CERT, NODE_KEY, CA_CERT].map(|f| out.join(f))
}

/// The folder `hwdr tls issue` writes a node's files to by default:
/// `<ca_dir>/issued/<node>`.
pub fn default_out_dir(ca_dir: &Path, node: &NodeName) -> PathBuf {
    ca_dir.join("issued").join(node.as_str())
}

/// `hwdr tls issue`: a certificate for `node` (named by its `[[nodes]]`
/// name and address) signed by `ca`, written to `out` (made 0700) as
/// `node.key` (0600), `node.pem` and `ca.pem` (0644). Existing files are
/// replaced only with `force`.
pub fn issue(
    ca: &CertifiedPem,
    node: &NodeName,
    address: &str,
    out: &Path,
    validity: Validity,
    force: bool,
) -> Result<Issued> {
    if !force {
        check_out_dir(node, out)?;
    }
    let sans = node_sans(node, address);
    let pem = generate_node(ca, node, &sans, validity)?;
    let not_after = cert_not_after(&pem.cert)?;
    fsutil::mkdir(out, 0o700)?;
    let [cert, key, ca_copy] = node_files(out);
    // The key first, the CA last: a present ca.pem means the set is whole.
    fsutil::write_atomic(&key, pem.key.as_bytes(), 0o600)?;
    fsutil::write_atomic(&cert, pem.cert.as_bytes(), 0o644)?;
    fsutil::write_atomic(&ca_copy, ca.cert.as_bytes(), 0o644)?;
    Ok(Issued {
        node: node.clone(),
        dir: out.to_owned(),
        sans,
        not_after,
    })
}

/// Refuses (a configuration error) when any of a node's files exists in
/// `out`: `--all` checks every node before it writes any.
pub fn check_out_dir(node: &NodeName, out: &Path) -> Result<()> {
    let files = node_files(out);
    refuse_existing(
        &files.iter().collect::<Vec<_>>(),
        &format!("node {node} has certificate files"),
        "replacing them makes the node's current certificate unused once the new one is copied there; \
         to do so, add --force",
    )
}

fn cert_not_after(cert: &str) -> Result<SystemTime> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).context("reading the new certificate")?;
    let x509 = pem.parse_x509().context("parsing the new certificate")?;
    let secs = u64::try_from(x509.validity().not_after.timestamp()).context("a certificate ending before 1970")?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

/// A configuration error naming the files of `paths` that exist, what they
/// are and what replacing them means; `Ok` when none does.
fn refuse_existing(paths: &[&PathBuf], what: &str, consequence: &str) -> Result<()> {
    let existing: Vec<String> = paths
        .iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .map(|p| p.display().to_string())
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    Err(HwdrError::Config(format!("{what} ({}); {consequence}", existing.join(", "))).into())
}

/// The `[[nodes]]` entry named `name` and its address; an unknown name is
/// a configuration error listing the known ones.
pub fn find_node<'c>(config: &'c Config, name: &str) -> Result<(&'c NodeName, &'c str)> {
    if let Some(node) = config.nodes.iter().find(|n| n.name.as_str() == name) {
        return Ok((&node.name, &node.address));
    }
    let known: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
    let files: Vec<String> = config.files.iter().map(|f| f.display().to_string()).collect();
    Err(HwdrError::Config(format!(
        "no node '{name}' in [[nodes]] of {}; the nodes are: {}",
        files.join(", "),
        known.join(", ")
    ))
    .into())
}

/// Whether group or others may enter `dir` (a CA folder should be 0700).
pub fn dir_open_to_others(dir: &Path) -> Result<bool> {
    let meta = fs::metadata(dir).with_context(|| format!("reading the mode of {}", dir.display()))?;
    Ok(meta.permissions().mode() & 0o077 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> NodeName {
        s.parse().unwrap()
    }

    #[test]
    fn sans_are_the_name_and_the_address_host() {
        assert_eq!(
            node_sans(&name("ndb1"), "10.0.0.2:7878"),
            vec![San::Dns("ndb1".into()), San::Ip("10.0.0.2".parse().unwrap())]
        );
        assert_eq!(
            node_sans(&name("ndb1"), "ndb1.prod.example:7878"),
            vec![San::Dns("ndb1".into()), San::Dns("ndb1.prod.example".into())]
        );
        assert_eq!(
            node_sans(&name("head1"), "[fd00::1]:7878"),
            vec![San::Dns("head1".into()), San::Ip("fd00::1".parse().unwrap())]
        );
    }

    #[test]
    fn sans_are_deduplicated() {
        assert_eq!(node_sans(&name("head1"), "head1:7878"), vec![San::Dns("head1".into())]);
        // DNS names compare without case.
        assert_eq!(node_sans(&name("Head1"), "head1:7878"), vec![San::Dns("Head1".into())]);
        // A node named by its IP address: one IP SAN.
        assert_eq!(
            node_sans(&name("10.0.0.7"), "10.0.0.7:7878"),
            vec![San::Ip("10.0.0.7".parse().unwrap())]
        );
    }

    #[test]
    fn ca_names() {
        assert_eq!(ca_common_name(Some("prod")), "hwdr cluster CA prod");
        assert_eq!(ca_common_name(Some("")), "hwdr cluster CA");
        assert_eq!(ca_common_name(None), "hwdr cluster CA");
    }

    fn at(secs: u64, days: u32) -> Validity {
        Validity {
            now: UNIX_EPOCH + Duration::from_secs(secs),
            days,
        }
    }

    #[test]
    fn node_certificate_ends_with_its_ca() {
        let ca = generate_ca("hwdr cluster CA t", at(1_800_000_000, 10)).unwrap();
        let node = generate_node(&ca, &name("ndb1"), &[San::Dns("ndb1".into())], at(1_800_000_000, 825)).unwrap();
        let ca_end = cert_not_after(&ca.cert).unwrap();
        assert_eq!(cert_not_after(&node.cert).unwrap(), ca_end);
        assert_eq!(ca_end, UNIX_EPOCH + Duration::from_secs(1_800_000_000) + DAY * 10);
    }

    #[test]
    fn refuses_an_expired_ca_and_a_key_of_another() {
        let ca = generate_ca("a", at(1_800_000_000, 1)).unwrap();
        let sans = [San::Dns("n".into())];
        let err = generate_node(&ca, &name("n"), &sans, at(1_800_000_000 + 2 * 86_400, 1)).unwrap_err();
        assert!(format!("{err:#}").contains("the CA expired on"), "{err:#}");
        let other = generate_ca("b", at(1_800_000_000, 1)).unwrap();
        let mixed = CertifiedPem {
            cert: ca.cert,
            key: other.key,
        };
        let err = generate_node(&mixed, &name("n"), &sans, at(1_800_000_000, 1)).unwrap_err();
        assert!(format!("{err:#}").contains("does not belong"), "{err:#}");
    }
}
