"""The whole story on real systemd: five nodes, the .deb, backups through the
units, a leader that goes away, a wiped cluster restored, a failure hook.

Five systemd-nspawn containers booted from overlays of `/` (see nspawn.py):

    head1  127.0.0.31  head                 the first leader
    head2  127.0.0.32  head                 leads when head1 is off
    node1  127.0.0.33  rondb (2) + hopsfs   RonDB data node 2, HopsFS data node
    node2  127.0.0.34  rondb (3) + hopsfs   RonDB data node 3, HopsFS data node
    node3  127.0.0.35  hopsfs               HopsFS data node

so RonDB has two data nodes and HopsFS replication 3 is real. Every node gets
the package with `dpkg -i`, the users `mysql`, `hdfs` and `hadoop`, the
simulators of tests/sim at the runbook's paths, the same
`/etc/hwdr/hwdr.toml` (runbook defaults except where a simulated cluster
must differ) plus a `hwdr.d/` drop-in naming the node, and the same token.
hwdr is then driven through systemd only: `systemctl start hwdr-agent`,
`systemctl start hwdr-backup`, `systemd-run ... hwdr restore`.

What the nodes share, host folders below the run's tmpfs (`<workdir>/shared`):

    sim/                 -> /srv/sim on every node: the simulated RonDB cluster
                            (`simctl init /srv/sim`: hwdr-sim.json, state/);
                            each node's /srv/hops/hwdr-sim.json links to it
    sim/ndb2/backups     -> data node 2's BackupDataDir: /srv/sim/ndb2/backups
                            where mgm-client.sh (on the leader) writes it,
                            /srv/hops/mysql-cluster/ndb/backups on node1
    sim/ndb3/backups     -> the same for data node 3 and node2
    hopsfs/node<i>/dn    -> /srv/hopsworks-data/hops/hopsdata/hdfs/dn on node<i>
                            (made by gen_datanodes), and /srv/hopsfs-sim/node<i>
                            on the head nodes, where the `hdfs` simulator (run by
                            the leader for the safe mode step) counts the blocks
    repo/                -> /mnt/hwdr on every node: the backup repository
                            (ClusterTest; the NFS mount of a real cluster)

`ClusterTestS3` runs the same steps with the repository in a bucket of a real
S3 server instead: a Garage on the host's loopback (garage.py), which every
node reaches (the containers share the host's network) with its key in a
0600 credentials file; nothing of the repository is bound into the nodes.
The test reads the repository on the host, from the folder or through
signed S3 requests (`FolderRepository`, `BucketRepository`), never through
hwdr.

Where the nodes differ from real ones: the host image's Docker-style
`policy-rc.d` is removed (else the package's postinst could start nothing) and
`timers.target` is not masked (nspawn.py masks it for the other tests); a drop-in
gives `hwdr-agent.service` and `hwdr-backup.service` write access to /srv/sim
(ProtectSystem=strict), where the simulators keep what a real cluster keeps in
its servers. Backup ids are the current minute, so each backup through
`hwdr-backup.service` waits for a minute no backup has used yet.

The steps are the test methods, run in order (unittest sorts them by name); a
step that fails skips the ones after it. On a failure the journals of every
failed unit of every node are printed; the containers and mounts are always
removed.

Run as root (see README.md). The package: `$HWDR_DEB`, else the newest
`target/debian/*.deb`, else built with `make deb`. `HWDR_GEN_DATANODES` names
another gen_datanodes than target/debug's (built if missing).
"""

import concurrent.futures
import glob
import grp
import hashlib
import json
import os
import pwd
import re
import secrets
import ssl
import stat
import subprocess
import sys
import time
import unittest
import urllib.request

from garage import Garage
from nspawn import DATANODE_UNIT, REPO, Cluster, built

SIMCTL = f"{REPO}/tests/sim/simctl"

# name, address, roles, RonDB data node ids (not test_journald.py's
# 127.0.0.11, test_hopsfs_restore.py's 127.0.0.21 nor the sandbox's
# 127.0.0.41-45, packaging/sandbox.py)
NODES = [
    ("head1", "127.0.0.31", ["head"], []),
    ("head2", "127.0.0.32", ["head"], []),
    ("node1", "127.0.0.33", ["rondb", "hopsfs"], [2]),
    ("node2", "127.0.0.34", ["rondb", "hopsfs"], [3]),
    ("node3", "127.0.0.35", ["hopsfs"], []),
]
NAMES = [n[0] for n in NODES]
HEADS = [n[0] for n in NODES if "head" in n[2]]
HOPSFS = [n[0] for n in NODES if "hopsfs" in n[2]]
DATA_NODE_HOST = {ids[0]: name for name, _, _, ids in NODES if ids}   # {2: "node1", 3: "node2"}
PORT = 7878

# Inside the containers.
SIM = "/srv/sim"                                      # simctl's ROOT
CONNECTSTRING = "127.0.0.31:1186"                     # simctl init and [rondb] connectstring
REPOSITORY = "/mnt/hwdr"                              # ClusterTest's repository folder
S3_CREDENTIALS = "/etc/hwdr/s3.credentials"           # ClusterTestS3's key
S3_PREFIX = "prod"                                    # ClusterTestS3's folder in the bucket
TOKEN_FILE = "/etc/hwdr/agent.token"                  # hwdr's default
TLS_CA_DIR = "/etc/hwdr/tls-ca"                       # `hwdr tls init`'s default
TLS_DIR = "/etc/hwdr/tls"                             # where a node's issued folder goes
DATA_DIR = "/srv/hopsworks-data/hops/hopsdata/hdfs/dn"   # [hopsfs] data_dirs default
NDB_BACKUP_DIR = "/srv/hops/mysql-cluster/ndb/backups"   # [rondb] backup_dir default
STAGING_DIR = f"{NDB_BACKUP_DIR}/hwdr-restore"          # [restore] staging_dir default
STATE_DIR = "/var/lib/hwdr"                               # [restore] state_dir default
HEAD_DN = "/srv/hopsfs-sim/{}"                        # a data node's folder on the head nodes
CLUSTER_DEFINITION = "/srv/hops/cluster-definition.yml"

# The simulators at the runbook's paths (hwdr's defaults); hwdrsim.py goes next to each.
RUNBOOK_PATHS = {
    "mgm-client.sh": "/srv/hops/mysql-cluster/ndb/scripts/mgm-client.sh",
    "mysql-client.sh": "/srv/hops/mysql-cluster/ndb/scripts/mysql-client.sh",
    "mysqlpump": "/srv/hops/mysql/bin/mysqlpump",
    "mysqldump": "/srv/hops/mysql/bin/mysqldump",
    "mysql": "/srv/hops/mysql/bin/mysql",
    "ndb_restore": "/srv/hops/mysql/bin/ndb_restore",
    "hdfs": "/srv/hops/hadoop/bin/hdfs",
    "reindex-epipe.sh": "/srv/hops/epipe/bin/reindex-epipe.sh",
    "kafka-restore.sh": "/srv/hops/kafka/bin/kafka-restore.sh",
}

# Users of the runbook: the host's ids if it has them (every container starts
# from the host's /etc/passwd, so they are the same everywhere), else these
# fixed ones, created in every container.
FALLBACK_IDS = {"hadoop": 2900, "mysql": 2901, "hdfs": 2902}

GEN_ARGS = ["--nodes", "3", "--replication", "3", "--pools", "2", "--blocks", "150",
            "--min-size", "0", "--max-size", "48K", "--seed", "31"]

MSG_STARTED = "79ee74680f1a43a0bc2d51664419b262"
MSG_COMPLETED = "13039cfd13dd4ff1a83ae38db9fcd47d"
MSG_FAILED = "7b2501e68c884f468ff45228b1f1201b"
MSG_UNIT_FAILED = "e2fcd5d96e3640afb842ee01439b2b41"
EXIT_NOT_LEADER = 7
UNITS = ("hwdr-agent.service", "hwdr-backup.service", "hwdr-backup.timer", "hwdr-failure@.service")
# The shell completions and man pages (docgen/, debian/rules).
DOCS = ("/usr/share/bash-completion/completions/hwdr", "/usr/share/zsh/vendor-completions/_hwdr",
        "/usr/share/fish/vendor_completions.d/hwdr.fish", "/usr/share/man/man1/hwdr.1.gz",
        "/usr/share/man/man1/hwdr-backup.1.gz", "/usr/share/man/man1/hwdr-config-check.1.gz")
RESTORE_STEPS = ("stage", "rondb-meta", "rondb-data", "rondb-indexes", "users", "hopsfs",
                 "safemode", "opensearch", "kafka")

# hwdr bugs this test works around (reported); False checks what README says.
# The restore makes the missing parents of [restore] staging_dir root:root 0750,
# so `mysql` cannot reach the staged files: the head nodes get the folder first.
BUG_STAGING_PARENTS = False
# Only the leader removes its staged RonDB copies after a full restore; the
# data nodes keep theirs ("After a full run the staged RonDB copies are removed").
BUG_STAGED_LEFT_ON_DATA_NODES = False

def config_toml(repository, cluster_nodes=NODES, connectstring=CONNECTSTRING):
    """The /etc/hwdr/hwdr.toml of every node: the runbook's defaults (programs,
    backup_dir, data_dirs, datanode_unit, token, state and staging folders,
    opensearch and kafka) except for short timeouts and the simulated
    management server; `repository` is the `[repository]` section,
    `cluster_nodes` the `[[nodes]]` (NODES' layout)."""
    nodes = ""
    for name, addr, roles, ids in cluster_nodes:
        nodes += (f'[[nodes]]\nname = "{name}"\naddress = "{addr}:{PORT}"\n'
                  f"roles = {json.dumps(roles)}\n")
        if ids:
            nodes += f"rondb_node_ids = {json.dumps(ids)}\n"
        nodes += "\n"
    return f"""\
# hwdr e2e (tests/e2e/test_cluster.py): the same file on every node
[cluster]
name = "e2e"

{nodes}{repository}
[rondb]
connectstring = "{connectstring}"

[config_backup]
paths = ["{CLUSTER_DEFINITION}"]

[backup]
ndb_backup_timeout = "60s"
dump_timeout = "60s"
node_timeout = "10s"

[agent]
request_timeout = "5s"

[restore]
safemode_poll = "1s"
safemode_timeout = "60s"
ndb_restore_timeout = "120s"
command_timeout = "120s"
"""


def log(msg):
    print(f"[e2e] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ host side

def the_package():
    """$HWDR_DEB, else the newest target/debian/*.deb, else `make deb`'s."""
    if os.environ.get("HWDR_DEB"):
        return os.environ["HWDR_DEB"]
    debs = glob.glob(f"{REPO}/target/debian/*.deb")
    if not debs:
        subprocess.run(["make", "deb"], cwd=REPO, check=True)
        debs = glob.glob(f"{REPO}/target/debian/*.deb")
    if not debs:
        raise RuntimeError("make deb made no target/debian/*.deb")
    deb = max(debs, key=os.path.getmtime)
    newer = [path for part in ("src", "systemd", "debian", "packaging", "Cargo.toml", "Cargo.lock")
             for path in _files(os.path.join(REPO, part))
             if os.path.getmtime(path) > os.path.getmtime(deb)]
    if newer:
        log(f"warning: {deb} is older than {len(newer)} source files (e.g. "
            f"{os.path.relpath(newer[0], REPO)}): run make deb to test them")
    return deb


def _files(path):
    """The files below `path`, without what dpkg-buildpackage writes into debian/."""
    if os.path.isfile(path):
        return [path]
    found = []
    for d, dirs, files in os.walk(path):
        if os.path.basename(path) == "debian":
            dirs[:] = [x for x in dirs if d != path or x not in ("hwdr", ".debhelper")]
            files = [f for f in files if f not in ("files", "debhelper-build-stamp")
                     and not f.endswith((".substvars", ".debhelper", ".debhelper.log"))]
        found += [os.path.join(d, f) for f in files]
    return found


def runbook_ids():
    """{"mysql": (uid, gid), "hdfs": (uid, gid), "hadoop": gid}."""
    def user(name):
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            return FALLBACK_IDS[name], FALLBACK_IDS[name]
    try:
        hadoop = grp.getgrnam("hadoop").gr_gid
    except KeyError:
        hadoop = FALLBACK_IDS["hadoop"]
    return {"mysql": user("mysql"), "hdfs": user("hdfs"), "hadoop": hadoop}


def snapshot(root):
    """What a restore must give back of the data folder at host path `root`:
    `current/VERSION`, every pool's `current/VERSION` and everything below
    `finalized/`, as (relative path, uid, gid, mode, size, sha256; size and
    hash None for a folder), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if not (rel == "current/VERSION" or rel.endswith("/current/VERSION")
                    or "/current/finalized/" in rel):
                continue
            st = os.lstat(full)
            size = digest = None
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    data = f.read()
                size, digest = len(data), hashlib.sha256(data).hexdigest()
            out.append((rel, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), size, digest))
    return sorted(out)


def block_files(snap):
    return [e for e in snap if e[4] is not None and os.path.basename(e[0]).startswith("blk_")
            and not e[0].endswith(".meta")]


def difference(before, after, limit=10):
    """The first entries that differ between two snapshots, for messages."""
    b, a = set(before), set(after)
    return (f"{len(b - a)} entries lost or changed, {len(a - b)} new or changed; "
            f"lost: {sorted(b - a)[:limit]}; new: {sorted(a - b)[:limit]}")


def values(entry, field):
    """The values of a journal field (journalctl -o json gives a list when
    an entry has the field more than once)."""
    value = entry.get(field)
    return [] if value is None else value if isinstance(value, list) else [value]


def empty_folder(path):
    """Removes everything in `path` (a bind-mounted folder stays)."""
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            subprocess.run(["rm", "-rf", "--one-file-system", full], check=True)
        else:
            os.unlink(full)


class FolderRepository:
    """The repository as a host folder below the run's tmpfs, bound at
    REPOSITORY into every node (a real cluster's NFS mount); the test reads
    its files on the host."""

    has_modes = True

    def __init__(self):
        self.root = None
        self.toml = f'[repository]\npath = "{REPOSITORY}"\n'

    def before_boot(self, cluster, shared):
        self.root = os.path.join(shared, "repo")
        os.makedirs(self.root, mode=0o755)
        for node in cluster.nodes.values():
            node.rw_binds.append(f"{self.root}:{REPOSITORY}")

    def install(self, node):
        pass

    def read(self, path):
        """The bytes of the file at `path` in the repository."""
        with open(os.path.join(self.root, path), "rb") as f:
            return f.read()

    def files(self, prefix):
        """The paths of every file below folder `prefix` (`backups/`), sorted."""
        top = os.path.join(self.root, prefix)
        return sorted(os.path.relpath(os.path.join(d, f), self.root)
                      for d, _, names in os.walk(top) for f in names)

    def mode(self, path):
        return stat.S_IMODE(os.stat(os.path.join(self.root, path)).st_mode)


class BucketRepository:
    """The repository in a bucket of `garage` (on the host's loopback, which
    the nodes share), below S3_PREFIX; every node has the key in a 0600
    credentials file. The test reads objects with signed S3 requests. The
    same paths as in a folder: object `<prefix>/<path>`."""

    has_modes = False   # objects have no file modes

    def __init__(self, garage):
        self.garage = garage
        self.toml = f"""\
[repository]
url = "s3://{garage.bucket}/{S3_PREFIX}"
endpoint = "{garage.endpoint}"
region = "{garage.region}"
path_style = true
credentials_file = "{S3_CREDENTIALS}"
"""

    def before_boot(self, cluster, shared):
        pass

    def install(self, node):
        node.write(S3_CREDENTIALS, self.garage.credentials(), mode=0o600)

    def read(self, path):
        return self.garage.get(f"{S3_PREFIX}/{path}")

    def files(self, prefix):
        return [key[len(S3_PREFIX) + 1:] for key in self.garage.list(f"{S3_PREFIX}/{prefix}")]


class ClusterTest(unittest.TestCase):
    """One five-node cluster; the test methods are its steps, in order. The
    repository is a folder every node mounts (`ClusterTestS3`: a bucket), and
    the agents take the token (`ClusterTestS3`: mutual TLS)."""

    auth = "token"
    # Where the cluster runs: NODES' names and roles at these addresses, the
    # simulated management server, the run's folder (None: nspawn.py's
    # /tmp/hwdr-e2e-<pid>). The sandbox (packaging/sandbox.py) has its own.
    nodes = NODES
    connectstring = CONNECTSTRING
    workdir = None

    # -------------------------------------------------------------- setup

    @classmethod
    def setUpClass(cls):
        cls.started = time.monotonic()
        cls.timings = {}
        cls.failed_step = None
        cls.deb = the_package()
        cls.gen = built("HWDR_GEN_DATANODES", "target/debug/gen_datanodes",
                        ["-p", "testkit", "--bin", "gen_datanodes"])
        cls.ids = runbook_ids()
        cls.token = secrets.token_hex(32)
        cls.last_backup_id = None
        log(f"package {cls.deb}; ids {cls.ids}")

        # Cleanups run last first: the timings after the cluster (and then
        # the repository's server) is gone.
        cls.addClassCleanup(cls._report_timings)
        t = time.monotonic()
        cls.repo = cls._repository()
        cls.timings["repository"] = time.monotonic() - t
        t = time.monotonic()
        cls.cluster = cls.enterClassContext(Cluster(
            [(name, addr) for name, addr, _, _ in cls.nodes], workdir=cls.workdir,
            ro_binds=[REPO], before_boot=cls._before_boot))
        cls.timings["boot"] = time.monotonic() - t
        try:
            t = time.monotonic()
            cls._simulated_rondb()
            cls._in_parallel(cls._install)
            if cls.auth == "mtls":
                cls._certificates()
            # Once, on one node, as an operator does after mounting the
            # repository: every hwdr command requires its marker.
            cls.node("head1").run(["hwdr", "repo", "init"])
            cls._hopsfs_metadata()
            cls.timings["install"] = time.monotonic() - t
        except BaseException:
            cls.cluster.dump_failed_journals()
            raise
        log(f"boot {cls.timings['boot']:.1f}s (slowest node "
            f"{max(cls.node(n).boot_seconds for n in NAMES):.1f}s), "
            f"install and configure {cls.timings['install']:.1f}s")

    @classmethod
    def _repository(cls):
        """Where the backups go, before the cluster boots."""
        return FolderRepository()

    @classmethod
    def _report_timings(cls):
        cls.timings["whole run, teardown included"] = time.monotonic() - cls.started
        log(f"{cls.__name__} timings: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in cls.timings.items()))

    @classmethod
    def node(cls, name):
        return cls.cluster[name]

    @classmethod
    def _before_boot(cls, cluster):
        """The shared host folders and the binds that differ per node."""
        cls.shared = shared = os.path.join(cluster.workdir, "shared")
        mysql_uid, mysql_gid = cls.ids["mysql"]
        for sub in ("sim", "sim/ndb2/backups", "sim/ndb3/backups", "hopsfs"):
            os.makedirs(os.path.join(shared, sub), mode=0o755)
        cls.repo.before_boot(cluster, shared)
        for data_node in DATA_NODE_HOST:
            backups = os.path.join(shared, f"sim/ndb{data_node}/backups")
            os.chown(backups, mysql_uid, mysql_gid)
            os.chmod(backups, 0o750)
        t = time.monotonic()
        hdfs_uid = cls.ids["hdfs"][0]
        out = subprocess.run([cls.gen, "--out", f"{shared}/hopsfs", *GEN_ARGS,
                              "--owner", f"{hdfs_uid}:{cls.ids['hadoop']}"],
                             check=True, capture_output=True, text=True).stdout
        cls.timings["generate"] = time.monotonic() - t
        # "nodes=3 blocks=150 unique_bytes=... replica_bytes=... seconds=..."
        cls.generated = dict(kv.split("=", 1) for kv in out.split())
        # One replica with another mode than the rest: modes come back too.
        dn2 = f"{shared}/hopsfs/node2/dn"
        cls.odd_block = block_files(snapshot(dn2))[0][0]
        os.chmod(os.path.join(dn2, cls.odd_block), 0o640)

        for node in cluster.nodes.values():
            # Timers start at boot, as on a real node (nspawn.py masks
            # timers.target; the host image's own timers stay masked).
            os.unlink(node.host_path("/etc/systemd/system/timers.target"))
            node.rw_binds.append(f"{shared}/sim:{SIM}")
        for data_node, name in DATA_NODE_HOST.items():
            cluster[name].rw_binds.append(f"{shared}/sim/ndb{data_node}/backups:{NDB_BACKUP_DIR}")
        for i, name in enumerate(HOPSFS, 1):
            dn = f"{shared}/hopsfs/node{i}/dn"
            cluster[name].rw_binds.append(f"{dn}:{DATA_DIR}")
            for head in HEADS:
                cluster[head].ro_binds.append(f"{dn}:{HEAD_DN.format(name)}")

    @classmethod
    def _in_parallel(cls, fn):
        """fn(name) for every node at once; the first exception is raised."""
        with concurrent.futures.ThreadPoolExecutor(len(NAMES)) as pool:
            for future in [pool.submit(fn, name) for name in NAMES]:
                future.result()

    @classmethod
    def _simulated_rondb(cls):
        """`simctl init` of the shared cluster (from head1, so its paths are
        the containers'): data nodes 2 and 3 with two LDM parts each."""
        head1 = cls.node("head1")
        head1.run([SIMCTL, "init", SIM, "--data-nodes", "2:2,3:2", "--rows", "300",
                   "--connectstring", cls.connectstring])
        path = os.path.join(cls.shared, "sim/hwdr-sim.json")
        with open(path) as f:
            sim = json.load(f)
        # mysql-client.sh runs the mysql of the runbook, not one next to it.
        sim["programs"] = {"mysql": RUNBOOK_PATHS["mysql"]}
        with open(path + ".tmp", "w") as f:
            json.dump(sim, f, indent=2, sort_keys=True)
        os.rename(path + ".tmp", path)

    @classmethod
    def _install(cls, name):
        """One node: users, the package, the simulators, the configuration."""
        node = cls.node(name)
        # The runbook's users, with the same ids on every node.
        mysql, hdfs, hadoop = cls.ids["mysql"], cls.ids["hdfs"], cls.ids["hadoop"]
        if node.run(["getent", "group", "hadoop"], check=False)[0] != 0:
            node.run(["groupadd", "--system", "--gid", str(hadoop), "hadoop"])
        if node.run(["id", "-u", "mysql"], check=False)[0] != 0:
            node.run(["groupadd", "--system", "--gid", str(mysql[1]), "mysql"])
            node.run(["useradd", "--system", "--uid", str(mysql[0]), "--gid", "mysql",
                      "--no-create-home", "mysql"])
        if node.run(["id", "-u", "hdfs"], check=False)[0] != 0:
            node.run(["groupadd", "--system", "--gid", str(hdfs[1]), "hdfs"])
            node.run(["useradd", "--system", "--uid", str(hdfs[0]), "--gid", "hdfs",
                      "--groups", "hadoop", "--no-create-home", "hdfs"])
        elif "hadoop" not in node.run(["id", "-nG", "hdfs"])[1].split():
            node.run(["usermod", "-aG", "hadoop", "hdfs"])

        # The package, on a node without hwdr's files (the host's, if it has
        # any, would show through the overlay). Its postinst starts units as on
        # a real node: the host image's Docker-style policy-rc.d (exit 101:
        # start nothing) goes.
        node.run(["rm", "-rf", "/etc/hwdr", STATE_DIR])
        if os.path.lexists(node.host_path("/usr/sbin/policy-rc.d")):
            os.unlink(node.host_path("/usr/sbin/policy-rc.d"))
        node.copy_in(cls.deb, "/root/hwdr.deb", 0o644)
        node.run(["dpkg", "-i", "/root/hwdr.deb"], timeout=300,
                 env={"DEBIAN_FRONTEND": "noninteractive"})

        # The simulators at the runbook's paths, each with hwdrsim.py, and
        # the shared hwdr-sim.json where they look for it.
        bin_dir = os.path.join(cls.shared, "sim/bin")
        for program, path in RUNBOOK_PATHS.items():
            node.copy_in(os.path.join(bin_dir, program), path, 0o755)
            node.copy_in(os.path.join(bin_dir, "hwdrsim.py"),
                         os.path.join(os.path.dirname(path), "hwdrsim.py"), 0o755)
        os.symlink(f"{SIM}/hwdr-sim.json", node.host_path("/srv/hops/hwdr-sim.json"))
        node.write(CLUSTER_DEFINITION, "name: e2e\nnodes: [head1, head2, node1, node2, node3]\n")
        if name in HEADS and BUG_STAGING_PARENTS:
            node.run(["install", "-d", "-o", "mysql", "-g", "mysql", "-m", "0750", NDB_BACKUP_DIR])

        # The configuration: one file, a drop-in naming the node, one token
        # (or, with mutual TLS, the node's certificate: _certificates).
        node.write("/etc/hwdr/hwdr.toml",
                   config_toml(cls.repo.toml, cls.nodes, cls.connectstring))
        cls.repo.install(node)
        node.write("/etc/hwdr/hwdr.d/50-node.toml", f'[node]\nname = "{name}"\n')
        if cls.auth == "token":
            node.write(TOKEN_FILE, cls.token + "\n", mode=0o600)

        # hwdr's units see the file system read-only but for hwdr's own paths
        # (ProtectSystem=strict); the simulators keep the state of the
        # simulated cluster, which a real one keeps in its servers, in /srv/sim.
        for unit in ("hwdr-agent.service", "hwdr-backup.service"):
            node.write(f"/etc/systemd/system/{unit}.d/50-e2e-simulators.conf",
                       "# hwdr e2e: the simulated cluster's state\n"
                       f"[Service]\nReadWritePaths={SIM}\n")
        # A HopsFS data node: the fake datanode.service (hwdr's default unit).
        if name in HOPSFS:
            node.write("/etc/systemd/system/datanode.service", DATANODE_UNIT)
        node.run(["systemctl", "daemon-reload"])
        if name in HOPSFS:
            node.run(["systemctl", "enable", "--now", "datanode.service"])

    @classmethod
    def _certificates(cls):
        """The README's two commands on head1 (`hwdr tls init`, `hwdr tls
        issue --all`), then each node's folder copied to its /etc/hwdr/tls/
        and the [tls] drop-in: `[agent] auth` becomes mtls, no token."""
        head1 = cls.node("head1")
        head1.run(["hwdr", "tls", "init"])
        head1.run(["hwdr", "tls", "issue", "--all"])
        for name in NAMES:
            node = cls.node(name)
            issued = head1.host_path(f"{TLS_CA_DIR}/issued/{name}")
            node.run(["install", "-d", "-m", "0700", TLS_DIR])
            for file, mode in (("node.pem", 0o644), ("node.key", 0o600), ("ca.pem", 0o644)):
                node.copy_in(f"{issued}/{file}", f"{TLS_DIR}/{file}", mode)
            node.write("/etc/hwdr/hwdr.d/30-tls.toml",
                       f'[tls]\ncertificate = "{TLS_DIR}/node.pem"\nkey = "{TLS_DIR}/node.key"\n'
                       f'ca = "{TLS_DIR}/ca.pem"\n')

    @classmethod
    def _hopsfs_metadata(cls):
        """The simulated metadata names exactly the generated blocks (so safe
        mode goes off once they are back), seen from the head nodes."""
        dirs = ",".join(HEAD_DN.format(n) for n in HOPSFS)
        out = cls.node("head1").run([SIMCTL, "blocks", SIM, "--data-dirs", dirs])[1]
        if out.strip() != f"{cls.generated['blocks']} blocks":
            raise RuntimeError(f"simctl blocks found other blocks than were generated: {out}")

    # ----------------------------------------------------- step machinery

    def run(self, result=None):
        """A failed step skips the steps after it; on a failure the failed
        units' journals of every node are printed."""
        result = result if result is not None else self.defaultTestResult()
        bad = len(result.failures) + len(result.errors)
        super().run(result)
        if len(result.failures) + len(result.errors) > bad:
            type(self).failed_step = type(self).failed_step or self._testMethodName
            self.cluster.dump_failed_journals()
        return result

    def setUp(self):
        if self.failed_step:
            self.skipTest(f"step {self.failed_step} failed")
        self.step_started = time.monotonic()

    def tearDown(self):
        log(f"{self._testMethodName}: {time.monotonic() - self.step_started:.1f}s")

    # ------------------------------------------------------------ helpers

    def unit(self, name, unit, *props):
        """`systemctl show` of `unit` on node `name`: {property: value}."""
        props = props or ("ActiveState", "SubState", "Result", "ExecMainStatus", "StatusText")
        out = self.node(name).run(["systemctl", "show", unit,
                                   *[f"--property={p}" for p in props]])[1]
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def entries(self, name, *matches):
        """Journal entries of node `name` matching journalctl arguments."""
        text = self.node(name).journal(*matches, "-o", "json")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_for_entries(self, name, *matches, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            found = self.entries(name, *matches)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def minute(self, name):
        """The current backup id (local minute, yymmddHHMM) on node `name`."""
        return self.node(name).run(["date", "+%y%m%d%H%M"])[1].strip()

    def wait_for_a_new_minute(self, name):
        """Backup ids are minutes: wait until no backup has used this one."""
        if self.last_backup_id is None:
            return
        t = time.monotonic()
        while self.minute(name) <= self.last_backup_id:
            time.sleep(0.5)
        self.timings["waiting for new minutes"] = (
            self.timings.get("waiting for new minutes", 0) + time.monotonic() - t)

    def start_backup(self, name, new_minute=True):
        """`systemctl start hwdr-backup` on node `name` (it returns when the
        oneshot service ended), first waiting for a `new_minute` if it is to
        take a backup: (returncode, output, backup id or None, the journal
        entries of this run)."""
        if new_minute:
            self.wait_for_a_new_minute(name)
        rc, out, err = self.node(name).run(["systemctl", "start", "hwdr-backup"],
                                           check=False, timeout=300)
        invocation = self.unit(name, "hwdr-backup", "InvocationID")["InvocationID"]
        entries = self.entries(name, "-u", "hwdr-backup", f"_SYSTEMD_INVOCATION_ID={invocation}")
        ids = {e["HWDR_BACKUP_ID"] for e in entries if "HWDR_BACKUP_ID" in e}
        self.assertLessEqual(len(ids), 1, ids)
        backup_id = ids.pop() if ids else None
        if backup_id:
            type(self).last_backup_id = backup_id
        return rc, out + err, backup_id, entries

    def plain_journal(self, name, *matches):
        return self.node(name).journal(*matches)

    def manifest(self, backup_id):
        return json.loads(self.repo.read(f"backups/{backup_id}/manifest.json"))

    def simctl(self, command, *args):
        """`simctl COMMAND /srv/sim ARGS` on a head node that runs."""
        head = "head1" if self.node("head1").pid is not None else "head2"
        return self.node(head).run([SIMCTL, command, SIM, *args])[1]

    def invocations(self, program, since=0):
        """The simulator runs of `program` logged in the shared state, from line `since`."""
        with open(os.path.join(self.shared, "sim/state/invocations.jsonl")) as f:
            runs = [json.loads(line) for line in f if line.strip()][since:]
        return [r for r in runs if r["program"] == program]

    def invocation_count(self):
        with open(os.path.join(self.shared, "sim/state/invocations.jsonl")) as f:
            return sum(1 for line in f if line.strip())

    def data_folders(self):
        return {n: snapshot(os.path.join(self.shared, f"hopsfs/node{i}/dn"))
                for i, n in enumerate(HOPSFS, 1)}

    def health(self, addr):
        """GET /v1/health of the agent at `addr`, from the host, as head1
        (the token, or head1's certificate): its answer with the details
        (`detail`) merged in."""
        handlers = [urllib.request.ProxyHandler({})]
        if self.auth == "token":
            url, headers = f"http://{addr}:{PORT}/v1/health", {"Authorization": f"Bearer {self.token}"}
        else:
            issued = self.node("head1").host_path(f"{TLS_CA_DIR}/issued/head1")
            context = ssl.create_default_context(cafile=f"{issued}/ca.pem")
            context.load_cert_chain(f"{issued}/node.pem", f"{issued}/node.key")
            handlers.append(urllib.request.HTTPSHandler(context=context))
            url, headers = f"https://{addr}:{PORT}/v1/health", {}
        opener = urllib.request.build_opener(*handlers)
        request = urllib.request.Request(url, headers=headers)
        with opener.open(request, timeout=10) as answer:
            health = json.loads(answer.read())
        return {**health, **health.pop("detail", {})}

    def assert_backup_steps_logged(self, name, backup_id, manifest):
        """`journalctl -u hwdr-backup HWDR_BACKUP_ID=<id>` on the leader has
        every step of the manifest (the leader's own and every node's share),
        named in HWDR_STEP, and the started and completed messages."""
        entries = self.entries(name, "-u", "hwdr-backup", f"HWDR_BACKUP_ID={backup_id}")
        plain = self.plain_journal(name, "-u", "hwdr-backup", f"HWDR_BACKUP_ID={backup_id}")
        self.assertTrue(entries, f"no journal entry of backup {backup_id} on {name}")
        # A node's share carries two HWDR_NODE values: the leader's and its own.
        logged = {(node, step) for e in entries for node in values(e, "HWDR_NODE")
                  for step in values(e, "HWDR_STEP")}
        expected = {(n["name"], s["name"]) for n in manifest["nodes"] for s in n["steps"]}
        # Blocks are uploaded only if the repository lacks some.
        upload = {"hopsfs-upload"} if manifest["hopsfs"]["new_blocks"] else set()
        self.assertTrue({s for _, s in expected} >= {
            "agents", "config", "users", "schemas", "ndb-backup", "rondb-parts", "hopsfs-list",
            "hopsfs-plan"} | upload, expected)
        self.assertEqual(expected - logged, set(),
                         f"steps of the manifest without a journal entry on {name}:\n{plain}")
        started = [e for e in entries if e.get("MESSAGE_ID") == MSG_STARTED]
        completed = [e for e in entries if e.get("MESSAGE_ID") == MSG_COMPLETED]
        self.assertEqual((len(started), len(completed)), (1, 1), plain)
        self.assertIn(f"backup {backup_id} started", started[0]["MESSAGE"])
        self.assertEqual({e.get("SYSLOG_IDENTIFIER") for e in entries}, {"hwdr"}, plain)

    def assert_manifest_complete(self, backup_id, leader):
        """The manifest says complete, names every node and step, and every
        file it lists is in the repository with its size and SHA-256."""
        manifest = self.manifest(backup_id)
        self.assertEqual(manifest["status"], "complete", json.dumps(manifest, indent=1))
        self.assertEqual(manifest["leader"], leader)
        self.assertEqual(manifest["cluster"], "e2e")
        self.assertIsNone(manifest.get("failed_step"))
        # The leader and every node with a share (the other head node has none).
        self.assertEqual(sorted(n["name"] for n in manifest["nodes"]),
                         sorted({leader, *DATA_NODE_HOST.values(), *HOPSFS}))
        for n in manifest["nodes"]:
            self.assertEqual(n["status"], "ok", n)
            self.assertTrue(n["steps"], n)
            for s in n["steps"]:
                self.assertEqual(s["status"], "ok", (n["name"], s))
        rondb = manifest["rondb"]
        self.assertEqual(sorted(rondb["data_node_ids"]), sorted(DATA_NODE_HOST))
        self.assertEqual({int(k): v for k, v in rondb["parts"].items()}, {2: 2, 3: 2})
        # START BACKUP's #Records: every row of every NDB table.
        content = json.loads(self.simctl("dump"))["databases"]
        rows = sum(len(t["rows"]) for db in content.values()
                   for t in db.get("tables", {}).values() if t.get("engine") == "ndbcluster")
        self.assertEqual(rondb["result"]["records"], rows, rondb)
        hopsfs = manifest["hopsfs"]
        self.assertEqual(sorted(hopsfs["nodes"]), sorted(HOPSFS))
        self.assertEqual(hopsfs["distinct_blocks"], int(self.generated["blocks"]), hopsfs)
        self.assertEqual(hopsfs["distinct_bytes"], int(self.generated["unique_bytes"]), hopsfs)
        self.assertEqual(hopsfs["replicas"], 3 * int(self.generated["blocks"]), hopsfs)
        self.assertEqual(hopsfs["bad_replicas"], [], hopsfs)
        files = [f for n in manifest["nodes"] for s in n["steps"] for f in s.get("files", [])]
        paths = {f["path"] for f in files}
        for wanted in ("rondb/users.sql", "rondb/schemas.sql", f"config{CLUSTER_DEFINITION}"):
            self.assertIn(wanted, paths)
        for node in HOPSFS:
            self.assertIn(f"hopsfs/{node}/inventory.tsv", paths)
        ndb = rondb["ndb_backup_id"]
        for data_node in DATA_NODE_HOST:
            for suffix in ("ctl", "Data", "log"):
                self.assertTrue(any(p.startswith(f"rondb/BACKUP-{ndb}/")
                                    and p.endswith(f".{data_node}.{suffix}") for p in paths),
                                f"no .{suffix} of data node {data_node} in {sorted(paths)}")
        for f in files:
            data = self.repo.read(f"backups/{backup_id}/{f['path']}")
            self.assertEqual((len(data), hashlib.sha256(data).hexdigest()),
                             (f["size"], f["sha256"]), f["path"])
        return manifest

    # -------------------------------------------------------------- steps

    def test_01_installed_everywhere(self):
        """The package is installed on every node with its units, completions
        and man pages; users have the same ids everywhere; `hwdr config check`
        passes on every node, each proving it can use the repository with a
        probe it removes."""
        for name in NAMES:
            node = self.node(name)
            status = node.run(["dpkg-query", "-W", "-f", "${Status}", "hwdr"])[1]
            self.assertEqual(status, "install ok installed", name)
            files = node.run(["dpkg-query", "-L", "hwdr"])[1].split()
            for path in ("/usr/bin/hwdr", *(f"/lib/systemd/system/{u}" for u in UNITS),
                         *DOCS):
                self.assertIn(path, files, f"{name}: the package lacks {path}")
            node.run(["systemctl", "cat", *UNITS])   # every unit exists
            # The package enabled the agent and the timer and started the timer;
            # the agent was skipped then (no configuration yet) and waits for its start.
            enabled = node.run(["systemctl", "is-enabled", "hwdr-agent.service",
                                "hwdr-backup.timer"], check=False)[1].split()
            self.assertEqual(enabled, ["enabled", "enabled"], name)
            self.assertEqual(self.unit(name, "hwdr-backup.timer")["ActiveState"], "active", name)
            agent = self.unit(name, "hwdr-agent", "ActiveState", "Result", "ConditionResult")
            self.assertEqual(agent["ActiveState"], "inactive", f"{name}: {agent}")
            # mysql, hdfs (in hadoop) with the same ids on every node.
            ids = node.run(["sh", "-c", "id -u mysql; id -g mysql; id -u hdfs; id -G hdfs"])[1]
            uid, gid, hdfs, groups = ids.splitlines()
            self.assertEqual((int(uid), int(gid), int(hdfs)),
                             (*self.ids["mysql"], self.ids["hdfs"][0]), name)
            self.assertIn(str(self.ids["hadoop"]), groups.split(), name)
            rc, out, err = node.run(["hwdr", "config", "check"], check=False)
            self.assertEqual(rc, 0, f"{name}: hwdr config check:\n{out}{err}")
            self.assertNotIn("FAIL", out, name)
            for probe in ("put", "get", "listing", "delete"):
                self.assertTrue(any(line.startswith("ok") and f"{probe} of the probe" in line
                                    for line in out.splitlines()), f"{name}: {probe}:\n{out}")
        self.assertEqual([p for p in self.repo.files("") if ".hwdr-check" in p], [])
        for name in HOPSFS:
            self.assertEqual(self.unit(name, "datanode.service")["ActiveState"], "active")

    def test_02_agents_start_everywhere(self):
        """`systemctl start hwdr-agent` on every node: a notify service that
        says it is idle, answering health with its name and roles."""
        self._in_parallel(lambda name: self.node(name).run(
            ["systemctl", "start", "hwdr-agent"], timeout=120))
        for name, addr, roles, _ in self.nodes:
            agent = self.unit(name, "hwdr-agent", "Type", "ActiveState", "SubState",
                              "StatusText", "NRestarts")
            self.assertEqual((agent["Type"], agent["ActiveState"], agent["SubState"]),
                             ("notify", "active", "running"), f"{name}: {agent}")
            self.assertEqual(agent["StatusText"], "idle", f"{name}: {agent}")
            health = self.health(addr)
            self.assertEqual((health["node"], health["cluster"], sorted(health["roles"])),
                             (name, "e2e", sorted(roles)), health)
            self.assertFalse(health["busy"], health)

    def test_02b_reload_rereads_the_certificates(self):
        """`systemctl reload hwdr-agent` (ExecReload=, SIGHUP) keeps the agent
        running; with mutual TLS it re-reads the certificate and says so."""
        before = self.unit("node1", "hwdr-agent", "MainPID")["MainPID"]
        self.node("node1").run(["systemctl", "reload", "hwdr-agent"], timeout=60)
        said = ("TLS files reloaded: certificate 'CN=node1'" if self.auth == "mtls"
                else "got SIGHUP: nothing to reload")
        deadline = time.monotonic() + 20
        while said not in self.plain_journal("node1", "-u", "hwdr-agent") and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertIn(said, self.plain_journal("node1", "-u", "hwdr-agent"))
        agent = self.unit("node1", "hwdr-agent", "MainPID", "ActiveState")
        self.assertEqual((agent["MainPID"], agent["ActiveState"]), (before, "active"), agent)

    def test_03_backup_on_head1(self):
        """`systemctl start hwdr-backup` on head1 takes a complete backup;
        its journal, filtered by HWDR_BACKUP_ID, shows every step; each
        node's agent logged its share in its own journal."""
        self.__class__.dump_before = {}
        t = time.monotonic()
        rc, out, backup_id, _ = self.start_backup("head1")
        self.timings["backup on head1"] = time.monotonic() - t
        plain = self.plain_journal("head1", "-u", "hwdr-backup")
        self.assertEqual(rc, 0, f"{out}\n{plain}")
        self.assertIsNotNone(backup_id, plain)
        type(self).first_backup = backup_id
        backup = self.unit("head1", "hwdr-backup")
        self.assertEqual((backup["Result"], backup["ExecMainStatus"]), ("success", "0"), backup)
        manifest = self.manifest(backup_id)
        self.assert_backup_steps_logged("head1", backup_id, manifest)
        for name in ("node1", "node2", "node3"):
            shares = self.entries(name, "-u", "hwdr-agent", f"HWDR_BACKUP_ID={backup_id}")
            self.assertTrue(shares, f"{name}'s agent logged nothing of backup {backup_id}")
            steps = {s for e in shares for s in values(e, "HWDR_STEP")}
            wanted = {"hopsfs-list", "hopsfs-upload"} | (
                {"rondb-parts"} if name in DATA_NODE_HOST.values() else set())
            self.assertTrue(steps >= wanted, f"{name}: {steps}")
            self.assertEqual({n for e in shares for n in values(e, "HWDR_NODE")}, {name})
        # The agents are idle again.
        for name in NAMES:
            self.assertEqual(self.unit(name, "hwdr-agent")["StatusText"], "idle", name)

    def test_04_manifest_is_complete(self):
        """Every node and step complete; both data nodes' parts, users,
        schemas, the cluster definition and every node's inventory are in,
        each file with its size and SHA-256; every block once; no lease
        left in the repository."""
        manifest = self.assert_manifest_complete(self.first_backup, "head1")
        # `hwdr list` on another node (the repository is shared) lists it as complete.
        listed = json.loads(self.node("node3").run(["hwdr", "list", "--json"])[1])
        self.assertEqual([(r["id"], r["status"]) for r in listed],
                         [(self.first_backup, "complete")], listed)
        stored = [p for p in self.repo.files("blocks/")
                  if os.path.basename(p).startswith("blk_") and not p.endswith(".meta")]
        self.assertEqual(len(stored), int(self.generated["blocks"]))
        # The backup's lease went with it.
        self.assertEqual(self.repo.files("locks/"), [])
        # The dump holds password hashes: only root reads it. Objects have
        # no modes (the bucket's policy guards them): a folder only.
        if self.repo.has_modes:
            users = self.repo.mode(f"backups/{self.first_backup}/rondb/users.sql")
            self.assertEqual(users, 0o600)
        self.assertEqual(str(manifest["backup_id"]), self.first_backup)

    def test_05_timer_is_listed(self):
        """`systemctl list-timers` shows hwdr-backup.timer on every node
        (timers fire everywhere; only the leader backs up)."""
        for name in NAMES:
            out = self.node(name).run(["systemctl", "list-timers", "--no-pager"])[1]
            self.assertIn("hwdr-backup.timer", out, f"{name}:\n{out}")

    def test_06_only_the_leader_backs_up(self):
        """While head1 runs, hwdr-backup on head2 and on a data node exits
        with 7 (not the leader): no backup, and neither a failed unit nor a
        failure hook."""
        for name in ("head2", "node1"):
            before = self.entries(name, f"MESSAGE_ID={MSG_UNIT_FAILED}")
            repo_before = self.repo.files("backups/")
            rc, out, backup_id, entries = self.start_backup(name, new_minute=False)
            self.assertIsNone(backup_id)
            plain = "\n".join(e.get("MESSAGE", "") for e in entries)
            unit = self.unit(name, "hwdr-backup")
            self.assertEqual(unit["ExecMainStatus"], str(EXIT_NOT_LEADER),
                             f"{name}: {unit}\n{plain}")
            self.assertEqual((rc, unit["Result"], unit["ActiveState"]), (0, "success", "inactive"),
                             f"{name}: exit {EXIT_NOT_LEADER} must not fail the unit: "
                             f"{unit}\n{out}")
            leads = "head1" if name == "head2" else "a head node"
            self.assertTrue(any(m.startswith("not the leader") and leads in m
                                for m in (e.get("MESSAGE", "") for e in entries)), plain)
            self.assertEqual(self.repo.files("backups/"), repo_before)
            time.sleep(1)
            self.assertEqual(self.entries(name, f"MESSAGE_ID={MSG_UNIT_FAILED}"), before)

    def test_07_head2_leads_when_head1_is_off(self):
        """head1 powered off: `systemctl start hwdr-backup` on head2 leads
        and completes; its manifest names head2; the content is the same
        (nothing changed in between)."""
        t = time.monotonic()
        self.node("head1").stop()
        self.timings["head1 power off"] = time.monotonic() - t
        self.wait_for_a_new_minute("head2")
        t = time.monotonic()
        rc, out, backup_id, entries = self.start_backup("head2", new_minute=False)
        self.timings["backup on head2"] = time.monotonic() - t
        plain = self.plain_journal("head2", "-u", "hwdr-backup")
        self.assertEqual(rc, 0, f"{out}\n{plain}")
        self.assertIsNotNone(backup_id, plain)
        self.assertNotEqual(backup_id, self.first_backup)
        type(self).backup_id = backup_id
        # It found head1 silent before leading.
        self.assertTrue(any("head1" in e.get("MESSAGE", "") and "does not answer" in e["MESSAGE"]
                            for e in entries), plain)
        manifest = self.assert_manifest_complete(backup_id, "head2")
        self.assert_backup_steps_logged("head2", backup_id, manifest)
        # The blocks were stored by the first backup: none is copied again.
        self.assertEqual(manifest["hopsfs"]["new_blocks"], 0, manifest["hopsfs"])
        # Each data node's agent keeps its listing cache in its StateDirectory
        # (writable under the unit's sandbox) and logs what it took from it.
        for name in HOPSFS:
            caches = self.node(name).run(["find", f"{STATE_DIR}/hopsfs-list", "-name", "*.tsv"])[1]
            self.assertTrue(caches.split(), f"{name}: no listing cache")
            messages = [e.get("MESSAGE", "") for e in self.entries(name, "-u", "hwdr-agent")]
            self.assertEqual(sum("taken from the listing cache" in m for m in messages), 2, name)
            self.assertFalse([m for m in messages if "listing cache" in m and "could not" in m], name)
        # What the restore must give back.
        type(self).rondb_before = self.simctl("dump")
        type(self).folders_before = self.data_folders()
        for name, snap in self.folders_before.items():
            self.assertEqual(len(block_files(snap)), int(self.generated["blocks"]), name)

    def test_08_files_owned_as_the_runbook_says(self):
        """The runbook's programs ran as mysql (RonDB) and their files are
        mysql's; the HopsFS data stays hdfs:hadoop; the local RonDB backups
        are where each data node's agent found them."""
        mysql_uid, mysql_gid = self.ids["mysql"]
        for program in ("mgm-client.sh", "mysqlpump", "mysqldump", "mysql"):
            runs = self.invocations(program)
            self.assertTrue(runs, f"{program} never ran")
            for r in runs:
                self.assertEqual((r["uid"], r["euid"], r["gid"]),
                                 (mysql_uid, mysql_uid, mysql_gid), f"{program}: {r}")
        for data_node, host in DATA_NODE_HOST.items():
            backups = os.path.join(self.shared, f"sim/ndb{data_node}/backups")
            files = [os.path.join(d, f) for d, dirs, fs in os.walk(backups) for f in fs + dirs]
            self.assertTrue(files, f"no local backup of data node {data_node}")
            for path in files:
                st = os.lstat(path)
                self.assertEqual((st.st_uid, st.st_gid), (mysql_uid, mysql_gid), path)
            # Seen by the agent on its host at the runbook's BackupDataDir.
            listing = self.node(host).run(["find", f"{NDB_BACKUP_DIR}/BACKUP", "-name",
                                           f"*.{data_node}.ctl"])[1]
            self.assertTrue(listing.strip(), f"{host}: {NDB_BACKUP_DIR} holds no .ctl")
        hdfs_uid, hadoop = self.ids["hdfs"][0], self.ids["hadoop"]
        for name, snap in self.folders_before.items():
            owners = {(uid, gid) for _, uid, gid, *_ in snap}
            self.assertEqual(owners, {(hdfs_uid, hadoop)}, name)
        for name in HOPSFS:
            user = self.node(name).run(["ps", "-o", "user=", "-C", "sleep"])[1].split()
            self.assertIn("hdfs", user, f"{name}: the data node runs as {user}")

    def test_09_wiped_cluster_is_restored(self):
        """head1 is powered on again; every node is wiped (an empty RonDB,
        empty HopsFS data folders, no local RonDB backups or restore state);
        `hwdr restore` on head1, as a transient unit, gives back the RonDB
        content and every data folder (paths, owners, modes, bytes)."""
        t = time.monotonic()
        self.node("head1").boot()
        self.timings["head1 boot again"] = time.monotonic() - t
        # The agent (enabled) and the timer are back by themselves.
        agent = self.unit("head1", "hwdr-agent")
        self.assertEqual((agent["ActiveState"], agent["StatusText"]), ("active", "idle"), agent)
        self.assertIn("hwdr-backup.timer",
                      self.node("head1").run(["systemctl", "list-timers", "--no-pager"])[1])

        # Wipe: a freshly deployed, empty cluster.
        self.simctl("wipe")
        for i, _ in enumerate(HOPSFS, 1):
            empty_folder(os.path.join(self.shared, f"hopsfs/node{i}/dn"))
        for data_node in DATA_NODE_HOST:
            empty_folder(os.path.join(self.shared, f"sim/ndb{data_node}/backups"))
        for name in HEADS:
            self.node(name).run(["rm", "-rf", STAGING_DIR, f"{STATE_DIR}/restore"])
        self.assertNotEqual(self.simctl("dump"), self.rondb_before)
        self.assertEqual(self.data_folders(), {n: [] for n in HOPSFS})
        since = self.invocation_count()

        t = time.monotonic()
        rc, out, err = self.node("head1").run(
            ["systemd-run", "--wait", "--collect", "--unit=hwdr-restore",
             "--property=Type=oneshot", "/usr/bin/hwdr", "restore", self.backup_id],
            check=False, timeout=600)
        self.timings["restore"] = time.monotonic() - t
        plain = self.plain_journal("head1", "-u", "hwdr-restore")
        self.assertEqual(rc, 0, f"{out}{err}\n{plain}")
        self.assertIn(f"restore of backup {self.backup_id} finished", plain)

        # Everything is back.
        rondb = self.simctl("dump")
        self.assertEqual(rondb, self.rondb_before, "RonDB content differs from the backup")
        after = self.data_folders()
        for name in HOPSFS:
            self.assertEqual(after[name], self.folders_before[name],
                             f"{name}: {difference(self.folders_before[name], after[name])}")
        odd = os.lstat(os.path.join(self.shared, "hopsfs/node2/dn", self.odd_block))
        self.assertEqual(stat.S_IMODE(odd.st_mode), 0o640)
        self.assertNotEqual(self.simctl("topics").strip(), "{}")
        self.assertEqual(self.simctl("reindexes").strip(), "1")

        # Every step done, on the nodes the runbook says, as its users.
        status = self.node("head1").run(["hwdr", "restore", self.backup_id, "--status"])[1]
        for step in RESTORE_STEPS:
            self.assertTrue(any(l.startswith(step) and "done" in l for l in status.splitlines()),
                            f"{step}:\n{status}")
        mysql_uid, hdfs_uid = self.ids["mysql"][0], self.ids["hdfs"][0]
        ndb = self.invocations("ndb_restore", since)
        self.assertEqual(len(ndb), 4, ndb)    # -m, -r for 2 and 3, --rebuild-indexes
        self.assertTrue(all(r["uid"] == mysql_uid for r in ndb), ndb)
        client = self.invocations("mysql-client.sh", since)
        self.assertTrue(client and all(r["uid"] == mysql_uid for r in client), client)
        hdfs_runs = self.invocations("hdfs", since)
        self.assertTrue(hdfs_runs and all(r["uid"] == hdfs_uid for r in hdfs_runs), hdfs_runs)
        self.assertTrue(all(r["uid"] == 0 for r in self.invocations("kafka-restore.sh", since)))
        for data_node, host in DATA_NODE_HOST.items():
            shares = self.entries(host, "-u", "hwdr-agent", f"HWDR_BACKUP_ID={self.backup_id}",
                                  "HWDR_STEP=rondb-data")
            self.assertTrue(shares, f"{host} did not restore data node {data_node}")
        for name in HOPSFS:
            shares = self.entries(name, "-u", "hwdr-agent", f"HWDR_BACKUP_ID={self.backup_id}",
                                  "HWDR_STEP=hopsfs")
            self.assertTrue(any("started datanode.service" in e.get("MESSAGE", "") for e in shares),
                            f"{name}: " + "\n".join(e.get("MESSAGE", "") for e in shares))
            self.assertEqual(self.unit(name, "datanode.service")["ActiveState"], "active")
        # The staged RonDB copies are gone after a full run.
        for host in ("head1", *DATA_NODE_HOST.values()):
            left = self.node(host).run(["find", STAGING_DIR, "-type", "f"], check=False)[1]
            if host != "head1" and BUG_STAGED_LEFT_ON_DATA_NODES:
                log(f"known hwdr bug: staged files left on {host}: {len(left.split())}")
                continue
            self.assertEqual(left.strip(), "", f"{host}: staged files left")

    def test_10_failed_backup_runs_the_failure_hook(self):
        """node2's agent stopped: hwdr-backup on head1 fails (the unit
        fails), logs the failure naming node2, and the OnFailure= hook
        (hwdr-failure@.service) logs its entry for alerting."""
        self.node("node2").run(["systemctl", "stop", "hwdr-agent"])
        try:
            rc, out, backup_id, entries = self.start_backup("head1")
        finally:
            self.node("node2").run(["systemctl", "start", "hwdr-agent"])
        plain = self.plain_journal("head1", "-u", "hwdr-backup", f"HWDR_BACKUP_ID={backup_id}")
        self.assertNotEqual(rc, 0, plain)
        unit = self.unit("head1", "hwdr-backup")
        self.assertEqual((unit["ActiveState"], unit["Result"]), ("failed", "exit-code"), unit)
        self.assertIn(unit["ExecMainStatus"], ("1", "6"), unit)
        failed = [e for e in entries if e.get("MESSAGE_ID") == MSG_FAILED]
        self.assertEqual(len(failed), 1, plain)
        self.assertIn("node2", failed[0]["MESSAGE"])
        manifest = self.manifest(backup_id)
        self.assertIn(manifest["status"], ("failed", "partial"), manifest)
        hook = self.wait_for_entries("head1", f"MESSAGE_ID={MSG_UNIT_FAILED}",
                                     "HWDR_FAILED_UNIT=hwdr-backup.service")
        self.assertEqual(len(hook), 1, self.plain_journal("head1", "-u", "hwdr-failure@*"))
        self.assertEqual(hook[0].get("_SYSTEMD_UNIT"), "hwdr-failure@hwdr-backup.service.service",
                         hook[0])
        self.assertIn("hwdr-backup.service failed", hook[0]["MESSAGE"])
        # The hook itself succeeded; the backup unit stays failed for the operator.
        hook_unit = self.unit("head1", "hwdr-failure@hwdr-backup.service.service")
        self.assertEqual(hook_unit["Result"], "success", hook_unit)
        self.node("head1").run(["systemctl", "reset-failed", "hwdr-backup"])


    def test_11_verify_and_metrics(self):
        """`systemctl start hwdr-verify` (the weekly timer's service): the
        leader re-reads the newest complete backup and passes, and writes the
        Prometheus text file; a node that is not the leader exits 7, which
        the unit counts as success."""
        head1 = self.node("head1")
        # What node_exporter's package makes; the units may write there.
        head1.run(["install", "-d", "-m", "0755", "/var/lib/prometheus/node-exporter"])
        rc, out, err = head1.run(["systemctl", "start", "hwdr-verify"], check=False)
        plain = self.plain_journal("head1", "-u", "hwdr-verify")
        self.assertEqual(rc, 0, plain)
        unit = self.unit("head1", "hwdr-verify")
        self.assertEqual((unit["Result"], unit["ExecMainStatus"]), ("success", "0"), f"{unit}\n{plain}")
        self.assertIn("ok", plain)
        prom = head1.read("/var/lib/prometheus/node-exporter/hwdr.prom")
        self.assertIn('hwdr_last_verify_ok{cluster="e2e"} 1', prom)
        success = [l for l in prom.splitlines() if l.startswith("hwdr_last_success_timestamp_seconds{")]
        self.assertTrue(success and float(success[0].split()[-1]) > 1.7e9, prom)
        self.assertIn('hwdr_backups{cluster="e2e",status="complete"}', prom)
        # head2 is not the leader while head1 runs.
        rc, out, err = self.node("head2").run(["systemctl", "start", "hwdr-verify"], check=False)
        unit = self.unit("head2", "hwdr-verify")
        self.assertEqual((rc, unit["Result"], unit["ExecMainStatus"]), (0, "success", "7"), unit)

    def test_12_status_text_shows_upload_progress(self):
        """While a backup runs, `systemctl show -p StatusText hwdr-backup`
        on the leader reports how far the upload got ("uploading blocks:
        41% (…)"): the leader's STATUS=, from what the agents report. New
        blocks on every HopsFS node give the upload work; the unit's state
        is polled inside head1 (every 20 ms) with its status text in the
        same `systemctl show`. Then the backup succeeds."""
        if type(self) is not ClusterTest:
            self.skipTest("ClusterTest shows it; the story is the same on S3")
        added = 2000
        subprocess.run([self.gen, "--out", f"{self.shared}/hopsfs", *GEN_ARGS,
                        "--owner", f"{self.ids['hdfs'][0]}:{self.ids['hadoop']}",
                        "--add", str(added)], check=True, capture_output=True)
        # The simulated metadata names the new blocks too.
        dirs = ",".join(HEAD_DN.format(n) for n in HOPSFS)
        self.node("head1").run([SIMCTL, "blocks", SIM, "--data-dirs", dirs])
        self.wait_for_a_new_minute("head1")
        head1 = self.node("head1")
        head1.run(["systemctl", "start", "--no-block", "hwdr-backup"])
        # Until the unit left "activating" (after it was seen there), or 5 minutes.
        poll = ("seen=; end=$(($(date +%s) + 300)); "
                "while [ $(date +%s) -lt $end ]; do "
                "s=$(systemctl show -p ActiveState -p StatusText hwdr-backup | tr '\\n' ' '); "
                "echo \"$s\"; "
                "case $s in *ActiveState=activating*) seen=1 ;; *) [ -n \"$seen\" ] && break ;; esac; "
                "sleep 0.02; done")
        lines = head1.run(["sh", "-c", poll], timeout=360)[1].splitlines()
        running = [l.split("StatusText=", 1)[1].strip() for l in lines
                   if "ActiveState=activating" in l and "StatusText=" in l]
        shown = [t for t in running
                 if re.match(r"uploading blocks: \d+% \(.* of .*, \d+ of \d+ blocks", t)]
        plain = self.plain_journal("head1", "-u", "hwdr-backup")
        self.assertTrue(shown, f"no upload progress in StatusText while the backup ran: "
                               f"{sorted(set(running))}\n{plain}")
        shares = sorted({int(re.match(r"uploading blocks: (\d+)%", t).group(1)) for t in shown})
        log(f"StatusText during the upload showed {shares}% ({len(shown)} polls), e.g. {shown[0]!r}")
        backup = self.unit("head1", "hwdr-backup")
        self.assertEqual((backup["Result"], backup["ExecMainStatus"]), ("success", "0"),
                         f"{backup}\n{plain}")
        invocation = self.unit("head1", "hwdr-backup", "InvocationID")["InvocationID"]
        entries = self.entries("head1", "-u", "hwdr-backup", f"_SYSTEMD_INVOCATION_ID={invocation}")
        completed = [e for e in entries if e.get("MESSAGE_ID") == MSG_COMPLETED]
        self.assertEqual(len(completed), 1, plain)
        type(self).last_backup_id = completed[0]["HWDR_BACKUP_ID"]
        # The exact size is a field of the journal entry; the message reads in units.
        size = int(completed[0]["HWDR_SIZE_BYTES"])
        manifest = self.manifest(completed[0]["HWDR_BACKUP_ID"])
        self.assertGreaterEqual(manifest["hopsfs"]["new_blocks"], added, manifest["hopsfs"])
        self.assertGreater(size, manifest["hopsfs"]["distinct_bytes"], completed[0])
        self.assertRegex(completed[0]["MESSAGE"], r"complete: .*, \d+(\.\d)? [KMG]iB$")


class ClusterTestS3(ClusterTest):
    """The same story with the repository in a bucket of a real S3 server
    (Garage on the host's loopback): every node stores and fetches its own
    share there directly; and the leader and the agents speak mutual TLS,
    with certificates made by `hwdr tls init` and `hwdr tls issue --all`."""

    auth = "mtls"

    @classmethod
    def _repository(cls):
        return BucketRepository(cls.enterClassContext(Garage()))


if __name__ == "__main__":
    unittest.main()
