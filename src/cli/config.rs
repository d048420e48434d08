//! `hwdr config check`: validate the configuration and everything it names
//! that can be checked on this host, printing each check.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Result;

use crate::config::{Auth, Config, RepositoryLocation, Role};
use crate::exit::{Code, HwdrError};
use crate::outln;
use crate::repo::lock::this_host;
use crate::repo::store::{ObjectKey, PutOptions, StoreError};
use crate::repo::Repository;
use crate::tls::identity::CertInfo;

/// `hwdr config ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the configuration and check users, programs, folders and the
    /// repository on this host.
    Check,
}

/// The result of one check.
struct Report {
    failed: usize,
}

impl Report {
    fn ok(&mut self, what: impl AsRef<str>) {
        outln!("ok    {}", what.as_ref());
    }

    fn fail(&mut self, what: impl AsRef<str>) {
        self.failed += 1;
        outln!("FAIL  {}", what.as_ref());
    }

    fn warn(&mut self, what: impl AsRef<str>) {
        outln!("warn  {}", what.as_ref());
    }

    fn check(&mut self, result: Result<String, String>) {
        match result {
            Ok(s) => self.ok(s),
            Err(s) => self.fail(s),
        }
    }
}

/// Runs `hwdr config check`.
pub fn run(config_path: &Path, Command::Check: Command) -> Result<Code> {
    let config = super::load_config(config_path)?;
    let mut report = Report { failed: 0 };
    let files: Vec<_> = config.files.iter().map(|f| f.display().to_string()).collect();
    report.ok(format!("configuration parsed and valid: {}", files.join(", ")));
    let this = config.this();
    let roles: Vec<_> = this.roles.iter().map(Role::to_string).collect();
    report.ok(format!(
        "this host is node '{}' ({}), roles {}, cluster '{}' of {} nodes",
        this.name,
        this.address,
        roles.join(", "),
        config.cluster,
        config.nodes.len()
    ));
    check_host(&config, &mut report);
    if report.failed > 0 {
        return Err(HwdrError::Config(format!("{} check(s) failed", report.failed)).into());
    }
    outln!("all checks passed");
    Ok(Code::Success)
}

fn check_host(config: &Config, report: &mut Report) {
    let this = config.this();
    if this.has(Role::Head) || this.has(Role::Rondb) {
        check_rondb_user(config, report);
        check_rondb_password(config, report);
    }
    if this.has(Role::Head) {
        check_head(config, report);
    }
    if this.has(Role::Hopsfs) {
        check_hopsfs(config, report);
    }
    // The agents need their credentials; a one-node cluster without them has no agents to talk to.
    if crate::fleet::needs_agents(config) || config.agent.token_file.exists() || config.tls.is_some() {
        check_auth(config, report);
    }
    if this.has(Role::Rondb) {
        check_backup_dir(config, report);
    }
    check_repository(config, report);
}

fn check_rondb_user(config: &Config, report: &mut Report) {
    report.check(
        config
            .rondb_user()
            .map(|u| {
                format!(
                    "{}: user '{}' exists (uid {}, gid {})",
                    config.origins.key("rondb", "user"),
                    u.name,
                    u.uid,
                    u.gid
                )
            })
            .map_err(|e| format!("{e:#}")),
    );
}

/// RonDB's own backup encryption: off, or on with a password file this
/// node can use (a head node encrypts with it, every node running
/// `ndb_restore` decrypts with it).
fn check_rondb_password(config: &Config, report: &mut Report) {
    let key = config.origins.key("rondb", "backup_password_file");
    let Some(path) = &config.rondb.backup_password_file else {
        report.ok(format!("{key}: not set: RonDB's own backup encryption is off"));
        return;
    };
    report.check(
        crate::rondb::password::BackupPassword::read(path, &key)
            .map(|_| {
                format!(
                    "{key}: RonDB's own backup encryption is on: {} is root's, mode 0600, with a password RonDB takes",
                    path.display()
                )
            })
            .map_err(|e| format!("{e:#}")),
    );
}

/// The RonDB programs, the MySQL socket and the config files a head node
/// backs up.
fn check_head(config: &Config, report: &mut Report) {
    let o = &config.origins;
    for (key, path) in [
        ("mgm_client", &config.rondb.mgm_client),
        ("mysqlpump", &config.rondb.mysqlpump),
        ("mysqldump", &config.rondb.mysqldump),
        ("mysql", &config.rondb.mysql),
    ] {
        report.check(
            executable(path)
                .map(|_| format!("{}: {} is executable", o.key("rondb", key), path.display()))
                .map_err(|e| format!("{}: {e}", o.key("rondb", key))),
        );
    }
    check_mysqld(config, report);
    let key = o.key("config_backup", "paths");
    if config.config_paths.is_empty() {
        report.warn(format!("{key}: empty: the cluster definition is not backed up"));
    }
    for path in &config.config_paths {
        match fs::metadata(path) {
            Ok(_) => report.ok(format!("{key}: {} exists", path.display())),
            Err(e) => report.fail(format!("{key}: {}: {e}", path.display())),
        }
    }
}

/// mysqld answers on `[rondb] socket` as the backup asks it: the schemas
/// step's `SHOW DATABASES`, as `[rondb] user`, through `[rondb] mysql`. Not
/// a look for the socket file as root: the user, the folders' permissions
/// and the server all count, and a simulated mysqld has no file. A warning:
/// mysqld may be down for a while.
fn check_mysqld(config: &Config, report: &mut Report) {
    let key = config.origins.key("rondb", "socket");
    let socket = config.rondb.socket.display();
    let Ok(user) = config.rondb_user() else {
        return; // check_rondb_user failed already, naming the user.
    };
    let mut backup = config.backup.clone();
    backup.dump_timeout = backup.dump_timeout.min(MYSQLD_CHECK_TIMEOUT);
    let name = user.name.clone();
    match crate::rondb::dump::databases_to_dump(&config.rondb, &backup, user) {
        Ok(databases) => report.ok(format!(
            "{key}: mysqld answers on {socket} as {name} ({} databases to dump)",
            databases.len()
        )),
        Err(e) => {
            let hint = if config.rondb.socket.exists() {
                ""
            } else {
                " (the socket does not exist: is mysqld running on this node?)"
            };
            report.warn(format!(
                "{key}: mysqld does not answer on {socket} as {name}{hint}: {e:#}"
            ))
        }
    }
}

/// How long `hwdr config check` waits for mysqld's answer.
const MYSQLD_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `[agent] auth` and the credentials it needs: the token, the certificates.
fn check_auth(config: &Config, report: &mut Report) {
    let key = config.origins.key("agent", "auth");
    match config.agent.auth {
        Auth::Token => report.warn(format!(
            "{key} = token: the bearer token crosses the network in clear; set up mutual TLS (/usr/share/doc/hwdr/docs/security.md)"
        )),
        auth => report.ok(format!("{key} = {auth}: mutual TLS between the leader and the agents")),
    }
    if config.agent.auth.token() {
        check_token(config, report);
    }
    if config.agent.auth.tls() {
        check_tls(config, report);
    }
}

/// This node's certificate and the CA: what they say, and whether a leader
/// would accept the certificate as this node's.
fn check_tls(config: &Config, report: &mut Report) {
    let material = match crate::tls::files::Material::load(config) {
        Ok(m) => m,
        Err(e) => return report.fail(format!("{e:#}")),
    };
    let now = chrono::Utc::now();
    let key = config.origins.key("tls", "certificate");
    for (what, cert) in
        std::iter::once(("certificate", &material.chain[0])).chain(material.ca.iter().map(|c| ("CA", c)))
    {
        match CertInfo::parse(cert) {
            Ok(info) => report_certificate(report, what, &info, now),
            Err(e) => report.fail(format!("{key}: a {what} certificate: {e:#}")),
        }
    }
    let this = config.this();
    report.check(
        crate::tls::client::check_node_certificate(config, &material, this)
            .map(|()| {
                format!(
                    "{key}: chains to the CA and names this node '{}' ({})",
                    this.name, this.address
                )
            })
            .map_err(|e| format!("{e:#}")),
    );
    report.check(
        crate::tls::server::ServerTls::load(config)
            .map(|_| format!("{}: fits the certificate", config.origins.key("tls", "key")))
            .map_err(|e| format!("{e:#}")),
    );
}

/// Certificates this close to their end are reported (as the alert rule in packaging/prometheus/ does).
const EXPIRY_WARNING: chrono::TimeDelta = chrono::TimeDelta::days(30);

fn report_certificate(report: &mut Report, what: &str, info: &CertInfo, now: chrono::DateTime<chrono::Utc>) {
    let line = format!(
        "{what} '{}': SANs {}, issued by '{}', valid {} to {}",
        info.subject,
        info.sans(),
        info.issuer,
        info.not_before.format("%Y-%m-%d"),
        info.not_after.format("%Y-%m-%d %H:%M UTC")
    );
    if info.not_after <= now {
        report.fail(format!("{line}: EXPIRED"));
    } else if info.not_before > now {
        report.fail(format!("{line}: not valid yet"));
    } else if info.not_after - now < EXPIRY_WARNING {
        report.warn(format!("{line}: expires in {} days", (info.not_after - now).num_days()));
    } else {
        report.ok(line);
    }
}

fn check_token(config: &Config, report: &mut Report) {
    let key = config.origins.key("agent", "token_file");
    report.check(
        crate::agent::token::Token::load(&config.agent.token_file, &key)
            .map(|_| {
                format!(
                    "{key}: {} is root's, mode 0600, with a token of at least {} characters",
                    config.agent.token_file.display(),
                    crate::agent::token::MIN_LEN
                )
            })
            .map_err(|e| format!("{e:#}")),
    );
}

fn check_backup_dir(config: &Config, report: &mut Report) {
    let (key, dir) = (config.origins.key("rondb", "backup_dir"), &config.rondb.backup_dir);
    if dir.is_dir() {
        report.ok(format!("{key}: {} is a folder", dir.display()));
    } else {
        report.fail(format!("{key}: {} is not a folder", dir.display()));
    }
}

/// The repository takes a probe object (put, get, list, delete: each
/// reported with its time) and is this cluster's.
fn check_repository(config: &Config, report: &mut Report) {
    let key = match config.repository.location {
        RepositoryLocation::Path(_) => config.origins.key("repository", "path"),
        RepositoryLocation::Object(_) => config.origins.key("repository", "url"),
    };
    let repo = Repository::of(config);
    let location = repo.location();
    match repo.backend().check_location() {
        Ok(()) => report.ok(format!("{key}: {location} is reachable")),
        Err(e) => return report.fail(format!("{key}: {e}")),
    }
    for step in probe(&repo) {
        report.check(step.map_err(|e| format!("{key}: {e}")).map(|s| format!("{key}: {s}")));
    }
    match Repository::open(config) {
        Ok(repo) => {
            report.ok(format!(
                "{key}: {location} is the repository of cluster '{}' ({})",
                config.cluster,
                crate::repo::MARKER
            ));
            report.check(encryption(config, &repo));
        }
        Err(e) => report.fail(format!("{key}: {e:#}")),
    }
}

/// Whether the repository is encrypted and, if so, that this node's key
/// opens it ([`Repository::open`] checked that already).
fn encryption(config: &Config, repo: &Repository) -> Result<String, String> {
    let how = crate::cli::list::sealing(repo, config).map_err(|e| format!("{e:#}"))?;
    match &config.repository.key {
        Some(source) if how != "not encrypted" => Ok(format!(
            "repository {}: {how}; the key in {} opens it",
            repo.location(),
            source.path().display()
        )),
        _ => Ok(format!("repository {}: {how}", repo.location())),
    }
}

fn check_hopsfs(config: &Config, report: &mut Report) {
    let o = &config.origins;
    report.check(
        config
            .hdfs_user()
            .map(|u| format!("{}: user '{}' exists (uid {})", o.key("hopsfs", "user"), u.name, u.uid))
            .map_err(|e| format!("{e:#}")),
    );
    match config.hopsfs_group() {
        Ok(g) => report.ok(format!(
            "{}: group '{}' exists (gid {})",
            o.key("hopsfs", "group"),
            config.hopsfs.group,
            g.gid()
        )),
        Err(e) => report.fail(format!("{e:#}")),
    }
    for dir in &config.hopsfs.data_dirs {
        if dir.join("current/VERSION").is_file() {
            report.ok(format!(
                "{}: {} is a HopsFS storage folder",
                o.key("hopsfs", "data_dirs"),
                dir.display()
            ));
        } else {
            report.warn(format!(
                "{}: {} has no current/VERSION (not formatted yet, or wiped)",
                o.key("hopsfs", "data_dirs"),
                dir.display()
            ));
        }
    }
    if config.hopsfs.datanode_unit.is_empty() {
        report.warn(format!(
            "{}: empty: restores will not stop the data node",
            o.key("hopsfs", "datanode_unit")
        ));
    }
}

fn executable(path: &Path) -> Result<(), String> {
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", path.display()));
    }
    Ok(())
}

/// Proves this node can use the repository: a probe object is put, read
/// back, found by a listing and deleted; each step's result and time. After
/// a failed put nothing else is tried; the delete is tried whenever the put
/// worked.
fn probe(repo: &Repository) -> Vec<Result<String, String>> {
    let backend = repo.backend();
    let name = format!(".hwdr-check-{}-{}", this_host(), std::process::id());
    let key = match ObjectKey::parse(&name) {
        Ok(key) => key,
        Err(e) => return vec![Err(e.to_string())],
    };
    let body = b"hwdr config check probe";
    let at = backend.location_of(&key);
    let mut steps = vec![timed(&format!("put of the probe {at}"), || {
        backend
            .put(&key, &mut &body[..], PutOptions::default())
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    })];
    if steps[0].is_err() {
        return steps;
    }
    steps.push(timed("get of the probe", || {
        let mut back = Vec::new();
        backend
            .get(&key)
            .and_then(|mut r| {
                r.read_to_end(&mut back)
                    .map_err(|e| StoreError::Io("reading".into(), e))
            })
            .map_err(|e| format!("{e:#}"))?;
        if back != body {
            return Err("it reads back different bytes".to_owned());
        }
        Ok(())
    }));
    steps.push(timed("listing of the probe", || {
        let mut listed = false;
        backend
            .list(key.as_str(), &mut |o| {
                listed |= o.key == key;
                Ok(())
            })
            .map_err(|e| format!("{e:#}"))?;
        listed
            .then_some(())
            .ok_or_else(|| "the listing does not show it".to_owned())
    }));
    steps.push(timed("delete of the probe", || {
        backend.delete(&key).map_err(|e| format!("{e:#}"))
    }));
    steps
}

/// `what` run and timed: "`what`: ok (12 ms)" or "`what` failed: why".
fn timed(what: &str, step: impl FnOnce() -> Result<(), String>) -> Result<String, String> {
    let started = std::time::Instant::now();
    match step() {
        Ok(()) => Ok(format!("{what} ({} ms)", started.elapsed().as_millis())),
        Err(e) => Err(format!("{what} failed: {e}")),
    }
}
