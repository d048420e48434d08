//! A TCP proxy on loopback in front of an S3 server (a [`crate::garage`]
//! server) that fails chosen HTTP requests: answered with `503 SlowDown`,
//! dropped without an answer, or never answered. Clients point at
//! [`FaultProxy::url`] instead of the server; a test switches faults with
//! [`FaultProxy::set`] at any time and reads what happened from the
//! counters.
//!
//! Each client connection has a thread of its own. The proxy reads every
//! request head (HTTP/1.1, kept alive, bodies by `Content-Length` or
//! chunked, `http`) and decides per request: a forwarded request and its
//! answer pass byte for byte, on a server connection of their own, so
//! signatures stay valid; a faulted one ends its client connection.

mod conn;
mod http;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use anyhow::{Context, Result};
use tracing::debug;

use crate::gen::random::Rng;

/// What a faulted request gets instead of the server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `503 Service Unavailable` with an S3 `SlowDown` error body and
    /// `Connection: close`, the request's body read first.
    SlowDown,
    /// The connection closed without an answer once the head is read.
    Drop,
    /// No answer ever: the connection stays open until the client gives up
    /// or the proxy stops (timeouts).
    BlackHole,
}

/// Which requests fail, counted from the [`FaultProxy::set`] that chose it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    /// Every request reaches the server.
    Pass,
    /// The next `n` requests fail, then every request passes.
    Next { n: u64, fault: Fault },
    /// Every `k`-th request fails (the `k`-th, the `2k`-th, …).
    Every { k: u64, fault: Fault },
    /// Each request fails with probability `p`, drawn from a stream seeded
    /// with `seed`: the same requests in the same order fail the same way.
    Random { p: f64, seed: u64, fault: Fault },
    /// Every request fails.
    Always(Fault),
}

/// The proxy; dropped, it stops accepting, closes every connection and
/// joins its threads.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the proxy's threads share.
#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    rules: Mutex<Rules>,
    connections: AtomicU64,
    seen: AtomicU64,
    faulted: AtomicU64,
    stopping: AtomicBool,
    /// The sockets of live connections (client and server side), to shut
    /// down when the proxy stops.
    open: Mutex<HashMap<(u64, Side), TcpStream>>,
}

/// A connection's side: the client's socket, or its current request's
/// socket to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Client,
    Server,
}

/// The plan and where it stands.
#[derive(Debug)]
struct Rules {
    plan: Plan,
    /// Requests decided since the plan was set.
    count: u64,
    /// The draws of [`Plan::Random`].
    rng: Option<Rng>,
}

impl FaultProxy {
    /// Listens on a free loopback port, passing every request to `upstream`
    /// until told otherwise.
    pub fn start(upstream: SocketAddr) -> Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the fault proxy")?;
        let addr = listener.local_addr().context("the fault proxy's address")?;
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(Rules::new(Plan::Pass)),
            connections: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            faulted: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("faultproxy".into())
                .spawn(move || accept(&listener, &shared))
                .context("starting the fault proxy's thread")?
        };
        Ok(FaultProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy as an endpoint, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Which requests fail from now on; restarts the plan's counting.
    pub fn set(&self, plan: Plan) {
        *self.shared.rules() = Rules::new(plan);
    }

    /// Client connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Request heads read so far, faulted or not.
    pub fn seen(&self) -> u64 {
        self.shared.seen.load(Ordering::SeqCst)
    }

    /// Requests faulted so far.
    pub fn faulted(&self) -> u64 {
        self.shared.faulted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stopping`.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Accepts connections, a thread each, until the proxy stops; then closes
/// them all and joins their threads.
fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                debug!(error = %e, "fault proxy: accept failed");
                thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        workers.retain(|w| !w.is_finished());
        let id = shared.connections.fetch_add(1, Ordering::SeqCst);
        let shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("faultproxy-{id}"))
            .spawn(move || conn::serve(stream, id, &shared));
        match spawned {
            Ok(worker) => workers.push(worker),
            Err(e) => debug!(error = %e, "fault proxy: no thread for a connection"),
        }
    }
    shared.shutdown_all();
    for worker in workers {
        let _ = worker.join();
    }
}

impl Shared {
    fn rules(&self) -> MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self) -> MutexGuard<'_, HashMap<(u64, Side), TcpStream>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the next request fails, and how.
    fn decide(&self) -> Option<Fault> {
        let fault = self.rules().decide();
        if fault.is_some() {
            self.faulted.fetch_add(1, Ordering::SeqCst);
        }
        fault
    }

    /// Keeps a socket of connection `id` to shut down at stop (at once if
    /// the proxy is stopping already), in place of the side's last one.
    fn register(&self, id: u64, side: Side, stream: &TcpStream) -> std::io::Result<()> {
        let clone = stream.try_clone()?;
        let mut open = self.open();
        if self.stopping.load(Ordering::SeqCst) {
            let _ = clone.shutdown(Shutdown::Both);
        }
        open.insert((id, side), clone);
        Ok(())
    }

    fn unregister(&self, id: u64) {
        let mut open = self.open();
        open.remove(&(id, Side::Client));
        open.remove(&(id, Side::Server));
    }

    fn shutdown_all(&self) {
        for stream in self.open().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Rules {
    fn new(plan: Plan) -> Rules {
        let rng = match plan {
            Plan::Random { seed, .. } => Some(Rng::new(seed)),
            _ => None,
        };
        Rules { plan, count: 0, rng }
    }

    fn decide(&mut self) -> Option<Fault> {
        self.count += 1;
        match &mut self.plan {
            Plan::Pass => None,
            Plan::Next { n: 0, .. } => None,
            Plan::Next { n, fault } => {
                *n -= 1;
                Some(*fault)
            }
            Plan::Every { k, fault } => (*k > 0 && self.count % *k == 0).then_some(*fault),
            Plan::Random { p, fault, .. } => {
                let rng = self.rng.as_mut()?;
                // 53 bits: every f64 in [0, 1) of that precision.
                let draw = rng.below(1 << 53) as f64 / (1u64 << 53) as f64;
                (draw < *p).then_some(*fault)
            }
            Plan::Always(fault) => Some(*fault),
        }
    }
}
