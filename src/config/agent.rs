//! `[agent]`: the node service the leader talks to.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawAgent;
use super::validate::Errors;

/// `[agent] auth`: what a caller must present to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The shared bearer token over plain HTTP (older installs; insecure on
    /// a network others can read).
    Token,
    /// Mutual TLS: a certificate of the cluster's CA naming a head node.
    Mtls,
    /// Both: mutual TLS, and the token inside it.
    MtlsToken,
}

impl Auth {
    /// The value as written in `[agent] auth`.
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::Token => "token",
            Auth::Mtls => "mtls",
            Auth::MtlsToken => "mtls+token",
        }
    }

    /// Whether connections are mutual TLS.
    pub fn tls(self) -> bool {
        self != Auth::Token
    }

    /// Whether callers must send the bearer token.
    pub fn token(self) -> bool {
        self != Auth::Mtls
    }

    fn parse(text: &str) -> Option<Auth> {
        [Auth::Token, Auth::Mtls, Auth::MtlsToken]
            .into_iter()
            .find(|a| a.as_str() == text)
    }
}

impl std::fmt::Display for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[agent]`: the node service.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Where the agent listens (default: this node's `[[nodes]]` address).
    pub listen: String,
    /// What callers must present: `mtls` once `[tls]` is set, else `token`.
    pub auth: Auth,
    /// The cluster's shared bearer token; readable by its owner only.
    pub token_file: PathBuf,
    /// Whether `/metrics` answers a TLS client without a certificate
    /// (Prometheus' scraper); off by default.
    pub metrics_without_certificate: bool,
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
    /// Validates `[agent]`; `this_address` is this node's `[[nodes]]`
    /// address, `has_tls` whether `[tls]` is set.
    pub(super) fn from_raw(a: RawAgent, this_address: String, has_tls: bool, errors: &mut Errors) -> AgentSettings {
        let mut s = errors.section("agent");
        let listen = a.listen.unwrap_or(this_address);
        s.address("listen", &listen);
        let auth = match a.auth.as_deref() {
            None if has_tls => Auth::Mtls,
            None => Auth::Token,
            Some(text) => Auth::parse(text).unwrap_or_else(|| {
                s.err("auth", format!("'{text}' is not one of mtls, token, mtls+token"));
                Auth::Token
            }),
        };
        if auth.tls() && !has_tls {
            s.err("auth", format!("'{auth}' needs a [tls] section (certificate, key, ca)"));
        }
        if a.metrics_without_certificate.is_some() && !auth.tls() {
            s.err(
                "metrics_without_certificate",
                "applies only to auth = mtls or mtls+token",
            );
        }
        AgentSettings {
            listen,
            auth,
            metrics_without_certificate: a.metrics_without_certificate.unwrap_or(false),
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
    fn mtls_is_the_default_once_tls_is_set() {
        use super::Auth;
        assert_eq!(load_with("").unwrap().agent.auth, Auth::Token);
        assert_eq!(load_with("[tls]\n").unwrap().agent.auth, Auth::Mtls);
        let a = load_with("[tls]\n[agent]\nauth = \"mtls+token\"\n").unwrap().agent;
        assert_eq!(a.auth, Auth::MtlsToken);
        assert_eq!(
            errors_with("[agent]\nauth = \"mtls\"\nmetrics_without_certificate = true\n"),
            ["hwdr.d/50-test.toml: [agent] auth: 'mtls' needs a [tls] section (certificate, key, ca)"]
        );
        assert_eq!(
            errors_with("[agent]\nauth = \"tls\"\n"),
            ["hwdr.d/50-test.toml: [agent] auth: 'tls' is not one of mtls, token, mtls+token"]
        );
        assert_eq!(
            errors_with("[agent]\nmetrics_without_certificate = false\n"),
            ["hwdr.d/50-test.toml: [agent] metrics_without_certificate: applies only to auth = mtls or mtls+token"]
        );
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
