//! A multi-node cluster on one machine: every node is a config folder and, if
//! started, an `hwdr agent` process listening on its own 127.0.0.x address.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hwdr::repo::store::{Backend, ObjectKey, PutOptions};
use serde_json::Value;

use super::{hwdr_bin, open_tempdir, run_ok, sim_src};

/// One node of the test cluster.
pub struct Node {
    pub name: String,
    pub address: String,
    pub config: PathBuf,
    pub backup_dir: Option<PathBuf>,
}

/// Several nodes sharing one repository and one simulated RonDB cluster.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub sim: PathBuf,
    pub repo: PathBuf,
    pub token: String,
    pub nodes: BTreeMap<String, Node>,
    agents: BTreeMap<String, Child>,
}

/// A free TCP port on 127.0.0.1 (also used on 127.0.0.x).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// `nodes`: (name, roles, RonDB data node ids). Data nodes get `parts`
    /// LDM parts each.
    pub fn new(nodes: &[(&str, &[&str], &[u32])], parts: u32) -> Cluster {
        Cluster::with_repository(nodes, parts, |repo| format!("path = \"{}\"\n", repo.display()))
    }

    /// [`Cluster::new`] with the keys of `[repository]` from `repository`,
    /// given the folder a POSIX repository would use (an S3 one ignores it).
    pub fn with_repository(
        nodes: &[(&str, &[&str], &[u32])],
        parts: u32,
        repository: impl FnOnce(&Path) -> String,
    ) -> Cluster {
        super::ensure_users();
        let dir = open_tempdir();
        let sim = dir.path().join("sim");
        let spec: Vec<String> = nodes
            .iter()
            .flat_map(|(_, _, ids)| ids.iter().map(move |i| format!("{i}:{parts}")))
            .collect();
        let socket = super::sim_init(&sim, &spec, 300);
        let sim_conf: Value = serde_json::from_slice(&fs::read(sim.join("hwdr-sim.json")).unwrap()).unwrap();
        let repo = dir.path().join("repo");
        fs::create_dir(&repo).unwrap();
        let token = format!("hwdr-test-token-{:0>24}", std::process::id());
        let token_file = dir.path().join("agent.token");
        fs::write(&token_file, &token).unwrap();
        fs::set_permissions(&token_file, fs::Permissions::from_mode(0o600)).unwrap();

        let port = free_port();
        let mut common = String::from("[cluster]\nname = \"prod\"\n\n");
        let mut addresses = BTreeMap::new();
        for (i, (name, roles, ids)) in nodes.iter().enumerate() {
            let address = format!("127.0.0.{}:{port}", i + 1);
            let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
            common.push_str(&format!(
                "[[nodes]]\nname = \"{name}\"\naddress = \"{address}\"\nroles = [{}]\n",
                roles.join(", ")
            ));
            if !ids.is_empty() {
                let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
                common.push_str(&format!("rondb_node_ids = [{}]\n", ids.join(", ")));
            }
            common.push('\n');
            addresses.insert(name.to_string(), address);
        }
        let bin = sim.join("bin");
        let repository = repository(&repo);
        // A key in [repository] makes an encrypted repository.
        let encrypt = repository.contains("key_file") || repository.contains("passphrase_file");
        common.push_str(&format!("[repository]\n{repository}\n"));
        common.push_str(&format!(
            r#"[rondb]
mgm_client = "{bin}/mgm-client.sh"
mysqlpump = "{bin}/mysqlpump"
mysqldump = "{bin}/mysqldump"
mysql = "{bin}/mysql"
ndb_restore = "{bin}/ndb_restore"
mysql_client = "{bin}/mysql-client.sh"
connectstring = "127.0.0.1:1186"
socket = "{socket}"

[restore]
safemode_poll = "1s"
safemode_timeout = "20s"
ndb_restore_timeout = "60s"
command_timeout = "60s"

[opensearch]
reindex_command = ["{bin}/reindex-epipe.sh"]

[kafka]
restore_command = ["{bin}/kafka-restore.sh"]

[agent]
token_file = "{token_file}"
request_timeout = "3s"

[hopsfs]
datanode_unit = ""
safemode_command = ["{bin}/hdfs", "dfsadmin", "-safemode", "get"]

[backup]
ndb_backup_timeout = "60s"
dump_timeout = "60s"
node_timeout = "4s"
parallelism = 2
"#,
            bin = bin.display(),
            socket = socket.display(),
            token_file = token_file.display(),
        ));

        let mut built = BTreeMap::new();
        for (name, _, ids) in nodes {
            let etc = dir.path().join(format!("etc-{name}"));
            fs::create_dir_all(etc.join("hwdr.d")).unwrap();
            let config = etc.join("hwdr.toml");
            fs::write(&config, &common).unwrap();
            // What differs per host: its name and its RonDB BackupDataDir.
            // Each host has its own state and staging folders.
            let mut local = format!(
                "[node]\nname = \"{name}\"\n[restore]\nstate_dir = \"{}\"\nstaging_dir = \"{}\"\n[metrics]\ntextfile = \"{}\"\n",
                dir.path().join(format!("state-{name}")).display(),
                dir.path().join(format!("staging-{name}")).display(),
                dir.path().join(format!("state-{name}/hwdr.prom")).display()
            );
            let backup_dir = ids.first().map(|id| {
                let dir = sim_conf["data_nodes"][id.to_string()]["backup_dir"].as_str().unwrap();
                PathBuf::from(dir)
            });
            if let Some(b) = &backup_dir {
                local.push_str(&format!("[rondb]\nbackup_dir = \"{}\"\n", b.display()));
            }
            fs::write(etc.join("hwdr.d/50-this-node.toml"), local).unwrap();
            built.insert(
                name.to_string(),
                Node {
                    name: name.to_string(),
                    address: addresses[*name].clone(),
                    config,
                    backup_dir,
                },
            );
        }
        // The repository is set up once, from the first node.
        let first = &built[nodes[0].0];
        run_ok(
            Command::new(hwdr_bin())
                .arg("--config")
                .arg(&first.config)
                .args(["repo", "init"])
                .args(encrypt.then_some("--encrypt")),
        );
        Cluster {
            dir,
            sim,
            repo,
            token,
            nodes: built,
            agents: BTreeMap::new(),
        }
    }

    /// Points `name`'s `[hopsfs] data_dirs` at `dirs` (a per-host drop-in).
    pub fn set_data_dirs(&self, name: &str, dirs: &[&Path]) {
        let list: Vec<String> = dirs.iter().map(|d| format!("\"{}\"", d.display())).collect();
        let dropin = self.nodes[name].config.parent().unwrap().join("hwdr.d/60-hopsfs.toml");
        fs::write(dropin, format!("[hopsfs]\ndata_dirs = [{}]\n", list.join(", "))).unwrap();
    }

    /// Generates HopsFS data node trees owned by hdfs:hadoop for nodes
    /// `node1`..`node<spec.nodes>` and points their `[hopsfs] data_dirs` at them.
    pub fn with_hopsfs(&self, mut spec: testkit::gen::GenSpec) -> testkit::gen::Generated {
        let hdfs = uzers::get_user_by_name("hdfs").unwrap();
        let hadoop = uzers::get_group_by_name("hadoop").unwrap();
        spec.owner = Some((hdfs.uid(), hadoop.gid()));
        let generated = testkit::gen::generate(&self.dir.path().join("hopsfs"), &spec).unwrap();
        for (i, node) in generated.nodes.iter().enumerate() {
            self.set_data_dirs(&format!("node{}", i + 1), &[&node.data_dir]);
        }
        generated
    }

    /// Adds a drop-in with `text` to every node.
    pub fn dropin_everywhere(&self, name: &str, text: &str) {
        for node in self.nodes.values() {
            fs::write(node.config.parent().unwrap().join("hwdr.d").join(name), text).unwrap();
        }
    }

    /// Adds a drop-in with `text` to node `name` only.
    pub fn dropin(&self, name: &str, file: &str, text: &str) {
        fs::write(
            self.nodes[name].config.parent().unwrap().join("hwdr.d").join(file),
            text,
        )
        .unwrap();
    }

    /// Starts the agent of `name` and waits until it answers health.
    pub fn start_agent(&mut self, name: &str) {
        self.start_agent_with(name, |_| {});
    }

    /// Starts the agent of `name` with extra setup of its command.
    pub fn start_agent_with(&mut self, name: &str, setup: impl FnOnce(&mut Command)) {
        let node = &self.nodes[name];
        let log = fs::File::create(self.dir.path().join(format!("agent-{name}.log"))).unwrap();
        let mut cmd = Command::new(hwdr_bin());
        cmd.arg("--config").arg(&node.config).arg("agent");
        setup(&mut cmd);
        cmd.stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().unwrap();
        self.agents.insert(name.to_string(), child);
        let start = Instant::now();
        while http(&node.address, "GET", "/v1/health", None, None).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "agent {name} did not come up: {}",
                self.agent_log(name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent's stderr so far.
    pub fn agent_log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("agent-{name}.log"))).unwrap_or_default()
    }

    /// The pid of a running agent.
    pub fn agent_pid(&self, name: &str) -> i32 {
        self.agents[name].id() as i32
    }

    /// Kills an agent with SIGKILL and reaps it.
    pub fn kill_agent(&mut self, name: &str) {
        if let Some(mut child) = self.agents.remove(name) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `hwdr` with the config of `node`.
    pub fn hwdr(&self, node: &str, args: &[&str]) -> Output {
        Command::new(hwdr_bin())
            .arg("--config")
            .arg(&self.nodes[node].config)
            .args(args)
            .output()
            .unwrap()
    }

    /// The repository as the first node's configuration names it (a folder
    /// or a bucket).
    pub fn backend(&self) -> Arc<dyn Backend> {
        let first = self.nodes.values().next().unwrap();
        let config = hwdr::config::Config::load(&first.config).unwrap();
        hwdr::repo::Repository::of(&config).shared_backend()
    }

    /// The repository's store itself: objects as stored (an encrypted
    /// repository's sealed), for looking at the bytes an attacker would see.
    pub fn stored(&self) -> Arc<dyn Backend> {
        let first = self.nodes.values().next().unwrap();
        let config = hwdr::config::Config::load(&first.config).unwrap();
        hwdr::repo::Repository::store(&config)
    }

    /// The manifest of backup `id`, read from the repository.
    pub fn manifest(&self, id: &str) -> Option<Value> {
        let key = ObjectKey::parse(&format!("backups/{id}/manifest.json")).unwrap();
        let mut bytes = Vec::new();
        match self.backend().get(&key) {
            Ok(mut r) => r.read_to_end(&mut bytes).unwrap(),
            Err(e) if e.is_not_found() => return None,
            Err(e) => panic!("reading {key}: {e}"),
        };
        Some(serde_json::from_slice(&bytes).unwrap())
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

    /// Writes the repository lock as the leader of `operation` (`backup`,
    /// `restore`) of backup `id` would; removed when the guard drops. Agents
    /// run backup and restore jobs only under such a lock.
    pub fn hold_lock(&self, operation: &str, id: &str) -> LockFile {
        let info = hwdr::repo::lock::LockInfo::for_this_process(operation, Some(id.to_owned()), chrono::Utc::now());
        let backend = self.backend();
        let body = serde_json::to_vec(&info).unwrap();
        backend
            .put(&ObjectKey::lock(), &mut &body[..], PutOptions::default())
            .unwrap();
        LockFile(backend)
    }

    /// An API request to `node`'s agent with the right token.
    pub fn api(&self, node: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        http(&self.nodes[node].address, method, path, Some(&auth), body).unwrap()
    }
}

/// A lock written by [`Cluster::hold_lock`], removed on drop.
pub struct LockFile(Arc<dyn Backend>);

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = self.0.delete(&ObjectKey::lock());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.agents) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A minimal HTTP/1.1 request: status code and JSON body.
pub fn http(
    address: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    let stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    http_over(stream, address, method, path, auth, body)
}

/// [`http`] over a connected stream (plain or TLS).
pub fn http_over(
    mut stream: impl Read + Write,
    address: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    let body = body.unwrap_or("");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(auth) = auth {
        request.push_str(&format!("Authorization: {auth}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // rustls reports a peer that closed without close_notify; the answer is complete.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let response = String::from_utf8_lossy(&raw).into_owned();
    let status: u16 = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, payload) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    // Bodies may come chunked; the JSON is the part between the braces.
    let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(payload)
    } else {
        payload.to_owned()
    };
    let value = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
    Ok((status, value))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n.min(rest.len())]);
        s = rest.get(n + 2..).unwrap_or("");
    }
    out
}

/// Waits until `f` holds, or panics with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lists the files of `dir` (relative), for assertions.
pub fn files_below(dir: &Path) -> Vec<String> {
    super::tree(dir)
}
