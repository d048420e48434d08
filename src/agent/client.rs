//! The leader's side of the agent API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::api::{self, ApiError, Health, JobCreated, JobState};
use super::token::Token;
use super::transport;
use crate::config::{Auth, Config, NodeName, NodeSpec};
use crate::job::{JobRequest, JobResult, PlanLine};
use crate::progress::Slot;
use crate::repo::lock::LockInfo;
use crate::tls::files::Material;

/// How long one status request asks the agent to wait for the job's end
/// (`wait_ms`), at most; never more than half of `[agent] request_timeout`.
const LONG_POLL: Duration = Duration::from_secs(5);
/// For an agent that answers at once although asked to wait (older than the
/// `wait_ms` parameter): the first pause between polls, doubling up to [`POLL`].
const FIRST_POLL: Duration = Duration::from_millis(20);
/// How long a status request waits when the leader shows the job's
/// progress: the numbers are never older than this.
const PROGRESS_POLL: Duration = Duration::from_secs(1);

/// The longest pause between polls of such an agent.
const POLL: Duration = Duration::from_millis(500);

/// A job as its agent reports it, in hwdr's types.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub id: String,
    pub request: JobRequest,
    /// The repository lock the job is bound to (its leader's), if any.
    pub lock: Option<LockInfo>,
    pub state: JobState,
    /// Files and bytes done so far.
    pub progress: (u64, u64),
    /// Files and bytes the whole job will do, zeros where not known.
    pub total: (u64, u64),
    pub result: Option<JobResult>,
    pub error: Option<String>,
    /// Of a job that failed because a program did: its last output lines.
    pub tail: Vec<String>,
}

/// A job that ended without success on its node: the agent's reason, and
/// the last output lines of the program that failed, if one did.
#[derive(Debug)]
pub struct JobFailed {
    pub node: String,
    pub id: String,
    pub state: JobState,
    pub error: Option<String>,
    pub tail: Vec<String>,
}

impl std::fmt::Display for JobFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {} job {} {}: {}",
            self.node,
            self.id,
            if self.state == JobState::Aborted {
                "was aborted"
            } else {
                "failed"
            },
            self.error.as_deref().unwrap_or("no reason given")
        )
    }
}

impl std::error::Error for JobFailed {}

/// A client for every agent of the cluster.
#[derive(Debug, Clone)]
pub struct AgentClient {
    /// One per node: with mutual TLS, each accepts only its node's certificate.
    http: BTreeMap<NodeName, reqwest::Client>,
    auth: Auth,
    token: Option<Token>,
    node_timeout: Duration,
    long_poll: Duration,
}

impl AgentClient {
    /// A client with the credentials (`[agent] auth`) and timeouts of `config`.
    pub fn new(config: &Config) -> Result<AgentClient> {
        let token = super::load_token(config)?;
        let material = match config.agent.auth.tls() {
            true => Some(Material::load(config)?),
            false => None,
        };
        let mut http = BTreeMap::new();
        for node in &config.nodes {
            http.insert(node.name.clone(), transport::client(config, material.as_ref(), node)?);
        }
        Ok(AgentClient {
            http,
            auth: config.agent.auth,
            token,
            node_timeout: config.backup.node_timeout,
            long_poll: LONG_POLL.min(config.agent.request_timeout / 2),
        })
    }

    /// A request to `node`'s agent, with the token if `[agent] auth` sends one.
    fn request(&self, method: reqwest::Method, node: &NodeSpec, path: &str) -> Result<reqwest::RequestBuilder> {
        let http = self
            .http
            .get(&node.name)
            .with_context(|| format!("node {} is not in [[nodes]]", node.name))?;
        let request = http.request(method, transport::url(&node.address, path, self.auth.tls()));
        Ok(match &self.token {
            Some(token) => request.header(reqwest::header::AUTHORIZATION, token.bearer()),
            None => request,
        })
    }

    /// Sends `request`; a failure to connect says what it likely means.
    async fn send(&self, node: &NodeSpec, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        request.send().await.map_err(|e| {
            let hint = unreachable_hint(self.auth, &e);
            anyhow::Error::new(e).context(format!(
                "agent of {} ({}) does not answer{hint}",
                node.name, node.address
            ))
        })
    }

    /// A job status answer, converted to hwdr's types.
    fn report(node: &NodeSpec, status: api::JobStatus) -> Result<JobReport> {
        JobReport::try_from(status).with_context(|| format!("agent of {} sent an answer hwdr cannot read", node.name))
    }

    async fn decode<T: DeserializeOwned>(node: &NodeSpec, response: reqwest::Response) -> Result<T> {
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .with_context(|| format!("agent of {} sent an answer hwdr cannot read", node.name));
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ApiError>(&text).map(|e| e.error).unwrap_or(text);
        Err(anyhow!(AgentRefused { status, message }))
            .with_context(|| format!("agent of {} ({}) answered {status}", node.name, node.address))
    }

    /// `GET /v1/health`; the answer must come from the node we asked for.
    pub async fn health(&self, node: &NodeSpec) -> Result<Health> {
        let response = self
            .send(node, self.request(reqwest::Method::GET, node, "/v1/health")?)
            .await?;
        let health: Health = Self::decode(node, response).await?;
        if health.node != node.name.as_str() {
            bail!(
                "{} answers as node '{}', not '{}': check [[nodes]] addresses",
                node.address,
                health.node,
                node.name
            );
        }
        if let Some(auth) = health.auth.as_deref().filter(|a| *a != self.auth.as_str()) {
            bail!(
                "node {} has [agent] auth = {auth}, this node {}: set the same [agent] auth on every node",
                node.name,
                self.auth
            );
        }
        Ok(health)
    }

    /// `POST /v1/jobs`: returns the job id.
    pub async fn start(&self, node: &NodeSpec, request: &JobRequest) -> Result<String> {
        let request = self
            .request(reqwest::Method::POST, node, "/v1/jobs")?
            .json(&api::JobRequest::from(request));
        let response = self.send(node, request).await?;
        let created: JobCreated = Self::decode(node, response).await?;
        Ok(created.job_id)
    }

    /// `POST /v1/plan`: what `request` would run on `node`, rendered there
    /// from its own config.
    pub async fn plan(&self, node: &NodeSpec, request: &JobRequest) -> Result<Vec<PlanLine>> {
        let request = self
            .request(reqwest::Method::POST, node, "/v1/plan")?
            .json(&api::JobRequest::from(request));
        let response = self.send(node, request).await?;
        let plan: api::JobPlan = Self::decode(node, response).await?;
        Ok(plan.lines.into_iter().map(Into::into).collect())
    }

    /// `GET /v1/jobs/{id}?wait_ms=…`: the agent answers when the job ends or
    /// after `wait`, whichever comes first.
    pub async fn status_wait(&self, node: &NodeSpec, id: &str, wait: Duration) -> Result<JobReport> {
        let request = self.request(
            reqwest::Method::GET,
            node,
            &format!("/v1/jobs/{id}?wait_ms={}", wait.as_millis()),
        )?;
        let response = self.send(node, request).await?;
        Self::report(node, Self::decode(node, response).await?)
    }

    /// `GET /v1/jobs`: the agent's last jobs, newest last.
    pub async fn jobs(&self, node: &NodeSpec) -> Result<Vec<JobReport>> {
        let request = self.request(reqwest::Method::GET, node, "/v1/jobs")?;
        let response = self.send(node, request).await?;
        let statuses: Vec<api::JobStatus> = Self::decode(node, response).await?;
        statuses.into_iter().map(|s| Self::report(node, s)).collect()
    }

    /// `POST /v1/jobs/{id}/cancel?wait_ms=…`: asks the job to stop; the
    /// answer comes once it ended (or after `wait`).
    pub async fn cancel(&self, node: &NodeSpec, id: &str, wait: Duration) -> Result<JobReport> {
        let request = self.request(
            reqwest::Method::POST,
            node,
            &format!("/v1/jobs/{id}/cancel?wait_ms={}", wait.as_millis()),
        )?;
        let response = self.send(node, request).await?;
        Self::report(node, Self::decode(node, response).await?)
    }

    /// How long a cancel may wait for the job's end: within one request.
    pub fn cancel_wait(&self) -> Duration {
        self.long_poll
    }

    /// On SIGTERM/SIGINT of this process: cancels job `id` on `node`, waits
    /// (briefly) for it to stop and clean up, and fails with "interrupted".
    async fn interrupted(&self, node: &NodeSpec, id: &str) -> anyhow::Error {
        warn!("interrupted: cancelling job {id} on node {}", node.name);
        match self.cancel(node, id, self.long_poll).await {
            Ok(status) if status.state == JobState::Running => {
                warn!("node {} job {id} is still stopping", node.name)
            }
            Ok(_) => info!("node {} job {id} stopped", node.name),
            Err(e) => warn!("could not cancel job {id} on node {}: {e:#}", node.name),
        }
        crate::cancel::stopped().context(format!("node {} job {id} was cancelled", node.name))
    }

    /// Starts a job and waits for its end. Fails when the job fails, when the
    /// agent forgets it (restarted), or when the agent does not answer for
    /// `[backup] node_timeout`. On SIGTERM/SIGINT the job is cancelled. A
    /// failed job is a [`JobFailed`].
    /// The job's progress goes to `slot` with every answer; with a slot the
    /// agent is asked at least every [`PROGRESS_POLL`].
    pub async fn run_job(&self, node: &NodeSpec, request: &JobRequest, slot: Option<&Slot>) -> Result<JobReport> {
        let id = self.start(node, request).await?;
        let wait = match slot {
            Some(_) => self.long_poll.min(PROGRESS_POLL),
            None => self.long_poll,
        };
        info!("node {} runs job {id}: {}", node.name, request.describe());
        let mut last_answer = Instant::now();
        let mut seen = Seen {
            progress: (0, 0),
            logged: Instant::now(),
            quiet: self.long_poll - wait,
        };
        let mut pause = FIRST_POLL;
        loop {
            // The agent holds the request until the job ends (or `long_poll`
            // passes), so the end is seen at once; each answer renews the
            // job's lease.
            let asked = Instant::now();
            let answer = tokio::select! {
                answer = self.status_wait(node, &id, wait) => answer,
                () = crate::cancel::requested_async() => return Err(self.interrupted(node, &id).await),
            };
            if matches!(&answer, Ok(s) if s.state == JobState::Running) && asked.elapsed() < wait / 2 {
                // It did not wait: an agent without `wait_ms`. Poll soon, then less often.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(POLL);
            }
            match answer {
                Ok(status) => {
                    last_answer = Instant::now();
                    if let Some(slot) = slot {
                        slot.set(status.progress, status.total);
                    }
                    seen.log(node, &id, &status);
                    match status.state {
                        JobState::Running => {}
                        JobState::Succeeded => return Ok(status),
                        JobState::Failed | JobState::Aborted => {
                            return Err(JobFailed {
                                node: node.name.to_string(),
                                id,
                                state: status.state,
                                error: status.error,
                                tail: status.tail,
                            }
                            .into())
                        }
                    }
                }
                Err(e) if is_status(&e, StatusCode::NOT_FOUND) => {
                    bail!(
                        "the agent of {} no longer knows job {id}: it was restarted while the job ran",
                        node.name
                    )
                }
                Err(e) if !is_transport(&e) => return Err(e.context(format!("node {} job {id}", node.name))),
                Err(e) => {
                    let silent = last_answer.elapsed();
                    if silent >= self.node_timeout {
                        return Err(e.context(format!(
                            "node {} stopped answering for {}s during job {id}",
                            node.name,
                            silent.as_secs()
                        )));
                    }
                    warn!(
                        "node {} did not answer about job {id} ({}s so far): {e:#}",
                        node.name,
                        silent.as_secs()
                    );
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }
}

/// The progress of a job last logged, and when.
struct Seen {
    progress: (u64, u64),
    logged: Instant,
    /// The least time between two lines: polled more often for a meter,
    /// the log has no more lines than without one.
    quiet: Duration,
}

impl Seen {
    /// Logs the progress `status` reports if it changed (and `quiet`
    /// passed, unless the job ended).
    fn log(&mut self, node: &NodeSpec, id: &str, status: &JobReport) {
        let progress = status.progress;
        let due = self.logged.elapsed() >= self.quiet || status.state != JobState::Running;
        if progress == self.progress || !due {
            return;
        }
        (self.progress, self.logged) = (progress, Instant::now());
        info!(
            files = progress.0,
            bytes = progress.1,
            "node {} job {id}: {} {}, {}",
            node.name,
            progress.0,
            status.request.progress_unit().unwrap_or("files"),
            crate::progress::text::size(progress.1)
        );
    }
}

/// An agent's refusal, kept in the error chain so callers can match on it.
#[derive(Debug)]
struct AgentRefused {
    status: StatusCode,
    message: String,
}

impl std::fmt::Display for AgentRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AgentRefused {}

/// Whether the request did not get through (refused, reset, timed out), as
/// opposed to an answer hwdr does not like.
fn is_transport(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<reqwest::Error>()
            .is_some_and(|e| !e.is_decode() && !e.is_status())
    })
}

fn is_status(err: &anyhow::Error, status: StatusCode) -> bool {
    err.chain()
        .any(|c| c.downcast_ref::<AgentRefused>().is_some_and(|r| r.status == status))
}

/// What a failed connection likely means under `[agent] auth`: a TLS agent
/// answering a plain leader is answered in clear (see transport), so here
/// are the other mismatches and refusals.
fn unreachable_hint(auth: Auth, error: &reqwest::Error) -> String {
    let text = {
        let mut all = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(error);
        while let Some(e) = source {
            all.push_str(&format!(" {e}"));
            source = e.source();
        }
        all
    };
    if !auth.tls() {
        return String::new();
    }
    if text.contains("InvalidContentType") || text.contains("corrupt message") || text.contains("CorruptMessage") {
        format!(" (it does not speak TLS: its [agent] auth is probably 'token', this node's is '{auth}'; set the same [agent] auth on every node)")
    } else if text.contains("certificate") || text.contains("alert") {
        format!(" (the TLS handshake failed:{text}; run `hwdr config check` on both nodes)")
    } else {
        String::new()
    }
}
