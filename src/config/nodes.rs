//! `[[nodes]]` and `[node]`: the cluster's nodes and their roles, and which
//! of them this host is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::raw::{RawNode, RawThisNode};
use super::validate::{check_address, Errors};

/// The roles a node can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the namenodes, mysqld and the management server; leads backups.
    Head,
    /// Hosts RonDB data nodes.
    Rondb,
    /// Hosts a HopsFS data node.
    Hopsfs,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Head => "head",
            Role::Rondb => "rondb",
            Role::Hopsfs => "hopsfs",
        })
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "head" => Ok(Role::Head),
            "rondb" => Ok(Role::Rondb),
            "hopsfs" => Ok(Role::Hopsfs),
            _ => Err(format!("unknown role '{s}' (expected head, rondb or hopsfs)")),
        }
    }
}

/// A node name: letters, digits, `.`, `_`, `-`, at most 63 characters, not
/// starting with a punctuation mark. Safe to use in a path component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct NodeName(pub(super) String);

impl NodeName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if s.len() > 63 || !first_ok || !s.chars().all(ok_char) {
            return Err(format!(
                "invalid node name '{s}' (letters, digits, '.', '_', '-', at most 63, starting with a letter or digit)"
            ));
        }
        Ok(NodeName(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `[[nodes]]` entry.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The node's name, unique in the cluster.
    pub name: NodeName,
    /// `host:port` where its agent listens.
    pub address: String,
    /// What runs on it.
    pub roles: BTreeSet<Role>,
    /// RonDB data node ids hosted here (only with the `rondb` role).
    pub rondb_node_ids: Vec<u32>,
}

impl NodeSpec {
    /// Whether the node has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// `[[nodes]]`: errors are named `file: [[nodes]] #<n> key`.
pub(super) fn nodes(raw: Vec<RawNode>, errors: &mut Errors) -> Vec<NodeSpec> {
    let file = errors.file_of("nodes");
    if raw.is_empty() {
        errors.push(format!("{file}: [[nodes]]: at least one node is required"));
    }
    let mut nodes: Vec<NodeSpec> = Vec::new();
    // Which node hosts each data node id, to refuse an id on two nodes.
    let mut ndb_ids: BTreeMap<u32, String> = BTreeMap::new();
    for (i, n) in raw.into_iter().enumerate() {
        let mut entry = Entry {
            at: format!("{file}: [[nodes]] #{}", i + 1),
            errors: &mut *errors,
        };
        if let Some(node) = entry.node(n, &nodes, &mut ndb_ids) {
            nodes.push(node);
        }
    }
    if !nodes.is_empty() && !nodes.iter().any(|n| n.has(Role::Head)) {
        errors.push(format!("{file}: [[nodes]]: no node has the head role"));
    }
    nodes
}

/// One `[[nodes]]` entry being validated.
struct Entry<'e, 'a> {
    at: String,
    errors: &'e mut Errors<'a>,
}

impl Entry<'_, '_> {
    fn err(&mut self, key: &str, msg: impl fmt::Display) {
        self.errors.push(format!("{} {key}: {msg}", self.at));
    }

    /// The entry, or `None` without a valid name.
    fn node(&mut self, n: RawNode, earlier: &[NodeSpec], ndb_ids: &mut BTreeMap<u32, String>) -> Option<NodeSpec> {
        let name = match n.name.as_deref().map(str::parse::<NodeName>) {
            None => {
                self.err("name", "is required");
                return None;
            }
            Some(Err(e)) => {
                self.err("name", e);
                return None;
            }
            Some(Ok(name)) => name,
        };
        if earlier.iter().any(|o| o.name == name) {
            self.err("name", format!("'{name}' appears twice"));
        }
        let address = n.address.unwrap_or_default();
        if let Err(e) = check_address(&address) {
            self.err("address", e);
        }
        let roles = self.roles(n.roles.unwrap_or_default());
        let rondb_node_ids = self.rondb_node_ids(&name, n.rondb_node_ids.unwrap_or_default(), ndb_ids);
        if roles.contains(&Role::Rondb) && rondb_node_ids.is_empty() {
            self.err(
                "rondb_node_ids",
                "a rondb node needs the ids of the data nodes it hosts",
            );
        }
        if !roles.contains(&Role::Rondb) && !rondb_node_ids.is_empty() {
            self.err("rondb_node_ids", "only nodes with the rondb role host data nodes");
        }
        Some(NodeSpec {
            name,
            address,
            roles,
            rondb_node_ids,
        })
    }

    fn roles(&mut self, raw: Vec<String>) -> BTreeSet<Role> {
        let mut roles = BTreeSet::new();
        for r in raw {
            match r.parse() {
                Ok(role) => {
                    roles.insert(role);
                }
                Err(e) => self.err("roles", e),
            }
        }
        if roles.is_empty() {
            self.err("roles", "at least one of head, rondb, hopsfs is required");
        }
        roles
    }

    fn rondb_node_ids(&mut self, name: &NodeName, raw: Vec<i64>, ndb_ids: &mut BTreeMap<u32, String>) -> Vec<u32> {
        let mut ids = Vec::new();
        for id in raw {
            match u32::try_from(id) {
                Ok(id @ 1..=255) => {
                    if let Some(other) = ndb_ids.insert(id, name.to_string()) {
                        self.err("rondb_node_ids", format!("data node id {id} is also on node '{other}'"));
                    }
                    ids.push(id);
                }
                _ => self.err("rondb_node_ids", format!("{id} is not a RonDB node id (1-255)")),
            }
        }
        ids
    }
}

/// `[node] name`: which `[[nodes]]` entry this host is (default: its host name).
pub(super) fn this_node(raw: RawThisNode, nodes: &[NodeSpec], errors: &mut Errors) -> Option<NodeName> {
    let mut s = errors.section("node");
    let (name, how) = match raw.name {
        Some(name) => (name, "is"),
        None => match nix::unistd::gethostname() {
            Ok(host) => (
                host.to_string_lossy().into_owned(),
                "defaults to the host name, which is",
            ),
            Err(e) => {
                s.err("name", format!("not set and the host name is unreadable: {e}"));
                return None;
            }
        },
    };
    let found = name
        .parse::<NodeName>()
        .ok()
        .filter(|n| nodes.iter().any(|o| &o.name == n));
    if found.is_none() && !nodes.is_empty() {
        s.err("name", format!("{how} '{name}', which is not a [[nodes]] entry"));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::test_support::errors_with;
    use super::*;

    #[test]
    fn node_names() {
        assert!("head1".parse::<NodeName>().is_ok());
        assert!("ndb-1.prod_a".parse::<NodeName>().is_ok());
        for bad in ["", "../x", ".hidden", "a/b", "a b", &"x".repeat(64)] {
            assert!(bad.parse::<NodeName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn each_entry_is_named_by_its_number() {
        let nodes = r#"
[[nodes]]
name = "head1"
address = "127.0.0.1:7878"
roles = ["head", "hopsfs"]
rondb_node_ids = [2]
[[nodes]]
name = "head1"
address = "127.0.0.2:7878"
roles = ["rondb", "nfs"]
[[nodes]]
address = "127.0.0.3:7878"
"#;
        assert_eq!(
            errors_with(nodes),
            [
                "hwdr.d/50-test.toml: [[nodes]] #1 rondb_node_ids: only nodes with the rondb role host data nodes",
                "hwdr.d/50-test.toml: [[nodes]] #2 name: 'head1' appears twice",
                "hwdr.d/50-test.toml: [[nodes]] #2 roles: unknown role 'nfs' (expected head, rondb or hopsfs)",
                "hwdr.d/50-test.toml: [[nodes]] #2 rondb_node_ids: a rondb node needs the ids of the data nodes it hosts",
                "hwdr.d/50-test.toml: [[nodes]] #3 name: is required",
            ]
        );
    }

    #[test]
    fn a_cluster_needs_a_head_node() {
        let nodes = "[[nodes]]\nname = \"head1\"\naddress = \"127.0.0.1:7878\"\nroles = [\"hopsfs\"]\n";
        assert_eq!(
            errors_with(nodes),
            ["hwdr.d/50-test.toml: [[nodes]]: no node has the head role"]
        );
        let no_roles = "[[nodes]]\nname = \"head1\"\naddress = \"127.0.0.1:7878\"\nroles = []\n";
        assert_eq!(
            errors_with(no_roles),
            [
                "hwdr.d/50-test.toml: [[nodes]] #1 roles: at least one of head, rondb, hopsfs is required",
                "hwdr.d/50-test.toml: [[nodes]]: no node has the head role",
            ]
        );
    }
}
