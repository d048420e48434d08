//! `hwdr agent`: the node service. Serves the API in [`api`] on `[agent]
//! listen`, runs node-local jobs for the leader, and speaks `sd_notify`
//! (`READY=1`, `STATUS=`, `WATCHDOG=1`, `STOPPING=1`).

pub mod access;
pub mod api;
pub mod client;
pub mod jobs;
mod listener;
pub mod render;
mod server;
pub mod token;
pub mod transport;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::systemd;
use crate::tls::server::ServerTls;
use token::Token;

/// Starts the agent: everything that can fail at start-up (token,
/// certificates, socket) happens before the runtime and before `READY=1`.
pub fn run(config: Config) -> Result<()> {
    let token = load_token(&config)?;
    let tls = match config.agent.auth.tls() {
        true => Some(Arc::new(ServerTls::load(&config)?)),
        false => None,
    };
    let bound = transport::bind(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(Arc::new(config), token, tls, bound))
}

/// The bearer token, when `[agent] auth` asks for one.
pub fn load_token(config: &Config) -> Result<Option<Token>> {
    if !config.agent.auth.token() {
        return Ok(None);
    }
    let token = Token::load(&config.agent.token_file, &config.origins.key("agent", "token_file"))?;
    Ok(Some(token))
}

async fn serve(
    config: Arc<Config>,
    token: Option<Token>,
    tls: Option<Arc<ServerTls>>,
    bound: transport::Bound,
) -> Result<()> {
    // Before READY=1: SIGHUP (systemctl reload) must not kill the agent.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("handling SIGHUP")?;
    let mut acceptor = bound.into_acceptor()?;
    if let Some(tls) = &tls {
        acceptor = acceptor.with_tls(tls.clone(), config.clone());
    }
    announce_auth(&config, tls.as_deref());
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
    let shared = server::Shared::new(config.clone(), token);
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

    let interval = config
        .tls
        .as_ref()
        .map_or(Duration::from_secs(30), |t| t.reload_interval);
    tokio::spawn(reload_on_change(tls, interval, hangup, stop_tx.subscribe()));
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

/// Logs how callers are authenticated; a token alone is logged as insecure.
fn announce_auth(config: &Config, tls: Option<&ServerTls>) {
    match tls {
        Some(tls) => {
            let leaf = tls.leaf();
            info!(
                "[agent] auth = {}: mutual TLS with certificate '{}' ({}), valid until {}",
                config.agent.auth,
                leaf.subject,
                leaf.sans(),
                leaf.not_after
            );
        }
        None => warn!(
            "[agent] auth = token: callers are authenticated by a bearer token sent in clear; \
             anyone who can read this network can take it and run jobs: set up mutual TLS ([tls], /usr/share/doc/hwdr/docs/security.md)"
        ),
    }
}

/// Re-reads the certificate, key and CA on SIGHUP (`systemctl reload
/// hwdr-agent`) and whenever they change (looked at every `interval`). New
/// connections use the new files; open ones and a running job go on. A bad
/// new set is logged and the current one kept. Without TLS there is nothing
/// to reload, and SIGHUP says so.
async fn reload_on_change(
    tls: Option<Arc<ServerTls>>,
    interval: Duration,
    mut hangup: tokio::signal::unix::Signal,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let force = tokio::select! {
            _ = tick.tick() => false,
            _ = hangup.recv() => true,
            _ = stop.changed() => return,
        };
        let Some(tls) = &tls else {
            if force {
                info!("got SIGHUP: nothing to reload ([agent] auth = token)");
            }
            continue;
        };
        if force {
            info!("got SIGHUP: reloading the TLS files");
        }
        match tls.reload_if_changed(force) {
            Ok(Some(leaf)) => info!(
                "TLS files reloaded: certificate '{}' ({}), valid until {}",
                leaf.subject,
                leaf.sans(),
                leaf.not_after
            ),
            Ok(None) => {}
            Err(e) => error!("reloading the TLS files failed; the current certificate stays in use: {e:#}"),
        }
    }
}
