//! Issue 15: mutual TLS between the leader and the agents, with
//! certificates made at test time (tests/it/common/pki.rs). A backup and
//! restore of five nodes over mTLS; each refusal leaves the agent untouched
//! (no job, no program run); the leader sends nothing to an impostor; mixed
//! `[agent] auth` is named; a certificate is replaced under a running job.

use serde_json::json;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::cluster::{http, Cluster};
use crate::common::pki::{tls_http, Identity, Pki};
use crate::common::scenario::{assert_restored, cluster_with, runs_of, simctl, wipe, Setup};
use crate::common::text;

const ID: &str = "2612021200";

/// The scenario's cluster plus head2, every node on `auth` with its own
/// certificate from one CA.
fn tls_cluster(auth: &str) -> (Setup, Pki) {
    let mut pki = None;
    let s = cluster_with(&["head2"], 40, |c| {
        let p = Pki::new(&c.dir.path().join("tls"), "hwdr test cluster CA");
        p.equip(c, auth);
        // Kafka's restore command runs on node1: a job an accepted request would start.
        c.dropin_everywhere("70-kafka.toml", "[kafka]\nnode = \"node1\"\n");
        pki = Some(p);
    });
    (s, pki.unwrap())
}

fn node_identity(pki: &Pki, c: &Cluster, name: &str) -> Identity {
    pki.issue(
        name,
        &[name],
        &[c.nodes[name].address.rsplit_once(':').unwrap().0],
        false,
    )
}

#[test]
fn five_nodes_back_up_and_restore_over_mutual_tls() {
    let (mut s, _pki) = tls_cluster("mtls");
    let out = s.c.hwdr("head1", &["backup", "--id", ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.rondb = simctl(&s.c, &["dump"]);
    s.trees = s
        .generated
        .nodes
        .iter()
        .map(|n| crate::common::snapshot(&n.data_dir))
        .collect();
    let m = s.c.manifest(ID).unwrap();
    assert_eq!(m["status"], "complete");
    wipe(&s);
    let out = s.c.hwdr("head1", &["restore", ID]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_restored(&s);
    // The agents spoke TLS: plain HTTP is turned away.
    let (status, answer) = http(&s.c.nodes["node1"].address, "GET", "/v1/health", None, None).unwrap();
    assert_eq!(status, 400, "{answer}");
    assert!(s
        .c
        .agent_log("node1")
        .contains("auth = mtls: mutual TLS with certificate"));
    // config check reports each certificate.
    let out = s.c.hwdr("node1", &["config", "check"]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", text(&out.stderr));
    assert!(
        report.contains("certificate 'CN=node1': SANs DNS:node1, IP:127.0.0."),
        "{report}"
    );
    assert!(report.contains("issued by 'CN=hwdr test cluster CA'"), "{report}");
    assert!(
        report.contains("chains to the CA and names this node 'node1'"),
        "{report}"
    );
}

/// What every refusal must leave behind: no job on node1, no program run.
fn assert_untouched(s: &Setup, pki: &Pki, head: &Identity) {
    let address = &s.c.nodes["node1"].address;
    let (status, jobs) = tls_http(address, &pki.ca_pem, Some(head), "GET", "/v1/jobs", None, None).unwrap();
    assert_eq!((status, jobs), (200, json!([])));
    assert!(runs_of(&s.c, "kafka-restore.sh").is_empty());
}

#[test]
fn refused_callers_are_turned_away_before_anything_runs() {
    let (s, pki) = tls_cluster("mtls");
    let c = &s.c;
    let address = c.nodes["node1"].address.clone();
    let head = node_identity(&pki, c, "head1");
    let _lock = c.hold_lock("restore", ID);
    let job = format!(r#"{{"kind":"restore_command","node":"node1","backup_id":"{ID}","step":"kafka"}}"#);
    let token = format!("Bearer {}", c.token);
    let post = |id: Option<&Identity>, ca: &str| tls_http(&address, ca, id, "POST", "/v1/jobs", None, Some(&job));

    // Plain HTTP, with or without the token: a clear answer, nothing else.
    for auth in [None, Some(token.as_str())] {
        let (status, answer) = http(&address, "POST", "/v1/jobs", auth, Some(&job)).unwrap();
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("requires mutual TLS"),
            "{answer}"
        );
    }
    // No client certificate; another CA's; an expired one: refused at the handshake.
    let err = post(None, &pki.ca_pem).unwrap_err();
    assert!(
        err.contains("alert") || err.contains("reset") || err.contains("closed"),
        "{err}"
    );
    let other = Pki::new(&c.dir.path().join("other-ca"), "someone else's CA");
    let foreign = other.issue("head1", &["head1"], &["127.0.0.1"], false);
    assert!(post(Some(&foreign), &pki.ca_pem).is_err());
    let expired = pki.issue("head1-old", &["head1"], &["127.0.0.1"], true);
    assert!(post(Some(&expired), &pki.ca_pem).is_err());
    // A data node's valid certificate may not start a job.
    let node2 = node_identity(&pki, c, "node2");
    let (status, answer) = post(Some(&node2), &pki.ca_pem).unwrap();
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("names node2, not a head node"),
        "{answer}"
    );
    assert_untouched(&s, &pki, &head);
    let log = c.agent_log("node1");
    for said in [
        "refused a plain-HTTP connection from 127.0.0.1",
        "refused a TLS connection from 127.0.0.1",
        "client certificate 'CN=head1' (DNS:head1, IP:127.0.0.1) issued by 'CN=someone else's CA' refused",
        "client certificate 'CN=head1-old'",
        "refused /v1/jobs from 127.0.0.1",
    ] {
        assert!(log.contains(said), "agent log lacks {said:?}:\n{log}");
    }
    // The control: the head's certificate does start the job.
    let (status, answer) = post(Some(&head), &pki.ca_pem).unwrap();
    assert_eq!(status, 202, "{answer}");
}

/// Serves TLS on `address` with `identity` (a valid certificate of another
/// node) and counts the application bytes it receives after the handshake.
fn impostor(address: &str, identity: &Identity) -> Arc<AtomicUsize> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::Read;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(identity.cert.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(identity.key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind(address).unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let counted = received.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                counted.fetch_add(n, Ordering::SeqCst);
            }
        }
    });
    received
}

#[test]
fn the_leader_sends_nothing_to_an_agent_with_another_nodes_certificate() {
    let (mut s, pki) = tls_cluster("mtls+token");
    // node3's address now answers with node2's valid certificate.
    s.c.kill_agent("node3");
    let address = s.c.nodes["node3"].address.clone();
    let received = impostor(&address, &node_identity(&pki, &s.c, "node2"));
    let out = s.c.hwdr("head1", &["backup", "--id", ID]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("presented 'CN=node2' (DNS:node2, IP:127.0.0.4), which does not name node 'node3'"),
        "{stderr}"
    );
    assert_eq!(
        received.load(Ordering::SeqCst),
        0,
        "the impostor received bytes (a request, a token)"
    );
    assert!(s.c.manifest(ID).is_none_or(|m| m["status"] != "complete"));
}

#[test]
fn metrics_and_health_without_a_certificate_only_as_configured() {
    let (mut s, pki) = tls_cluster("mtls");
    let address = s.c.nodes["node1"].address.clone();
    let head = node_identity(&pki, &s.c, "head1");
    // By default a caller without a certificate gets nothing, not even /metrics.
    assert!(tls_http(&address, &pki.ca_pem, None, "GET", "/metrics", None, None).is_err());
    let (status, metrics) = tls_http(&address, &pki.ca_pem, Some(&head), "GET", "/metrics", None, None).unwrap();
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains(r#"hwdr_tls_cert_expiry_timestamp_seconds{cluster="prod",node="node1",file="certificate",subject="CN=node1"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"file="ca",subject="CN=hwdr test cluster CA"}"#),
        "{metrics}"
    );
    // With metrics_without_certificate, a scraper without one reads /metrics
    // and the name in /v1/health; jobs still need a head's certificate.
    s.c.kill_agent("node1");
    s.c.dropin(
        "node1",
        "61-metrics.toml",
        "[agent]\nmetrics_without_certificate = true\n",
    );
    s.c.start_agent("node1");
    let (status, _) = tls_http(&address, &pki.ca_pem, None, "GET", "/metrics", None, None).unwrap();
    assert_eq!(status, 200);
    let (status, health) = tls_http(&address, &pki.ca_pem, None, "GET", "/v1/health", None, None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(health, json!({"node": "node1", "auth": "mtls"}));
    let (_, health) = tls_http(&address, &pki.ca_pem, Some(&head), "GET", "/v1/health", None, None).unwrap();
    assert_eq!(health["detail"]["busy"], false, "{health}");
    let (status, answer) = tls_http(&address, &pki.ca_pem, None, "GET", "/v1/jobs", None, None).unwrap();
    assert_eq!(status, 401, "{answer}");
}

#[test]
fn mixed_auth_settings_name_the_node() {
    let (s, pki) = tls_cluster("mtls");
    // head1 still on tokens: the agents answer that they need mutual TLS.
    s.c.dropin("head1", "60-tls.toml", "[agent]\nauth = \"token\"\n");
    let out = s.c.hwdr("head1", &["backup", "--id", ID]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("agent of node1") || stderr.contains("agent of head2"),
        "{stderr}"
    );
    assert!(stderr.contains("requires mutual TLS ([agent] auth = mtls)"), "{stderr}");
    assert!(stderr.contains("set the same [agent] auth on every node"), "{stderr}");
    // head1 on mtls+token, the agents on mtls: health names the difference.
    s.c.dropin("head1", "60-tls.toml", &pki.dropin("head1", "mtls+token"));
    let out = s.c.hwdr("head1", &["backup", "--id", "2612021201"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("has [agent] auth = mtls, this node mtls+token"),
        "{stderr}"
    );
    assert!(runs_of(&s.c, "mgm-client.sh")
        .iter()
        .all(|r| !r["argv"].to_string().contains("START BACKUP")));
}

/// A job that sleeps in the middle (fault point on node1's agent) while its
/// node's certificate is replaced and the agent reloads: the job finishes,
/// and the next connection gets the new certificate.
#[cfg(feature = "failpoints")]
#[test]
fn a_replaced_certificate_is_served_after_reload_without_cutting_a_job() {
    use crate::common::pki::connect;
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::time::Duration;
    let (mut s, pki) = tls_cluster("mtls");
    s.c.kill_agent("node1");
    s.c.start_agent_with("node1", |cmd| {
        cmd.env("FAILPOINTS", "rondb-copy-part=1*return(sleep:3000)");
    });
    let address = s.c.nodes["node1"].address.clone();
    let (_, before) = connect(&address, &pki.ca_pem, None).unwrap();
    assert_eq!(before, "CN=node1");
    let head1 = s.c.nodes["head1"].config.clone();
    let backup = std::thread::spawn(move || {
        std::process::Command::new(crate::common::hwdr_bin())
            .arg("--config")
            .arg(head1)
            .args(["backup", "--id", ID])
            .output()
            .unwrap()
    });
    crate::common::cluster::wait_until("node1's job to sleep", Duration::from_secs(20), || {
        s.c.agent_log("node1").contains("fault injection at rondb-copy-part")
    });
    let ip = address.rsplit_once(':').unwrap().0;
    pki.install("node1", &pki.issue("node1 rotated", &["node1"], &[ip], false));
    kill(Pid::from_raw(s.c.agent_pid("node1")), Signal::SIGHUP).unwrap();
    crate::common::cluster::wait_until("the reload", Duration::from_secs(10), || {
        s.c.agent_log("node1")
            .contains("TLS files reloaded: certificate 'CN=node1 rotated'")
    });
    let (_, after) = connect(&address, &pki.ca_pem, None).unwrap();
    assert_eq!(after, "CN=node1 rotated");
    let out = backup.join().unwrap();
    assert!(out.status.success(), "the job was cut: {}", text(&out.stderr));
    assert_eq!(s.c.manifest(ID).unwrap()["status"], "complete");
    // The next backup runs against the new certificate.
    let out = s.c.hwdr("head1", &["backup", "--id", "2612021201"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `hwdr config check` fails on a certificate that names another node and on
/// a key others may read, naming the file; the agent does not start on
/// either (exit 3, a configuration error).
#[test]
fn a_certificate_of_another_node_or_an_open_key_fails_the_check_and_the_start() {
    let c = Cluster::new(&[("head1", &["head"], &[]), ("node1", &["rondb"], &[2])], 1);
    let pki = Pki::new(&c.dir.path().join("tls"), "hwdr test cluster CA");
    pki.equip(&c, "mtls");
    let node1 = &c.nodes["node1"];
    // node1's files hold head1's certificate.
    let (cert, key) = pki.install("node1", &pki.node("head1", &c.nodes["head1"].address));
    let out = c.hwdr("node1", &["config", "check"]);
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{report}");
    assert!(
        report.contains("FAIL  hwdr.d/60-tls.toml: [tls] certificate: not valid for node 'node1'"),
        "{report}"
    );
    assert!(report.contains("does not name this node 'node1'"), "{report}");
    let start = c.hwdr("node1", &["agent"]);
    assert_eq!(start.status.code(), Some(3), "{}", text(&start.stderr));
    assert!(
        text(&start.stderr).contains(&cert.display().to_string()),
        "{}",
        text(&start.stderr)
    );
    // Its own certificate again, but a key others may read.
    pki.install("node1", &pki.node("node1", &node1.address));
    std::os::unix::fs::chown(&key, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = c.hwdr("node1", &["config", "check"]);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{report}");
    assert!(
        report.contains("has mode 0644; it must be readable by its owner only"),
        "{report}"
    );
    let start = c.hwdr("node1", &["agent"]);
    assert_eq!(start.status.code(), Some(3), "{}", text(&start.stderr));
    assert!(text(&start.stderr).contains("[tls] key"), "{}", text(&start.stderr));
}
