//! `[agent]`: the node service the leader talks to.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawAgent;
use super::validate::Errors;

/// `[agent]`: the node service.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Where the agent listens (default: this node's `[[nodes]]` address).
    pub listen: String,
    /// The cluster's shared bearer token; readable by its owner only.
    pub token_file: PathBuf,
    /// Limit of one HTTP request from the leader to an agent.
    pub request_timeout: Duration,
    /// How long the agent waits for a complete request header.
    pub header_timeout: Duration,
    /// How long the agent keeps a connection with no request open.
    pub idle_timeout: Duration,
    /// How long a stopping agent waits for its running job.
    pub shutdown_timeout: Duration,
}

impl AgentSettings {
    /// Validates `[agent]`; `this_address` is this node's `[[nodes]]` address.
    pub(super) fn from_raw(a: RawAgent, this_address: String, errors: &mut Errors) -> AgentSettings {
        let mut s = errors.section("agent");
        let listen = a.listen.unwrap_or(this_address);
        s.address("listen", &listen);
        AgentSettings {
            listen,
            token_file: s.abs_path("token_file", a.token_file, "/etc/hwdr/agent.token"),
            request_timeout: s.duration("request_timeout", a.request_timeout, Duration::from_secs(10)),
            header_timeout: s.duration("header_timeout", a.header_timeout, Duration::from_secs(10)),
            idle_timeout: s.duration("idle_timeout", a.idle_timeout, Duration::from_secs(60)),
            shutdown_timeout: s.duration("shutdown_timeout", a.shutdown_timeout, Duration::from_secs(75)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors_with, load_with};
    use std::time::Duration;

    #[test]
    fn listens_on_this_nodes_address_by_default() {
        let a = load_with("").unwrap().agent;
        assert_eq!(a.listen, "127.0.0.1:7878");
        assert_eq!(a.shutdown_timeout, Duration::from_secs(75));
        let a = load_with("[agent]\nlisten = \"0.0.0.0:7979\"\n").unwrap().agent;
        assert_eq!(a.listen, "0.0.0.0:7979");
    }

    #[test]
    fn each_key_is_named_with_its_file() {
        assert_eq!(
            errors_with("[agent]\nlisten = \"0.0.0.0\"\ntoken_file = \"agent.token\"\nidle_timeout = \"0s\"\n"),
            [
                "hwdr.d/50-test.toml: [agent] listen: '0.0.0.0' must be host:port",
                "hwdr.d/50-test.toml: [agent] token_file: 'agent.token' must be an absolute path",
                "hwdr.d/50-test.toml: [agent] idle_timeout: '0s' is not a duration (e.g. 90s, 30m, 4h, 1d, 1h30m)",
            ]
        );
    }
}
