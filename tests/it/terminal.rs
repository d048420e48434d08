//! What a person sees (issue 16): commands run under a pseudo-terminal
//! (`script`, util-linux) and without one. On a terminal a step is one line,
//! long work a progress bar, the verdict is the last thing printed and the
//! log shows only with `-v`; without a terminal the log is on stderr as
//! before, with no bar and no escape codes.

use std::process::{Command, Output};

use crate::common::cluster::Cluster;
use crate::common::{hwdr_bin, text};
use testkit::gen::{self, GenSpec};

/// head1 (head), node1 (rondb 2 + hopsfs), node2 (rondb 3 + hopsfs), node3
/// (hopsfs), with `blocks` generated blocks; the agents run with `faults`
/// (`FAILPOINTS`).
fn cluster(blocks: usize, faults: &str) -> Cluster {
    let mut c = Cluster::new(
        &[
            ("head1", &["head"], &[]),
            ("node1", &["rondb", "hopsfs"], &[2]),
            ("node2", &["rondb", "hopsfs"], &[3]),
            ("node3", &["hopsfs"], &[]),
        ],
        2,
    );
    let hdfs = uzers::get_user_by_name("hdfs").unwrap();
    let hadoop = uzers::get_group_by_name("hadoop").unwrap();
    let spec = GenSpec {
        nodes: 3,
        blocks,
        block_pools: 1,
        replication: 3,
        min_size: 1000,
        max_size: 40_000,
        owner: Some((hdfs.uid(), hadoop.gid())),
        ..GenSpec::default()
    };
    let generated = gen::generate(&c.dir.path().join("hopsfs"), &spec).unwrap();
    for (i, node) in generated.nodes.iter().enumerate() {
        c.set_data_dirs(&format!("node{}", i + 1), &[&node.data_dir]);
    }
    for n in ["node1", "node2", "node3"] {
        c.start_agent_with(n, |cmd| {
            cmd.env("FAILPOINTS", faults);
        });
    }
    c
}

/// `hwdr --config <head1's> args…` under a pseudo-terminal, with
/// `FAILPOINTS=faults`: what the terminal showed (stdout and stderr as they
/// were interleaved) and how it exited.
fn on_terminal(c: &Cluster, args: &[&str], faults: &str) -> (String, Option<i32>) {
    let mut line = vec![hwdr_bin().display().to_string(), "--config".into()];
    line.push(c.nodes["head1"].config.display().to_string());
    line.extend(args.iter().map(|a| a.to_string()));
    let quoted: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let out = Command::new("script")
        .args(["-qec", &quoted.join(" "), "/dev/null"])
        .env("FAILPOINTS", faults)
        .env("COLUMNS", "160")
        .output()
        .unwrap();
    (text(&out.stdout), out.status.code())
}

/// `hwdr` without a terminal (pipes), with `FAILPOINTS=faults`.
fn piped(c: &Cluster, args: &[&str], faults: &str) -> Output {
    Command::new(hwdr_bin())
        .arg("--config")
        .arg(&c.nodes["head1"].config)
        .args(args)
        .env("FAILPOINTS", faults)
        .output()
        .unwrap()
}

/// What follows the last line that contains `verdict`: nothing a person
/// would see (the terminal's own line ends at most).
fn after(shown: &str, verdict: &str) -> String {
    let at = shown
        .rfind(verdict)
        .unwrap_or_else(|| panic!("no {verdict:?} in:\n{shown}"));
    let rest = &shown[at..];
    rest.split_once('\n').map(|(_, r)| r.to_owned()).unwrap_or_default()
}

/// Whether the terminal showed `label`'s bar part way, with real numbers:
/// "uploading blocks [====>   ] 41% (231 of 564 KiB, 12 of 30 blocks,
/// 93.1 KiB/s, ETA 3 s)", the share strictly between 0 and 100.
fn shows_progress(shown: &str, label: &str) -> bool {
    shown.split(['\r', '\n']).any(|l| {
        let Some(at) = l.find(label) else { return false };
        let Some((before, after)) = l[at..].split_once("% (") else {
            return false;
        };
        let percent: String = before.chars().rev().take_while(char::is_ascii_digit).collect();
        let percent: u32 = percent.chars().rev().collect::<String>().parse().unwrap_or(0);
        (1..100).contains(&percent) && after.contains(" of ") && after.contains("/s, ETA ")
    })
}

#[test]
fn a_backup_on_a_terminal_shows_steps_and_upload_progress_and_ends_with_its_verdict() {
    // Each block takes 0.7 s: about three seconds of upload on every node.
    let slow = "hopsfs-upload-block=return(sleep:700)";
    let c = cluster(30, slow);
    let (shown, code) = on_terminal(&c, &["backup", "--id", "2611231819"], "");
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shows_progress(&shown, "uploading blocks"),
        "no upload progress:\n{shown}"
    );
    for step in [
        "ok    users: ",
        "ok    rondb-parts: ",
        "ok    hopsfs-list: ",
        "ok    hopsfs-upload: ",
    ] {
        assert!(shown.contains(step), "no {step:?}:\n{shown}");
    }
    // Sizes in binary units, no raw byte counts; no log lines without -v.
    assert!(shown.contains(" KiB"), "{shown}");
    assert!(
        !shown.contains(" INFO ") && !shown.contains("hwdr_step="),
        "log lines shown:\n{shown}"
    );
    let rest = after(&shown, "backup 2611231819 complete: ");
    assert!(rest.trim().is_empty(), "printed after the verdict: {rest:?}");

    // The same without a terminal: the log on stderr, no bar, no escape codes.
    let again = piped(&c, &["backup", "--id", "2611231820"], "");
    assert!(again.status.success(), "{}", text(&again.stderr));
    let (out, err) = (text(&again.stdout), text(&again.stderr));
    assert!(err.contains("step users done"), "{err}");
    assert!(
        !err.contains('\u{1b}') && !out.contains('\u{1b}'),
        "escape codes:\n{err}"
    );
    assert!(!err.contains("uploading blocks ["), "a bar without a terminal:\n{err}");
    assert!(out.contains("backup 2611231820 complete: "), "{out}");
}

#[test]
fn verify_full_on_a_terminal_shows_progress_then_its_verdict_and_v_shows_the_log() {
    let c = cluster(12, "");
    let out = c.hwdr("head1", &["backup", "--id", "2611231819"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Each block re-read waits 0.3 s first: several seconds of verify.
    let slow = "verify-block=return(sleep:300)";
    let (shown, code) = on_terminal(&c, &["verify", "--latest", "--full"], slow);
    assert_eq!(code, Some(0), "{shown}");
    assert!(shows_progress(&shown, "verifying"), "no verify progress:\n{shown}");
    let rest = after(&shown, "backup 2611231819: ok (");
    assert!(rest.trim().is_empty(), "printed after the verdict: {rest:?}");
    assert!(!shown.contains("verified backup"), "a log line without -v:\n{shown}");

    let (verbose, code) = on_terminal(&c, &["-v", "verify", "--latest"], "");
    assert_eq!(code, Some(0), "{verbose}");
    assert!(
        verbose.contains("verified backup 2611231819: ok"),
        "-v shows no log:\n{verbose}"
    );

    // --json keeps its shape, on a terminal too.
    let (json, code) = on_terminal(&c, &["verify", "--latest", "--json"], "");
    assert_eq!(code, Some(0), "{json}");
    let start = json.find('{').unwrap();
    let value: serde_json::Value = serde_json::from_str(json[start..].trim()).unwrap();
    assert_eq!(value["backup_id"], "2611231819");
    assert!(value["bytes_read"].is_u64(), "{value}");
}

#[test]
fn a_drill_on_a_terminal_ends_with_its_verdict() {
    let c = cluster(6, "");
    let out = c.hwdr("head1", &["backup", "--id", "2611231819"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (shown, code) = on_terminal(&c, &["drill", "--latest"], "");
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("ok    hopsfs-blocks: "), "{shown}");
    let rest = after(&shown, "drill of backup 2611231819: passed");
    assert!(rest.trim().is_empty(), "printed after the verdict: {rest:?}");
}
