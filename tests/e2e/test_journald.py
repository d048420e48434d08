"""hwdr logs to the journal under systemd, with the fields operators filter on.

One container (`head1`) holding every role, with the simulated RonDB cluster of
tests/sim; hwdr runs as a transient systemd service, so its stderr is the
journal. Run as root after `cargo build` (see README.md).
"""

import json
import unittest

from nspawn import REPO, Cluster, built, single_node_config

SIMCTL = f"{REPO}/tests/sim/simctl"
SIM = "/srv/sim"

MSG_STARTED = "79ee74680f1a43a0bc2d51664419b262"
MSG_COMPLETED = "13039cfd13dd4ff1a83ae38db9fcd47d"
MSG_FAILED = "7b2501e68c884f468ff45228b1f1201b"
STEPS = ("config", "users", "schemas", "ndb-backup", "rondb-parts")

CONFIG = single_node_config("127.0.0.11:7878", ["head", "rondb"], SIM)


class JournaldTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        binary = built("HWDR_BIN", "target/debug/hwdr", [])
        cls.cluster = cls.enterClassContext(Cluster([("head1", "127.0.0.11")], ro_binds=[REPO]))
        try:
            cls.node = node = cls.cluster["head1"]
            node.copy_in(binary, "/usr/bin/hwdr", 0o755)
            if node.run(["id", "-u", "mysql"], check=False)[0] != 0:
                node.run(["useradd", "--system", "--user-group", "--no-create-home", "mysql"])
            node.run([SIMCTL, "init", SIM, "--data-nodes", "2:2", "--rows", "100",
                      "--socket", f"{SIM}/mysql.sock"])
            node.run(["install", "-d", "-o", "mysql", "-g", "mysql", "-m", "0750",
                      "/srv/ndb", "/srv/ndb/backups"])
            sim = json.loads(node.read(f"{SIM}/hwdr-sim.json"))
            sim["data_nodes"]["2"]["backup_dir"] = "/srv/ndb/backups"
            node.write(f"{SIM}/hwdr-sim.json", json.dumps(sim, indent=2))
            node.run(["install", "-d", "-m", "0755", "/srv/repo"])
            node.write("/etc/hwdr/cluster-definition.yml", "name: prod\nnodes: [head1]\n")
            node.write("/etc/hwdr/hwdr.toml", CONFIG)
            node.run(["hwdr", "repo", "init"])
        except BaseException:
            cls.cluster.dump_failed_journals()
            raise

    def run(self, result=None):
        """On a failure, first print the failed units' journals."""
        result = result if result is not None else self.defaultTestResult()
        bad = len(result.failures) + len(result.errors)
        super().run(result)
        if len(result.failures) + len(result.errors) > bad:
            self.cluster.dump_failed_journals()
        return result

    # -------------------------------------------------------------- helpers

    def backup_unit(self, unit, backup_id):
        """Runs `hwdr backup` as transient service `unit`; returns its exit status."""
        rc, out, err = self.node.run(
            ["systemd-run", f"--unit={unit}", "--wait", "--collect",
             "--property=Type=oneshot", "/usr/bin/hwdr", "backup", "--id", backup_id],
            check=False, timeout=180)
        return rc, out + err

    def entries(self, *matches):
        """The journal entries matching journalctl arguments, as dicts."""
        text = self.node.journal(*matches, "-o", "json")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    # ---------------------------------------------------------------- tests

    def test_backup_logs_fields_to_journal(self):
        rc, out = self.backup_unit("hwdr-backup", "2611231819")
        plain = self.node.journal("-u", "hwdr-backup")
        self.assertEqual(rc, 0, f"{out}\n{plain}")

        entries = self.entries("-u", "hwdr-backup", "HWDR_BACKUP_ID=2611231819")
        self.assertTrue(entries, plain)
        steps = {e.get("HWDR_STEP") for e in entries}
        for step in STEPS:
            self.assertIn(step, steps, f"no entry with HWDR_STEP={step}")
        self.assertIn("head1", {e.get("HWDR_NODE") for e in entries})
        started = [e for e in entries if e.get("MESSAGE_ID") == MSG_STARTED]
        completed = [e for e in entries if e.get("MESSAGE_ID") == MSG_COMPLETED]
        self.assertEqual(len(started), 1, plain)
        self.assertEqual(len(completed), 1, plain)
        self.assertEqual({e.get("SYSLOG_IDENTIFIER") for e in entries}, {"hwdr"})

        # The plain journal reads like text, not like key=value dumps.
        self.assertIn("backup 2611231819 started", started[0]["MESSAGE"])
        self.assertIn("backup 2611231819 started", plain)

    def test_failed_backup_names_failed_step(self):
        self.node.run([SIMCTL, "control", SIM, "mgm-client.sh", "unreachable"])
        try:
            rc, out = self.backup_unit("hwdr-backup-2", "2611231820")
        finally:
            self.node.run([SIMCTL, "control", SIM, "mgm-client.sh", "--clear"])
        plain = self.node.journal("-u", "hwdr-backup-2")
        self.assertEqual(rc, 1, f"{out}\n{plain}")
        failed = self.entries("-u", "hwdr-backup-2", "HWDR_BACKUP_ID=2611231820",
                              f"MESSAGE_ID={MSG_FAILED}")
        self.assertEqual(len(failed), 1, plain)
        self.assertIn("head1/ndb-backup", failed[0]["MESSAGE"])

    def test_text_on_stderr_outside_systemd(self):
        _, out, _ = self.node.run(["hwdr", "backup", "--id", "2611231821", "--dry-run"])
        self.assertIn("backup 2611231821 (RonDB backup id", out)
        self.assertIn("ndb-backup", out)
        self.assertIn("dry run: nothing was changed", out)
        # Without JOURNAL_STREAM the log is plain text on stderr.
        _, _, err = self.node.run(["hwdr", "backup", "--id", "2611231822"])
        self.assertIn("backup 2611231822 started", err)
        self.assertNotIn("MESSAGE_ID", err)


if __name__ == "__main__":
    unittest.main()
