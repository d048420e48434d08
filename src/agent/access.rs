//! Who may call what on the agent, by `[agent] auth`: the caller's verified
//! certificate (from the transport, [`Peer`]) and bearer token against the
//! route. Jobs are for head nodes only; `/metrics` for the cluster's
//! certificates unless `[agent] metrics_without_certificate`; `/v1/health`
//! for anyone, with details only for the authenticated.

use axum::http::StatusCode;

use super::token::Token;
use super::transport::Peer;
use crate::config::{Auth, Config, NodeName, Role};

/// The kinds of path the agent serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Health,
    Metrics,
    /// `/v1/jobs…` and `/v1/plan`: what runs or reads jobs.
    Jobs,
}

impl Route {
    /// The route of a request path.
    pub fn of(path: &str) -> Route {
        match path {
            "/v1/health" => Route::Health,
            "/metrics" => Route::Metrics,
            _ => Route::Jobs,
        }
    }
}

/// Why a request was refused: its HTTP status and the answer's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub message: String,
}

/// The agent's access rules, from its config.
#[derive(Debug, Clone)]
pub struct Policy {
    auth: Auth,
    token: Option<Token>,
    heads: Vec<NodeName>,
    metrics_anonymous: bool,
}

impl Policy {
    /// The rules of `config`; `token` is loaded when `[agent] auth` needs it.
    pub fn new(config: &Config, token: Option<Token>) -> Policy {
        Policy {
            auth: config.agent.auth,
            token,
            heads: config
                .nodes
                .iter()
                .filter(|n| n.has(Role::Head))
                .map(|n| n.name.clone())
                .collect(),
            metrics_anonymous: config.agent.metrics_without_certificate,
        }
    }

    /// The agent's `[agent] auth`.
    pub fn auth(&self) -> Auth {
        self.auth
    }

    /// Whether the caller is the cluster's own: a verified certificate (with
    /// TLS) and the token (where asked for).
    pub fn authenticated(&self, peer: &Peer, authorization: Option<&str>) -> bool {
        (!self.auth.tls() || peer.cert.is_some()) && self.token_ok(authorization)
    }

    fn token_ok(&self, authorization: Option<&str>) -> bool {
        !self.auth.token() || self.token.as_ref().is_some_and(|t| t.accepts(authorization))
    }

    /// Whether `peer` may call `route`.
    pub fn check(&self, route: Route, peer: &Peer, authorization: Option<&str>) -> Result<(), Refused> {
        match route {
            Route::Health => Ok(()),
            Route::Metrics if !self.auth.tls() || self.metrics_anonymous || peer.cert.is_some() => Ok(()),
            Route::Metrics => Err(no_certificate()),
            Route::Jobs => {
                self.check_head(peer)?;
                if self.token_ok(authorization) {
                    Ok(())
                } else {
                    Err(Refused {
                        status: StatusCode::UNAUTHORIZED,
                        message: format!("missing or wrong bearer token ([agent] auth = {})", self.auth),
                    })
                }
            }
        }
    }

    /// With TLS, a job's caller must hold the certificate of a head node.
    fn check_head(&self, peer: &Peer) -> Result<(), Refused> {
        if !self.auth.tls() {
            return Ok(());
        }
        let cert = peer.cert.as_ref().ok_or_else(no_certificate)?;
        if cert.nodes.iter().any(|n| self.heads.contains(n)) {
            return Ok(());
        }
        let names = if cert.nodes.is_empty() {
            "no node of [[nodes]]".to_owned()
        } else {
            cert.nodes.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
        };
        Err(Refused {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "certificate '{}' names {names}, not a head node: only head nodes may run or read jobs",
                cert.subject
            ),
        })
    }
}

fn no_certificate() -> Refused {
    Refused {
        status: StatusCode::UNAUTHORIZED,
        message: "a client certificate of the cluster's CA is required".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::transport::PeerCert;
    use super::*;

    fn policy(auth: Auth, metrics_anonymous: bool) -> Policy {
        Policy {
            auth,
            token: None,
            heads: vec!["head1".parse().unwrap()],
            metrics_anonymous,
        }
    }

    fn peer(nodes: &[&str]) -> Peer {
        Peer {
            addr: "10.0.0.9:5000".parse().unwrap(),
            cert: Some(PeerCert {
                subject: "CN=x".into(),
                nodes: nodes.iter().map(|n| n.parse().unwrap()).collect(),
            }),
        }
    }

    fn anonymous() -> Peer {
        Peer {
            addr: "10.0.0.9:5000".parse().unwrap(),
            cert: None,
        }
    }

    #[test]
    fn only_a_head_nodes_certificate_runs_jobs() {
        let p = policy(Auth::Mtls, false);
        assert_eq!(p.check(Route::Jobs, &peer(&["head1"]), None), Ok(()));
        let refused = p.check(Route::Jobs, &peer(&["ndb1"]), None).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(
            refused.message.contains("names ndb1, not a head node"),
            "{}",
            refused.message
        );
        let refused = p.check(Route::Jobs, &peer(&[]), None).unwrap_err();
        assert!(
            refused.message.contains("names no node of [[nodes]]"),
            "{}",
            refused.message
        );
        assert_eq!(
            p.check(Route::Jobs, &anonymous(), None).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn metrics_without_a_certificate_only_when_set() {
        assert!(policy(Auth::Mtls, false)
            .check(Route::Metrics, &anonymous(), None)
            .is_err());
        assert!(policy(Auth::Mtls, true)
            .check(Route::Metrics, &anonymous(), None)
            .is_ok());
        assert!(policy(Auth::Mtls, false)
            .check(Route::Metrics, &peer(&["ndb1"]), None)
            .is_ok());
        assert!(policy(Auth::Mtls, false)
            .check(Route::Health, &anonymous(), None)
            .is_ok());
        assert!(!policy(Auth::Mtls, true).authenticated(&anonymous(), None));
        assert!(policy(Auth::Mtls, true).authenticated(&peer(&["ndb1"]), None));
    }

    #[test]
    fn mtls_and_token_needs_both() {
        let p = policy(Auth::MtlsToken, false);
        let refused = p.check(Route::Jobs, &peer(&["head1"]), Some("Bearer x")).unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(refused.message.contains("bearer token"));
        assert!(!p.authenticated(&peer(&["head1"]), None));
        assert_eq!(Route::of("/v1/plan"), Route::Jobs);
        assert_eq!(Route::of("/v1/jobs/1/cancel"), Route::Jobs);
    }
}
