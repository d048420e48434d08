#!/usr/bin/python3
"""`make sandbox`: a simulated five-node Hopsworks cluster on real systemd.

Boots the five systemd-nspawn containers of the end-to-end test
(tests/e2e/test_cluster.py: head1, head2, node1, node2, node3), installs the
built .deb in each, sets up the simulated RonDB and HopsFS, starts the agents,
runs a backup through `systemctl start hwdr-backup`, shows its journal and
`hwdr list`, runs a restore drill, and leaves the cluster running for you.
`make sandbox-down` (this script with `down`) tears it down.
"""

import atexit
import os
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))

import nspawn  # noqa: E402
import test_cluster  # noqa: E402

PREFIX = "/tmp/hwdr-sandbox-"
INFO = "/tmp/hwdr-sandbox.txt"


def down():
    """Powers off and removes every sandbox whose `make sandbox` has ended."""
    nspawn.cleanup_stale(prefix=PREFIX)
    if os.path.exists(INFO):
        os.unlink(INFO)
    print("sandbox removed")


def show(node, argv):
    """Runs `argv` on `node` and prints what it printed."""
    print(f"\n### {node.name}# {' '.join(argv)}", flush=True)
    rc, out, err = node.run(argv, check=False)
    print(out.rstrip())
    if err.strip():
        print(err.rstrip())
    return rc


def up():
    """Boots, installs, backs up, drills; leaves the cluster running."""
    down()
    workdir = f"{PREFIX}{os.getpid()}"
    real_cluster = test_cluster.Cluster

    def sandbox_cluster(*args, **kwargs):
        kwargs["workdir"] = workdir
        return real_cluster(*args, **kwargs)

    # The e2e test's own setup, in a folder the e2e tests do not clean up
    # (it also runs `hwdr repo init` on head1, once, before any backup).
    test_cluster.Cluster = sandbox_cluster
    sandbox = test_cluster.ClusterTest
    sandbox.setUpClass()
    cluster = sandbox.cluster
    step = sandbox("test_02_agents_start_everywhere")
    step.test_02_agents_start_everywhere()
    head1 = cluster.nodes["head1"]
    show(head1, ["systemctl", "start", "hwdr-backup"])
    show(head1, ["journalctl", "-u", "hwdr-backup", "--no-pager", "-o", "short-precise"])
    show(head1, ["hwdr", "list"])
    show(head1, ["systemctl", "list-timers", "hwdr-*", "--no-pager"])
    # A spare RonDB cluster for the drill: another simulated one on head1.
    simctl = os.path.join(TOP, "tests", "sim", "simctl")
    head1.run([simctl, "init", "/srv/spare", "--data-nodes", "2:1,3:1", "--connectstring",
               "127.0.0.1:1187", "--socket", "/srv/spare/mysql.sock"])
    head1.run([simctl, "wipe", "/srv/spare"])
    head1.write("/etc/hwdr/hwdr.d/70-drill.toml", (
        "[drill]\n"
        "connectstring = \"127.0.0.1:1187\"\n"
        "ndb_restore = \"/srv/spare/bin/ndb_restore\"\n"
        "mysql_client = \"/srv/spare/bin/mysql-client.sh\"\n"
        "check_command = [\"/srv/spare/bin/mysql-client.sh\", \"-e\", "
        "\"SELECT COUNT(*) FROM hopsworks.project\"]\n"), 0o644)
    show(head1, ["hwdr", "drill", "--latest"])

    # Keep it running: no teardown when this process ends.
    atexit.unregister(cluster.close)
    lines = ["The sandbox runs. A shell on a node (as root):"]
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
    print("\n" + text + f"(this text is also in {INFO})")
    # Skip the unittest class cleanups and the harness's exit hook.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[1:] == ["down"]:
        down()
    elif sys.argv[1:] in ([], ["up"]):
        up()
    else:
        sys.exit("usage: sandbox.py [up|down]")
