//! Accept loop: TCP connections served by hyper with timeouts and a bounded,
//! evicting connection table, so idle or slow clients can never lock the
//! leader out.
//!
//! A new connection must send a complete request header within `[agent]
//! header_timeout`. Between requests a connection may stay idle for `[agent]
//! idle_timeout`; once the next request's first bytes arrive, its header must
//! be complete within `header_timeout`. A request in flight (from its header to
//! its answer, e.g. a long-poll status request) is never cut. When the table
//! is full, a new connection closes the one idle the longest.
//!
//! The transport secures each connection in the connection's own task (a
//! slow handshake holds up nobody); HTTP is served on its stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify};
use tokio::task::{self, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::transport::{Acceptor, Peer, Stream};

/// The most connections the agent serves at once (fewer under a lower file
/// limit, see [`connection_limit`]).
pub const MAX_CONNECTIONS: usize = 1024;
/// File descriptors kept free of connections for a job's files and pipes.
const RESERVED_FDS: u64 = 256;
/// How long a closing connection with no request in flight may take to go.
/// hyper closes an idle one at once but waits for the rest of a half-sent header.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// At most one log line about closed connections per interval.
const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Pause after an accept error that closing a connection could not help.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Timeouts and size of the connection table.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest wait for a complete request header (`[agent] header_timeout`).
    pub header_timeout: Duration,
    /// Longest wait for the next request (`[agent] idle_timeout`).
    pub idle_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

impl Limits {
    /// How often the table is checked for connections past a timeout.
    fn tick(&self) -> Duration {
        (self.header_timeout.min(self.idle_timeout) / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// [`MAX_CONNECTIONS`], or fewer if this process's file limit leaves no room
/// for them and a job's own files.
pub fn connection_limit() -> usize {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => limit_for(soft),
        Err(_) => limit_for(1024),
    }
}

fn limit_for(nofile: u64) -> usize {
    let room = nofile.saturating_sub(RESERVED_FDS).max(16);
    usize::try_from(room).unwrap_or(MAX_CONNECTIONS).min(MAX_CONNECTIONS)
}

/// Serves `router` on the connections of `acceptor` until `stop` changes;
/// then stops accepting, lets requests in flight finish and closes every
/// connection.
pub async fn serve(acceptor: Acceptor, router: Router, limits: Limits, mut stop: watch::Receiver<bool>) {
    let mut server = Server {
        router,
        limits,
        table: HashMap::new(),
        tasks: JoinSet::new(),
        report: Report::default(),
    };
    let mut tick = tokio::time::interval(limits.tick());
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            accepted = acceptor.accept() => match accepted {
                Ok((tcp, addr)) => server.admit(acceptor.secure(tcp, addr)),
                Err(e) => server.accept_failed(e).await,
            },
            Some(ended) = server.tasks.join_next_with_id() => {
                let id = ended.map_or_else(|e| e.id(), |(id, ())| id);
                server.table.remove(&id);
            }
            _ = tick.tick() => server.check(Instant::now()),
            _ = stop.changed() => break,
        }
    }
    drop(acceptor);
    for conn in server.table.values() {
        conn.close.notify_one();
    }
    while server.tasks.join_next().await.is_some() {}
    server.report.log(&limits);
}

/// The accept loop's state: it alone owns the connection table.
struct Server {
    router: Router,
    limits: Limits,
    table: HashMap<task::Id, Conn>,
    tasks: JoinSet<()>,
    report: Report,
}

/// A connection in the table: what it does, and how to tell it to close.
struct Conn {
    tracker: Tracker,
    close: Arc<Notify>,
}

impl Server {
    /// Serves a new connection once `secured` gives its stream, closing the
    /// oldest idle one if the table is full.
    fn admit<F>(&mut self, secured: F)
    where
        F: Future<Output = io::Result<(Stream, Peer)>> + Send + 'static,
    {
        if self.table.len() >= self.limits.max_connections && !self.evict() {
            // Every connection has a request in flight: this one waits for none.
            self.report.refused += 1;
            return;
        }
        let tracker = Tracker::new(Instant::now());
        let close = Arc::new(Notify::new());
        let router = self.router.clone();
        let (task_tracker, task_close) = (tracker.clone(), close.clone());
        // Until its stream is ready it owes its header: closed after `header_timeout`.
        let task = async move {
            let stream = tokio::select! {
                stream = secured => stream,
                _ = task_close.notified() => return,
            };
            match stream {
                Ok((stream, peer)) => serve_stream(stream, peer, router, task_tracker, task_close).await,
                Err(e) => debug!("connection not secured: {e}"),
            }
        };
        let handle = self.tasks.spawn(task);
        self.table.insert(handle.id(), Conn { tracker, close });
    }

    /// Closes the connection idle the longest; false if there is none.
    fn evict(&mut self) -> bool {
        let activities = self.table.iter().map(|(id, c)| (*id, c.tracker.get()));
        let Some(id) = oldest_idle(activities) else {
            return false;
        };
        self.close(id);
        self.report.evicted += 1;
        true
    }

    fn close(&mut self, id: task::Id) {
        if let Some(conn) = self.table.remove(&id) {
            conn.close.notify_one();
        }
    }

    /// Out of file descriptors (or another error of the listener): an idle
    /// connection makes room; without one, wait a little instead of spinning.
    async fn accept_failed(&mut self, error: io::Error) {
        use io::ErrorKind::*;
        // The client gave up before the accept: nothing wrong here.
        if matches!(
            error.kind(),
            ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
        ) {
            return;
        }
        debug!("accepting a connection failed: {error}");
        self.report.accept_errors += 1;
        if self.evict() {
            task::yield_now().await;
        } else {
            tokio::time::sleep(ACCEPT_BACKOFF).await;
        }
    }

    /// Closes the connections past a timeout; logs what was closed, if due.
    fn check(&mut self, now: Instant) {
        let expired: Vec<(task::Id, Expired)> = self
            .table
            .iter()
            .filter_map(|(id, c)| c.tracker.get().expired(&self.limits, now).map(|why| (*id, why)))
            .collect();
        for (id, why) in expired {
            self.close(id);
            match why {
                Expired::Header => self.report.header_timeouts += 1,
                Expired::Idle => self.report.idle_timeouts += 1,
            }
        }
        self.report.log_if_due(&self.limits, now);
    }
}

/// Serves HTTP/1.1 on one accepted stream until the client goes or `close`
/// is notified; every request carries the [`Peer`] as an extension.
async fn serve_stream<S>(stream: S, peer: Peer, router: Router, tracker: Tracker, close: Arc<Notify>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Watched {
        stream,
        tracker: tracker.clone(),
    });
    let service = Counted {
        inner: TowerToHyperService::new(router),
        tracker: tracker.clone(),
        peer,
    };
    // hyper's header timer would cut the wait between requests short: the table applies both.
    let connection = http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = close.notified() => {
            connection.as_mut().graceful_shutdown();
            finish(connection, &tracker).await
        }
    };
    if let Err(e) = result {
        debug!("connection ended: {e}");
    }
}

/// Lets a closing connection finish the request in flight; without one, it
/// goes after [`CLOSE_GRACE`].
async fn finish<F>(mut connection: Pin<&mut F>, tracker: &Tracker) -> hyper::Result<()>
where
    F: Future<Output = hyper::Result<()>>,
{
    loop {
        match tokio::time::timeout(CLOSE_GRACE, connection.as_mut()).await {
            Ok(result) => return result,
            Err(_) if tracker.get().in_flight == 0 => return Ok(()),
            Err(_) => {}
        }
    }
}

/// What a connection is doing, at one moment.
#[derive(Debug, Clone, Copy)]
struct Activity {
    /// Requests between their complete header and their answer.
    in_flight: usize,
    /// Requests answered so far.
    served: u64,
    /// When it was accepted, or last answered its last request in flight.
    idle_since: Instant,
    /// When the first bytes of the next request came in, while idle.
    header_since: Option<Instant>,
}

/// Why an idle connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    Header,
    Idle,
}

impl Activity {
    fn new(now: Instant) -> Activity {
        Activity {
            in_flight: 0,
            served: 0,
            idle_since: now,
            header_since: None,
        }
    }

    /// Whether, at `now`, the connection is past a timeout: a request in flight never is.
    fn expired(&self, limits: &Limits, now: Instant) -> Option<Expired> {
        if self.in_flight > 0 {
            return None;
        }
        // A new connection owes its first header from the start.
        let header_since = if self.served == 0 {
            Some(self.idle_since)
        } else {
            self.header_since
        };
        if header_since.is_some_and(|t| now.saturating_duration_since(t) >= limits.header_timeout) {
            Some(Expired::Header)
        } else if now.saturating_duration_since(self.idle_since) >= limits.idle_timeout {
            Some(Expired::Idle)
        } else {
            None
        }
    }
}

/// The connection to close to make room: the one idle the longest, never one
/// with a request in flight.
fn oldest_idle<K>(connections: impl IntoIterator<Item = (K, Activity)>) -> Option<K> {
    connections
        .into_iter()
        .filter(|(_, a)| a.in_flight == 0)
        .min_by_key(|(_, a)| a.idle_since)
        .map(|(id, _)| id)
}

/// A connection's [`Activity`], shared by its stream, its service and the table.
#[derive(Debug, Clone)]
struct Tracker(Arc<Mutex<Activity>>);

impl Tracker {
    fn new(now: Instant) -> Tracker {
        Tracker(Arc::new(Mutex::new(Activity::new(now))))
    }

    fn lock(&self) -> MutexGuard<'_, Activity> {
        // Plain data: a panic elsewhere leaves it usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self) -> Activity {
        *self.lock()
    }

    fn saw_bytes(&self, now: Instant) {
        let mut a = self.lock();
        if a.in_flight == 0 && a.header_since.is_none() {
            a.header_since = Some(now);
        }
    }

    fn begin_request(&self) -> InFlight {
        let mut a = self.lock();
        a.in_flight += 1;
        a.header_since = None;
        InFlight(self.clone())
    }
}

/// A request in flight; dropped when its answer is ready (or it is abandoned).
struct InFlight(Tracker);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut a = self.0.lock();
        a.in_flight = a.in_flight.saturating_sub(1);
        a.served += 1;
        if a.in_flight == 0 {
            a.idle_since = Instant::now();
        }
    }
}

/// The router as a hyper service: counts requests in flight, tells each its caller.
struct Counted {
    inner: TowerToHyperService<Router>,
    tracker: Tracker,
    peer: Peer,
}

impl hyper::service::Service<Request<Incoming>> for Counted {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        let in_flight = self.tracker.begin_request();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await;
            drop(in_flight);
            response
        })
    }
}

/// A stream that notes when the bytes of a request start to come in.
struct Watched<S> {
    stream: S,
    tracker: Tracker,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.tracker.saw_bytes(Instant::now());
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Connections closed since the last log line.
#[derive(Debug, Default)]
struct Report {
    evicted: u64,
    refused: u64,
    accept_errors: u64,
    header_timeouts: u64,
    idle_timeouts: u64,
    logged_at: Option<Instant>,
}

impl Report {
    /// Logs at most once per [`LOG_INTERVAL`], however many connections come and go.
    fn log_if_due(&mut self, limits: &Limits, now: Instant) {
        if self
            .logged_at
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_INTERVAL)
        {
            return;
        }
        if self.log(limits) {
            self.logged_at = Some(now);
        }
    }

    /// Logs the counts and clears them; false if there was nothing to say.
    fn log(&mut self, limits: &Limits) -> bool {
        let Report {
            evicted,
            refused,
            accept_errors,
            header_timeouts,
            idle_timeouts,
            ..
        } = *self;
        if evicted + refused + accept_errors > 0 {
            warn!(
                evicted,
                refused,
                accept_errors,
                header_timeouts,
                idle_timeouts,
                "too many connections (at most {} at once): closed {evicted} idle connections to make room, \
                 refused {refused}, {accept_errors} failed accepts; {header_timeouts} closed without a complete \
                 request header, {idle_timeouts} idle",
                limits.max_connections
            );
        } else if header_timeouts + idle_timeouts > 0 {
            info!(
                header_timeouts,
                idle_timeouts,
                "closed {header_timeouts} connections without a complete request header within {:?} \
                 and {idle_timeouts} idle for {:?}",
                limits.header_timeout,
                limits.idle_timeout
            );
        } else {
            return false;
        }
        *self = Report {
            logged_at: self.logged_at,
            ..Report::default()
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 4,
    };

    fn idle_since(start: Instant, secs: u64) -> Activity {
        Activity::new(start + Duration::from_secs(secs))
    }

    #[test]
    fn the_connection_idle_the_longest_is_evicted() {
        let t = Instant::now();
        let conns = [(1, idle_since(t, 5)), (2, idle_since(t, 1)), (3, idle_since(t, 3))];
        assert_eq!(oldest_idle(conns), Some(2));
    }

    #[test]
    fn a_connection_with_a_request_in_flight_is_never_evicted() {
        let t = Instant::now();
        let mut polling = idle_since(t, 0);
        polling.in_flight = 1;
        assert_eq!(oldest_idle([(1, polling), (2, idle_since(t, 9))]), Some(2));
        assert_eq!(oldest_idle([(1, polling)]), None);
        assert_eq!(oldest_idle::<u32>([]), None);
    }

    #[test]
    fn a_new_connection_owes_its_header_from_the_start() {
        let t = Instant::now();
        let fresh = Activity::new(t);
        assert_eq!(fresh.expired(&LIMITS, t + Duration::from_secs(9)), None);
        assert_eq!(
            fresh.expired(&LIMITS, t + Duration::from_secs(10)),
            Some(Expired::Header)
        );
    }

    #[test]
    fn between_requests_idle_time_and_then_the_header_count() {
        let t = Instant::now();
        let mut kept = Activity::new(t);
        kept.served = 1;
        // No byte of a next request: only the idle timeout applies.
        assert_eq!(kept.expired(&LIMITS, t + Duration::from_secs(59)), None);
        assert_eq!(kept.expired(&LIMITS, t + Duration::from_secs(60)), Some(Expired::Idle));
        // A next request started at 30 s must have its header by 40 s.
        kept.header_since = Some(t + Duration::from_secs(30));
        assert_eq!(kept.expired(&LIMITS, t + Duration::from_secs(39)), None);
        assert_eq!(
            kept.expired(&LIMITS, t + Duration::from_secs(40)),
            Some(Expired::Header)
        );
    }

    #[test]
    fn a_request_in_flight_never_times_out() {
        let t = Instant::now();
        let mut polling = Activity::new(t);
        polling.in_flight = 1;
        assert_eq!(polling.expired(&LIMITS, t + Duration::from_secs(3600)), None);
    }

    #[test]
    fn a_request_counts_from_its_header_to_its_answer() {
        let t = Instant::now();
        let tracker = Tracker::new(t);
        tracker.saw_bytes(t + Duration::from_secs(1));
        let request = tracker.begin_request();
        assert_eq!((tracker.get().in_flight, tracker.get().header_since), (1, None));
        // The body of a request in flight is no next header.
        tracker.saw_bytes(t + Duration::from_secs(2));
        assert_eq!(tracker.get().header_since, None);
        drop(request);
        let after = tracker.get();
        assert_eq!((after.in_flight, after.served), (0, 1));
        assert!(after.idle_since > t);
    }

    #[test]
    fn the_table_leaves_room_for_a_jobs_files() {
        assert_eq!(limit_for(16384), MAX_CONNECTIONS);
        assert_eq!(limit_for(1024), 768);
        assert_eq!(limit_for(100), 16);
    }
}
