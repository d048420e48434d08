//! Issue 16, monitoring that ships: the Prometheus alert rules
//! (packaging/prometheus/) pass `promtool check rules` and their own unit
//! tests; the Grafana dashboard (packaging/grafana/) is a dashboard with
//! valid PromQL; and both name only metrics that hwdr really emits.
//! promtool comes from Debian's `prometheus` package (`make deps`): without
//! it these tests fail, they do not skip.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::cluster::Cluster;
use crate::common::pki::Pki;
use crate::common::text;
use testkit::gen::GenSpec;

const ALERTS: &str = "packaging/prometheus/hwdr-alerts.yml";
const ALERT_TESTS: &str = "packaging/prometheus/hwdr-alerts.test.yml";
const DASHBOARD: &str = "packaging/grafana/hwdr-dashboard.json";

fn source(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `promtool args…`, which must be installed.
fn promtool(args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): install Debian's prometheus package (`make deps`)"))
}

/// The identifiers in `text` that are hwdr metric names (`hwdr_…`).
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("hwdr_"))
        .map(str::to_owned)
        .collect()
}

/// Every string in `value`, recursively.
fn strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn dashboard() -> Value {
    let raw = fs::read_to_string(source(DASHBOARD)).unwrap();
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// The PromQL of every panel's targets.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{target}"));
            queries.push((panel["title"].as_str().unwrap().to_owned(), expr.to_owned()));
        }
    }
    queries
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let out = promtool(&["check", "rules", source(ALERTS).to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(
        text(&out.stdout).contains("SUCCESS: 8 rules found"),
        "{}",
        text(&out.stdout)
    );
    let out = promtool(&["test", "rules", source(ALERT_TESTS).to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));

    // Every rule has a severity and a summary, and the unit tests cover it.
    let rules = fs::read_to_string(source(ALERTS)).unwrap();
    let tests = fs::read_to_string(source(ALERT_TESTS)).unwrap();
    let mut names = Vec::new();
    for rule in rules.split("- alert: ").skip(1) {
        let name = rule.lines().next().unwrap().trim();
        assert!(rule.contains("\n          severity: "), "{name}: no severity label");
        assert!(rule.contains("\n          summary: "), "{name}: no summary");
        assert!(tests.contains(&format!("alertname: {name}")), "{name}: not tested");
        names.push(name.to_owned());
    }
    assert_eq!(
        names,
        [
            "HwdrNoGoodBackup",
            "HwdrLastBackupNotComplete",
            "HwdrVerifyDamaged",
            "HwdrNoRecentVerify",
            "HwdrBackupDamaged",
            "HwdrRepositoryNotOk",
            "HwdrMetricsMissing",
            "HwdrTlsCertificateExpiresSoon",
        ]
    );
}

/// A broken rule is caught: the check above can fail.
#[test]
fn promtool_rejects_a_broken_rule() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    let rules = fs::read_to_string(source(ALERTS)).unwrap().replacen(
        "max by (cluster) (hwdr_last_verify_ok) == 0",
        "max by (cluster) (hwdr_last_verify_ok == 0",
        1,
    );
    fs::write(&broken, rules).unwrap();
    let out = promtool(&["check", "rules", broken.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
}

#[test]
fn dashboard_is_a_grafana_dashboard_with_valid_promql() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "{}", d["schemaVersion"]);
    let variables = d["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    assert_eq!(variable("cluster")["type"], "query");
    assert_eq!(variable("cluster")["datasource"]["uid"], "${datasource}");

    // Every panel queries the chosen data source for the chosen cluster.
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "{title}: id taken");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.contains("{cluster=\"$cluster\"}"), "{title}: {expr}");
        }
    }
    let titles: Vec<&str> = panels.iter().map(|p| p["title"].as_str().unwrap()).collect();
    for wanted in [
        "Time since last complete backup",
        "Last backup status",
        "Backup duration",
        "Backup size, added and stored bytes",
        "Backups by status",
        "Last verify",
        "Time since last verify",
        "Prune: bytes freed",
        "TLS certificates: time to expiry",
    ] {
        assert!(titles.contains(&wanted), "no panel {wanted:?} in {titles:?}");
    }

    // The queries parse: promtool checks them as recording rules, with the
    // variable filled in.
    let queries = dashboard_queries(&d);
    let mut rules = String::from("groups:\n  - name: hwdr-dashboard\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        let expr = serde_json::to_string(&expr.replace("$cluster", "prod")).unwrap();
        rules.push_str(&format!(
            "      - record: hwdr_dashboard:query_{i}\n        expr: {expr}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    fs::write(&file, &rules).unwrap();
    let out = promtool(&["check", "rules", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{rules}\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// What a cluster with mutual TLS emits after a backup, a verify and a
/// prune: the names of the metrics in the leader's text file.
fn emitted_metrics() -> (String, BTreeSet<String>) {
    let mut c = Cluster::new(&[("head1", &["head"], &[]), ("node1", &["rondb", "hopsfs"], &[2])], 1);
    c.with_hopsfs(GenSpec {
        nodes: 1,
        blocks: 8,
        replication: 1,
        min_size: 100,
        max_size: 2_000,
        ..GenSpec::default()
    });
    Pki::new(&c.dir.path().join("tls"), "hwdr test cluster CA").equip(&c, "mtls");
    c.start_agent("node1");
    for args in [
        &["backup", "--id", "2612051200"][..],
        &["verify", "--latest"],
        &["prune"],
    ] {
        let out = c.hwdr("head1", args);
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    let prom = fs::read_to_string(c.dir.path().join("state-head1/hwdr.prom")).unwrap();
    let names = prom
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    (prom, names)
}

#[test]
fn dashboard_and_alert_rules_name_only_metrics_hwdr_emits() {
    let (prom, emitted) = emitted_metrics();
    // The dashboard's queries, its variable and every text in it.
    let d = dashboard();
    let mut texts = Vec::new();
    strings(&d, &mut texts);
    let in_dashboard = metric_names(&texts.join("\n"));
    let queried = metric_names(
        &dashboard_queries(&d)
            .into_iter()
            .map(|(_, expr)| expr)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    // The alert rules and their unit tests.
    let in_alerts = metric_names(&fs::read_to_string(source(ALERTS)).unwrap());
    let in_alert_tests = metric_names(&fs::read_to_string(source(ALERT_TESTS)).unwrap());
    for (what, names) in [
        (DASHBOARD, &in_dashboard),
        (ALERTS, &in_alerts),
        (ALERT_TESTS, &in_alert_tests),
    ] {
        let unknown: Vec<&String> = names.difference(&emitted).collect();
        assert!(
            unknown.is_empty(),
            "{what} names {unknown:?}, which hwdr does not emit:\n{prom}"
        );
    }
    // The dashboard shows every metric hwdr emits.
    let unshown: Vec<&String> = emitted.difference(&queried).collect();
    assert!(unshown.is_empty(), "{DASHBOARD} queries none of {unshown:?}");
}
