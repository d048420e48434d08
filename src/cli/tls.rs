//! `hwdr tls init` and `hwdr tls issue`: the cluster CA and the node
//! certificates for clusters without Hopsworks' own PKI (the work is in
//! [`crate::tls::pki`]; this file parses, calls and prints).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::{Config, NodeName};
use crate::exit::Code;
use crate::outln;
use crate::tls::pki::{self, CaFiles, Issued, Validity};

/// `hwdr tls ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create the cluster CA (ca.key, ca.pem); once, on one head node.
    Init(InitArgs),
    /// Issue a node's certificate and key, signed by the cluster CA, naming
    /// the node as its [[nodes]] entry does.
    Issue(IssueArgs),
}

/// Options of `hwdr tls init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The folder for ca.pem and ca.key (made with mode 0700).
    #[arg(long, value_name = "DIR", default_value = pki::DEFAULT_CA_DIR)]
    dir: PathBuf,
    /// How many days the CA is valid.
    #[arg(long, default_value_t = pki::DEFAULT_CA_DAYS, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    days: u32,
    /// Replace an existing CA: every certificate it issued is then refused,
    /// so every node needs a new one.
    #[arg(long)]
    force: bool,
}

/// Options of `hwdr tls issue`.
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// The node, by its [[nodes]] name.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    node: Option<String>,
    /// Issue a certificate for every [[nodes]] entry.
    #[arg(long)]
    all: bool,
    /// The CA's folder (as given to `hwdr tls init --dir`).
    #[arg(long, value_name = "DIR", default_value = pki::DEFAULT_CA_DIR)]
    ca_dir: PathBuf,
    /// The folder for node.pem, node.key and ca.pem (made with mode 0700)
    /// [default: <CA_DIR>/issued/<NODE>].
    #[arg(long, value_name = "DIR", conflicts_with = "all")]
    out: Option<PathBuf>,
    /// How many days the certificate is valid (never past the CA's end).
    #[arg(long, default_value_t = pki::DEFAULT_NODE_DAYS, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    days: u32,
    /// Replace a node's existing files.
    #[arg(long)]
    force: bool,
}

/// Runs `hwdr tls init` or `hwdr tls issue`.
pub fn run(config_path: &Path, command: Command) -> Result<Code> {
    match command {
        Command::Init(args) => init(config_path, &args),
        Command::Issue(args) => issue(config_path, &args),
    }
}

fn init(config_path: &Path, args: &InitArgs) -> Result<Code> {
    let cn = pki::ca_common_name(cluster_name(config_path).as_deref());
    let validity = Validity::days_from_now(args.days);
    let files = pki::init_ca(&args.dir, &cn, validity, args.force)?;
    outln!(
        "created the cluster CA \"{cn}\", valid until {}",
        pki::date(validity.not_after())
    );
    outln!(
        "  {}  the CA certificate: every node trusts it (issued with each node's files as ca.pem)",
        files.cert.display()
    );
    outln!(
        "  {}  the CA key (0600): keep it on this host only and back it up offline; whoever has it can \
         make certificates every agent accepts",
        files.key.display()
    );
    warn_exposed(&args.dir, &files)?;
    let ca_dir = if args.dir == Path::new(pki::DEFAULT_CA_DIR) {
        String::new()
    } else {
        format!(" --ca-dir {}", quote(&args.dir.display().to_string()))
    };
    outln!("next: hwdr tls issue --all{ca_dir}   (or: hwdr tls issue <node>{ca_dir})");
    Ok(Code::Success)
}

/// The cluster's name for the CA's, when a valid configuration says it.
fn cluster_name(config_path: &Path) -> Option<String> {
    if !config_path.exists() {
        return None;
    }
    match Config::load(config_path) {
        Ok(config) => Some(config.cluster),
        Err(e) => {
            outln!("warn: the CA's name has no cluster name: the configuration does not load: {e}");
            None
        }
    }
}

/// Warns when the CA folder is open to others or the key is not root's.
fn warn_exposed(dir: &Path, files: &CaFiles) -> Result<()> {
    if pki::dir_open_to_others(dir)? {
        outln!(
            "warn: {} existed and others may enter it; make it root's alone: chmod 0700 {0}",
            dir.display()
        );
    }
    let meta = files
        .key
        .metadata()
        .with_context(|| format!("reading the owner of {}", files.key.display()))?;
    if meta.uid() != 0 {
        outln!(
            "warn: {} is owned by uid {}; the CA key should be root's: chown root:root {0}",
            files.key.display(),
            meta.uid()
        );
    }
    Ok(())
}

fn issue(config_path: &Path, args: &IssueArgs) -> Result<Code> {
    let config = super::load_config(config_path)?;
    let nodes: Vec<(&NodeName, &str)> = match &args.node {
        Some(name) => vec![pki::find_node(&config, name)?],
        None => config.nodes.iter().map(|n| (&n.name, n.address.as_str())).collect(),
    };
    let ca = CaFiles::in_dir(&args.ca_dir).load()?;
    let out_dir = |name: &NodeName| {
        args.out
            .clone()
            .unwrap_or_else(|| pki::default_out_dir(&args.ca_dir, name))
    };
    // With --all, refuse before writing anything rather than halfway.
    if !args.force {
        for (name, _) in &nodes {
            pki::check_out_dir(name, &out_dir(name))?;
        }
    }
    let validity = Validity::days_from_now(args.days);
    for (name, address) in nodes {
        let issued = pki::issue(&ca, name, address, &out_dir(name), validity, args.force)?;
        print_issued(&config, &issued, address);
    }
    outln!("on each node, in /etc/hwdr/hwdr.toml or a drop-in (e.g. /etc/hwdr/hwdr.d/30-tls.toml):");
    outln!("  [tls]");
    outln!("  certificate = \"{}/{}\"", pki::NODE_TLS_DIR, pki::NODE_CERT);
    outln!("  key = \"{}/{}\"", pki::NODE_TLS_DIR, pki::NODE_KEY);
    outln!("  ca = \"{}/{}\"", pki::NODE_TLS_DIR, pki::CA_CERT);
    Ok(Code::Success)
}

/// What was issued, and the commands that put it in place on the node.
fn print_issued(config: &Config, issued: &Issued, address: &str) {
    let sans: Vec<String> = issued.sans.iter().map(ToString::to_string).collect();
    outln!(
        "issued node {}: CN={}, {}, valid until {}",
        issued.node,
        issued.node,
        sans.join(", "),
        pki::date(issued.not_after)
    );
    let [cert, key, ca] = issued.files().map(|f| quote(&f.display().to_string()));
    outln!("  {cert}\n  {key}  (0600)\n  {ca}");
    let dest = pki::NODE_TLS_DIR;
    if issued.node == config.this_node {
        outln!("install them on this node ({}), as root:", issued.node);
        outln!("  install -d -m 0700 {dest}");
        outln!("  install -m 0644 -t {dest} {cert} {ca}");
        outln!("  install -m 0600 -t {dest} {key}");
        return;
    }
    let host = crate::tls::identity::address_host(address);
    let scp_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    outln!("copy them to node {}, as root (scp -p keeps the modes):", issued.node);
    outln!("  ssh root@{host} install -d -m 0700 {dest}");
    outln!("  scp -p {cert} {key} {ca} root@{scp_host}:{dest}/");
}

/// `s` as one shell word (the printed commands are meant to be pasted).
fn quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:@=+,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(
            quote("/etc/hwdr/tls-ca/issued/ndb1/node.pem"),
            "/etc/hwdr/tls-ca/issued/ndb1/node.pem"
        );
        assert_eq!(quote("/tmp/my ca/ca.pem"), "'/tmp/my ca/ca.pem'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
