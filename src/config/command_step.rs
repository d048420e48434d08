//! `[opensearch]` and `[kafka]`: restore steps that run one program on one node.

use super::nodes::{NodeName, NodeSpec, Role};
use super::raw::RawCommandStep;
use super::validate::{Errors, Section};

/// A restore step that runs one program on one node (`[opensearch]`, `[kafka]`).
#[derive(Debug, Clone)]
pub struct CommandStep {
    /// Where it runs (default: the leader, the first head node).
    pub node: NodeName,
    pub user: String,
    pub argv: Vec<String>,
}

/// What tells the command steps apart: their section, the key of their
/// command, and its default.
pub(super) struct StepKeys {
    section: &'static str,
    command_key: &'static str,
    default: &'static str,
}

/// `[opensearch]`: the ePipe reindex.
pub(super) const OPENSEARCH: StepKeys = StepKeys {
    section: "opensearch",
    command_key: "reindex_command",
    default: "/srv/hops/epipe/bin/reindex-epipe.sh",
};

/// `[kafka]`: the topics' recreation.
pub(super) const KAFKA: StepKeys = StepKeys {
    section: "kafka",
    command_key: "restore_command",
    default: "/srv/hops/kafka/bin/kafka-restore.sh",
};

impl CommandStep {
    /// Validates the section `keys` names; the other step's command key is refused.
    pub(super) fn from_raw(
        keys: &StepKeys,
        raw: RawCommandStep,
        nodes: &[NodeSpec],
        errors: &mut Errors,
    ) -> CommandStep {
        let mut s = errors.section(keys.section);
        let (given, other) = match keys.command_key {
            "reindex_command" => (raw.reindex_command, raw.restore_command.map(|_| "restore_command")),
            _ => (raw.restore_command, raw.reindex_command.map(|_| "reindex_command")),
        };
        if let Some(other) = other {
            s.err(
                other,
                format!("not a key of [{}] (use {})", keys.section, keys.command_key),
            );
        }
        let argv = s.argv(keys.command_key, given, &[keys.default]);
        let node = node(raw.node, nodes, &mut s);
        CommandStep {
            node: node.unwrap_or_else(|| NodeName("unknown".into())),
            user: raw.user.unwrap_or_else(|| "root".into()),
            argv,
        }
    }
}

/// `node`: a `[[nodes]]` entry, by default the first head node.
fn node(raw: Option<String>, nodes: &[NodeSpec], s: &mut Section<'_, '_>) -> Option<NodeName> {
    let Some(n) = raw else {
        return nodes.iter().find(|n| n.has(Role::Head)).map(|n| n.name.clone());
    };
    match n.parse::<NodeName>() {
        Ok(name) if nodes.iter().any(|o| o.name == name) => Some(name),
        Ok(_) => {
            s.err("node", format!("'{n}' is not a [[nodes]] entry"));
            None
        }
        Err(e) => {
            s.err("node", e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_with, load_with};

    #[test]
    fn runs_as_root_on_the_first_head_node_by_default() {
        let c = load_with("").unwrap();
        assert_eq!(
            (c.opensearch.node.as_str(), c.opensearch.user.as_str()),
            ("head1", "root")
        );
        assert_eq!(c.opensearch.argv, ["/srv/hops/epipe/bin/reindex-epipe.sh"]);
        assert_eq!(c.kafka.argv, ["/srv/hops/kafka/bin/kafka-restore.sh"]);
        let c = load_with("[kafka]\nnode = \"ndb1\"\nuser = \"kafka\"\n").unwrap();
        assert_eq!((c.kafka.node.as_str(), c.kafka.user.as_str()), ("ndb1", "kafka"));
    }

    #[test]
    fn each_key_is_named_with_its_file() {
        let steps = r#"
[opensearch]
node = "head9"
restore_command = ["/bin/true"]
reindex_command = ["reindex.sh"]
[kafka]
node = "../x"
restore_command = []
"#;
        assert_eq!(
            errors_with(steps),
            [
                "hwdr.d/50-test.toml: [opensearch] restore_command: not a key of [opensearch] (use reindex_command)",
                "hwdr.d/50-test.toml: [opensearch] reindex_command: 'reindex.sh' must be an absolute path",
                "hwdr.d/50-test.toml: [opensearch] node: 'head9' is not a [[nodes]] entry",
                "hwdr.d/50-test.toml: [kafka] restore_command: must name a program",
                "hwdr.d/50-test.toml: [kafka] node: invalid node name '../x' (letters, digits, '.', '_', '-', at most 63, starting with a letter or digit)",
            ]
        );
    }
}
