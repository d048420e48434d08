//! The node-local HopsFS steps of a backup, called in-process by the leader
//! for its own node or by an agent for a remote leader: list this node's
//! blocks into an inventory (`list`, one `finalized/` folder in
//! `list_pool`), and upload the blocks the leader assigned (`upload`).
//! This file holds where a node's files go inside a backup folder.

mod list;
mod list_pool;
mod upload;

pub use list::{take_inventory, Listed};
pub use upload::{upload, BadReplica, Uploaded};

/// Folder of a node's HopsFS files inside a backup folder.
pub fn node_rel_dir(node: &str) -> String {
    format!("hopsfs/{node}")
}

/// A node's inventory inside a backup folder.
pub fn inventory_rel(node: &str) -> String {
    format!("{}/inventory.tsv", node_rel_dir(node))
}

/// The list of blocks assigned to `node` in upload round `round`.
pub fn assignment_rel(node: &str, round: u32) -> String {
    format!("{}/assign-{round}.tsv", node_rel_dir(node))
}
