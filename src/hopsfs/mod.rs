//! HopsFS data nodes: the block storage layout, its checksums, the inventory
//! of a node, the repository's block store, the node-local backup steps and
//! the leader's plan.

pub mod fsuser;
pub mod inventory;
pub mod layout;
pub mod listcache;
pub mod meta;
pub mod node;
pub mod plan;
pub mod restore;
pub mod store;
