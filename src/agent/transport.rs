//! How the leader and the agents reach each other, and nothing about jobs:
//! the agent's listening socket and the streams it serves HTTP on
//! ([`bind`], [`Acceptor`]), and the HTTP clients the leader asks agents
//! with ([`client`], [`url`]).
//!
//! With `[agent] auth = mtls` (or `mtls+token`) every connection is mutual
//! TLS (src/tls/): [`Acceptor::secure`] runs the server's handshake in the
//! connection's own task and hands the caller's certificate on as a
//! [`Peer`]; a caller speaking plain HTTP gets a plain answer saying so. The
//! leader's client for a node accepts only that node's certificate.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

use super::listener::MAX_CONNECTIONS;
use crate::config::{Config, NodeName, NodeSpec};
use crate::tls::files::Material;
use crate::tls::identity::CertInfo;
use crate::tls::server::ServerTls;

/// The URL of `path` (`/v1/health`) on the agent at `address` (`host:port`),
/// over TLS or not.
pub fn url(address: &str, path: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{address}{path}")
}

/// The HTTP client the leader asks `node`'s agent with: `[agent]
/// request_timeout` to connect and for each request; with mutual TLS, this
/// node's certificate as its identity and only `node`'s accepted.
pub fn client(config: &Config, tls: Option<&Material>, node: &NodeSpec) -> Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .timeout(config.agent.request_timeout)
        .connect_timeout(config.agent.request_timeout)
        // Dropped well before the agent closes it ([agent] idle_timeout), so a
        // request never goes out on a connection the agent is closing.
        .pool_idle_timeout(config.agent.idle_timeout / 2);
    let builder = match tls {
        Some(material) => builder.use_preconfigured_tls(crate::tls::client::config_for(material, node)?),
        None => builder,
    };
    builder.build().context("building the HTTP client")
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
        Ok(Acceptor {
            socket,
            tls: None,
            node: String::new(),
        })
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

/// Who is on the other end of a connection, as the transport established it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The caller's certificate, verified against the cluster's CA (mutual
    /// TLS only; None without TLS or for a caller without one).
    pub cert: Option<PeerCert>,
}

/// A verified client certificate and the nodes of `[[nodes]]` it names.
#[derive(Debug, Clone)]
pub struct PeerCert {
    pub subject: String,
    pub nodes: Vec<NodeName>,
}

/// The stream HTTP is served on: an accepted connection, once secured.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepts the agent's connections.
#[derive(Debug)]
pub struct Acceptor {
    socket: TcpListener,
    tls: Option<(Arc<ServerTls>, Arc<Config>)>,
    /// This node's name, for the answer to a plain-HTTP caller.
    node: String,
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a plain-HTTP caller's request is read before it is answered.
const PLAIN_READ: Duration = Duration::from_secs(1);

impl Acceptor {
    /// Serves mutual TLS with `tls` from now on; `config` maps certificates to nodes.
    pub fn with_tls(mut self, tls: Arc<ServerTls>, config: Arc<Config>) -> Acceptor {
        self.node = config.this_node.to_string();
        self.tls = Some((tls, config));
        self
    }

    /// The address the agent listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The next connection, as it arrives: the slow part of a new
    /// connection, [`Acceptor::secure`], runs in its own task.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (tcp, addr) = self.socket.accept().await?;
        // Small writes go out at once: with Nagle's algorithm and the peer's
        // delayed ACKs, each TLS handshake flight waited ~40 ms (`make bench-tls`).
        tcp.set_nodelay(true)?;
        Ok((tcp, addr))
    }

    /// Makes an accepted connection ready for HTTP: plain TCP as it is, or
    /// the TLS handshake. Runs in the connection's task, which the connection
    /// table closes after `[agent] header_timeout` like any connection
    /// without a request.
    pub fn secure(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<(Stream, Peer)>> + Send + 'static {
        let tls = self.tls.as_ref().map(|(t, c)| (t.current(), c.clone()));
        let node = self.node.clone();
        async move {
            let Some((server, config)) = tls else {
                return Ok((Stream::Plain(tcp), Peer { addr, cert: None }));
            };
            handshake(tcp, addr, server, &config, &node).await
        }
    }
}

/// The server's handshake; a caller that speaks plain HTTP, or whose
/// certificate is refused, is logged with its address and the reason.
async fn handshake(
    tcp: TcpStream,
    addr: SocketAddr,
    server: Arc<rustls::ServerConfig>,
    config: &Config,
    node: &str,
) -> io::Result<(Stream, Peer)> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if first[0] != TLS_HANDSHAKE {
        warn!(peer = %addr, "refused a plain-HTTP connection from {addr}: [agent] auth = {} needs mutual TLS", config.agent.auth);
        refuse_plain(tcp, node, config).await;
        return Err(io::Error::new(io::ErrorKind::InvalidData, "plain HTTP on the TLS port"));
    }
    let stream = match tokio_rustls::TlsAcceptor::from(server).accept(tcp).await {
        Ok(stream) => stream,
        Err(e) => {
            warn!(peer = %addr, "refused a TLS connection from {addr}: {e}");
            return Err(e);
        }
    };
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| CertInfo::parse(leaf).ok())
        .map(|info| PeerCert {
            nodes: info.nodes(&config.nodes).into_iter().cloned().collect(),
            subject: info.subject,
        });
    Ok((Stream::Tls(Box::new(stream)), Peer { addr, cert }))
}

/// Answers a plain-HTTP request on the TLS port with an error the leader
/// shows as it is (it names this node and the setting), then closes.
async fn refuse_plain(mut tcp: TcpStream, node: &str, config: &Config) {
    // Read the request first: closing with unread bytes would reset the
    // connection before the caller reads the answer.
    let mut buf = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(PLAIN_READ, async {
        let mut seen = Vec::new();
        while let Ok(n) = tcp.read(&mut buf).await {
            seen.extend_from_slice(&buf[..n]);
            if n == 0 || seen.windows(4).any(|w| w == b"\r\n\r\n") || seen.len() > 64 * 1024 {
                break;
            }
        }
    })
    .await;
    let body = serde_json::json!({
        "error": format!(
            "the agent of node {node} requires mutual TLS ([agent] auth = {}), and the caller spoke plain HTTP: set the same [agent] auth on every node",
            config.agent.auth
        )
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(answer.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_urls_name_the_address_and_path() {
        assert_eq!(url("ndb1:7070", "/v1/jobs/x", false), "http://ndb1:7070/v1/jobs/x");
        assert_eq!(url("ndb1:7070", "/v1/health", true), "https://ndb1:7070/v1/health");
    }
}
