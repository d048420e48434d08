//! hwdr's test tooling, a dev-only crate: never part of the library, the
//! binary or the package. [`gen`] writes realistic HopsFS data node trees;
//! `src/bin/gen_datanodes.rs` is its command line. [`garage`] runs a real
//! S3 server (Garage) on loopback, and [`faultproxy`] puts a proxy in front
//! of it that answers chosen requests with errors or not at all.

pub mod faultproxy;
pub mod garage;
pub mod gen;
