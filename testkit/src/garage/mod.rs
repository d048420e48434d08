//! A real S3 server for tests: [Garage](https://garagehq.deuxfleurs.fr/)
//! on loopback, one single-node server per [`Garage`], in a temp dir of its
//! own with its key and bucket. No mock: the repository's S3 backend is
//! tested against what operators run.
//!
//! The binary comes from `$HWDR_GARAGE`, `PATH`, `$CARGO_HOME/bin` or
//! `~/.cargo/bin` (`make deps` installs it); without it [`Garage::start`]
//! fails, so tests that need S3 fail rather than skip. `setup` finds the binary, ports and
//! credentials; `tests` proves the server (and the fault proxy in front of
//! it) with a real S3 client.

mod setup;

#[cfg(test)]
pub(crate) mod tests;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use tracing::debug;

use setup::{config_text, garage_binary, log_tail, random_hex, Ports, REGION};

/// How long a server may take to answer S3 requests after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping server may take to exit after SIGTERM: Garage
/// waits up to 10 seconds for open client connections.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Starts tried with fresh ports when a server exits at once (a port taken
/// between choosing it and the server binding it).
const START_ATTEMPTS: u32 = 5;

/// A running single-node Garage server with one access key and one bucket
/// the key may read and write. Dropped, it kills the server and removes its
/// folder (also when the test panics).
#[derive(Debug)]
pub struct Garage {
    bin: PathBuf,
    ports: Ports,
    access_key: String,
    secret_key: String,
    bucket: String,
    child: Option<Child>,
    // Last: removed after the server is gone.
    dir: tempfile::TempDir,
}

/// How waiting for a started server ended, short of an error.
enum Started {
    Ready,
    Exited(ExitStatus),
}

impl Garage {
    /// Starts a server in a new temp dir (config, metadata, data, log) on
    /// free loopback ports, with a random key and bucket, and returns once
    /// the bucket answers a signed listing.
    pub fn start() -> Result<Garage> {
        let bin = garage_binary()?;
        let mut attempt = 1;
        loop {
            let mut garage = Garage::prepare(bin.clone())?;
            match garage.spawn_and_wait()? {
                Started::Ready => return Ok(garage),
                Started::Exited(status) if attempt < START_ATTEMPTS => {
                    debug!(%status, attempt, "garage exited at start, trying other ports");
                    attempt += 1;
                }
                Started::Exited(status) => bail!(
                    "garage exited at start ({status}), {START_ATTEMPTS} times; log {}:\n{}",
                    garage.log_path().display(),
                    log_tail(&garage.log_path(), 30)
                ),
            }
        }
    }

    /// A temp dir with its `garage.toml`, ports and credentials; no server yet.
    fn prepare(bin: PathBuf) -> Result<Garage> {
        let dir = tempfile::Builder::new()
            .prefix("hwdr-garage-")
            .tempdir()
            .context("creating a temp dir for garage")?;
        let ports = Ports::reserve()?;
        let config = config_text(dir.path(), &ports, &random_hex(32)?);
        fs::write(dir.path().join("garage.toml"), config).context("writing garage.toml")?;
        Ok(Garage {
            bin,
            ports,
            access_key: format!("GK{}", random_hex(12)?),
            secret_key: random_hex(32)?,
            bucket: format!("hwdr-test-{}", random_hex(4)?),
            child: None,
            dir,
        })
    }

    /// The S3 endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.s3_addr())
    }

    /// The S3 API's address, for a [`crate::faultproxy::FaultProxy`] in front.
    pub fn s3_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.s3))
    }

    /// The region the server answers for (`garage`).
    pub fn region(&self) -> &str {
        REGION
    }

    /// The bucket made at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The access key id (`GK…`), allowed to read and write the bucket.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret of [`Garage::access_key`].
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The server's folder: `garage.toml`, `meta/`, `data/`, `garage.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's stdout and stderr, appended to over restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("garage.log")
    }

    /// The key as the AWS environment variables name it, for a process
    /// that reads its credentials from the environment.
    pub fn aws_env(&self) -> [(&'static str, String); 3] {
        [
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", REGION.to_string()),
        ]
    }

    /// Writes the key as an AWS shared-credentials file (profile
    /// `default`) to `path`, mode 0600.
    pub fn write_credentials(&self, path: &Path) -> Result<()> {
        let text = format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            self.access_key, self.secret_key
        );
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        // An existing file keeps its mode on open.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .and_then(|()| file.write_all(text.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// An `object_store` S3 client for the bucket (path-style, plain http):
    /// add options (retries, another endpoint such as a fault proxy's) and
    /// `build()`. Its client options are [`Garage::client_options`]: pass
    /// those, extended, to `with_client_options`, which replaces them all.
    pub fn s3_builder(&self) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_region(REGION)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .with_virtual_hosted_style_request(false)
            .with_client_options(Garage::client_options())
    }

    /// `object_store`'s client options for the server: plain http allowed.
    pub fn client_options() -> ClientOptions {
        ClientOptions::new().with_allow_http(true)
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the server as an operator would: SIGTERM, and SIGKILL if it
    /// has not exited after 15 seconds. Garage first finishes the requests
    /// it serves and waits up to 10 seconds for clients to close their
    /// connections (drop them first to stop at once). Its folder, ports
    /// and data stay for [`Garage::restart`].
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait().context("checking on garage")?.is_none() {
            let pid = Pid::from_raw(i32::try_from(child.id()).context("garage's pid")?);
            kill(pid, Signal::SIGTERM).context("sending SIGTERM to garage")?;
            let deadline = Instant::now() + STOP_TIMEOUT;
            while child.try_wait().context("waiting for garage")?.is_none() {
                if Instant::now() > deadline {
                    debug!("garage ignored SIGTERM, killing it");
                    child.kill().context("killing garage")?;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        child.wait().context("waiting for garage")?;
        Ok(())
    }

    /// Stops the server at once with SIGKILL, as a crash or a power cut
    /// would, in the middle of whatever it serves (an upload). Its folder,
    /// ports and data stay for [`Garage::restart`].
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing garage")?;
            child.wait().context("waiting for garage")?;
        }
        Ok(())
    }

    /// Starts the stopped server again with the same folder, ports, key and
    /// bucket (the data kept), and waits until it answers; stops it first
    /// if it runs.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        match self.spawn_and_wait()? {
            Started::Ready => Ok(()),
            Started::Exited(status) => bail!(
                "garage exited at restart ({status}); log {}:\n{}",
                self.log_path().display(),
                log_tail(&self.log_path(), 30)
            ),
        }
    }

    /// Spawns the server and waits until the bucket answers or it exits.
    fn spawn_and_wait(&mut self) -> Result<Started> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("opening {}", self.log_path().display()))?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &self.access_key)
            .env("GARAGE_DEFAULT_SECRET_KEY", &self.secret_key)
            .env("GARAGE_DEFAULT_BUCKET", &self.bucket)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls the bucket with a signed listing until it answers, the server
    /// exits, or [`READY_TIMEOUT`] passes (an error with the log's tail).
    fn wait_ready(&mut self) -> Result<Started> {
        let options = Garage::client_options()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(5));
        let retry = RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        };
        let store = self
            .s3_builder()
            .with_client_options(options)
            .with_retry(retry)
            .build()?;
        let child = self.child.as_mut().context("garage is not running")?;
        // A thread of its own, so that the caller may be inside a runtime.
        let polled = std::thread::scope(|s| {
            s.spawn(|| poll(child, &store))
                .join()
                .unwrap_or_else(|_| bail!("the thread waiting for garage panicked"))
        })?;
        match polled {
            Polled::Ready => Ok(Started::Ready),
            Polled::Exited(status) => {
                self.child = None;
                Ok(Started::Exited(status))
            }
            Polled::TimedOut(last) => bail!(
                "garage did not answer at {} within {READY_TIMEOUT:?} (last: {last}); log {}:\n{}",
                self.endpoint(),
                self.log_path().display(),
                log_tail(&self.log_path(), 30)
            ),
        }
    }
}

/// How polling a starting server ended.
enum Polled {
    Ready,
    Exited(ExitStatus),
    /// With the last probe's error.
    TimedOut(String),
}

/// Lists the bucket every 50 ms until it answers, `child` exits or
/// [`READY_TIMEOUT`] passes.
fn poll(child: &mut Child, store: &AmazonS3) -> Result<Polled> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("checking on garage")? {
            return Ok(Polled::Exited(status));
        }
        let error = match runtime.block_on(store.list_with_delimiter(None)) {
            Ok(_) => return Ok(Polled::Ready),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Ok(Polled::TimedOut(error.to_string()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        // Its data goes with the folder: no need for a clean stop.
        let _ = self.kill();
    }
}
