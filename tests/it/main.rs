//! hwdr's integration tests, one test binary (one link, one run; the
//! helpers in `common/` compiled once): the built `hwdr` against temp dirs and
//! the simulators in tests/sim. Run as root: they create the runbook's users
//! and run its programs as them. `cargo test --test it <module>::` runs one
//! module, e.g. `cargo test --features failpoints --test it faults_store::`.

mod common;

mod backup;
mod cluster;
mod docs;
mod drill;
mod encryption;
mod hopsfs;
mod inventories;
mod lock;
mod monitoring;
mod prune;
mod restore;
mod restore_parallel;
mod rondb_encryption;
mod s3;
mod sizes;
mod store_conformance;
mod tampered;
mod tls;
mod tls_pki;
mod verify;

// Fault injection needs the binary built with `failpoints` (src/fault.rs).
#[cfg(feature = "failpoints")]
mod faults_restore;
#[cfg(feature = "failpoints")]
mod faults_s3;
#[cfg(feature = "failpoints")]
mod faults_signals;
#[cfg(feature = "failpoints")]
mod faults_store;
// The hopsfs step slowed by fault injection, to watch it from --status.
#[cfg(feature = "failpoints")]
mod restore_progress;
// Slowed by fault injection, to see progress on a pseudo-terminal.
#[cfg(feature = "failpoints")]
mod terminal;
