//! hwdr: disaster recovery for Hopsworks clusters. The library holds every
//! module; `main.rs` only parses the command line and dispatches to [`cli`].
//! Public is only what `main.rs`, the integration tests (`tests/it/`), the
//! dev-only `testkit` crate and `bench/crc` use; the rest is `pub(crate)`.
// Errors with context instead (clippy.toml allows both in tests).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod cli;
pub mod config;
pub mod exit;
pub mod fault;
pub mod hopsfs;
pub mod logging;
pub mod repo;
pub mod tls;

pub(crate) mod agent;
pub(crate) mod backup;
pub(crate) mod backup_id;
pub(crate) mod cancel;
pub(crate) mod config_backup;
pub(crate) mod drill;
pub(crate) mod fleet;
pub(crate) mod fsutil;
pub(crate) mod job;
pub(crate) mod metrics;
pub(crate) mod parallel;
pub(crate) mod progress;
pub(crate) mod prune;
pub(crate) mod restore;
pub(crate) mod rondb;
pub(crate) mod runner;
pub(crate) mod systemd;
pub(crate) mod verify;
