"""A HopsFS restore job stops the data node's unit, puts its blocks back and
starts the unit again, through systemd's D-Bus API.

One container (`head1`: head, rondb and hopsfs) with the simulated RonDB
cluster of tests/sim; a fake data node (`datanode.service`: a `sleep` running
as hdfs) over a tree made by testkit's gen_datanodes; `hwdr agent` as a
`Type=notify` transient service, driven over its HTTP API from the host (the
container shares the host's network). The class takes one backup; the tests
then wipe the data folder and restore it, or make a restore fail. Each test
starts the data node first if a test before it left it stopped. Run as root
after `cargo build --workspace` (see README.md); `HWDR_BIN` and
`HWDR_GEN_DATANODES` name other binaries than target/debug's.
"""

import json
import os
import shutil
import secrets
import stat
import sys
import time
import unittest
import urllib.error
import urllib.request

from nspawn import DATANODE_UNIT, REPO, Cluster, built, single_node_config

SIMCTL = f"{REPO}/tests/sim/simctl"
SIM = "/srv/sim"

ADDR, PORT = "127.0.0.21", 7878     # not test_journald.py's 127.0.0.11
AGENT_URL = f"http://{ADDR}:{PORT}"
BACKUP_ID = "2611231819"
GEN_OUT = "/srv/hopsgen"
DATA_DIR = f"{GEN_OUT}/node1/dn"    # what gen_datanodes makes of node 1
TOKEN_FILE = "/etc/hwdr/agent.token"
MANIFEST = f"/srv/repo/backups/{BACKUP_ID}/manifest.json"
INVENTORY = f"/srv/repo/backups/{BACKUP_ID}/hopsfs/head1/inventory.tsv"
# `HWDR_STEP` of a HopsFS restore job's entries (`JobRequest::step()`).
RESTORE_STEP = "hopsfs"
GEN_ARGS = ["--out", GEN_OUT, "--nodes", "1", "--replication", "1", "--pools", "2",
            "--blocks", "60", "--min-size", "0", "--max-size", "40000", "--seed", "7"]

# systemd's catalog ids (sd-messages.h) of a unit that stopped / started.
MSG_UNIT_STOPPED = "9d1aaa27d60140bd96365438aad20286"
MSG_UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"

# File times come from the kernel's coarse clock, which may lag the clock
# systemd stamps state changes with by a tick.
CLOCK_SLACK_NS = 20_000_000

CONFIG = single_node_config(f"{ADDR}:{PORT}", ["head", "rondb", "hopsfs"], SIM, f"""\

[agent]
token_file = "{TOKEN_FILE}"

[hopsfs]
data_dirs = ["{DATA_DIR}"]
datanode_unit = "datanode.service"
""")


def log(msg):
    print(f"[e2e] {msg}", file=sys.stderr, flush=True)


def snapshot(root):
    """What a restore must reproduce of the data folder at host path `root`,
    as the Rust tests' `snapshot()` plus folders: `current/VERSION`, every
    pool's `current/VERSION` and everything below `finalized/`, each as
    (relative path, uid, gid, mode, content; None for a folder), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if not (rel == "current/VERSION" or rel.endswith("/current/VERSION")
                    or "/current/finalized/" in rel):
                continue
            st = os.lstat(full)
            content = None
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    content = f.read()
            out.append((rel, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), content))
    return sorted(out, key=lambda e: e[0])


def finalized_blocks(snap):
    """The block files (not `.meta`) of a snapshot."""
    return [e[0] for e in snap
            if e[4] is not None and os.path.basename(e[0]).startswith("blk_")
            and not e[0].endswith(".meta")]


class HopsfsRestoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        binary = built("HWDR_BIN", "target/debug/hwdr", ["--bin", "hwdr"])
        gen = built("HWDR_GEN_DATANODES", "target/debug/gen_datanodes",
                    ["-p", "testkit", "--bin", "gen_datanodes"])
        started = time.monotonic()
        cls.cluster = cls.enterClassContext(Cluster([("head1", ADDR)], ro_binds=[REPO]))
        cls.timings = {"boot": cls.cluster["head1"].boot_seconds}
        try:
            cls.node = node = cls.cluster["head1"]
            node.copy_in(binary, "/usr/bin/hwdr", 0o755)
            node.copy_in(gen, "/usr/local/bin/gen_datanodes", 0o755)
            cls._users()
            cls._rondb_sim()
            cls._datanode()
            cls._agent()
            cls._backup()
        except BaseException:
            cls.cluster.dump_failed_journals()
            raise
        cls.timings["setup"] = time.monotonic() - started
        log(f"setup: boot {cls.timings['boot']:.1f}s, generate {cls.timings['generate']:.2f}s, "
            f"backup {cls.timings['backup']:.2f}s, all {cls.timings['setup']:.1f}s")

    @classmethod
    def _users(cls):
        """mysql, group hadoop, hdfs in hadoop (the host's, if its image has them)."""
        node = cls.node
        if node.run(["getent", "group", "hadoop"], check=False)[0] != 0:
            node.run(["groupadd", "--system", "hadoop"])
        if node.run(["id", "-u", "mysql"], check=False)[0] != 0:
            node.run(["useradd", "--system", "--user-group", "--no-create-home", "mysql"])
        if node.run(["id", "-u", "hdfs"], check=False)[0] != 0:
            node.run(["useradd", "--system", "--user-group", "--no-create-home",
                      "--groups", "hadoop", "hdfs"])
        elif "hadoop" not in node.run(["id", "-nG", "hdfs"])[1].split():
            node.run(["usermod", "-aG", "hadoop", "hdfs"])

    @classmethod
    def _rondb_sim(cls):
        """The simulated RonDB cluster, as test_journald.py sets it up."""
        node = cls.node
        node.run([SIMCTL, "init", SIM, "--data-nodes", "2:2", "--rows", "100",
                  "--socket", f"{SIM}/mysql.sock"])
        node.run(["install", "-d", "-o", "mysql", "-g", "mysql", "-m", "0750",
                  "/srv/ndb", "/srv/ndb/backups"])
        sim = json.loads(node.read(f"{SIM}/hwdr-sim.json"))
        sim["data_nodes"]["2"]["backup_dir"] = "/srv/ndb/backups"
        node.write(f"{SIM}/hwdr-sim.json", json.dumps(sim, indent=2))
        node.run(["install", "-d", "-m", "0755", "/srv/repo"])
        node.write("/etc/hwdr/cluster-definition.yml", "name: prod\nnodes: [head1]\n")

    @classmethod
    def _datanode(cls):
        """A generated data folder owned by hdfs:hadoop, one block with mode
        0640, and the fake data node over it, enabled and running."""
        node = cls.node
        t = time.monotonic()
        out = node.run(["gen_datanodes", *GEN_ARGS])[1]
        cls.timings["generate"] = time.monotonic() - t
        # "nodes=1 blocks=60 unique_bytes=... replica_bytes=... seconds=..."
        cls.generated = dict(kv.split("=", 1) for kv in out.split())
        node.run(["chown", "-R", "hdfs:hadoop", GEN_OUT])
        blocks = finalized_blocks(snapshot(node.host_path(DATA_DIR)))
        cls.odd_block = blocks[0]
        node.run(["chmod", "0640", f"{DATA_DIR}/{cls.odd_block}"])
        node.write("/etc/systemd/system/datanode.service", DATANODE_UNIT)
        node.run(["systemctl", "daemon-reload"])
        node.run(["systemctl", "enable", "--now", "datanode.service"])

    @classmethod
    def _agent(cls):
        node = cls.node
        node.write("/etc/hwdr/hwdr.toml", CONFIG)
        node.run(["hwdr", "repo", "init"])
        cls.token = secrets.token_hex(32)
        node.write(TOKEN_FILE, cls.token + "\n", mode=0o600)
        # Type=notify: systemd-run returns once the agent sent READY=1.
        node.run(["systemd-run", "--unit=hwdr-agent", "--property=Type=notify",
                  "--property=WatchdogSec=30s", "/usr/bin/hwdr", "agent"], timeout=60)

    @classmethod
    def _backup(cls):
        """Backup BACKUP_ID as a transient service, then the snapshot of the
        data folder it holds."""
        t = time.monotonic()
        rc, out, err = cls.node.run(
            ["systemd-run", "--unit=hwdr-backup", "--wait", "--collect",
             "--property=Type=oneshot", "/usr/bin/hwdr", "backup", "--id", BACKUP_ID],
            check=False, timeout=180)
        cls.timings["backup"] = time.monotonic() - t
        cls.backup_rc = rc
        cls.backup_log = out + err + cls.node.journal("-u", "hwdr-backup")
        cls.before = snapshot(cls.node.host_path(DATA_DIR))

    def run(self, result=None):
        """On a failure, first print the failed units' journals."""
        result = result if result is not None else self.defaultTestResult()
        bad = len(result.failures) + len(result.errors)
        super().run(result)
        if len(result.failures) + len(result.errors) > bad:
            self.cluster.dump_failed_journals()
        return result

    def setUp(self):
        self.assertEqual(self.backup_rc, 0, f"the backup failed:\n{self.backup_log}")
        # A failed restore leaves the data node stopped; the next test needs it up.
        if self.unit("datanode")["ActiveState"] != "active":
            self.node.run(["systemctl", "start", "datanode.service"])
        # ... and may leave its staged blocks, which a restore would reuse.
        shutil.rmtree(self.node.host_path(f"{DATA_DIR}/.hwdr-staging"), ignore_errors=True)

    # -------------------------------------------------------------- helpers

    def unit(self, name, *props):
        """`systemctl show` of unit `name`: {property: value}."""
        props = props or ("ActiveState", "SubState", "ExecMainPID",
                          "ExecMainStartTimestampMonotonic", "StatusText")
        out = self.node.run(["systemctl", "show", name, *[f"--property={p}" for p in props]])[1]
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def unit_usec(self, unit, prop):
        """A timestamp property of `unit` in microseconds since the epoch."""
        path = "/org/freedesktop/systemd1/unit/" + unit.replace(".", "_2e").replace("-", "_2d")
        out = self.node.run(["busctl", "get-property", "org.freedesktop.systemd1", path,
                             "org.freedesktop.systemd1.Unit", prop])[1]
        kind, value = out.split()   # "t 1795545540123456"
        self.assertEqual(kind, "t", out)
        return int(value)

    def cursor(self):
        """The journal's cursor now: entries after it came later."""
        out = self.node.journal("-n", "1", "-o", "json")
        return json.loads(out.splitlines()[-1])["__CURSOR"]

    def entries(self, after, unit, **fields):
        """Journal entries after cursor `after` of `unit` (its processes' or
        systemd's about it) that have `fields`. Filtered here, not by
        journalctl: systemd 252's `--after-cursor` with a match also drops the
        first matching entry (it skips two entries from the cursor)."""
        text = self.node.journal(f"--after-cursor={after}", "-o", "json")
        found = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [e for e in found if unit in (e.get("_SYSTEMD_UNIT"), e.get("UNIT"))
                and all(e.get(k) == v for k, v in fields.items())]

    def journal_since(self, mark, unit):
        """`unit`'s plain journal from cursor `mark` on, for failure messages
        (`--cursor`, inclusive, does not lose entries as `--after-cursor` does)."""
        return self.node.journal(f"--cursor={mark}", "-u", unit)

    def api(self, method, path, body=None):
        """A request to the agent from the host: (HTTP status, JSON answer)."""
        request = urllib.request.Request(
            AGENT_URL + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        # No proxy: the agent is on this host's loopback.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def restore_job(self, clean=False, timeout=120):
        """Runs a hopsfs_restore job of BACKUP_ID and waits for its end;
        returns its last status and how long it took. The agent runs restore
        jobs only while the repository lock names a restore of that backup,
        as `hwdr restore` holds it: the test writes such a lock meanwhile."""
        lock = self.node.host_path("/srv/repo/lock")
        with open(lock, "w") as f:
            json.dump({"host": "e2e-test-leader", "pid": 1, "pid_start": None,
                       "since": "2026-11-23T18:19:00Z", "operation": "restore",
                       "backup_id": BACKUP_ID}, f)
        try:
            return self._restore_job(clean, timeout)
        finally:
            os.remove(lock)

    def _restore_job(self, clean, timeout):
        started = time.monotonic()
        code, created = self.api("POST", "/v1/jobs", {
            "kind": "hopsfs_restore", "node": "head1", "backup_id": BACKUP_ID, "clean": clean})
        self.assertEqual(code, 202, created)
        path = f"/v1/jobs/{created['job_id']}"
        while True:
            code, status = self.api("GET", path)
            self.assertEqual(code, 200, status)
            if status["state"] != "running":
                return status, time.monotonic() - started
            if time.monotonic() - started > timeout:
                self.fail(f"the restore job still runs after {timeout}s: {status}")
            time.sleep(0.1)

    def agent_messages(self, after):
        """The agent's messages of the restore step after cursor `after`."""
        found = self.entries(after, "hwdr-agent.service", HWDR_STEP=RESTORE_STEP)
        for e in found:
            self.assertEqual(e.get("HWDR_NODE"), "head1", e)
            self.assertEqual(e.get("HWDR_BACKUP_ID"), BACKUP_ID, e)
        return [e["MESSAGE"] for e in found]

    def assertInOrder(self, needles, messages):
        """Each of `needles` is in one of `messages`, in this order."""
        at = -1
        for needle in needles:
            hits = [i for i, m in enumerate(messages) if needle in m and i > at]
            self.assertTrue(hits, f"no {needle!r} after message {at} in:\n" + "\n".join(messages))
            at = hits[0]

    # ---------------------------------------------------------------- tests

    def test_agent_runs_as_notify_service(self):
        agent = self.unit("hwdr-agent", "Type", "WatchdogUSec", "ActiveState", "SubState",
                          "StatusText")
        self.assertEqual((agent["Type"], agent["WatchdogUSec"]), ("notify", "30s"), agent)
        self.assertEqual((agent["ActiveState"], agent["SubState"]), ("active", "running"), agent)
        self.assertEqual(agent["StatusText"], "idle", agent)
        code, health = self.api("GET", "/v1/health")
        self.assertEqual(code, 200, health)
        self.assertEqual((health["node"], health["auth"]), ("head1", "token"))
        # With the token, the details (a caller without one gets only the name).
        self.assertIn("hopsfs", health["detail"]["roles"])
        self.assertFalse(health["detail"]["busy"], health)

    def test_backup_holds_every_block(self):
        manifest = json.loads(self.node.read(MANIFEST))
        self.assertEqual(manifest["status"], "complete", self.backup_log)
        blocks = int(self.generated["blocks"])
        self.assertEqual(blocks, 60)
        self.assertEqual(len(finalized_blocks(self.before)), blocks)
        modes = {e[0]: e[3] for e in self.before}
        self.assertEqual(modes[self.odd_block], 0o640)
        hopsfs = manifest["hopsfs"]
        self.assertEqual(hopsfs["nodes"], ["head1"])
        self.assertEqual(hopsfs["distinct_blocks"], blocks)
        self.assertEqual(hopsfs["distinct_bytes"], int(self.generated["unique_bytes"]))
        # Format 2: each pool's blocks are in shared inventory pieces; the
        # node's file names each pool's tree with its block count.
        lines = self.node.read(INVENTORY).splitlines()
        self.assertEqual(lines[0], "hwdr-hopsfs-inventory\t2")
        trees = [l.split("\t") for l in lines if l.startswith("tree\t")]
        self.assertTrue(trees, lines)
        self.assertEqual(sum(int(t[2]) for t in trees), blocks)
        self.assertEqual(sum(int(t[3]) for t in trees), int(self.generated["unique_bytes"]))
        self.assertFalse([l for l in lines if l.startswith("block\t")])

    def test_restore_stops_and_starts_the_data_node(self):
        before = self.unit("datanode")
        self.assertEqual(before["ActiveState"], "active", before)
        self.node.run(["rm", "-rf", DATA_DIR])
        self.assertFalse(os.path.lexists(self.node.host_path(DATA_DIR)))
        mark = self.cursor()

        status, seconds = self.restore_job()
        log(f"restore of {self.generated['blocks']} blocks: {seconds:.2f}s")
        agent_log = self.journal_since(mark, "hwdr-agent.service")
        self.assertEqual(status["state"], "succeeded", f"{status}\n{agent_log}")
        restored = status["result"]["hopsfs_restored"]
        self.assertEqual(restored["blocks_written"], len(finalized_blocks(self.before)), status)
        self.assertEqual(restored["bytes_written"], int(self.generated["unique_bytes"]), status)
        self.assertEqual((restored["blocks_kept"], restored["removed"]), (0, []), status)
        self.assertEqual(self.unit("hwdr-agent")["StatusText"], "idle")

        # The data node runs again, as a new process.
        after = self.unit("datanode")
        self.assertEqual((after["ActiveState"], after["SubState"]), ("active", "running"), after)
        self.assertNotIn(after["ExecMainPID"], ("0", before["ExecMainPID"]), after)
        self.assertGreater(int(after["ExecMainStartTimestampMonotonic"]),
                           int(before["ExecMainStartTimestampMonotonic"]), after)

        # systemd stopped it, then started it, after the job began...
        unit_events = [(e.get("MESSAGE_ID"), e.get("JOB_TYPE"))
                       for e in self.entries(mark, "datanode.service")
                       if e.get("MESSAGE_ID") in (MSG_UNIT_STOPPED, MSG_UNIT_STARTED)]
        self.assertEqual(unit_events, [(MSG_UNIT_STOPPED, "stop"), (MSG_UNIT_STARTED, "start")],
                         self.journal_since(mark, "datanode.service"))
        # ... because hwdr asked, logging it in the restore step,
        self.assertInOrder(["stopped datanode.service",
                            f"restored the HopsFS storage of head1 from backup {BACKUP_ID}",
                            "started datanode.service"], self.agent_messages(mark))
        # ... every file was copied (staged, checked) while the data node
        # still ran, and moved into place (a rename: its ctime) while it was down.
        # A folder's mtime is the last rename into it, so it falls in the
        # downtime too: folders are held to the restart, files to the stop.
        down = self.unit_usec("datanode.service", "InactiveEnterTimestamp") * 1000
        up = self.unit_usec("datanode.service", "ActiveEnterTimestamp") * 1000
        root = self.node.host_path(DATA_DIR)
        for rel, *_, content in self.before:
            st = os.lstat(os.path.join(root, rel))
            written_by = down if content is not None else up
            self.assertLessEqual(st.st_mtime_ns, written_by + CLOCK_SLACK_NS,
                                 f"{rel}: written at {st.st_mtime_ns}, after {written_by} "
                                 f"(stop {down}, start {up})")
            self.assertTrue(down - CLOCK_SLACK_NS <= st.st_ctime_ns <= up,
                            f"{rel}: moved into place at {st.st_ctime_ns}, not in [{down}, {up}]")
        self.assertFalse(os.path.exists(os.path.join(root, ".hwdr-staging")))

        # The data folder is back: paths, owners, modes, bytes.
        self.assertEqual(snapshot(root), self.before)
        odd = os.lstat(os.path.join(root, self.odd_block))
        self.assertEqual(stat.S_IMODE(odd.st_mode), 0o640)
        # rbw/ and tmp/ exist again, empty; in_use.lock is the data node's own.
        for pool in os.listdir(os.path.join(root, "current")):
            if pool.startswith("BP-"):
                self.assertEqual(os.listdir(os.path.join(root, "current", pool, "tmp")), [])
                self.assertEqual(os.listdir(os.path.join(root, "current", pool, "current/rbw")), [])
        self.assertFalse(os.path.exists(os.path.join(root, "in_use.lock")))

    def test_damaged_backup_is_refused_without_stopping_the_data_node(self):
        """A backup file that does not match the manifest fails the restore
        before the data node is stopped: nothing is touched."""
        before = self.unit("datanode")
        self.assertEqual(before["ActiveState"], "active", before)
        data_before = snapshot(self.node.host_path(DATA_DIR))
        inventory = self.node.host_path(INVENTORY)
        with open(inventory, "rb") as f:
            original = f.read()
        try:
            with open(inventory, "ab") as f:
                f.write(b"# tampered\n")
            mark = self.cursor()
            status, seconds = self.restore_job()
            log(f"refused restore: {seconds:.2f}s")
        finally:
            with open(inventory, "wb") as f:
                f.write(original)
        agent_log = self.journal_since(mark, "hwdr-agent.service")
        self.assertEqual(status["state"], "failed", f"{status}\n{agent_log}")
        self.assertIn("does not match the manifest", status["error"])
        self.assertIn(INVENTORY, status["error"])
        self.assertIsNone(status["result"])
        after = self.unit("datanode")
        self.assertEqual(after["ActiveState"], "active", after)
        self.assertEqual(after["ExecMainPID"], before["ExecMainPID"], "the data node was restarted")
        self.assertEqual(snapshot(self.node.host_path(DATA_DIR)), data_before)

    def test_missing_block_is_refused_without_stopping_the_data_node(self):
        """A block missing from the block store is found while the blocks are
        staged, before the data node is stopped: nothing is touched."""
        before = self.unit("datanode")
        self.assertEqual(before["ActiveState"], "active", before)
        victim = self.a_stored_block()
        hidden = victim + ".hidden"
        os.rename(victim, hidden)
        try:
            # Remove the node's copy too (an earlier test may have), so the
            # restore has to copy it.
            self.remove_from_data_dir(os.path.basename(victim).rsplit("_", 1)[0], missing_ok=True)
            data_before = snapshot(self.node.host_path(DATA_DIR))
            mark = self.cursor()
            status, seconds = self.restore_job()
            log(f"refused restore (missing block): {seconds:.2f}s")
        finally:
            os.rename(hidden, victim)
        agent_log = self.journal_since(mark, "hwdr-agent.service")
        self.assertEqual(status["state"], "failed", f"{status}\n{agent_log}")
        self.assertIn("missing or damaged", status["error"])
        self.assertIn(os.path.basename(victim), status["error"])
        after = self.unit("datanode")
        self.assertEqual(after["ActiveState"], "active", after)
        self.assertEqual(after["ExecMainPID"], before["ExecMainPID"], "the data node was restarted")
        self.assertEqual(snapshot(self.node.host_path(DATA_DIR)), data_before)

    def test_failed_restore_leaves_the_data_node_stopped(self):
        """A restore that fails after the data node was stopped (a file is in
        the way of a block's folder, so the move into place fails) leaves it
        stopped: a data node must not start on a half-restored tree (jobs.rs:
        `execute_async`)."""
        before = self.unit("datanode")
        self.assertEqual(before["ActiveState"], "active", before)
        name = os.path.basename(self.a_stored_block()).rsplit("_", 1)[0]
        folder = self.remove_from_data_dir(name)
        shutil.rmtree(folder)
        with open(folder, "w") as f:
            f.write("in the way")
        try:
            mark = self.cursor()
            status, seconds = self.restore_job()
            log(f"failed restore: {seconds:.2f}s")
        finally:
            os.remove(folder)
        agent_log = self.journal_since(mark, "hwdr-agent.service")
        self.assertEqual(status["state"], "failed", f"{status}\n{agent_log}")
        self.assertIn("restoring", status["error"])
        after = self.unit("datanode")
        self.assertEqual((after["ActiveState"], after["SubState"]), ("inactive", "dead"), after)
        messages = self.agent_messages(mark)
        self.assertInOrder(["stopped datanode.service"], messages)
        self.assertFalse([m for m in messages if "started datanode.service" in m], messages)
        unit_events = [e.get("MESSAGE_ID") for e in self.entries(mark, "datanode.service")]
        self.assertIn(MSG_UNIT_STOPPED, unit_events)
        self.assertNotIn(MSG_UNIT_STARTED, unit_events)
        agent = self.unit("hwdr-agent")
        self.assertEqual((agent["ActiveState"], agent["StatusText"]), ("active", "idle"), agent)

    def a_stored_block(self):
        """The path (on the host) of one block file in the block store."""
        for dirpath, _, files in sorted(os.walk(self.node.host_path("/srv/repo/blocks"))):
            for name in sorted(files):
                if name.startswith("blk_") and not name.endswith(".meta"):
                    return os.path.join(dirpath, name)
        self.fail("no stored block")

    def remove_from_data_dir(self, block_name, missing_ok=False):
        """Removes block file `block_name` (blk_<id>) from the data folder;
        returns its folder (on the host)."""
        for dirpath, _, files in os.walk(self.node.host_path(DATA_DIR)):
            if block_name in files:
                os.remove(os.path.join(dirpath, block_name))
                return dirpath
        if not missing_ok:
            self.fail(f"{block_name} is not in the data folder")
        return None


if __name__ == "__main__":
    unittest.main()
