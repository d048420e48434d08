//! Shared test harness: a simulated cluster (tests/sim) in a temp dir, an
//! hwdr config pointing at it, and helpers to run the built binary.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub mod cluster;
pub mod pki;
pub mod scenario;

/// The built `hwdr` binary.
pub fn hwdr_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hwdr"))
}

/// The simulators' source folder.
pub fn sim_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sim")
}

/// Creates the system users the runbook names, once per machine.
pub fn ensure_users() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "these tests switch users and must run as root"
    );
    let lock = fs::File::create("/tmp/hwdr-test-users.lock").unwrap();
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    for group in ["hadoop"] {
        if uzers::get_group_by_name(group).is_none() {
            run_ok(Command::new("groupadd").args(["--system", group]));
        }
    }
    for (user, extra) in [("mysql", None), ("hdfs", Some("hadoop"))] {
        if uzers::get_user_by_name(user).is_none() {
            let mut cmd = Command::new("useradd");
            cmd.args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ]);
            if let Some(g) = extra {
                cmd.args(["--groups", g]);
            }
            run_ok(cmd.arg(user));
        }
    }
}

/// Runs a command and panics with its output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A temp dir every test user can traverse.
pub fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("hwdr-test-").tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A single host holding every role, with a simulated RonDB cluster.
pub struct Single {
    pub dir: tempfile::TempDir,
    pub sim: PathBuf,
    pub repo: PathBuf,
    pub config: PathBuf,
    pub backup_dir: PathBuf,
    pub cluster_def: PathBuf,
}

/// `simctl init` of a simulated RonDB cluster in `sim` with data nodes
/// `spec` (`<id>:<parts>`) and `rows` rows; returns its MySQL socket.
pub fn sim_init(sim: &Path, spec: &[String], rows: u32) -> PathBuf {
    let socket = sim.join("mysql.sock");
    run_ok(
        Command::new(sim_src().join("simctl"))
            .arg("init")
            .arg(sim)
            .args(["--data-nodes", &spec.join(","), "--rows", &rows.to_string(), "--socket"])
            .arg(&socket),
    );
    socket
}

impl Single {
    /// `data_nodes`: (node id, LDM parts) of every data node on this host.
    pub fn new(data_nodes: &[(u32, u32)]) -> Single {
        ensure_users();
        let dir = open_tempdir();
        let sim = dir.path().join("sim");
        let spec: Vec<String> = data_nodes.iter().map(|(n, p)| format!("{n}:{p}")).collect();
        let socket = sim_init(&sim, &spec, 200);
        // One host: every data node writes into the same BackupDataDir.
        let backup_dir = dir.path().join("ndb/backups");
        fs::create_dir_all(&backup_dir).unwrap();
        chown_mysql(&dir.path().join("ndb"));
        chown_mysql(&backup_dir);
        let sim_json = sim.join("hwdr-sim.json");
        let mut conf: Value = serde_json::from_slice(&fs::read(&sim_json).unwrap()).unwrap();
        for (_, node) in conf["data_nodes"].as_object_mut().unwrap() {
            node["backup_dir"] = Value::String(backup_dir.display().to_string());
        }
        fs::write(&sim_json, serde_json::to_vec_pretty(&conf).unwrap()).unwrap();

        let repo = dir.path().join("repo");
        fs::create_dir(&repo).unwrap();
        let cluster_def = dir.path().join("cluster-definition.yml");
        fs::write(&cluster_def, "name: prod\nnodes: [head1]\n").unwrap();
        let ids: Vec<String> = data_nodes.iter().map(|(n, _)| n.to_string()).collect();
        let bin = sim.join("bin");
        let config = dir.path().join("etc/hwdr.toml");
        fs::create_dir_all(config.parent().unwrap()).unwrap();
        fs::write(
            &config,
            format!(
                r#"[cluster]
name = "prod"

[[nodes]]
name = "head1"
address = "127.0.0.1:7878"
roles = ["head", "rondb"]
rondb_node_ids = [{ids}]

[node]
name = "head1"

[repository]
path = "{repo}"

[rondb]
mgm_client = "{bin}/mgm-client.sh"
mysqlpump = "{bin}/mysqlpump"
mysqldump = "{bin}/mysqldump"
mysql = "{bin}/mysql"
socket = "{socket}"
backup_dir = "{backup_dir}"

[config_backup]
paths = ["{def}"]

[backup]
ndb_backup_timeout = "60s"
dump_timeout = "60s"

[restore]
state_dir = "{state}"

[metrics]
textfile = "{state}/hwdr.prom"
"#,
                ids = ids.join(", "),
                repo = repo.display(),
                bin = bin.display(),
                socket = socket.display(),
                backup_dir = backup_dir.display(),
                def = cluster_def.display(),
                state = dir.path().join("state").display(),
            ),
        )
        .unwrap();
        run_ok(
            Command::new(hwdr_bin())
                .arg("--config")
                .arg(&config)
                .args(["repo", "init"]),
        );
        Single {
            dir,
            sim,
            repo,
            config,
            backup_dir,
            cluster_def,
        }
    }

    /// Runs `hwdr --config <config> args...`.
    pub fn hwdr(&self, args: &[&str]) -> Output {
        Command::new(hwdr_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// A `Command` for hwdr with the config set, to spawn.
    pub fn hwdr_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(hwdr_bin());
        cmd.arg("--config").arg(&self.config).args(args);
        cmd
    }

    /// Writes a drop-in `hwdr.d/<name>`.
    pub fn dropin(&self, name: &str, text: &str) {
        let dir = self.config.parent().unwrap().join("hwdr.d");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }

    /// Sets a simulator's failure mode.
    pub fn control(&self, program: &str, mode: &str) {
        run_ok(
            Command::new(sim_src().join("simctl"))
                .arg("control")
                .arg(&self.sim)
                .args([program, mode]),
        );
    }

    /// The simulator runs recorded so far.
    pub fn invocations(&self) -> Vec<Value> {
        let path = self.sim.join("state/invocations.jsonl");
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The manifest of backup `id`, if written.
    pub fn manifest(&self, id: &str) -> Option<Value> {
        let path = self.repo.join("backups").join(id).join("manifest.json");
        fs::read(path).ok().map(|b| serde_json::from_slice(&b).unwrap())
    }

    pub fn backup_path(&self, id: &str) -> PathBuf {
        self.repo.join("backups").join(id)
    }
}

fn chown_mysql(path: &Path) {
    let user = uzers::get_user_by_name("mysql").unwrap();
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(user.uid())),
        Some(nix::unistd::Gid::from_raw(user.primary_group_id())),
    )
    .unwrap();
}

/// Every file path recorded in a manifest.
pub fn manifest_files(manifest: &Value) -> Vec<(String, u64, String)> {
    let mut files = Vec::new();
    for node in manifest["nodes"].as_array().unwrap() {
        for step in node["steps"].as_array().unwrap() {
            for f in step["files"].as_array().into_iter().flatten() {
                files.push((
                    f["path"].as_str().unwrap().to_owned(),
                    f["size"].as_u64().unwrap(),
                    f["sha256"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    files
}

/// Lists every file below `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(read) = fs::read_dir(dir) else { return };
        for e in read.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// One file of a data folder snapshot: path, owner, group, mode, content.
pub type SnapshotEntry = (String, u32, u32, u32, Vec<u8>);

/// What a HopsFS restore must reproduce of a data folder: VERSION files and
/// every finalized block and `.meta`, with owner, mode and content.
pub fn snapshot(data_dir: &Path) -> Vec<SnapshotEntry> {
    use std::os::unix::fs::MetadataExt;
    tree(data_dir)
        .into_iter()
        .filter(|p| p == "current/VERSION" || p.ends_with("/current/VERSION") || p.contains("/current/finalized/"))
        .map(|p| {
            let full = data_dir.join(&p);
            let m = fs::metadata(&full).unwrap();
            (
                p,
                m.uid(),
                m.gid(),
                m.permissions().mode() & 0o7777,
                fs::read(&full).unwrap(),
            )
        })
        .collect()
}
