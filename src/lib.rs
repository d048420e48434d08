//! hwdr: disaster recovery for Hopsworks clusters. The library holds every
//! module; `main.rs` only parses the command line and dispatches to [`cli`].

pub mod agent;
pub mod backup;
pub mod backup_id;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod config_backup;
pub mod drill;
pub mod exit;
pub mod fault;
pub mod fleet;
pub mod fsutil;
pub mod hopsfs;
pub mod job;
pub mod logging;
pub mod metrics;
pub mod prune;
pub mod repo;
pub mod restore;
pub mod rondb;
pub mod runner;
pub mod systemd;
pub mod verify;
