"""A real S3 server for the end-to-end tests: Garage on the host's loopback.

The containers share the host's network, so one Garage on 127.0.0.1 serves
every node. `Garage` is a context manager: it starts a single-node server
(`garage server --single-node --default-bucket`, as testkit/src/garage/
does) on free loopback ports with a random key and bucket, in a folder of
its own, returns once a signed listing of the bucket answers, and always
stops it (SIGTERM, then SIGKILL) and removes the folder, also on failures,
Ctrl-C and at interpreter exit. `get` and `list` read the bucket with
signed requests (AWS Signature Version 4), so a test can check objects
without trusting the program under test. Standard library only.

Layout of one server (GARAGE_PREFIX + the test process's pid + a random tail):

    /tmp/hwdr-garage-e2e-<pid>-<x>/owner        "<pid> <start time>" of the run
    /tmp/hwdr-garage-e2e-<pid>-<x>/garage.toml  the server's config
    /tmp/hwdr-garage-e2e-<pid>-<x>/garage.pid   its pid
    /tmp/hwdr-garage-e2e-<pid>-<x>/garage.log   its stdout and stderr
    /tmp/hwdr-garage-e2e-<pid>-<x>/{meta,data}  what it stores

A run killed with SIGKILL leaves its server running; `cleanup_stale()`,
called by every `Garage`, stops the servers of runs whose process is gone
and removes their folders. The binary: `$HWDR_GARAGE`, else `garage` on
`PATH`, else `~/.cargo/bin/garage` (`make deps` installs it).
"""

import atexit
import datetime
import glob
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

from nspawn import _kill, _process_id, _read_file, _write_file

GARAGE_PREFIX = "/tmp/hwdr-garage-e2e-"
REGION = "garage"
READY_TIMEOUT = 60
STOP_TIMEOUT = 15        # Garage waits up to 10 s for clients to close their connections
START_ATTEMPTS = 5       # fresh ports each time: one may be taken before the server binds it
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def log(msg):
    print(f"[garage] {msg}", file=sys.stderr, flush=True)


def garage_binary():
    """$HWDR_GARAGE, else `garage` on PATH, else in ~/.cargo/bin."""
    if os.environ.get("HWDR_GARAGE"):
        return os.environ["HWDR_GARAGE"]
    cargo_home = os.environ.get("CARGO_HOME") or os.path.expanduser("~/.cargo")
    found = shutil.which("garage") or shutil.which("garage", path=os.path.join(cargo_home, "bin"))
    if not found:
        raise RuntimeError("garage is not installed: run `make deps`")
    return found


class Garage:
    """One single-node Garage server with one key and one bucket the key
    may read and write: `endpoint`, `region`, `bucket`, `access_key`,
    `secret_key`."""

    def __init__(self):
        self.bin = garage_binary()
        self.dir = None
        self.proc = None
        self.port = None
        self.access_key = "GK" + secrets.token_hex(12)
        self.secret_key = secrets.token_hex(32)
        self.bucket = "hwdr-e2e-" + secrets.token_hex(4)
        self.region = REGION
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def credentials(self):
        """The key as an AWS shared-credentials file (profile `default`)."""
        return (f"[default]\naws_access_key_id = {self.access_key}\n"
                f"aws_secret_access_key = {self.secret_key}\n")

    # ------------------------------------------------------------ lifecycle

    def __enter__(self):
        cleanup_stale()
        atexit.register(self.close)
        try:
            # The owner file is in before the folder has its name, so that a
            # cleanup_stale() of another run never takes it for a dead run's.
            tmp = tempfile.mkdtemp(prefix=".hwdr-garage-e2e-", dir=os.path.dirname(GARAGE_PREFIX))
            _write_file(os.path.join(tmp, "owner"), f"{_process_id(os.getpid())}\n")
            self.dir = f"{GARAGE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
            os.rename(tmp, self.dir)
            for attempt in range(1, START_ATTEMPTS + 1):
                if self._start_and_wait():
                    break
                if attempt == START_ATTEMPTS:
                    raise RuntimeError(f"garage exited at start {START_ATTEMPTS} times:\n"
                                       + self.log_tail())
        except BaseException:
            self.close()
            raise
        log(f"garage at {self.endpoint}, bucket {self.bucket}, folder {self.dir}")
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            log(f"garage's log, last lines:\n{self.log_tail()}")
        self.close()
        return False

    def close(self):
        """Stops the server (SIGTERM, SIGKILL after STOP_TIMEOUT) and removes
        its folder. Idempotent."""
        if self.proc is not None:
            _stop(self.proc.pid, self.proc.wait)
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        atexit.unregister(self.close)

    def _start_and_wait(self):
        """Starts the server on fresh ports and waits until a signed listing
        answers: True, or False if it exited at once (a port taken)."""
        s3, rpc, admin = _free_ports(3)
        self.port = s3
        config = os.path.join(self.dir, "garage.toml")
        _write_file(config, _config_text(self.dir, s3, rpc, admin), mode=0o600)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_COLOR": "1",
               "GARAGE_DEFAULT_ACCESS_KEY": self.access_key,
               "GARAGE_DEFAULT_SECRET_KEY": self.secret_key,
               "GARAGE_DEFAULT_BUCKET": self.bucket}
        with open(os.path.join(self.dir, "garage.log"), "ab") as out:
            # A session of its own: a Ctrl-C on the terminal reaches the test,
            # which then stops the server itself.
            self.proc = subprocess.Popen(
                [self.bin, "-c", config, "server", "--single-node", "--default-bucket"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        _write_file(os.path.join(self.dir, "garage.pid"), f"{self.proc.pid}\n")
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                log(f"garage exited {self.proc.returncode} at start: trying other ports")
                self.proc = None
                return False
            try:
                self.list("")
                return True
            except (OSError, urllib.error.URLError) as e:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"garage did not answer at {self.endpoint} within "
                                       f"{READY_TIMEOUT}s (last: {e}):\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines=30):
        text = _read_file(os.path.join(self.dir, "garage.log")) if self.dir else ""
        return "".join(text.splitlines(keepends=True)[-lines:])

    # ----------------------------------------------------------- S3 reads

    def get(self, key):
        """The bytes of object `key` of the bucket."""
        return self._request(key, {})

    def list(self, prefix):
        """The keys of every object of the bucket whose key starts with
        `prefix`, sorted."""
        keys, token = [], None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            root = ET.fromstring(self._request("", query))
            keys += [c.findtext(f"{S3_NS}Key") for c in root.findall(f"{S3_NS}Contents")]
            token = root.findtext(f"{S3_NS}NextContinuationToken")
            if root.findtext(f"{S3_NS}IsTruncated") != "true" or not token:
                return sorted(keys)

    def _request(self, key, query):
        """A GET of `key` (path-style; the bucket itself if empty) with
        `query`, signed with AWS Signature Version 4: the response body."""
        path = "/" + urllib.parse.quote(self.bucket + ("/" + key if key else ""), safe="/-_.~")
        canonical_query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted(query.items()))
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        host = f"127.0.0.1:{self.port}"
        payload = hashlib.sha256(b"").hexdigest()
        signed = "host;x-amz-content-sha256;x-amz-date"
        canonical = "\n".join([
            "GET", path, canonical_query,
            f"host:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n",
            signed, payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key_bytes = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key_bytes = hmac.new(key_bytes, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key_bytes, to_sign.encode(), hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            f"http://{host}{path}" + (f"?{canonical_query}" if canonical_query else ""),
            headers={"Host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload,
                     "Authorization": f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                      f"SignedHeaders={signed}, Signature={signature}"})
        with self._opener.open(request, timeout=10) as answer:
            return answer.read()


def cleanup_stale(prefix=GARAGE_PREFIX):
    """Stops the servers that killed runs left (SIGTERM, then SIGKILL) and
    removes their folders: every `<prefix>*` folder whose owner process is
    gone."""
    for folder in glob.glob(prefix + "*"):
        owner = _read_file(os.path.join(folder, "owner")).strip()
        if not owner or owner == _process_id(owner.split()[0]):
            continue    # a live run's (every folder has its owner file from the start)
        log(f"cleaning up stale {folder}")
        pid = int(_read_file(os.path.join(folder, "garage.pid")).strip() or 0)
        config = os.path.join(folder, "garage.toml").encode()
        # Only a garage that really runs that folder's config (the pid may be reused).
        if pid and config in _read_file(f"/proc/{pid}/cmdline", binary=True).split(b"\0"):
            _stop(pid, lambda timeout: _wait_gone(pid, timeout))
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- helpers

def _stop(pid, wait):
    """SIGTERM to `pid`, SIGKILL if `wait(timeout)` raises TimeoutExpired."""
    _kill(pid, signal.SIGTERM)
    try:
        wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        log(f"garage (pid {pid}) ignored SIGTERM for {STOP_TIMEOUT}s: killing it")
        _kill(pid)
        wait(timeout=STOP_TIMEOUT)


def _wait_gone(pid, timeout):
    """Waits for a process that is not our child to go."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(f"pid {pid}", timeout)
        time.sleep(0.1)


def _free_ports(n):
    """`n` distinct free loopback ports (held together while chosen)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _config_text(folder, s3, rpc, admin):
    """garage.toml: one node, SQLite metadata, everything on loopback."""
    return f"""\
metadata_dir = "{folder}/meta"
data_dir = "{folder}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secrets.token_hex(32)}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"""
