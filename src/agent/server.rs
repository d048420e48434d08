//! The agent's HTTP server: routes, the access gate (agent/access.rs), and
//! the job table.
//! One job runs at a time; jobs run on the blocking pool and report progress
//! through a [`JobControl`]. A job is bound to the repository lock of the
//! leader that started it and to a lease its status requests renew; it is
//! cancelled when the lease lapses or through `POST /v1/jobs/{id}/cancel`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use tracing::{error, info, info_span, warn, Instrument};

use super::access::{Policy, Route};
use super::api::{self, ApiError, Health, HealthDetail, JobCreated, JobState, JobStatus, Progress};
use super::token::Token;
use super::transport::Peer;
use crate::config::Config;
use crate::job::{JobControl, JobRequest, JobResult};
use crate::progress::Meter;
use crate::repo::lock::LockInfo;
use crate::repo::Repository;
use crate::runner::ProgramFailed;
use crate::systemd;

/// How many finished jobs the agent remembers.
const HISTORY: usize = 100;

/// The longest a status request may wait for its job to end (`wait_ms`).
const MAX_WAIT: Duration = Duration::from_secs(60);

/// How often a running job's lease is looked at.
const LEASE_CHECK: Duration = Duration::from_millis(500);

/// State shared by every request.
pub struct Shared {
    config: Arc<Config>,
    policy: Policy,
    /// A running job whose status nobody asks for this long is cancelled
    /// (`[backup] node_timeout`, the leader's own patience with an agent).
    lease: Duration,
    jobs: Mutex<Jobs>,
    accepting: AtomicBool,
    /// Bumped whenever a job ends, to wake status requests that wait for it.
    ended: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct Jobs {
    running: Option<String>,
    entries: BTreeMap<String, Entry>,
    order: VecDeque<String>,
    next: u64,
}

struct Entry {
    status: JobStatus,
    control: JobControl,
    /// The job is cancelled unless its status is asked for before this.
    lease_until: Instant,
}

impl Entry {
    fn snapshot(&self) -> JobStatus {
        let mut status = self.status.clone();
        let (files, bytes) = self.control.progress();
        let (total_files, total_bytes) = self.control.total();
        status.progress = Progress {
            files,
            bytes,
            total_files,
            total_bytes,
        };
        status
    }
}

impl Shared {
    /// State for an agent of `config`; `token` is loaded when `[agent] auth` needs it.
    pub fn new(config: Arc<Config>, token: Option<Token>) -> Arc<Shared> {
        Arc::new(Shared {
            lease: config.backup.node_timeout,
            policy: Policy::new(&config, token),
            config,
            jobs: Mutex::new(Jobs::default()),
            accepting: AtomicBool::new(true),
            ended: tokio::sync::watch::Sender::new(0),
        })
    }

    fn jobs(&self) -> MutexGuard<'_, Jobs> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The running job's id, if any.
    pub fn running(&self) -> Option<String> {
        self.jobs().running.clone()
    }

    fn job_ended(&self) {
        self.ended.send_modify(|n| *n += 1);
    }
}

/// An error answer with its HTTP status.
struct ApiErr(StatusCode, String);

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

/// The routes of API version 1, every one behind the access gate.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/jobs", get(list_jobs).post(start_job))
        .route("/v1/jobs/{id}", get(job_status))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/plan", post(plan_job))
        .route_layer(middleware::from_fn_with_state(shared.clone(), gate))
        .fallback(|| async { ApiErr(StatusCode::NOT_FOUND, "no such API path".into()) })
        .with_state(shared)
}

/// Whether the caller authenticated, for the handlers that answer anyone.
#[derive(Debug, Clone, Copy)]
struct Authenticated(bool);

/// Lets a request through if `[agent] auth` allows its caller on its route;
/// a refusal is logged with who tried and why, and nothing runs.
async fn gate(State(shared): State<Arc<Shared>>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<Peer>().cloned().unwrap_or(Peer {
        addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        cert: None,
    });
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = request.uri().path().to_owned();
    if let Err(refused) = shared.policy.check(Route::of(&path), &peer, authorization.as_deref()) {
        let subject = peer.cert.as_ref().map_or("none", |c| c.subject.as_str());
        warn!(peer = %peer.addr, certificate = subject, path = %path, "refused {path} from {}: {}", peer.addr, refused.message);
        let mut response = ApiErr(refused.status, refused.message).into_response();
        if refused.status == StatusCode::UNAUTHORIZED && shared.policy.auth().token() {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        return response;
    }
    let authenticated = shared.policy.authenticated(&peer, authorization.as_deref());
    request.extensions_mut().insert(Authenticated(authenticated));
    next.run(request).await
}

async fn health(State(shared): State<Arc<Shared>>, Extension(who): Extension<Authenticated>) -> Json<Health> {
    let this = shared.config.this();
    let detail = who.0.then(|| {
        let running = shared.running();
        HealthDetail {
            cluster: shared.config.cluster.clone(),
            roles: this.roles.iter().copied().map(Into::into).collect(),
            version: env!("CARGO_PKG_VERSION").into(),
            busy: running.is_some(),
            job: running,
        }
    });
    Json(Health {
        node: this.name.to_string(),
        auth: Some(shared.policy.auth().to_string()),
        detail,
    })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let config = shared.config.clone();
    match tokio::task::spawn_blocking(move || crate::metrics::render(&config)).await {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Ok(Err(e)) => ApiErr(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
        Err(e) => ApiErr(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}")).into_response(),
    }
}

async fn list_jobs(State(shared): State<Arc<Shared>>) -> Json<Vec<JobStatus>> {
    let jobs = shared.jobs();
    Json(
        jobs.order
            .iter()
            .filter_map(|id| jobs.entries.get(id))
            .map(Entry::snapshot)
            .collect(),
    )
}

/// `GET /v1/jobs/{id}[?wait_ms=N]`: with `wait_ms`, the answer waits until the
/// job has ended or `N` ms (at most [`MAX_WAIT`]) have passed, so the leader
/// learns of the end at once instead of at its next poll.
#[derive(Debug, serde::Deserialize)]
struct StatusQuery {
    wait_ms: Option<u64>,
}

async fn job_status(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobStatus>, ApiErr> {
    let wait = wait_of(query)?;
    renew_lease(&shared, &id, wait)?;
    wait_for_end(&shared, &id, wait).await.map(Json)
}

/// `POST /v1/jobs/{id}/cancel[?wait_ms=N]`: asks the job to stop (it stops at
/// its next check, kills the program it runs and removes its temp files) and
/// answers once it ended or `N` ms passed. An ended job is answered as is.
async fn cancel_job(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobStatus>, ApiErr> {
    let wait = wait_of(query)?;
    let control = {
        let jobs = shared.jobs();
        let entry = jobs.entries.get(&id).ok_or_else(|| unknown_job(&id))?;
        (entry.status.state == JobState::Running).then(|| entry.control.clone())
    };
    if let Some(control) = control {
        warn!(job_id = %id, "job {id} cancelled through the API");
        control.cancel_because("it was cancelled through the API (hwdr unlock, or its leader stopped)");
    }
    wait_for_end(&shared, &id, wait).await.map(Json)
}

fn wait_of(query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>) -> Result<Duration, ApiErr> {
    let Query(query) = query.map_err(|e| ApiErr(StatusCode::BAD_REQUEST, format!("bad query: {}", e.body_text())))?;
    Ok(Duration::from_millis(query.wait_ms.unwrap_or(0)).min(MAX_WAIT))
}

fn unknown_job(id: &str) -> ApiErr {
    ApiErr(
        StatusCode::NOT_FOUND,
        format!("no job '{}' on this agent", id.escape_debug()),
    )
}

/// A status request keeps the job's leader's claim on it alive: while it
/// waits (`wait`), and for the lease after its answer.
fn renew_lease(shared: &Shared, id: &str, wait: Duration) -> Result<(), ApiErr> {
    let mut jobs = shared.jobs();
    let entry = jobs.entries.get_mut(id).ok_or_else(|| unknown_job(id))?;
    entry.lease_until = Instant::now() + wait + shared.lease;
    Ok(())
}

/// The job's status once it ended, or after `wait`, whichever comes first.
async fn wait_for_end(shared: &Shared, id: &str, wait: Duration) -> Result<JobStatus, ApiErr> {
    let deadline = Instant::now() + wait;
    // Subscribed before the first look, so an end between the look and the wait is not missed.
    let mut ended = shared.ended.subscribe();
    loop {
        let snapshot = {
            let jobs = shared.jobs();
            jobs.entries
                .get(id)
                .map(Entry::snapshot)
                .ok_or_else(|| unknown_job(id))?
        };
        if snapshot.state != JobState::Running {
            return Ok(snapshot);
        }
        match tokio::time::timeout_at(deadline, ended.changed()).await {
            Ok(Ok(())) => {}
            // The deadline passed (or the agent is going away): answer as it is.
            Ok(Err(_)) | Err(_) => return Ok(snapshot),
        }
    }
}

/// Cancels the running job `id` once nobody asked for its status during the
/// lease: its leader died (SIGKILL, a crashed host) or lost the network. Ends
/// with the job.
async fn watch_lease(shared: Arc<Shared>, id: String) {
    loop {
        tokio::time::sleep(LEASE_CHECK).await;
        let lapsed = {
            let jobs = shared.jobs();
            match jobs.entries.get(&id) {
                Some(e) if e.status.state == JobState::Running => {
                    (Instant::now() > e.lease_until).then(|| e.control.clone())
                }
                _ => return,
            }
        };
        if let Some(control) = lapsed {
            let secs = shared.lease.as_secs();
            warn!(job_id = %id, "job {id}: nobody asked for it for {secs}s (its leader is gone); cancelling it");
            control.cancel_because(&format!(
                "its leader stopped asking about it for {secs}s ([backup] node_timeout): the lease lapsed"
            ));
            return;
        }
    }
}

/// The repository lock the job must run under (see [`JobRequest::needs_lock`]):
/// the lock's holder, to bind the job to, or why the job may not run now.
fn lock_for(config: &Config, request: &JobRequest) -> Result<Option<LockInfo>, ApiErr> {
    let mut holders = Repository::of(config)
        .lock_holders()
        .map_err(|e| ApiErr(StatusCode::CONFLICT, format!("{e:#}")))?;
    let Some((operation, id)) = request.needs_lock() else {
        return Ok(holders.into_iter().next());
    };
    let id = id.to_string();
    // The holder, not a contender whose lease is there for a moment.
    if let Some(at) = holders
        .iter()
        .position(|h| h.operation == operation && h.backup_id.as_deref() == Some(id.as_str()))
    {
        return Ok(Some(holders.swap_remove(at)));
    }
    match holders.into_iter().next() {
        Some(h) => Err(ApiErr(
            StatusCode::CONFLICT,
            format!(
                "refused: a {} job runs only while the repository lock names a {operation} of backup {id}; it is held by {}",
                request.step(),
                h.describe()
            ),
        )),
        None => Err(ApiErr(
            StatusCode::CONFLICT,
            format!(
                "refused: a {} job runs only while the repository lock names a {operation} of backup {id}, and the repository is not locked (run `hwdr {operation}` on the leader)",
                request.step()
            ),
        )),
    }
}

/// Checks that the job is for this node, and may run here now, before it is
/// accepted.
fn precheck(config: &Config, request: &JobRequest) -> Result<(), ApiErr> {
    check_node(config, request)?;
    if let Some(backup_id) = request.adds_to() {
        Repository::of(config)
            .backup_in_progress(backup_id)
            .map_err(|e| ApiErr(StatusCode::CONFLICT, format!("{e:#}")))?;
    }
    Ok(())
}

/// Checks that the job is for this node: its name, its role, its own config.
fn check_node(config: &Config, request: &JobRequest) -> Result<(), ApiErr> {
    let this = config.this();
    if request.node() != &this.name {
        return Err(ApiErr(
            StatusCode::BAD_REQUEST,
            format!("this agent is node '{}', not '{}'", this.name, request.node()),
        ));
    }
    if let Some(role) = request.role() {
        if !this.has(role) {
            return Err(ApiErr(
                StatusCode::BAD_REQUEST,
                format!("node '{}' has no {role} role", this.name),
            ));
        }
    }
    if let Err(e) = super::jobs::check_request(config, request) {
        return Err(ApiErr(StatusCode::BAD_REQUEST, format!("{e:#}")));
    }
    Ok(())
}

/// The job's request, read and checked as hwdr's type.
fn job_request(body: Result<Json<api::JobRequest>, JsonRejection>) -> Result<JobRequest, ApiErr> {
    let bad = |e: String| ApiErr(StatusCode::BAD_REQUEST, format!("bad job request: {e}"));
    let Json(request) = body.map_err(|e| bad(e.body_text()))?;
    JobRequest::try_from(request).map_err(|e| bad(format!("{e:#}")))
}

/// `POST /v1/plan`: what the job would run on this node, from this node's
/// own config (for the leader's `--dry-run` and `--plan`). Runs nothing and
/// takes no lock.
async fn plan_job(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<api::JobRequest>, JsonRejection>,
) -> Result<Json<api::JobPlan>, ApiErr> {
    let request = job_request(body)?;
    check_node(&shared.config, &request)?;
    let config = shared.config.clone();
    let lines = tokio::task::spawn_blocking(move || super::render::render(&config, &request))
        .await
        .map_err(|e| {
            ApiErr(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("rendering the job panicked: {e}"),
            )
        })?
        .map_err(|e| ApiErr(StatusCode::CONFLICT, format!("{e:#}")))?;
    Ok(Json(api::JobPlan {
        lines: lines.into_iter().map(Into::into).collect(),
    }))
}

async fn start_job(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<api::JobRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<JobCreated>), ApiErr> {
    let request = job_request(body)?;
    if !shared.accepting.load(Ordering::SeqCst) {
        return Err(ApiErr(StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping".into()));
    }
    precheck(&shared.config, &request)?;
    let lock = lock_for(&shared.config, &request)?;
    let control = JobControl::default();
    let id = {
        let mut jobs = shared.jobs();
        if let Some(running) = &jobs.running {
            return Err(ApiErr(StatusCode::CONFLICT, format!("busy with job {running}")));
        }
        jobs.next += 1;
        let id = format!("{}-{}", Utc::now().format("%Y%m%dT%H%M%S"), jobs.next);
        let status = JobStatus {
            id: id.clone(),
            request: api::JobRequest::from(&request),
            lock: lock.map(Into::into),
            state: JobState::Running,
            started_at: Utc::now(),
            finished_at: None,
            progress: Progress::default(),
            result: None,
            error: None,
            tail: Vec::new(),
        };
        jobs.entries.insert(
            id.clone(),
            Entry {
                status,
                control: control.clone(),
                lease_until: Instant::now() + shared.lease,
            },
        );
        jobs.order.push_back(id.clone());
        while jobs.order.len() > HISTORY {
            if let Some(old) = jobs.order.pop_front() {
                jobs.entries.remove(&old);
            }
        }
        jobs.running = Some(id.clone());
        id
    };
    let what = request.describe();
    systemd::status(&format!("job {id}: {what}"));
    let backup_id = request.backup_id().map(|id| id.to_string()).unwrap_or_default();
    let span = info_span!(
        "job",
        job_id = %id,
        hwdr_backup_id = %backup_id,
        hwdr_node = %shared.config.this_node,
        hwdr_step = request.step()
    );
    // Entered, not `parent:`: the journald layer takes fields from the current span.
    span.in_scope(|| info!("job {id} started: {what}"));
    let task_shared = shared.clone();
    let task_id = id.clone();
    tokio::spawn(watch_lease(shared.clone(), id.clone()).instrument(span.clone()));
    tokio::spawn(
        async move {
            let config = task_shared.config.clone();
            // `systemctl status hwdr-agent` shows how far a job that moves data got.
            let meter = request
                .progress_unit()
                .map(|unit| Meter::follow(&format!("job {task_id}: {what}"), unit, control.clone()));
            let outcome = super::jobs::execute_async(config, request, control.clone()).await;
            drop(meter);
            finish(&task_shared, &task_id, outcome, control.is_cancelled());
        }
        .instrument(span),
    );
    Ok((StatusCode::ACCEPTED, Json(JobCreated { job_id: id })))
}

fn finish(shared: &Shared, id: &str, outcome: anyhow::Result<JobResult>, cancelled: bool) {
    let mut jobs = shared.jobs();
    if let Some(entry) = jobs.entries.get_mut(id) {
        entry.status.finished_at = Some(Utc::now());
        match outcome {
            Ok(result) => {
                info!("job {id} succeeded");
                entry.status.state = JobState::Succeeded;
                entry.status.result = Some(result.into());
            }
            Err(e) => {
                error!("job {id} failed: {e:#}");
                entry.status.state = if cancelled { JobState::Aborted } else { JobState::Failed };
                entry.status.error = Some(format!("{e:#}"));
                // The program's output goes to the leader as it is, not only quoted in the error.
                if let Some(failed) = e.chain().find_map(|c| c.downcast_ref::<ProgramFailed>()) {
                    entry.status.tail = failed.tail.clone();
                }
            }
        }
    }
    jobs.running = None;
    drop(jobs);
    shared.job_ended();
    if shared.accepting.load(Ordering::SeqCst) {
        systemd::status("idle");
    }
}

/// Stops accepting jobs and waits up to `timeout` for the running one; then
/// asks it to stop and gives it a few more seconds. Returns whether no job
/// was left running.
pub async fn drain(shared: &Shared, timeout: Duration) -> bool {
    shared.accepting.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut cancelled = false;
    loop {
        let running = {
            let jobs = shared.jobs();
            jobs.running
                .as_ref()
                .and_then(|id| jobs.entries.get(id))
                .map(|e| (e.status.id.clone(), e.control.clone()))
        };
        let Some((id, control)) = running else {
            return true;
        };
        let now = tokio::time::Instant::now();
        if now >= deadline + Duration::from_secs(10) {
            warn!("job {id} is still running; marking it aborted");
            let mut jobs = shared.jobs();
            if let Some(entry) = jobs.entries.get_mut(&id) {
                entry.status.state = JobState::Aborted;
                entry.status.finished_at = Some(Utc::now());
                entry.status.error = Some("the agent stopped before the job finished".into());
            }
            drop(jobs);
            shared.job_ended();
            return false;
        }
        if now >= deadline && !cancelled {
            warn!("job {id} did not finish in {}s; asking it to stop", timeout.as_secs());
            control.cancel_because("the agent is stopping");
            cancelled = true;
        }
        systemd::status(&format!("stopping: waiting for job {id}"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
