"""The newcomer path (issue 16): from a fresh clone, the README's two
commands, `make sandbox` and `make deps test`, pass in either order.

One test, as root, about 3 minutes:

1. `make sandbox`, the real command, in a fresh `git clone` of this
   repository (plus the working tree's uncommitted changes to tracked files;
   untracked files are not part of a clone), in a clean environment (no
   MAKEFLAGS or MAKELEVEL of a calling make, no HWDR_* variables), so it runs
   as a newcomer's does: `make deps`, `make build`, `make deb`, five nodes
   on 127.0.0.41-45, a backup, a drill. It must exit 0 and print only one
   `ok` line per phase in order, the drill's `passed` verdict last among
   them, then the listing, the timers and the shells, nothing of apt, cargo,
   dpkg-buildpackage or the journal (those are in /tmp/hwdr-sandbox.log).
   To stay cheap the clone does not build the world again: its `target` is a
   symlink to this repository's `target/`, and its files carry the working
   tree's modification times, so cargo finds the build it already has for
   the same sources (a clone's files are otherwise newer than every build).
   Everything else (dpkg-buildpackage, lintian, apt) runs for real.
2. With the sandbox still up, the start of the e2e test's own five-node
   cluster (test_cluster.ClusterTest, steps 01-04) on 127.0.0.31-35: the
   package installed everywhere, the agents started, a backup through
   `systemctl start hwdr-backup` checked file by file. That is `make test`
   beside a running sandbox; the sandbox's agents still run afterwards and
   its repository holds its own backup only.
3. `make sandbox-down` says `sandbox removed` and leaves no folder, mount,
   cgroup or process of the sandbox behind.

The other order, `make test` and then `make sandbox`: `make test` runs the
e2e test files in name order, so this one runs after test_cluster.py's two
five-node runs (and test_hopsfs_restore.py's and test_journald.py's), on
the host they leave behind.

A sandbox that already runs on this host would be taken down by step 1:
the test is skipped then, saying so. Whatever happens, the sandbox and the
clone are removed at the end.
"""

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import nspawn
import test_cluster
from nspawn import REPO

sys.path.insert(0, os.path.join(REPO, "packaging"))
import sandbox  # noqa: E402  (a module: its Sandbox class is not collected here)

MAKE_TIMEOUT = 1200
# The calling make's variables and the tests' overrides: a newcomer's shell has none.
NOT_A_NEWCOMERS = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES", "CARGO_TARGET_DIR",
                   "HWDR_DEB", "HWDR_BIN", "HWDR_GEN_DATANODES")
PHASES = [
    r"packages",
    r"build",
    r"\.deb target/debian/hwdr_[^ ]+\.deb",
    r"five nodes booted, the \.deb installed on each",
    r"agents answer on 127\.0\.0\.41-45:7878",
    r"backup (?P<backup>\d+) \(systemctl start hwdr-backup on head1\): complete, [\d.]+ (KiB|MiB)",
    r"drill of backup (?P<drilled>\d+): passed",
]
# What the log gets and the terminal must not.
NOISE = ("Compiling", "Finished", "dpkg-buildpackage", "dh_", "lintian", "apt-get",
         "Reading package lists", "[nspawn]", "[e2e]", "make[", "Traceback", "systemd[1]",
         "hwdr-backup.service:", "ok    ")
E2E_STEPS = ("test_01_installed_everywhere", "test_02_agents_start_everywhere",
             "test_03_backup_on_head1", "test_04_manifest_is_complete")


def log(msg):
    print(f"[newcomer] {msg}", file=sys.stderr, flush=True)


def clone_working_tree(dest):
    """`git clone` of REPO into `dest`, with the working tree's changes to
    tracked files applied, the working tree's file times, and `target` a
    symlink to REPO's."""
    subprocess.run(["git", "clone", "--quiet", REPO, dest], check=True)
    diff = subprocess.run(["git", "-C", REPO, "diff", "--binary", "HEAD"], check=True,
                          capture_output=True).stdout
    if diff:
        subprocess.run(["git", "-C", dest, "apply", "--binary"], input=diff, check=True)
    files = subprocess.run(["git", "-C", dest, "ls-files", "-z"], check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        theirs = os.path.join(REPO, rel)
        if os.path.isfile(theirs) and not os.path.islink(theirs):
            st = os.stat(theirs)
            os.utime(os.path.join(dest, rel), ns=(st.st_atime_ns, st.st_mtime_ns))
    os.symlink(os.path.join(REPO, "target"), os.path.join(dest, "target"))


def sandbox_leftovers():
    """What a sandbox leaves on the host: folders, mounts, processes and
    cgroups named after sandbox.PREFIX."""
    found = glob.glob(sandbox.PREFIX + "*")
    with open("/proc/self/mountinfo") as f:
        found += [line.split()[4] for line in f if sandbox.PREFIX in line.split()[4]]
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as f:
                argv = f.read().decode(errors="replace")
        except OSError:
            continue
        if sandbox.PREFIX in argv and cmdline != f"/proc/{os.getpid()}/cmdline":
            found.append(f"{cmdline}: {argv.replace(chr(0), ' ')}")
    name = os.path.basename(sandbox.PREFIX)
    for base in nspawn._own_cgroups():
        found += glob.glob(os.path.join(base, name + "*"))
    return found


class NewcomerTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        if glob.glob(sandbox.PREFIX + "*"):
            self.skipTest("a sandbox runs on this host; this test's `make sandbox` would "
                          "take it down: `make sandbox-down` first")
        self.tmp = tempfile.mkdtemp(prefix="hwdr-newcomer-")
        self.addCleanup(self._clean_up)
        self.clone = os.path.join(self.tmp, "hwdr")
        clone_working_tree(self.clone)
        self.env = {k: v for k, v in os.environ.items() if k not in NOT_A_NEWCOMERS}

    def _clean_up(self):
        """The sandbox (if the test stopped before `make sandbox-down`) and the clone."""
        nspawn.cleanup_stale(prefix=sandbox.PREFIX)
        shutil.rmtree(self.tmp)   # `target` is a symlink: removed, not followed

    def make(self, target):
        """`make <target>` in the clone: (returncode, stdout, stderr). Its
        own session, killed (SIGTERM, then SIGKILL) when it takes too long."""
        proc = subprocess.Popen(["make", target], cwd=self.clone, env=self.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=MAKE_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
            self.fail(f"make {target} took over {MAKE_TIMEOUT}s:\n{out}{err}")
        return proc.returncode, out, err

    def test_sandbox_beside_a_test_cluster(self):
        started = time.monotonic()
        rc, out, err = self.make("sandbox")
        log(f"make sandbox: {time.monotonic() - started:.0f}s; its output:\n{out}{err}")
        self.assertEqual(rc, 0, f"make sandbox failed:\n{out}{err}")
        backup = self.check_sandbox_output(out, err)
        shells = self.check_shells(out)

        t = time.monotonic()
        self.e2e_cluster_beside_the_sandbox()
        log(f"the e2e cluster's steps beside the sandbox: {time.monotonic() - t:.0f}s")
        self.check_sandbox_still_runs(shells, backup)

        rc, out, err = self.make("sandbox-down")
        self.assertEqual((rc, out, err), (0, "sandbox removed\n", ""))
        self.assertEqual(sandbox_leftovers(), [])
        for name, pid in shells.items():
            self.assertFalse(os.path.exists(f"/proc/{pid}"), f"{name}'s systemd {pid} still runs")
        self.assertFalse(os.path.exists(sandbox.INFO))
        log(f"the whole test: {time.monotonic() - started:.0f}s")

    def check_sandbox_output(self, out, err):
        """One `ok` line per phase, in order, the drill's verdict the last;
        nothing else before the listing; none of the programs' output (that
        is in the log). Returns the backup's id."""
        self.assertEqual(err, "")
        lines = out.splitlines()
        phases = lines[:lines.index("")] if "" in lines else lines
        self.assertEqual(len(phases), len(PHASES), out)
        found = {}
        for line, pattern in zip(phases, PHASES):
            m = re.fullmatch(rf"ok  {pattern} \(\d+(\.\d)? s\)", line)
            self.assertIsNotNone(m, f"{line!r} is not `ok  {pattern} (N s)`:\n{out}")
            found.update({k: v for k, v in m.groupdict().items() if v})
        self.assertEqual(found["drilled"], found["backup"], out)
        verdicts = [line for line in lines if re.search(r"\b(passed|failed|FAIL)\b", line)]
        self.assertTrue(verdicts and verdicts[-1].startswith("ok  drill of backup"), out)
        for noise in NOISE:
            self.assertNotIn(noise, out)
        self.assertIn("head1# hwdr list\n", out)
        self.assertRegex(out, rf"\n{found['backup']} +complete ")
        self.assertIn("head1# systemctl list-timers hwdr-* --no-pager\n", out)
        self.assertIn("hwdr-backup.timer", out)
        self.assertTrue(out.endswith(f"Tear it down: make sandbox-down\n(this text is also in "
                                     f"{sandbox.INFO}; all that make sandbox ran printed is in "
                                     f"{sandbox.LOG})\n"), out[-400:])
        self.assertLess(len(lines), 45, out)
        with open(sandbox.LOG) as f:
            logged = f.read()
        for noise in ("dpkg-buildpackage", "$ [head1] journalctl -u hwdr-backup",
                      "==== drill", f"drill of backup {found['backup']}: passed"):
            self.assertIn(noise, logged)
        return found["backup"]

    def check_shells(self, out):
        """The `nsenter -t <pid> -a bash` lines (in the output and in
        INFO) name each node's running systemd: {node: pid}."""
        shells = dict(re.findall(r"^  (\w+) +nsenter -t (\d+) -a bash$", out, re.M))
        self.assertEqual(sorted(shells), sorted(test_cluster.NAMES), out)
        with open(sandbox.INFO) as f:
            self.assertIn(f.read(), out)
        for name, pid in shells.items():
            host = subprocess.run(["nsenter", "-t", pid, "-u", "hostname"], check=True,
                                  capture_output=True, text=True).stdout.strip()
            self.assertEqual(host, name)
        return shells

    def e2e_cluster_beside_the_sandbox(self):
        """The e2e test's own cluster on 127.0.0.31-35, its first steps, as
        `make test` runs them; all of them pass."""
        suite = unittest.TestSuite(test_cluster.ClusterTest(step) for step in E2E_STEPS)
        result = unittest.TestResult()
        suite.run(result)   # class setup and cleanup included: the cluster is gone after
        problems = [f"{test.id()}:\n{text}" for test, text in result.errors + result.failures]
        self.assertEqual(problems, [])
        self.assertEqual((result.testsRun, result.skipped), (len(E2E_STEPS), []))

    def check_sandbox_still_runs(self, shells, backup):
        """Every sandbox agent still answers on its own address, and the
        sandbox's repository holds its own backup only."""
        for name, addr, _, _ in sandbox.NODES:
            with socket.create_connection((addr, sandbox.test_cluster.PORT), timeout=5):
                pass
            state = subprocess.run(["nsenter", "-t", shells[name], "-a", "systemctl",
                                    "is-active", "hwdr-agent"], capture_output=True, text=True)
            self.assertEqual(state.stdout.strip(), "active", name)
        listing = subprocess.run(["nsenter", "-t", shells["head1"], "-a", "hwdr", "list"],
                                 check=True, capture_output=True, text=True).stdout
        ids = re.findall(r"^(\d{10}) ", listing, re.M)
        self.assertEqual(ids, [backup], listing)


if __name__ == "__main__":
    unittest.main()
