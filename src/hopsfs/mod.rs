//! HopsFS data nodes: the block storage layout, its checksums, the inventory
//! of a node, the repository's block store, the node-local backup steps and
//! the leader's plan.

pub(crate) mod fsuser;
pub(crate) mod inventory;
pub(crate) mod layout;
pub(crate) mod listcache;
pub mod meta;
pub(crate) mod node;
pub(crate) mod plan;
pub mod restore;
pub mod store;
