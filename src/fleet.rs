//! The cluster as the leader sees it: its config, the agent client (when
//! other nodes need agents) and a runtime for the calls. It elects the
//! leader, checks the agents a run needs, and runs a job on a set of nodes:
//! in-process for this node, through the agent for the others. What a job
//! does on its node is [`agent::jobs::execute`](crate::agent::jobs::execute).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{error, info, info_span, warn, Instrument};

use crate::agent::api::JobState;
use crate::agent::client::{AgentClient, JobReport};
use crate::agent::jobs::execute_async;
use crate::config::{Config, NodeSpec, Role};
use crate::job::{JobControl, JobRequest, JobResult, PlanLine};
use crate::progress::{Meter, Slot};

/// How long [`Fleet::cancel_and_wait`] waits for a cancelled job to stop.
const STOP_WAIT: Duration = Duration::from_secs(60);

/// How often this node's own job's counters are read for a meter.
const PROGRESS_TICK: Duration = Duration::from_millis(250);

/// Who runs the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// This node leads.
    Leader,
    /// Another head node leads (or this node is no head node).
    Follower(String),
}

/// What one node's job gave.
pub struct Shipped {
    /// The job's place in the list given to [`Fleet::run`].
    pub index: usize,
    /// The node that ran it.
    pub node: String,
    /// When it started (after waiting for its turn).
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: DateTime<Utc>,
    /// Its result, or why the node failed it.
    pub result: Result<JobResult>,
}

/// Whether this node talks to the agents of other nodes: another node holds
/// RonDB, HopsFS or the head role.
pub fn needs_agents(config: &Config) -> bool {
    config
        .nodes
        .iter()
        .any(|n| n.name != config.this_node && (n.has(Role::Rondb) || n.has(Role::Hopsfs) || n.has(Role::Head)))
}

/// The cluster as the leader sees it (see the module's documentation).
pub struct Fleet {
    config: Arc<Config>,
    client: Option<AgentClient>,
    rt: Runtime,
}

impl Fleet {
    /// The cluster of `config`, with a client for the agents when
    /// [`needs_agents`] (it fails when the token does not read).
    pub fn new(config: Config) -> Result<Fleet> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let client = if needs_agents(&config) {
            Some(AgentClient::new(&config)?)
        } else {
            None
        };
        Ok(Fleet {
            config: Arc::new(config),
            client,
            rt,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The leader is the first head node in `[[nodes]]` order whose agent
    /// answers health; this host counts if it is that node (its own agent
    /// need not run).
    pub fn elect(&self) -> Result<Leadership> {
        let config = self.config();
        if !config.this().has(Role::Head) {
            return Ok(Leadership::Follower(format!(
                "a head node (node {} has no head role)",
                config.this_node
            )));
        }
        for head in config.nodes.iter().filter(|n| n.has(Role::Head)) {
            if head.name == config.this_node {
                return Ok(Leadership::Leader);
            }
            let Some(client) = &self.client else {
                bail!("cannot ask head node {} whether it leads: no agent client", head.name);
            };
            match self.rt.block_on(client.health(head)) {
                Ok(_) => return Ok(Leadership::Follower(head.name.to_string())),
                Err(e) => warn!("head node {} does not answer, so it does not lead: {e:#}", head.name),
            }
        }
        Ok(Leadership::Leader)
    }

    /// Asks the agent of every node of `nodes` for its health, all at once;
    /// returns one problem per node that does not answer well, in the order
    /// of `nodes` (none when every one answers).
    pub fn check_agents(&self, nodes: &[&NodeSpec]) -> Vec<String> {
        if nodes.is_empty() {
            return Vec::new();
        }
        let Some(client) = &self.client else {
            return vec!["remote nodes need [agent] token_file to be readable here".into()];
        };
        self.rt.block_on(async {
            let asked: Vec<_> = nodes
                .iter()
                .map(|node| {
                    let (client, node) = (client.clone(), (*node).clone());
                    tokio::spawn(async move { client.health(&node).await.map(|_| ()) })
                })
                .collect();
            let mut problems = Vec::new();
            for answer in asked {
                match answer.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => problems.push(format!("{e:#}")),
                    Err(e) => problems.push(format!("the health check panicked: {e}")),
                }
            }
            problems
        })
    }

    /// Runs the job `request_for` gives for each of `nodes` ([`Fleet::run`]),
    /// at most `[backup] parallelism` at once.
    pub fn run_on(&self, nodes: &[&NodeSpec], request_for: impl Fn(&NodeSpec) -> JobRequest) -> Vec<Shipped> {
        let jobs = nodes.iter().map(|n| ((*n).clone(), request_for(n))).collect();
        self.run(jobs, self.config.backup.parallelism)
    }

    /// Runs every `(node, request)`: on this node in-process, on the others
    /// through their agents; at most `parallelism` at once. The results come
    /// back in the order of `jobs`.
    pub fn run(&self, jobs: Vec<(NodeSpec, JobRequest)>, parallelism: usize) -> Vec<Shipped> {
        self.run_metered(jobs, parallelism, None)
    }

    /// [`Fleet::run`], adding what the jobs report as they run to `meter`:
    /// this node's job from its counters, the others' from the status their
    /// agents answer.
    pub fn run_metered(
        &self,
        jobs: Vec<(NodeSpec, JobRequest)>,
        parallelism: usize,
        meter: Option<&Meter>,
    ) -> Vec<Shipped> {
        let permits = Arc::new(Semaphore::new(parallelism.max(1)));
        self.rt.block_on(async {
            let mut set = JoinSet::new();
            for (index, (node, request)) in jobs.into_iter().enumerate() {
                let span = info_span!("node", hwdr_node = node.name.as_str(), hwdr_step = request.step());
                let (config, permits, client) = (self.config.clone(), permits.clone(), self.client.clone());
                let slot = meter.map(|m| m.slot(index, node.name.as_str()));
                set.spawn(
                    async move {
                        let _permit = permits.acquire_owned().await;
                        ship(config, client, (index, node, request), slot).await
                    }
                    .instrument(span),
                );
            }
            // join_all yields jobs as they finish; callers get them in their order.
            let mut shipped = set.join_all().await;
            shipped.sort_by_key(|s| s.index);
            shipped
        })
    }

    /// What each `(node, request)` would run, as that node renders it from
    /// its own config: this node's in-process, the others' through their
    /// agents, all at once. Nothing runs. In the order of `jobs`.
    pub fn plan(&self, jobs: &[(NodeSpec, JobRequest)]) -> Vec<Result<Vec<PlanLine>>> {
        self.rt.block_on(async {
            let asked: Vec<_> = jobs
                .iter()
                .map(|(node, request)| {
                    let (config, client) = (self.config.clone(), self.client.clone());
                    let (node, request) = (node.clone(), request.clone());
                    tokio::spawn(async move {
                        if node.name == config.this_node {
                            return crate::agent::render::render(&config, &request);
                        }
                        let client = client.ok_or_else(|| anyhow!("no agent client for node {}", node.name))?;
                        client.plan(&node, &request).await
                    })
                })
                .collect();
            let mut plans = Vec::new();
            for answer in asked {
                plans.push(
                    answer
                        .await
                        .unwrap_or_else(|e| Err(anyhow!("rendering the job panicked: {e}"))),
                );
            }
            plans
        })
    }

    /// Every node of `nodes` drops its old local RonDB backups (after a
    /// complete backup), through the same path as every other job. Best
    /// effort: a failure is logged.
    pub fn prune_local(&self, nodes: &[&NodeSpec]) {
        let pruned = self.run_on(nodes, |node| JobRequest::PruneLocalRondb {
            node: node.name.clone(),
        });
        for s in pruned {
            match s.result {
                Ok(JobResult::Pruned { removed }) if removed.is_empty() => {}
                Ok(JobResult::Pruned { removed }) => {
                    info!(hwdr_node = %s.node, "node {} removed local backups {removed:?}", s.node)
                }
                Ok(other) => warn!(hwdr_node = %s.node, "node {} answered the prune with {other:?}", s.node),
                Err(e) => warn!(hwdr_node = %s.node, "node {} could not prune its local backups: {e:#}", s.node),
            }
        }
    }

    /// The last jobs of `node`'s agent.
    pub fn jobs(&self, node: &NodeSpec) -> Result<Vec<JobReport>> {
        self.rt.block_on(self.client()?.jobs(node))
    }

    /// Cancels job `id` on `node` and waits (up to a minute) until it stopped.
    pub fn cancel_and_wait(&self, node: &NodeSpec, id: &str) -> Result<JobReport> {
        let client = self.client()?;
        self.rt.block_on(async {
            let started = Instant::now();
            let mut status = client.cancel(node, id, client.cancel_wait()).await?;
            while status.state == JobState::Running && started.elapsed() < STOP_WAIT {
                status = client.status_wait(node, id, client.cancel_wait()).await?;
            }
            Ok(status)
        })
    }

    fn client(&self) -> Result<&AgentClient> {
        self.client
            .as_ref()
            .ok_or_else(|| anyhow!("no agent client: no other node needs an agent"))
    }
}

/// Runs one job when its turn came: on this node in-process, on another
/// through its agent; none after SIGTERM/SIGINT.
async fn ship(
    config: Arc<Config>,
    client: Option<AgentClient>,
    (index, node, request): (usize, NodeSpec, JobRequest),
    slot: Option<Slot>,
) -> Shipped {
    let started = Utc::now();
    let what = request.describe();
    let slot = slot.map(Arc::new);
    if let Some(slot) = &slot {
        slot.started();
    }
    let result = if crate::cancel::requested() {
        Err(crate::cancel::stopped().context(format!("node {} got no job", node.name)))
    } else if node.name == config.this_node {
        execute_metered(config, request, slot.clone()).await
    } else {
        match client {
            Some(client) => client
                .run_job(&node, &request, slot.as_deref())
                .await
                .and_then(|status| {
                    status
                        .result
                        .ok_or_else(|| anyhow!("node {} sent no result", node.name))
                }),
            None => Err(anyhow!("no agent client for node {}", node.name)),
        }
    };
    if let Err(e) = &result {
        error!("node {} failed to {what}: {e:#}", node.name);
    }
    if let Some(slot) = &slot {
        slot.ended(result.is_ok());
    }
    Shipped {
        index,
        node: node.name.to_string(),
        started,
        finished: Utc::now(),
        result,
    }
}

/// Runs a job on this node in-process; its counters go to `slot` as it runs.
async fn execute_metered(config: Arc<Config>, request: JobRequest, slot: Option<Arc<Slot>>) -> Result<JobResult> {
    let control = JobControl::default();
    let Some(slot) = slot else {
        return execute_async(config, request, control).await;
    };
    let watched = {
        let (slot, control) = (slot.clone(), control.clone());
        tokio::spawn(async move {
            loop {
                slot.set(control.progress(), control.total());
                tokio::time::sleep(PROGRESS_TICK).await;
            }
        })
    };
    let result = execute_async(config, request, control.clone()).await;
    watched.abort();
    slot.set(control.progress(), control.total());
    result
}
