//! The step recorder: how each node's steps ran, for the manifest. A node
//! runs no step after its first failure; that failure is the one the
//! manifest names.

use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use tracing::{error, info, info_span};

use crate::config::NodeSpec;
use crate::progress;
use crate::repo::manifest::{FileEntry, NodeRecord, StepRecord, StepStatus};

/// A failed step: `<node>/<step>`, and why.
pub type Failure = (String, anyhow::Error);

/// How a step ran: its times, the files it wrote (also when it failed) and
/// its value or error.
pub struct Ran<T> {
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    files: Vec<FileEntry>,
    result: Result<T>,
}

impl<T> Ran<T> {
    /// A step whose thread panicked.
    pub fn panicked(what: &str) -> Ran<T> {
        Ran {
            started: Utc::now(),
            finished: Utc::now(),
            files: Vec::new(),
            result: Err(anyhow!("{what} panicked")),
        }
    }
}

/// Runs `f` as step `name` in this thread: its span, its start and end in
/// the log, the cancellation check before it.
pub fn timed_step<T>(name: &str, f: impl FnOnce(&mut Vec<FileEntry>) -> Result<T>) -> Ran<T> {
    let span = info_span!("step", hwdr_step = name);
    let _entered = span.enter();
    let started = Utc::now();
    info!("step {name} started");
    let line = progress::step(name);
    let mut files = Vec::new();
    let result = crate::cancel::check().and_then(|_| f(&mut files));
    match &result {
        Ok(_) => {
            let what = summary(&files);
            match what.as_str() {
                "" => info!(files = 0, "step {name} done"),
                _ => info!(files = files.len(), "step {name} done: {what}"),
            }
            line.done(&what);
        }
        Err(e) => {
            error!("step {name} failed: {e:#}");
            line.failed(&format!("{e:#}"));
        }
    }
    Ran {
        started,
        finished: Utc::now(),
        files,
        result,
    }
}

/// What a step stored, for people: `12 files, 48.2 KiB`.
pub fn summary(files: &[FileEntry]) -> String {
    progress::text::files(files.len(), files.iter().map(|f| f.size).sum())
}

/// A step that runs on several nodes at once (through the fleet): its
/// start and end in the log, and one line for people with what all the
/// nodes did together.
pub struct OnNodes {
    name: String,
    line: progress::StepLine,
    unit: &'static str,
    items: u64,
    bytes: u64,
    failures: Vec<String>,
}

impl OnNodes {
    /// Starts step `name`, whose nodes count `unit`s ("files", "blocks").
    pub fn start(name: &str, unit: &'static str) -> OnNodes {
        info!(hwdr_step = name, "step {name} started");
        OnNodes {
            name: name.to_owned(),
            line: progress::step(name),
            unit,
            items: 0,
            bytes: 0,
            failures: Vec::new(),
        }
    }

    /// Counts what one node did: `items` of `bytes`, or its error.
    pub fn count<T>(&mut self, node: &str, result: &Result<T>, items: u64, bytes: u64) {
        match result {
            Ok(_) => {
                self.items += items;
                self.bytes += bytes;
            }
            Err(e) => self.failures.push(format!("{node}: {e:#}")),
        }
    }

    /// Counts the files one node stored, or its error.
    pub fn count_files(&mut self, node: &str, result: &Result<Vec<FileEntry>>) {
        let (items, bytes) = match result {
            Ok(files) => (files.len() as u64, files.iter().map(|f| f.size).sum()),
            Err(_) => (0, 0),
        };
        self.count(node, result, items, bytes);
    }

    /// Ends the step: done, or failed on the nodes that failed.
    pub fn end(self) {
        let name = &self.name;
        if self.failures.is_empty() {
            let (items, unit) = (self.items, self.unit);
            let what = format!("{items} {unit}, {}", progress::text::size(self.bytes));
            info!(
                hwdr_step = name.as_str(),
                items,
                bytes = self.bytes,
                "step {name} done: {what}"
            );
            self.line.done(&what);
        } else {
            let why = self.failures.join("; ");
            error!(hwdr_step = name.as_str(), "step {name} failed: {why}");
            self.line.failed(&why);
        }
    }
}

/// Records the steps of one node, stops running them after the first failure.
pub struct NodeSteps {
    record: NodeRecord,
    failure: Option<(String, anyhow::Error)>,
}

impl NodeSteps {
    fn new(node: &NodeSpec) -> NodeSteps {
        NodeSteps {
            record: NodeRecord {
                name: node.name.to_string(),
                roles: node.roles.clone(),
                status: StepStatus::Ok,
                started_at: Some(Utc::now()),
                finished_at: None,
                error: None,
                steps: Vec::new(),
            },
            failure: None,
        }
    }

    /// Whether a step of this node failed.
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Runs `f` as step `name` unless an earlier step failed; returns its value.
    pub fn run<T>(&mut self, name: &str, f: impl FnOnce(&mut Vec<FileEntry>) -> Result<T>) -> Option<T> {
        if self.failed() {
            self.skip(name);
            return None;
        }
        self.add(name, timed_step(name, f))
    }

    /// Records step `name` that ran elsewhere (concurrently, or on an agent).
    pub fn record(
        &mut self,
        name: &str,
        started: DateTime<Utc>,
        finished: DateTime<Utc>,
        result: Result<Vec<FileEntry>>,
    ) {
        let (files, result) = match result {
            Ok(files) => (files, Ok(())),
            Err(e) => (Vec::new(), Err(e)),
        };
        self.add(
            name,
            Ran {
                started,
                finished,
                files,
                result,
            },
        );
    }

    /// Records how step `name` ran; returns its value.
    pub fn add<T>(&mut self, name: &str, ran: Ran<T>) -> Option<T> {
        let mut rec = StepRecord {
            name: name.into(),
            status: StepStatus::Ok,
            started_at: Some(ran.started),
            finished_at: Some(ran.finished),
            error: None,
            files: ran.files,
        };
        let value = match ran.result {
            Ok(value) => Some(value),
            Err(e) => {
                rec.status = StepStatus::Failed;
                rec.error = Some(format!("{e:#}"));
                // The first failure is the one the manifest names.
                if self.failure.is_none() {
                    self.failure = Some((name.to_owned(), e));
                }
                None
            }
        };
        self.record.steps.push(rec);
        value
    }

    /// Records step `name` as not run.
    pub fn skip(&mut self, name: &str) {
        self.record.steps.push(StepRecord {
            name: name.into(),
            status: StepStatus::Skipped,
            started_at: None,
            finished_at: None,
            error: None,
            files: Vec::new(),
        });
    }

    fn finish(mut self) -> (NodeRecord, Option<(String, anyhow::Error)>) {
        self.record.finished_at = Some(Utc::now());
        if let Some((_, e)) = &self.failure {
            self.record.status = StepStatus::Failed;
            self.record.error = Some(format!("{e:#}"));
        }
        (self.record, self.failure)
    }
}

/// The steps of every node with a share in the backup: this node (the
/// leader) first, then the others in config order.
pub struct Recorder {
    nodes: Vec<NodeSteps>,
}

impl Recorder {
    /// A recorder for this node and `others`.
    pub fn new(this: &NodeSpec, others: &[&NodeSpec]) -> Recorder {
        let nodes = std::iter::once(this).chain(others.iter().copied());
        Recorder {
            nodes: nodes.map(NodeSteps::new).collect(),
        }
    }

    /// The steps of this node, the leader.
    pub fn head(&mut self) -> &mut NodeSteps {
        &mut self.nodes[0]
    }

    /// The steps of `node` (every node with a share has an entry).
    pub fn of(&mut self, node: &NodeSpec) -> &mut NodeSteps {
        let i = self
            .nodes
            .iter()
            .position(|s| s.record.name == node.name.as_str())
            .unwrap_or(0);
        &mut self.nodes[i]
    }

    /// Whether no step of any node failed so far.
    pub fn all_ok(&self) -> bool {
        self.nodes.iter().all(|s| !s.failed())
    }

    /// Every node's record for the manifest, and each node's first failure
    /// as `<node>/<step>` (logged here), in node order.
    pub fn finish(self) -> (Vec<NodeRecord>, Vec<Failure>) {
        let mut records = Vec::new();
        let mut failures = Vec::new();
        for node_steps in self.nodes {
            let name = node_steps.record.name.clone();
            let (record, failure) = node_steps.finish();
            records.push(record);
            if let Some((step, e)) = failure {
                error!(hwdr_node = %name, "node {name} failed at {step}: {e:#}");
                failures.push((format!("{name}/{step}"), e));
            }
        }
        (records, failures)
    }
}
