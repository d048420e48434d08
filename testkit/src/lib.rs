//! hwdr's test tooling, a dev-only crate: never part of the library, the
//! binary or the package. [`gen`] writes realistic HopsFS data node trees;
//! `src/bin/gen_datanodes.rs` is its command line.

pub mod gen;
