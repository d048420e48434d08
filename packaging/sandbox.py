#!/usr/bin/python3
"""`make sandbox`: a simulated five-node Hopsworks cluster on real systemd.

Installs what `make deps` installs, builds hwdr and the .deb, boots the five
systemd-nspawn containers of the end-to-end test (tests/e2e/test_cluster.py:
head1, head2, node1, node2, node3) on addresses of their own, 127.0.0.41-45
(the end-to-end tests use .31-35, so both can run at once), installs the .deb
in each, sets up the simulated RonDB and HopsFS, starts the agents, runs a
backup through `systemctl start hwdr-backup` and a restore drill, and leaves
the cluster running for you. `make sandbox-down` (this script with `down`)
tears it down; `make sandbox` takes a running one down first.

The terminal gets one line per phase as it ends, then the backup's listing,
the timers and how to get a shell on a node (also in /tmp/hwdr-sandbox.txt).
Everything the programs print (apt, cargo, dpkg-buildpackage, the journal of
the backup, the drill's steps) goes to /tmp/hwdr-sandbox.log; a failed phase
prints its name and the log's last lines, takes the sandbox down and exits 1.
"""

import atexit
import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import time
import traceback

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))

import nspawn  # noqa: E402
import test_cluster  # noqa: E402

PREFIX = "/tmp/hwdr-sandbox-"       # the run's folder: /tmp/hwdr-sandbox-<pid>
INFO = "/tmp/hwdr-sandbox.txt"      # how to get a shell on a node
LOG = "/tmp/hwdr-sandbox.log"       # everything else
TAIL = 30                           # log lines shown when a phase fails

# The e2e test's nodes (names, roles, RonDB data node ids) at 127.0.0.41-45,
# and the simulated management server on head1's address.
NODES = [(name, f"127.0.0.{41 + i}", roles, ids)
         for i, (name, _, roles, ids) in enumerate(test_cluster.NODES)]
CONNECTSTRING = f"{NODES[0][1]}:1186"
ADDRESSES = f"{NODES[0][1]}-{NODES[-1][1].rsplit('.', 1)[1]}:{test_cluster.PORT}"

# The drill's spare RonDB cluster: another simulated one, on head1.
SPARE = "/srv/spare"
DRILL_TOML = f"""\
[drill]
connectstring = "127.0.0.1:1187"
ndb_restore = "{SPARE}/bin/ndb_restore"
mysql_client = "{SPARE}/bin/mysql-client.sh"
check_command = ["{SPARE}/bin/mysql-client.sh", "-e", "SELECT COUNT(*) FROM hopsworks.project"]
"""


class Sandbox(test_cluster.ClusterTest):
    """The e2e test's cluster and setup (it also runs `hwdr repo init` on
    head1) at the sandbox's addresses, in a folder the e2e tests never clean
    up; its test steps are not run, but for the agents' start."""

    nodes = NODES
    connectstring = CONNECTSTRING
    workdir = f"{PREFIX}{os.getpid()}"


class PhaseFailed(Exception):
    """A phase failed; the log says why."""


class Terminal:
    """The person's terminal (the original stdout); fds 1 and 2 go to the log."""

    def __init__(self, log_mode):
        log = open(LOG, log_mode, encoding="utf-8")
        self.out = os.fdopen(os.dup(1), "w", buffering=1)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        log.close()

    def say(self, line):
        """One line on the terminal, and in the log."""
        self.out.write(line + "\n")
        print(line, flush=True)

    @contextlib.contextmanager
    def phase(self, title):
        """Runs the body as phase `title`: `ok  <done.line or title> (N s)`
        when it ends, PhaseFailed (after logging why) when it raises."""
        started = time.monotonic()
        done = Done(title)
        print(f"\n==== {title}", flush=True)
        try:
            yield done
        except BaseException as e:
            traceback.print_exc()
            sys.stderr.flush()
            raise PhaseFailed(title) from e
        self.say(f"ok  {done.line} ({_seconds(time.monotonic() - started)})")


class Done:
    """What a phase's `ok` line says."""

    def __init__(self, line):
        self.line = line


def run(argv):
    """Runs a host program, its output into the log; raises if it fails."""
    print(f"$ {' '.join(argv)}", flush=True)
    subprocess.run(argv, cwd=TOP, stdin=subprocess.DEVNULL, check=True)


def inside(node, argv, timeout=300):
    """Runs argv on `node`, its output into the log; returns its stdout.
    Raises if it fails."""
    print(f"$ [{node.name}] {' '.join(argv)}", flush=True)
    rc, out, err = node.run(argv, check=False, timeout=timeout)
    print(out + err, end="", flush=True)
    if rc != 0:
        raise RuntimeError(f"{node.name}: {' '.join(argv)} exited {rc}")
    return out


def take_down():
    """Powers off and removes every sandbox whose `make sandbox` has ended;
    True if there was one."""
    found = bool(glob.glob(PREFIX + "*"))
    nspawn.cleanup_stale(prefix=PREFIX)
    if os.path.exists(INFO):
        os.unlink(INFO)
    return found


def down():
    """`make sandbox-down`: one line on the terminal, the rest in the log."""
    term = Terminal("a")
    try:
        term.say("sandbox removed" if take_down() else "no sandbox runs")
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()
        term.out.write(f"FAIL taking the sandbox down:\n{_tail()}\nThe whole log: {LOG}\n")
        sys.exit(1)


def up():
    """Every phase, then the summary; leaves the cluster running."""
    term = Terminal("w")
    # SIGTERM (a killed make) ends the run as Ctrl-C does: the failed phase, the teardown.
    signal.signal(signal.SIGTERM, nspawn._sigterm_to_interrupt)
    print(f"make sandbox, {time.strftime('%Y-%m-%d %H:%M:%S')}, in {TOP}", flush=True)
    try:
        cluster = build_and_boot(term)
    except (PhaseFailed, KeyboardInterrupt) as e:
        Sandbox.doClassCleanups()   # the cluster, if it booted
        phase = e.args[0] if isinstance(e, PhaseFailed) else "interrupted"
        term.out.write(f"FAIL {phase}; the last lines of {LOG}:\n{_tail()}\n"
                       f"Nothing is left running. The whole log: {LOG}\n")
        sys.exit(1)
    summary(term, cluster)
    # Keep it running: no teardown when this process ends, no class
    # cleanups, no exit hook.
    atexit.unregister(cluster.close)
    sys.stdout.flush()
    os._exit(0)


def build_and_boot(term):
    """The phases up to the drill; returns the running Cluster."""
    if glob.glob(PREFIX + "*"):
        with term.phase("the sandbox that ran is taken down"):
            take_down()
    with term.phase("packages"):
        run(["make", "deps"])
    with term.phase("build"):
        run(["make", "build"])
        run([os.environ.get("CARGO", "cargo"), "build", "--locked", "-p", "testkit",
             "--bin", "gen_datanodes"])
    with term.phase(".deb") as done:
        run(["make", "deb"])
        os.environ["HWDR_DEB"] = test_cluster.the_package()
        done.line = f".deb {os.path.relpath(os.environ['HWDR_DEB'], TOP)}"
    with term.phase("five nodes booted, the .deb installed on each"):
        Sandbox.setUpClass()
    cluster = Sandbox.cluster
    head1 = cluster["head1"]
    with term.phase(f"agents answer on {ADDRESSES}"):
        Sandbox("test_02_agents_start_everywhere").test_02_agents_start_everywhere()
    with term.phase("backup") as done:
        inside(head1, ["systemctl", "start", "hwdr-backup"])
        inside(head1, ["journalctl", "-u", "hwdr-backup", "--no-pager", "-o", "short-precise"])
        newest = json.loads(inside(head1, ["hwdr", "list", "--json"]))[0]
        if newest["status"] != "complete":
            raise RuntimeError(f"backup {newest['id']} is {newest['status']}: {newest['error']}")
        done.line = (f"backup {newest['id']} (systemctl start hwdr-backup on head1): "
                     f"{newest['status']}, {_size(newest['size_bytes'])}")
    with term.phase("drill") as done:
        simctl = os.path.join(TOP, "tests", "sim", "simctl")
        inside(head1, [simctl, "init", SPARE, "--data-nodes", "2:1,3:1", "--connectstring",
                       "127.0.0.1:1187", "--socket", f"{SPARE}/mysql.sock"])
        inside(head1, [simctl, "wipe", SPARE])
        head1.write("/etc/hwdr/hwdr.d/70-drill.toml", DRILL_TOML, 0o644)
        out = inside(head1, ["hwdr", "drill", "--latest"])
        done.line = out.strip().splitlines()[-1]   # "drill of backup <id>: passed"
    return cluster


def summary(term, cluster):
    """The listing, the timers, the shells; the shells also in INFO."""
    head1 = cluster["head1"]
    for argv in (["hwdr", "list"], ["systemctl", "list-timers", "hwdr-*", "--no-pager"]):
        term.say(f"\nhead1# {' '.join(argv)}")
        term.say(head1.run(argv, check=False)[1].rstrip())
    lines = [f"The sandbox runs, agents on {ADDRESSES}. A shell on a node (as root):"]
    for name, node in cluster.nodes.items():
        lines.append(f"  {name:6} nsenter -t {node.pid} -a bash")
    lines += [
        "Inside: systemctl status hwdr-agent, systemctl start hwdr-backup,",
        "journalctl -u hwdr-backup, hwdr list, hwdr restore <id> --plan, hwdr verify --latest --full.",
        "Tear it down: make sandbox-down",
    ]
    text = "\n".join(lines) + "\n"
    with open(INFO, "w", encoding="utf-8") as f:
        f.write(text)
    term.say("\n" + text + f"(this text is also in {INFO}; all that make sandbox ran printed is in {LOG})")


def _tail():
    sys.stdout.flush()
    sys.stderr.flush()
    with open(LOG, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-TAIL:]).rstrip()


def _seconds(s):
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def _size(n):
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"


if __name__ == "__main__":
    if sys.argv[1:] == ["down"]:
        down()
    elif sys.argv[1:] in ([], ["up"]):
        up()
    else:
        sys.exit("usage: sandbox.py [up|down]")
