//! `hwdr agent`: the node service. Serves the API in [`api`] on `[agent]
//! listen`, runs node-local jobs for the leader, and speaks `sd_notify`
//! (`READY=1`, `STATUS=`, `WATCHDOG=1`, `STOPPING=1`).

pub mod api;
pub mod client;
pub mod jobs;
mod listener;
pub mod render;
mod server;
pub mod token;
pub mod transport;
mod wire;

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::systemd;
use token::Token;

/// Starts the agent: everything that can fail at start-up (token, socket)
/// happens before the runtime and before `READY=1`.
pub fn run(config: Config) -> Result<()> {
    let token = Token::load(&config.agent.token_file, &config.origins.key("agent", "token_file"))?;
    let bound = transport::bind(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, token, bound))
}

async fn serve(config: Config, token: Token, bound: transport::Bound) -> Result<()> {
    let acceptor = bound.into_acceptor()?;
    let address = acceptor.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let node = config.this_node.to_string();
    let shutdown_timeout = config.agent.shutdown_timeout;
    let limits = listener::Limits {
        header_timeout: config.agent.header_timeout,
        idle_timeout: config.agent.idle_timeout,
        max_connections: listener::connection_limit(),
    };
    if limits.max_connections < listener::MAX_CONNECTIONS {
        warn!(
            "the file limit (LimitNOFILE=) leaves room for {} connections at once, not {}",
            limits.max_connections,
            listener::MAX_CONNECTIONS
        );
    }
    let shared = server::Shared::new(config, token);
    let (stop_tx, stop_rx) = watch::channel(false);

    let app = server::router(shared.clone());
    let server = tokio::spawn(listener::serve(acceptor, app, limits, stop_rx));
    info!(hwdr_node = %node, "agent of node {node} listening on {address}");
    systemd::ready("idle");
    // After READY=1: the first tick fires at once.
    if let Some(interval) = systemd::watchdog_interval() {
        let mut stop = stop_tx.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => systemd::watchdog(),
                    _ = stop.changed() => break,
                }
            }
        });
    }

    wait_for_signal().await?;
    info!("stopping: no new jobs");
    systemd::stopping("stopping");
    if !server::drain(&shared, shutdown_timeout).await {
        warn!("stopped with a job still running (marked aborted)");
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!("server task failed: {e}"),
        Err(_) => warn!("connections did not close in 5s; exiting anyway"),
    }
    info!("agent stopped");
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    tokio::select! {
        _ = term.recv() => info!("got SIGTERM"),
        _ = int.recv() => info!("got SIGINT"),
    }
    Ok(())
}
