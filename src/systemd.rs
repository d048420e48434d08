//! Talking to systemd: `sd_notify` messages for `Type=notify` services, and
//! starting and stopping units through its D-Bus API (zbus).
//! The notify calls are no-ops when `NOTIFY_SOCKET` is not set.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::debug;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        debug!("sd_notify failed: {e}");
    }
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STATUS=...`: what the service is doing, shown by `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// `STOPPING=1`.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// `WATCHDOG=1`.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// Half of `WATCHDOG_USEC` when systemd's watchdog is on for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

/// systemd's D-Bus API: only the calls hwdr uses.
mod dbus {
    use zbus::zvariant::OwnedObjectPath;

    #[zbus::proxy(
        interface = "org.freedesktop.systemd1.Manager",
        default_service = "org.freedesktop.systemd1",
        default_path = "/org/freedesktop/systemd1"
    )]
    pub trait Manager {
        fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
        fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
        fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    }

    #[zbus::proxy(
        interface = "org.freedesktop.systemd1.Unit",
        default_service = "org.freedesktop.systemd1"
    )]
    pub trait Unit {
        #[zbus(property)]
        fn active_state(&self) -> zbus::Result<String>;
        #[zbus(property)]
        fn load_state(&self) -> zbus::Result<String>;
    }
}

/// How long a unit may take to start or stop.
const UNIT_TIMEOUT: Duration = Duration::from_secs(180);

async fn unit_state(conn: &zbus::Connection, unit: &str) -> anyhow::Result<(String, String)> {
    use anyhow::Context;
    let manager = dbus::ManagerProxy::new(conn).await?;
    let path = manager
        .load_unit(unit)
        .await
        .with_context(|| format!("loading unit {unit}"))?;
    let proxy = dbus::UnitProxy::builder(conn)
        .path(path)?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    Ok((proxy.load_state().await?, proxy.active_state().await?))
}

/// Stops `unit` through systemd's D-Bus API and waits until it is inactive.
pub async fn stop_unit(unit: &str) -> anyhow::Result<()> {
    use anyhow::{bail, Context};
    let conn = zbus::Connection::system()
        .await
        .context("connecting to the system D-Bus")?;
    let (load, _) = unit_state(&conn, unit).await?;
    if load != "loaded" {
        bail!("unit {unit} is {load}: check [hopsfs] datanode_unit");
    }
    dbus::ManagerProxy::new(&conn)
        .await?
        .stop_unit(unit, "replace")
        .await
        .with_context(|| format!("stopping {unit}"))?;
    let deadline = tokio::time::Instant::now() + UNIT_TIMEOUT;
    loop {
        let (_, active) = unit_state(&conn, unit).await?;
        if active == "inactive" || active == "failed" {
            tracing::info!("stopped {unit}");
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{unit} is still {active} {}s after it was asked to stop",
                UNIT_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts `unit` through systemd's D-Bus API and waits until it is active.
pub async fn start_unit(unit: &str) -> anyhow::Result<()> {
    use anyhow::{bail, Context};
    let conn = zbus::Connection::system()
        .await
        .context("connecting to the system D-Bus")?;
    dbus::ManagerProxy::new(&conn)
        .await?
        .start_unit(unit, "replace")
        .await
        .with_context(|| format!("starting {unit}"))?;
    let deadline = tokio::time::Instant::now() + UNIT_TIMEOUT;
    loop {
        let (_, active) = unit_state(&conn, unit).await?;
        match active.as_str() {
            "active" => {
                tracing::info!("started {unit}");
                return Ok(());
            }
            "failed" => bail!("{unit} failed to start: see journalctl -u {unit}"),
            _ if tokio::time::Instant::now() >= deadline => {
                bail!(
                    "{unit} is still {active} {}s after it was asked to start",
                    UNIT_TIMEOUT.as_secs()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
