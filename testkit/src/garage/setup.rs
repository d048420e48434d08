//! What a Garage server needs before it starts: its binary, free loopback
//! ports, random credentials and its `garage.toml`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// The S3 region the servers answer for.
pub(super) const REGION: &str = "garage";

/// Ports handed to a server of this process and not yet released: the
/// kernel may give a port that was just closed to the next bind to port 0,
/// so two servers started at once could otherwise get the same one.
static RESERVED: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// The three ports of one server, reserved in this process until dropped.
#[derive(Debug)]
pub(super) struct Ports {
    pub(super) s3: u16,
    pub(super) rpc: u16,
    pub(super) admin: u16,
}

impl Ports {
    /// Three free loopback ports, none held by another server of this process.
    pub(super) fn reserve() -> Result<Ports> {
        let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
        let mut taken: HashSet<u16> = reserved.iter().copied().collect();
        let mut pick = || -> Result<u16> {
            for _ in 0..100 {
                let port = TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .context("binding a free loopback port")?
                    .port();
                if taken.insert(port) {
                    return Ok(port);
                }
            }
            bail!("no free loopback port found")
        };
        let ports = Ports {
            s3: pick()?,
            rpc: pick()?,
            admin: pick()?,
        };
        reserved.extend([ports.s3, ports.rpc, ports.admin]);
        Ok(ports)
    }
}

impl Drop for Ports {
    fn drop(&mut self) {
        let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
        reserved.retain(|p| ![self.s3, self.rpc, self.admin].contains(p));
    }
}

/// The `garage` binary: `$HWDR_GARAGE`, else `garage` on `PATH`, else in
/// `$CARGO_HOME/bin` or `~/.cargo/bin` (where `make deps` installs it).
pub(super) fn garage_binary() -> Result<PathBuf> {
    let cargo_homes = [
        std::env::var_os("CARGO_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")),
    ];
    let cargo_bins = cargo_homes.into_iter().flatten().map(|h| h.join("bin"));
    find_binary(
        std::env::var_os("HWDR_GARAGE"),
        std::env::var_os("PATH"),
        cargo_bins.collect(),
    )
}

/// [`garage_binary`] with its environment as arguments: `cargo_bins` are
/// the folders tried after `path`.
pub(super) fn find_binary(
    explicit: Option<OsString>,
    path: Option<OsString>,
    cargo_bins: Vec<PathBuf>,
) -> Result<PathBuf> {
    if let Some(bin) = explicit.filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if !is_executable(&bin) {
            bail!("HWDR_GARAGE={}: no such executable", bin.display());
        }
        return Ok(bin);
    }
    let on_path: Vec<PathBuf> = path.iter().flat_map(std::env::split_paths).collect();
    on_path
        .into_iter()
        .chain(cargo_bins)
        .map(|dir| dir.join("garage"))
        .find(|b| is_executable(b))
        .context("garage is not installed: run `make deps`")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `n` random bytes from the kernel, as lowercase hex.
pub(super) fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(hex::encode(bytes))
}

/// The server's `garage.toml`: one node, SQLite metadata, everything on
/// loopback.
pub(super) fn config_text(dir: &Path, ports: &Ports, rpc_secret: &str) -> String {
    let (meta, data) = (dir.join("meta"), dir.join("data"));
    format!(
        "metadata_dir = \"{meta}\"\n\
         data_dir = \"{data}\"\n\
         db_engine = \"sqlite\"\n\
         replication_factor = 1\n\
         rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
         rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
         rpc_secret = \"{rpc_secret}\"\n\
         \n\
         [s3_api]\n\
         s3_region = \"{REGION}\"\n\
         api_bind_addr = \"127.0.0.1:{s3}\"\n\
         root_domain = \".s3.garage.localhost\"\n\
         \n\
         [admin]\n\
         api_bind_addr = \"127.0.0.1:{admin}\"\n",
        meta = meta.display(),
        data = data.display(),
        rpc = ports.rpc,
        s3 = ports.s3,
        admin = ports.admin,
    )
}

/// The last `lines` lines of the server's log, for errors.
pub(super) fn log_tail(log: &Path, lines: usize) -> String {
    let text = fs::read(log).map(|b| String::from_utf8_lossy(&b).into_owned());
    match text {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", log.display()),
    }
}
