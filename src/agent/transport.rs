//! How the leader and the agents reach each other, and nothing about jobs:
//! the agent's listening socket and the streams it serves HTTP on
//! ([`bind`], [`Acceptor`]), and the HTTP client the leader asks agents with
//! ([`client`], [`url`]).
//!
//! Mutual TLS plugs in here and nowhere else: the client gets its identity
//! and the cluster's roots in [`client`] (and [`url`] says `https`), and
//! [`Acceptor::secure`] wraps each accepted connection in the server's
//! handshake, in the connection's own task.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};

use super::listener::MAX_CONNECTIONS;
use crate::config::Config;

/// The URL of `path` (`/v1/health`) on the agent at `address` (`host:port`).
pub fn url(address: &str, path: &str) -> String {
    format!("http://{address}{path}")
}

/// The HTTP client the leader asks agents with: `[agent] request_timeout`
/// to connect and for each request.
pub fn client(config: &Config) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(config.agent.request_timeout)
        .connect_timeout(config.agent.request_timeout)
        // Dropped well before the agent closes it ([agent] idle_timeout), so a
        // request never goes out on a connection the agent is closing.
        .pool_idle_timeout(config.agent.idle_timeout / 2)
        .build()
        .context("building the HTTP client")
}

/// The agent's socket, bound before the async runtime starts.
#[derive(Debug)]
pub struct Bound(std::net::TcpListener);

/// Binds `[agent] listen`, so that a bad address fails start-up (before
/// `READY=1`).
pub fn bind(config: &Config) -> Result<Bound> {
    let socket = std::net::TcpListener::bind(&config.agent.listen).with_context(|| {
        format!(
            "{}: cannot listen on {}",
            config.origins.key("agent", "listen"),
            config.agent.listen
        )
    })?;
    socket
        .set_nonblocking(true)
        .context("making the listening socket non-blocking")?;
    deepen_backlog(&socket).context("lengthening the listening socket's queue")?;
    Ok(Bound(socket))
}

impl Bound {
    /// The socket handed to the async runtime (call from inside it).
    pub fn into_acceptor(self) -> Result<Acceptor> {
        let socket = TcpListener::from_std(self.0).context("registering the listening socket")?;
        Ok(Acceptor { socket })
    }
}

/// Lets up to [`MAX_CONNECTIONS`] connections wait for their accept (the
/// kernel caps it at `net.core.somaxconn`). std listens with a queue of 128, so
/// a burst of connections would drop the leader's for a second or more.
fn deepen_backlog(listener: &std::net::TcpListener) -> io::Result<()> {
    let backlog = i32::try_from(MAX_CONNECTIONS).unwrap_or(i32::MAX);
    // SAFETY: listen(2) on a socket this process owns; Linux only changes its queue length.
    if unsafe { libc::listen(listener.as_raw_fd(), backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The stream HTTP is served on: an accepted connection, once secured.
pub type Stream = TcpStream;

/// Accepts the agent's connections.
#[derive(Debug)]
pub struct Acceptor {
    socket: TcpListener,
}

impl Acceptor {
    /// The address the agent listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The next connection, as it arrives: the slow part of a new
    /// connection, [`Acceptor::secure`], runs in its own task.
    pub async fn accept(&self) -> io::Result<TcpStream> {
        self.socket.accept().await.map(|(stream, _)| stream)
    }

    /// Makes an accepted connection ready for HTTP: plain TCP as it is. Runs
    /// in the connection's task, which the connection table closes after
    /// `[agent] header_timeout` like any connection without a request.
    pub fn secure(&self, tcp: TcpStream) -> impl Future<Output = io::Result<Stream>> + Send + 'static {
        std::future::ready(Ok(tcp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_urls_name_the_address_and_path() {
        assert_eq!(url("ndb1:7070", "/v1/jobs/x"), "http://ndb1:7070/v1/jobs/x");
    }
}
