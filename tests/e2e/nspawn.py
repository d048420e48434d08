"""Real systemd in systemd-nspawn containers, one per simulated node.

Each node boots the host's own image: an overlay mount with lower layer `/` and
upper/work layers on a tmpfs, so a container starts in seconds, writes nothing
to the host's disk and vanishes when the tmpfs is unmounted. Containers share
the host network (no `--private-network`); give every node its own 127.0.0.x
address for the services it runs. Standard library only; run as root.

Layout of one run (WORK_PREFIX + the test process's pid, a tmpfs):

    /tmp/hwdr-e2e-<pid>/owner                 "<pid> <start time>" of the run
    /tmp/hwdr-e2e-<pid>/<node>/{upper,work}   the node's overlay layers
    /tmp/hwdr-e2e-<pid>/<node>/root           the node's root (overlay mount)
    /tmp/hwdr-e2e-<pid>/<node>/console.log    systemd-nspawn's console output
    /tmp/hwdr-e2e-<pid>/<node>/nspawn.pid     pid of systemd-nspawn
    /tmp/hwdr-e2e-<pid>/cgroups               the run's cgroup folders, one per hierarchy

Every node runs in a cgroup of its own, `<the test's cgroup>/hwdr-e2e-<pid>/<node>`
in each hierarchy systemd-nspawn uses: with `--keep-unit` systemd-nspawn puts the
container below the cgroup it was started in (`payload/`), so containers started
from one process would share one cgroup tree: their systemds create and remove
the same unit cgroups, and units fail at random (`status=219/CGROUP`) when several
nodes boot at once.

`Cluster` tears everything down when it exits, also on exceptions, Ctrl-C and
SIGTERM (and at interpreter exit). A run killed with SIGKILL leaves its
directory behind; `cleanup_stale()`, called by every `Cluster`, stops and
unmounts the leftovers of runs whose process is gone.
"""

import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

WORK_PREFIX = "/tmp/hwdr-e2e-"

# Units of the host image a test node does not need: services (postgresql, ...)
# and timers that slow the boot or do work, gettys (no console), the first-boot
# wizard (it would prompt on the console), and networking and time sync, which
# would reconfigure the host since the containers share its network.
MASKED_UNITS = (
    "postgresql.service", "postgresql@.service", "cron.service", "ssh.service",
    "e2scrub_reap.service", "systemd-pstore.service", "systemd-firstboot.service",
    "getty.target", "getty@.service", "console-getty.service",
    "container-getty@.service", "serial-getty@.service",
    "systemd-networkd.service", "systemd-networkd.socket",
    "systemd-networkd-wait-online.service", "systemd-network-generator.service",
    "systemd-resolved.service", "systemd-timesyncd.service", "networking.service",
    "timers.target", "apt-daily.timer", "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer", "e2scrub_all.timer", "fstrim.timer", "man-db.timer",
)

# The environment of commands run inside (nothing leaks from the host's).
INSIDE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "USER": "root",
    "TERM": "dumb",
}

BOOT_TIMEOUT = 90
STOP_TIMEOUT = 30
# hwdr's agent port: a node address that already answers on it belongs to
# another cluster on this host (another run of these tests, or whatever else
# took the address; the sandbox of `make sandbox` has addresses of its own).
AGENT_PORT = 7878


def log(msg):
    print(f"[nspawn] {msg}", file=sys.stderr, flush=True)


class CommandError(Exception):
    """A command inside a node exited with a non-zero status."""

    def __init__(self, node, argv, rc, out, err):
        super().__init__(f"{node}: {argv} exited {rc}\nstdout:\n{out}\nstderr:\n{err}")
        self.rc, self.stdout, self.stderr = rc, out, err


class Node:
    """One container: `name` is its hostname, `addr` (127.0.0.x) its address.

    `ro_binds` / `rw_binds` are systemd-nspawn bind specs `SRC[:DST]` (DST
    defaults to SRC), mounted read-only / read-write. `cgroups`: cgroup folders
    (one per hierarchy) systemd-nspawn is started in, made if missing; none:
    the caller's own."""

    def __init__(self, name, addr, workdir, ro_binds=(), rw_binds=(), hosts=None, cgroups=()):
        self.name, self.addr = name, addr
        self.dir = os.path.join(workdir, name)
        self.root = os.path.join(self.dir, "root")
        self.machine = f"{os.path.basename(workdir)}-{name}"  # unique on the host
        self.ro_binds, self.rw_binds = list(ro_binds), list(rw_binds)
        self.hosts = hosts or {name: addr}
        self.cgroups = list(cgroups)
        self.proc = None      # the systemd-nspawn process
        self.pid = None       # the container's systemd, as seen from the host
        self.boot_seconds = None
        self._started = None
        self._stopping = False

    # ------------------------------------------------------------ lifecycle

    def prepare(self):
        """Mounts the overlay and writes the node's identity into its upper layer."""
        for sub in ("upper", "work", "root"):
            os.makedirs(os.path.join(self.dir, sub))
        _check(["mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir=/,upperdir={self.dir}/upper,workdir={self.dir}/work", self.root])
        self.write("/etc/hostname", self.name + "\n")
        self.write("/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
                   + "".join(f"{a}\t{n}\n" for n, a in self.hosts.items()))
        # No machine id: systemd makes a fresh one, so every node differs
        # (and it would copy D-Bus's, i.e. the host's, if that were left).
        for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
            if os.path.lexists(self.host_path(path)):
                os.unlink(self.host_path(path))
        units = self.host_path("/etc/systemd/system")
        for unit in MASKED_UNITS:
            link = os.path.join(units, unit)
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink("/dev/null", link)

    def start(self):
        """Starts systemd-nspawn in the background (returns at once)."""
        argv = ["systemd-nspawn", "--register=no", "--keep-unit", "--boot",
                "--directory", self.root, "--machine", self.machine,
                "--hostname", self.name, "--console=read-only"]
        argv += [f"--bind-ro={b}" for b in self.ro_binds]
        argv += [f"--bind={b}" for b in self.rw_binds]
        if self.cgroups:
            # The shell moves itself into the node's cgroups, then becomes systemd-nspawn.
            for cgroup in self.cgroups:
                os.makedirs(cgroup, exist_ok=True)
            script = ('while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs" || exit 97; '
                      'shift; done; shift; exec "$@"')
            argv = ["sh", "-c", script, "sh", *self.cgroups, "--", *argv]
        self._started = time.monotonic()
        with open(os.path.join(self.dir, "console.log"), "wb") as console:
            # A session of its own: a Ctrl-C on the terminal reaches the test,
            # which then powers the container off properly.
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        _write_file(os.path.join(self.dir, "nspawn.pid"), f"{self.proc.pid}\n")

    def wait_booted(self, timeout=BOOT_TIMEOUT):
        """Waits until systemd inside reports `running` (or `degraded`)."""
        deadline = time.monotonic() + timeout
        while self.pid is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: systemd-nspawn exited {self.proc.returncode}:\n"
                                   + self.console_tail())
            self.pid = _container_init(self.proc.pid)
            if self.pid is None:
                _sleep_until(deadline, f"{self.name}: no systemd in the container", 0.05)
        state = ""
        while state not in ("running", "degraded"):
            # Fails until systemd's private socket exists, then blocks until boot ends.
            _, state, _ = self.run(["systemctl", "is-system-running", "--wait"], check=False,
                                    timeout=max(1, deadline - time.monotonic()))
            state = state.strip()
            if state not in ("running", "degraded"):
                _sleep_until(deadline, f"{self.name}: system state '{state}'\n"
                             + self.console_tail(), 0.1)
        self.boot_seconds = time.monotonic() - self._started
        log(f"{self.name} ({self.addr}) is {state} after {self.boot_seconds:.1f}s")
        if state == "degraded":
            self.dump_failed_journals()

    def poweroff(self):
        """Asks the container to power off (returns at once)."""
        if self.proc is None or self.proc.poll() is not None or self._stopping:
            return
        self._stopping = True
        if self.pid is not None:
            try:
                self.run(["systemctl", "poweroff", "--no-block"], timeout=10)
                return
            except (CommandError, subprocess.TimeoutExpired) as e:
                log(f"{self.name}: systemctl poweroff failed: {e}")
        self.proc.terminate()  # systemd-nspawn asks the container's init to halt

    def stop(self, timeout=STOP_TIMEOUT):
        """Powers the container off; kills it if it does not stop in time.
        Its overlay stays: `boot()` starts it again."""
        if self.proc is None:
            return
        self.poweroff()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} did not power off in {timeout}s: killing it")
            _kill(self.pid)   # the pid namespace's init: the kernel kills the rest
            self.proc.kill()
            self.proc.wait()
        self.pid = None

    def boot(self, timeout=BOOT_TIMEOUT):
        """Boots a node that was powered off with `stop()` again, on the
        same root (its files and its journal are kept), and waits for it."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.name} is still running")
        self.pid, self._stopping, self.boot_seconds = None, False, None
        self.start()
        self.wait_booted(timeout)

    def dump_failed_journals(self, lines=200):
        """Prints the failed units and the last `lines` of their journal."""
        if self.pid is None or self.proc.poll() is not None:
            return
        try:
            _, out, _ = self.run(["systemctl", "--failed", "--no-legend", "--plain"],
                                 check=False, timeout=20)
            units = [line.split()[0] for line in out.splitlines() if line.strip()]
            log(f"{self.name}: failed units: {' '.join(units) or 'none'}")
            for unit in units:
                log(f"---- {self.name}: journalctl -u {unit}\n" + self.run(
                    ["journalctl", "--no-pager", "-n", str(lines), "-u", unit],
                    check=False, timeout=20)[1])
        except (OSError, subprocess.SubprocessError) as e:
            log(f"{self.name}: cannot read its journal: {e}")

    def console_tail(self, lines=30):
        try:
            with open(os.path.join(self.dir, "console.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    # ------------------------------------------------------------- commands

    def run(self, argv, check=True, input=None, timeout=120, env=None):
        """Runs argv inside the node (as root, all its namespaces) and
        returns (returncode, stdout, stderr) as text."""
        if self.pid is None:
            raise RuntimeError(f"{self.name} is not running")
        proc = subprocess.run(["nsenter", "-t", str(self.pid), "-a", "--", *argv],
                              input=input, capture_output=True, text=True, timeout=timeout,
                              env={**INSIDE_ENV, **(env or {})}, cwd="/")
        if check and proc.returncode != 0:
            raise CommandError(self.name, argv, proc.returncode, proc.stdout, proc.stderr)
        return proc.returncode, proc.stdout, proc.stderr

    def host_path(self, path):
        """The host path of `path` inside the node (through the overlay root;
        an absolute symlink inside is not followed the container's way, and
        bind mounts are not visible here)."""
        return os.path.join(self.root, path.lstrip("/"))

    def write(self, path, text, mode=0o644):
        """Writes a text file inside the node (parents are created)."""
        host = self.host_path(path)
        os.makedirs(os.path.dirname(host), exist_ok=True)
        _write_file(host, text, mode)

    def read(self, path):
        with open(self.host_path(path)) as f:
            return f.read()

    def copy_in(self, host_src, path, mode=0o755):
        """Copies a host file into the node."""
        host = self.host_path(path)
        os.makedirs(os.path.dirname(host), exist_ok=True)
        shutil.copyfile(host_src, host)
        os.chmod(host, mode)

    def journal(self, *args):
        """`journalctl --no-pager ARGS` inside, after journald took in every
        message sent so far."""
        self.run(["journalctl", "--sync"])
        return self.run(["journalctl", "--no-pager", *args])[1]


class Cluster:
    """Context manager booting one Node per (name, addr), torn down on exit.

    `ro_binds` / `rw_binds` apply to every node (see Node). `before_boot`,
    if given, is called with the Cluster once the run's tmpfs and every
    node's overlay are mounted and before any node boots: it may make host
    folders below `cluster.workdir` (removed with it) and give single nodes
    more binds (`cluster[name].rw_binds.append(...)`)."""

    def __init__(self, names_and_addrs, workdir=None, ro_binds=(), rw_binds=(),
                 before_boot=None):
        self.spec = list(names_and_addrs)
        self.workdir = workdir or f"{WORK_PREFIX}{os.getpid()}"
        self.binds = (ro_binds, rw_binds)
        self.before_boot = before_boot
        self.nodes = {}
        self.cgroups = []
        self._closed = True
        self._old_sigterm = None

    def __getitem__(self, name):
        return self.nodes[name]

    def __enter__(self):
        cleanup_stale()
        self._refuse_taken_addresses()
        self._closed = False
        atexit.register(self.close)
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
        try:
            os.makedirs(self.workdir)
            _check(["mount", "-t", "tmpfs", "-o", "mode=0755", "hwdr-e2e", self.workdir])
            _write_file(os.path.join(self.workdir, "owner"), f"{_process_id(os.getpid())}\n")
            self.cgroups = [os.path.join(base, os.path.basename(self.workdir))
                            for base in _own_cgroups()]
            _write_file(os.path.join(self.workdir, "cgroups"),
                        "".join(c + "\n" for c in self.cgroups))
            hosts = dict(self.spec)
            for name, addr in self.spec:
                self.nodes[name] = Node(name, addr, self.workdir, *self.binds, hosts=hosts,
                                        cgroups=[os.path.join(c, name) for c in self.cgroups])
            for node in self.nodes.values():
                node.prepare()
            if self.before_boot is not None:
                self.before_boot(self)
            for node in self.nodes.values():
                node.start()
            for node in self.nodes.values():  # they boot in parallel meanwhile
                node.wait_booted()
        except BaseException:
            self.dump_failed_journals()
            self.close()
            raise
        return self

    def _refuse_taken_addresses(self):
        """Boots nothing when a node's address already answers on the agent
        port: another cluster (another run, a sandbox) holds it, and the
        nodes' agents would fail to start with no word of why."""
        for name, addr in self.spec:
            try:
                with socket.create_connection((addr, AGENT_PORT), timeout=0.5):
                    pass
            except OSError:
                continue
            raise RuntimeError(
                f"{addr}:{AGENT_PORT} (node {name}) already answers: another cluster runs "
                "on this address (another run of these tests: wait for it to end; a sandbox: "
                "`make sandbox-down`)")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.dump_failed_journals()
        self.close()
        return False

    def dump_failed_journals(self, lines=200):
        """Prints the journal of every failed unit of every running node."""
        for node in self.nodes.values():
            node.dump_failed_journals(lines)

    def close(self):
        """Powers every node off, unmounts everything, removes the workdir.
        Idempotent; SIGINT and SIGTERM are held off meanwhile."""
        if self._closed:
            return
        held = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for node in self.nodes.values():   # all at once, then wait for each
                node.poweroff()
            for node in self.nodes.values():
                node.stop()
            _remove_cgroups(self.cgroups)
            _unmount_and_remove(self.workdir)
            self._closed = True
            atexit.unregister(self.close)
        finally:
            for sig, handler in held.items():
                signal.signal(sig, handler)
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None


# What the e2e test files share: the repository, a fake HopsFS data node unit,
# binaries built on demand, and the config of a one-node cluster.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DATANODE_UNIT = """\
[Unit]
Description=Fake HopsFS data node (hwdr e2e)

[Service]
User=hdfs
Group=hadoop
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""


def built(env, path, cargo_args):
    """$`env`, else `path` in the repository (built with cargo if missing)."""
    chosen = os.environ.get(env) or f"{REPO}/{path}"
    if not os.path.exists(chosen) and env not in os.environ:
        subprocess.run(["cargo", "build", *cargo_args], cwd=REPO, check=True)
    return chosen


def single_node_config(address, roles, sim, extra=""):
    """hwdr.toml of a cluster of one node, head1 at `address` with `roles`
    (RonDB data node 2), the simulated RonDB of tests/sim at `sim`; `extra`
    is appended."""
    roles_toml = ", ".join(f'"{r}"' for r in roles)
    return f"""\
[cluster]
name = "prod"

[[nodes]]
name = "head1"
address = "{address}"
roles = [{roles_toml}]
rondb_node_ids = [2]

[node]
name = "head1"

[repository]
path = "/srv/repo"

[rondb]
mgm_client = "{sim}/bin/mgm-client.sh"
mysqlpump = "{sim}/bin/mysqlpump"
mysqldump = "{sim}/bin/mysqldump"
mysql = "{sim}/bin/mysql"
socket = "{sim}/mysql.sock"
backup_dir = "/srv/ndb/backups"

[config_backup]
paths = ["/etc/hwdr/cluster-definition.yml"]

[backup]
ndb_backup_timeout = "60s"
dump_timeout = "60s"
{extra}"""


def cleanup_stale(prefix=WORK_PREFIX):
    """Stops and removes what killed runs left: every `<prefix>*` directory
    whose owner process is gone (containers powered off, then killed;
    mounts unmounted; directory removed)."""
    for workdir in glob.glob(prefix + "*"):
        owner = _read_file(os.path.join(workdir, "owner")).strip()
        if owner:
            alive = owner == _process_id(owner.split()[0])
        else:  # no owner file yet: a run that is just starting, if its pid lives
            alive = _process_id(workdir[len(prefix):]) is not None
        if alive:
            continue
        log(f"cleaning up stale {workdir}")
        procs = []
        for pidfile in glob.glob(os.path.join(workdir, "*", "nspawn.pid")):
            pid = int(_read_file(pidfile) or 0)
            root = os.path.join(os.path.dirname(pidfile), "root")
            # Only an nspawn that really runs that root (the pid may be reused).
            if pid and root.encode() in _read_file(f"/proc/{pid}/cmdline", binary=True).split(b"\0"):
                procs.append((pid, _container_init(pid)))
                _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for pid, init in procs:
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.2)
            _kill(init)
            _kill(pid)
        _remove_cgroups(_read_file(os.path.join(workdir, "cgroups")).split())
        _unmount_and_remove(workdir)


# ---------------------------------------------------------------- helpers

def _sigterm_to_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _check(argv):
    subprocess.run(argv, check=True, capture_output=True, text=True)


def _sleep_until(deadline, what, step):
    if time.monotonic() > deadline:
        raise TimeoutError(f"timed out: {what}")
    time.sleep(step)


def _write_file(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _read_file(path, binary=False):
    try:
        with open(path, "rb" if binary else "r") as f:
            return f.read()
    except OSError:
        return b"" if binary else ""


def _process_id(pid):
    """`<pid> <start time>`: identifies a process even if its pid is reused."""
    stat = _read_file(f"/proc/{pid}/stat") if str(pid).isdigit() else ""
    return f"{pid} {stat.rsplit(')', 1)[1].split()[19]}" if stat else None


def _container_init(nspawn_pid):
    """The container's systemd: the child of systemd-nspawn named `systemd`."""
    children = _read_file(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").split()
    for child in children:
        if _read_file(f"/proc/{child}/comm").strip() == "systemd":
            return int(child)
    return None


def _kill(pid, sig=signal.SIGKILL):
    if pid:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _own_cgroups():
    """This process's cgroup folder in every hierarchy systemd-nspawn places
    containers in: the unified one, and on a legacy or hybrid host the
    `name=systemd` one (plus the unified one of a hybrid host)."""
    own = {}
    for line in _read_file("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        own[controllers] = path.lstrip("/")
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):      # unified only
        return [os.path.join("/sys/fs/cgroup", own.get("", ""))]
    found = []
    if "name=systemd" in own and os.path.isdir("/sys/fs/cgroup/systemd"):
        found.append(os.path.join("/sys/fs/cgroup/systemd", own["name=systemd"]))
    if "" in own and os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers"):
        found.append(os.path.join("/sys/fs/cgroup/unified", own[""]))
    return found


def _remove_cgroups(paths, timeout=10):
    """Removes cgroup folders and every cgroup below them (deepest first),
    waiting for the last processes of stopped containers to go."""
    deadline = time.monotonic() + timeout
    for path in paths:
        while os.path.isdir(path):
            for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
            if os.path.isdir(path):
                if time.monotonic() > deadline:
                    log(f"cannot remove cgroup {path}")
                    break
                time.sleep(0.1)


def _mounts_below(path):
    """Mount points at or below path, deepest first."""
    found = []
    for line in _read_file("/proc/self/mountinfo").splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target == path or target.startswith(path + "/"):
            found.append(target)
    return sorted(found, key=len, reverse=True)


def _unmount_and_remove(workdir):
    for target in _mounts_below(workdir):
        if subprocess.run(["umount", target], capture_output=True).returncode != 0:
            log(f"{target} is busy: detaching it lazily")
            subprocess.run(["umount", "--lazy", target], capture_output=True)
    if _mounts_below(workdir):
        raise RuntimeError(f"cannot unmount {_mounts_below(workdir)}")
    shutil.rmtree(workdir, ignore_errors=True)
