//! Integration tests of `hwdr restore`: back up a simulated five-node
//! cluster (RonDB with real rows, HopsFS trees with real CRCs), wipe every
//! node, restore, and compare with what was backed up.

use std::fs;
use std::process::Command;

use crate::common;
use crate::common::cluster::Cluster;
use crate::common::{run_ok, sim_src, text};
use testkit::gen::{GenSpec, Generated};

pub(crate) const ID: &str = "2611231819";

pub(crate) struct Setup {
    pub c: Cluster,
    pub generated: Generated,
    /// `simctl dump` before the backup: the RonDB content to get back.
    pub rondb: String,
    /// Each data folder as it was.
    pub trees: Vec<Vec<common::SnapshotEntry>>,
}

pub(crate) fn simctl(c: &Cluster, args: &[&str]) -> String {
    let out = run_ok(
        Command::new(sim_src().join("simctl"))
            .arg(args[0])
            .arg(&c.sim)
            .args(&args[1..]),
    );
    text(&out.stdout)
}

/// head1 (head), node1 (rondb 2 + hopsfs), node2 (rondb 3 + hopsfs), node3
/// (hopsfs); the metadata names the generated blocks; one complete backup.
fn backed_up() -> Setup {
    backed_up_in(|repo| format!("path = \"{}\"\n", repo.display()))
}

/// [`backed_up`] with the repository `[repository]` names.
pub(crate) fn backed_up_in(repository: impl FnOnce(&std::path::Path) -> String) -> Setup {
    let mut c = Cluster::with_repository(
        &[
            ("head1", &["head"], &[]),
            ("node1", &["rondb", "hopsfs"], &[2]),
            ("node2", &["rondb", "hopsfs"], &[3]),
            ("node3", &["hopsfs"], &[]),
        ],
        2,
        repository,
    );
    let generated = c.with_hopsfs(GenSpec {
        nodes: 3,
        blocks: 80,
        block_pools: 2,
        replication: 3,
        max_size: 30_000,
        ..GenSpec::default()
    });
    let dirs: Vec<String> = generated
        .nodes
        .iter()
        .map(|n| n.data_dir.display().to_string())
        .collect();
    simctl(&c, &["blocks", "--data-dirs", &dirs.join(",")]);
    for n in ["node1", "node2", "node3"] {
        c.start_agent(n);
    }
    let out = c.hwdr("head1", &["backup", "--id", ID]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rondb = simctl(&c, &["dump"]);
    let trees = generated.nodes.iter().map(|n| common::snapshot(&n.data_dir)).collect();
    Setup {
        c,
        generated,
        rondb,
        trees,
    }
}

/// Every node as after a redeploy: an empty RonDB, no data node folders, no
/// local RonDB backups, no restore state, no staged files.
pub(crate) fn wipe(s: &Setup) {
    simctl(&s.c, &["wipe"]);
    for n in &s.generated.nodes {
        let _ = fs::remove_dir_all(&n.data_dir);
    }
    for entry in fs::read_dir(s.c.sim.clone()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("ndb") {
            let _ = fs::remove_dir_all(entry.path().join("backups/BACKUP"));
        }
    }
    for entry in fs::read_dir(s.c.dir.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("state-") || name.starts_with("staging-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

pub(crate) fn assert_restored(s: &Setup) {
    assert_eq!(
        simctl(&s.c, &["dump"]),
        s.rondb,
        "RonDB content differs from the backup"
    );
    for (i, n) in s.generated.nodes.iter().enumerate() {
        assert_eq!(
            common::snapshot(&n.data_dir),
            s.trees[i],
            "node{} data folder differs",
            i + 1
        );
    }
    assert!(simctl(&s.c, &["topics"]).contains("num_partitions") || !simctl(&s.c, &["topics"]).trim().is_empty());
}

fn runs_of(c: &Cluster, program: &str) -> Vec<serde_json::Value> {
    fs::read_to_string(c.sim.join("state/invocations.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["program"] == program)
        .collect()
}

#[test]
fn backup_wipe_restore_gives_back_rows_users_schemas_and_every_block_tree() {
    let s = backed_up();
    wipe(&s);
    assert_ne!(simctl(&s.c, &["dump"]), s.rondb);
    let out = s.c.hwdr("head1", &["restore", ID]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("restore of backup {ID} finished")));
    assert_restored(&s);

    // The runbook's order, users and argv: -m once on the leader, -r per
    // data node, indexes once; all as mysql; hdfs as hdfs; kafka as root.
    let mysql = uzers::get_user_by_name("mysql").unwrap().uid();
    let ndb: Vec<Vec<String>> = runs_of(&s.c, "ndb_restore")
        .iter()
        .map(|r| {
            assert_eq!(r["uid"], mysql, "{r}");
            r["argv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(ndb.len(), 4, "{ndb:?}");
    assert!(ndb[0].contains(&"-m".to_owned()) && ndb[0].contains(&"--disable-indexes".to_owned()));
    assert!(ndb[1].contains(&"-r".to_owned()) && ndb[2].contains(&"-r".to_owned()));
    assert!(ndb[3].contains(&"--rebuild-indexes".to_owned()));
    assert_eq!(&ndb[0][..4], ["-n", "2", "-b", "263271819"]);
    assert!(ndb[0].iter().any(|a| a == "--ndb-connectstring=127.0.0.1:1186"));
    let data_nodes: Vec<&str> = ndb[1..3].iter().map(|a| a[1].as_str()).collect();
    assert!(data_nodes.contains(&"2") && data_nodes.contains(&"3"), "{data_nodes:?}");
    let client = runs_of(&s.c, "mysql-client.sh");
    assert_eq!(client.len(), 2);
    assert_eq!(client[0]["argv"][0], "-e");
    assert!(
        client[0]["argv"][1].as_str().unwrap().starts_with("SOURCE /"),
        "{}",
        client[0]
    );
    let hdfs = uzers::get_user_by_name("hdfs").unwrap().uid();
    assert!(runs_of(&s.c, "hdfs").iter().all(|r| r["uid"] == hdfs));
    assert!(runs_of(&s.c, "kafka-restore.sh").iter().all(|r| r["uid"] == 0));
    assert_eq!(simctl(&s.c, &["reindexes"]).trim(), "1");

    // --status shows every step done.
    let status = text(&s.c.hwdr("head1", &["restore", ID, "--status"]).stdout);
    for step in [
        "stage",
        "rondb-meta",
        "rondb-data",
        "rondb-indexes",
        "users",
        "hopsfs",
        "safemode",
        "opensearch",
        "kafka",
    ] {
        assert!(
            status.lines().any(|l| l.starts_with(step) && l.contains("done")),
            "{step}:\n{status}"
        );
    }
    // Running it again is refused: it was started before.
    let again = s.c.hwdr("head1", &["restore", ID]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("--resume"), "{}", text(&again.stderr));
}

#[test]
fn plan_prints_every_step_with_node_user_argv_and_what_it_waits_for() {
    let s = backed_up();
    let out = s.c.hwdr("head1", &["restore", ID, "--plan"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    let bin = s.c.sim.join("bin").display().to_string();
    let staging =
        s.c.dir
            .path()
            .join("staging-head1/BACKUP-263271819")
            .display()
            .to_string();
    let staging2 = s.c.dir.path().join("staging-head1").display().to_string();
    for expected in [
        format!("restore of backup {ID} (RonDB backup id 263271819)"),
        " 1. stage (checks passed; 4 parts".into(),
        "on node3 as root: copy the node's VERSION files and blocks".into(),
        " 2. rondb-meta (after stage)".into(),
        format!("on head1 as mysql: {bin}/ndb_restore -n 2 -b 263271819 -m --disable-indexes --ndb-connectstring=127.0.0.1:1186 --backup_path={staging}"),
        " 3. rondb-data (after rondb-meta; 2 parts, 2 at once)".into(),
        format!("on node2 as mysql: {bin}/ndb_restore -n 3 -b 263271819 -r"),
        " 4. rondb-indexes (after rondb-data)".into(),
        "--rebuild-indexes".into(),
        " 5. users (after rondb-indexes)".into(),
        format!("on head1 as mysql: {bin}/mysql-client.sh -e 'SOURCE {staging}/users.sql'"),
        " 6. hopsfs (after users; 3 parts".into(),
        " 7. safemode (after hopsfs)".into(),
        format!("on head1 as hdfs: {bin}/hdfs dfsadmin -safemode get every 1s until it prints 'Safe mode is OFF'"),
        " 8. opensearch (after safemode)".into(),
        format!("on head1 as root: {bin}/reindex-epipe.sh"),
        " 9. kafka (after opensearch)".into(),
        format!("on head1 as root: {bin}/kafka-restore.sh"),
    ] {
        assert!(plan.contains(&expected), "plan lacks {expected:?}:\n{plan}");
    }
    let _ = staging2;
    assert!(runs_of(&s.c, "ndb_restore").is_empty(), "--plan must run nothing");
    plan_of_picked_steps_and_step_names_in_help(&s, &plan);
}

/// Issue 16: `--only … --plan` was refused, and `--help` named no step.
/// The plan shows just the steps picked, numbered as in the whole plan;
/// `--help` lists every step the whole plan has, in its order.
fn plan_of_picked_steps_and_step_names_in_help(s: &Setup, whole: &str) {
    // " 3. rondb-data (after rondb-meta; …)" names step rondb-data.
    let headings: Vec<&str> = whole
        .lines()
        .filter_map(|l| l.trim_start().split_once(". "))
        .filter(|(number, _)| number.parse::<u32>().is_ok())
        .filter_map(|(_, rest)| rest.split(' ').next())
        .collect();
    assert_eq!(headings.len(), 9, "{whole}");
    let help = text(&s.c.hwdr("head1", &["restore", "--help"]).stdout);
    for option in ["--from <STEP>", "--only <STEP>"] {
        let line = help.lines().find(|l| l.contains(option)).unwrap_or_default();
        let listed = line.split("[possible values: ").nth(1).unwrap_or_default();
        let listed: Vec<&str> = listed.trim_end_matches(']').split(", ").collect();
        let in_plan: Vec<&str> = listed.iter().copied().filter(|n| headings.contains(n)).collect();
        assert_eq!(in_plan, headings, "{option} in --help: {line}");
        assert_eq!(listed.len(), headings.len() + 1, "and rondb-epoch: {line}");
    }

    let out = s.c.hwdr("head1", &["restore", ID, "--only", "safemode", "--plan"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(
        plan.lines()
            .next()
            .unwrap_or_default()
            .ends_with(", only step safemode"),
        "{plan}"
    );
    assert!(plan.contains(" 7. safemode (checks passed)"), "{plan}");
    assert!(plan.contains("hdfs dfsadmin -safemode get"), "{plan}");
    let steps = plan.lines().filter(|l| {
        l.trim_start()
            .split_once(". ")
            .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
    });
    assert_eq!(steps.count(), 1, "{plan}");

    let out = s.c.hwdr("head1", &["restore", ID, "--from", "opensearch", "--plan"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(
        plan.contains(" 8. opensearch (checks passed)") && plan.contains(" 9. kafka (after opensearch)"),
        "{plan}"
    );
    assert!(!plan.contains("rondb-meta") && !plan.contains("safemode ("), "{plan}");
    assert!(runs_of(&s.c, "hdfs").is_empty(), "--plan must run nothing");
}

/// Issue 12, move 7: each node renders its own part of `--plan` from its own
/// config (node2 runs another `ndb_restore`, from its own staging folder);
/// a node whose agent does not answer is named, and the plan fails.
#[test]
fn plan_shows_each_nodes_part_as_that_node_runs_it_and_names_the_parts_not_shown() {
    let mut s = backed_up();
    let own = "/opt/rondb-24.10/bin/ndb_restore";
    s.c.dropin(
        "node2",
        "70-own-ndb-restore.toml",
        &format!("[rondb]\nndb_restore = \"{own}\"\n"),
    );
    s.c.kill_agent("node2");
    s.c.start_agent("node2");
    let out = s.c.hwdr("head1", &["restore", ID, "--plan"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    let staged = |node: &str| {
        s.c.dir
            .path()
            .join(format!("staging-{node}/BACKUP-263271819"))
            .display()
            .to_string()
    };
    let bin = s.c.sim.join("bin").display().to_string();
    for expected in [
        format!("on node2 as mysql: {own} -n 3 -b 263271819 -r "),
        format!("--backup_path={}\n", staged("node2")),
        format!("on node1 as mysql: {bin}/ndb_restore -n 2 -b 263271819 -r "),
        format!(
            "on node1 as root: copy the parts of data nodes [2] into {} (checked",
            staged("node1")
        ),
        format!("on head1 as mysql: {bin}/ndb_restore -n 2 -b 263271819 -m "),
    ] {
        assert!(plan.contains(&expected), "plan lacks {expected:?}:\n{plan}");
    }
    assert!(
        !plan.contains(&format!(
            "-n 3 -b 263271819 -r --ndb-connectstring=127.0.0.1:1186 --backup_path={}",
            staged("head1")
        )),
        "{plan}"
    );

    s.c.kill_agent("node3");
    let out = s.c.hwdr("head1", &["restore", ID, "--plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    let not_shown: Vec<&str> = plan.lines().filter(|l| l.contains("NOT SHOWN")).collect();
    assert_eq!(not_shown.len(), 2, "node3 stages and restores its blocks:\n{plan}");
    assert!(
        not_shown
            .iter()
            .all(|l| l.starts_with("      on node3: NOT SHOWN: agent of node3 (")),
        "{plan}"
    );
    assert!(
        plan.contains(" 9. kafka (after opensearch)"),
        "the rest of the plan is shown:\n{plan}"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("the plan is incomplete: 2 parts could not be shown"),
        "{err}"
    );
    assert!(err.contains("  - node3: agent of node3 ("), "{err}");
    assert!(runs_of(&s.c, "ndb_restore").is_empty(), "--plan must run nothing");
}

#[test]
fn a_failure_at_each_step_then_resume_finishes_without_redoing_finished_steps() {
    let s = backed_up();
    let staging_node2 = s.c.dir.path().join("staging-node2");
    let node3_dir = s.generated.nodes[2].data_dir.clone();
    // (step, how to break it, how to mend it)
    type Fix = Box<dyn Fn(&Setup)>;
    let nothing = || -> Fix { Box::new(|_| {}) };
    let fail_ndb_once = || -> Fix { Box::new(|s: &Setup| s.c.control("ndb_restore", "fail-once")) };
    // (step, steps run first one by one with --only, how to break the step, how to mend it)
    let mut cases: Vec<(&str, &[&str], Fix, Fix)> = vec![
        ("rondb-data", &["stage", "rondb-meta"], fail_ndb_once(), nothing()),
        (
            "rondb-indexes",
            &["stage", "rondb-meta", "rondb-data"],
            fail_ndb_once(),
            nothing(),
        ),
    ];
    let plain: Vec<(&str, Fix, Fix)> = vec![
        (
            "stage",
            Box::new(move |_| fs::write(&staging_node2, "in the way").unwrap()),
            Box::new({
                let p = s.c.dir.path().join("staging-node2");
                move |_| fs::remove_file(&p).unwrap()
            }),
        ),
        (
            "rondb-meta",
            Box::new(|s| s.c.control("ndb_restore", "fail-once")),
            Box::new(|_| {}),
        ),
        (
            "users",
            Box::new(|s| s.c.control("mysql-client.sh", "fail-once")),
            Box::new(|_| {}),
        ),
        (
            // The stage step puts nothing in current/: a file in its way
            // breaks only the move into place.
            "hopsfs",
            Box::new({
                let p = node3_dir.clone();
                move |_| {
                    fs::create_dir_all(&p).unwrap();
                    fs::write(p.join("current"), "in the way").unwrap();
                }
            }),
            Box::new({
                let p = node3_dir.clone();
                move |_| fs::remove_file(p.join("current")).unwrap()
            }),
        ),
        (
            "safemode",
            Box::new(|s| s.c.control("hdfs", "stuck-on")),
            Box::new(|s| {
                run_ok(
                    Command::new(sim_src().join("simctl"))
                        .arg("control")
                        .arg(&s.c.sim)
                        .args(["hdfs", "--clear"]),
                );
            }),
        ),
        (
            "opensearch",
            Box::new(|s| s.c.control("reindex-epipe.sh", "epipe-running")),
            Box::new(|s| {
                run_ok(
                    Command::new(sim_src().join("simctl"))
                        .arg("control")
                        .arg(&s.c.sim)
                        .args(["reindex-epipe.sh", "--clear"]),
                );
            }),
        ),
        (
            "kafka",
            Box::new(|s| s.c.control("kafka-restore.sh", "fail-once")),
            Box::new(|_| {}),
        ),
    ];
    cases.extend(plain.into_iter().map(|(step, b, m)| (step, &[][..], b, m)));
    s.c.dropin_everywhere("80-fast.toml", "[restore]\nsafemode_timeout = \"3s\"\n");
    for (step, before, break_it, mend_it) in cases {
        wipe(&s);
        // Emptied, not removed: the simulators running as hdfs could not create it again.
        fs::write(s.c.sim.join("state/invocations.jsonl"), "").unwrap();
        for earlier in before {
            let out = s.c.hwdr("head1", &["restore", ID, "--only", earlier]);
            assert!(out.status.success(), "{step}: --only {earlier}: {}", text(&out.stderr));
        }
        break_it(&s);
        let first = if before.is_empty() {
            vec!["restore", ID]
        } else {
            vec!["restore", ID, "--resume"]
        };
        let out = s.c.hwdr("head1", &first);
        assert_eq!(out.status.code(), Some(1), "{step}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains(&format!("stopped at step {step}")), "{step}: {err}");
        let status = text(&s.c.hwdr("head1", &["restore", ID, "--status"]).stdout);
        assert!(
            status.lines().any(|l| l.starts_with(step) && l.contains("failed")),
            "{step}:\n{status}"
        );
        // Nothing after the failing step ran.
        let after: Vec<&str> = status
            .lines()
            .filter(|l| !l.starts_with(' '))
            .skip_while(|l| !l.starts_with(step))
            .skip(1)
            .collect();
        assert!(
            after.iter().all(|l| l.contains("pending") || l.contains("skipped")),
            "{step}:\n{status}"
        );
        let meta_runs = runs_of(&s.c, "ndb_restore")
            .iter()
            .filter(|r| r["argv"].to_string().contains("\"-m\""))
            .count();

        mend_it(&s);
        let out = s.c.hwdr("head1", &["restore", ID, "--resume"]);
        assert!(
            out.status.success(),
            "{step}: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_restored(&s);
        // Finished steps were not redone: -m ran once in all (twice only if it was the failing step).
        let meta_after = runs_of(&s.c, "ndb_restore")
            .iter()
            .filter(|r| r["argv"].to_string().contains("\"-m\""))
            .count();
        let expected = if step == "stage" {
            1
        } else {
            meta_runs.max(1) + usize::from(step == "rondb-meta")
        };
        assert_eq!(meta_after, expected, "{step}: ndb_restore -m ran {meta_after} times");
    }
}

#[test]
fn restore_is_refused_for_a_failed_backup_and_for_a_corrupted_file_naming_it() {
    let s = backed_up();
    // A corrupted RonDB part: refused, named, nothing run.
    let part = common::tree(&s.c.repo.join(format!("backups/{ID}")))
        .into_iter()
        .find(|p| p.ends_with(".Data"))
        .unwrap();
    let path = s.c.repo.join(format!("backups/{ID}")).join(&part);
    let mut bytes = fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 3);
    fs::write(&path, bytes).unwrap();
    let out = s.c.hwdr("head1", &["restore", ID]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&part) && err.contains("the manifest says"), "{err}");
    assert!(runs_of(&s.c, "ndb_restore").is_empty());

    // A missing block in the store: refused, named.
    let out = s.c.hwdr("head1", &["restore", ID]);
    assert_eq!(out.status.code(), Some(8));

    // A failed backup: refused.
    s.c.control("mgm-client.sh", "unreachable");
    assert!(!s.c.hwdr("head1", &["backup", "--id", "2611231820"]).status.success());
    let out = s.c.hwdr("head1", &["restore", "2611231820"]);
    assert_eq!(out.status.code(), Some(8));
    assert!(
        text(&out.stderr).contains("is failed, not complete"),
        "{}",
        text(&out.stderr)
    );
    // No backup at all: not found (10), not "refused", and where to look.
    let out = s.c.hwdr("head1", &["restore", "2611231821"]);
    assert_eq!(out.status.code(), Some(10));
    let expected = format!(
        "hwdr: error: no backup 2611231821 in {}; `hwdr list` shows what there is\n",
        s.c.repo.display()
    );
    assert_eq!(text(&out.stderr), expected);
}

#[test]
fn only_and_from_run_just_the_steps_asked_for_and_a_silent_agent_is_refused() {
    let mut s = backed_up();
    wipe(&s);
    assert!(s.c.hwdr("head1", &["restore", ID]).status.success());
    fs::write(s.c.sim.join("state/invocations.jsonl"), "").unwrap();

    // --only kafka: the topics step alone.
    let out = s.c.hwdr("head1", &["restore", ID, "--only", "kafka"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(runs_of(&s.c, "kafka-restore.sh").len(), 1);
    assert!(runs_of(&s.c, "ndb_restore").is_empty() && runs_of(&s.c, "reindex-epipe.sh").is_empty());

    // --from opensearch: that step and the ones after it.
    let out = s.c.hwdr("head1", &["restore", ID, "--from", "opensearch"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(runs_of(&s.c, "reindex-epipe.sh").len(), 1);
    assert_eq!(runs_of(&s.c, "kafka-restore.sh").len(), 2);
    assert!(runs_of(&s.c, "ndb_restore").is_empty() && runs_of(&s.c, "hdfs").is_empty());

    // An unknown step is a usage error listing the steps (issue 16).
    let out = s.c.hwdr("head1", &["restore", ID, "--only", "rondb"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(
            "hwdr: error: invalid value 'rondb' for '--only <STEP>'\n  [possible values: stage, rondb-meta, "
        ),
        "{err}"
    );
    // A step this restore does not have says why.
    let out = s.c.hwdr("head1", &["restore", ID, "--only", "rondb-epoch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "hwdr: error: no step 'rondb-epoch' in this restore (it runs only with `[restore] restore_epoch = true`); \
         the steps are: stage, rondb-meta, rondb-data, rondb-indexes, users, hopsfs, safemode, opensearch, kafka\n"
    );

    // A node whose agent does not answer: refused before anything runs.
    s.c.kill_agent("node3");
    let out = s.c.hwdr("head1", &["restore", ID, "--only", "hopsfs"]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("agent of node3"), "{}", text(&out.stderr));
}
