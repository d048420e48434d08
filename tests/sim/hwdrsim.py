"""Shared code of the hwdr test simulators (see docs/simulators.md).

Every simulator finds its cluster through `hwdr-sim.json`, logs its invocation,
honours its control file and keeps the simulated cluster in `cluster.json`,
locked with flock and replaced atomically.  Run as a script, this module prints
the settings of the simulated `mysql-client.sh` wrapper (see `main`).
"""

import collections
import configparser
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import shlex
import sys
import tempfile
import time
import zlib

SIM_DIR = os.path.dirname(os.path.realpath(__file__))
CONFIG_NAME = "hwdr-sim.json"
SERVER_VERSION = "8.0.34"
RONDB_VERSION = "RonDB-22.10.5"
SYSTEM_DATABASES = ("information_schema", "mysql", "ndbinfo", "performance_schema", "sys")
DEFAULT_SOCKET = "/tmp/mysql.sock"
DEFAULT_MGM_PORT = 1186
HANG_SECONDS = 3600
BACKUP_MAGIC = b"NDBBCKUP"
ENCRYPTED_MAGIC = b"NDBXFRM1"  # an encrypted backup file (START BACKUP ... ENCRYPT PASSWORD)
KDF_ITERATIONS = 10000  # PBKDF2-SHA256 rounds of the simulated encryption
KAFKA_TOPICS_FILE = "kafka_topics.json"  # in state_dir, written by kafka-restore.sh
REINDEX_LOG_FILE = "reindex.jsonl"  # in state_dir, appended by reindex-epipe.sh

ControlMode = collections.namedtuple("ControlMode", "name arg")
NO_MODE = ControlMode(None, None)


def die(text, status, stream=None):
    """Prints `text` (a line or several) and ends the simulator with `status`."""
    print(text, file=stream or sys.stderr, flush=True)
    sys.exit(status)


# ---------------------------------------------------------------- configuration

def find_config_file(start_dir):
    """The hwdr-sim.json in `start_dir` or a parent of it, else /etc/hwdr-sim.json."""
    directory = start_dir
    while True:
        candidate = os.path.join(directory, CONFIG_NAME)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    fallback = os.path.join("/etc", CONFIG_NAME)
    if os.path.isfile(fallback):
        return fallback
    die(f"hwdr-sim: no {CONFIG_NAME} in {start_dir} or its parents, nor {fallback}", 70)


def load_json(path):
    """The JSON document stored at `path`."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_atomically(path, data, mode=0o644, owner=None):
    """Replaces `path` by `data` (bytes): temp file, fsync, rename, fsync of the dir."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def canonical_json(document):
    """`document` as sorted, indented JSON text (what simctl writes and prints)."""
    return json.dumps(document, sort_keys=True, indent=2) + "\n"


class Sim:
    """One run of a simulator: its configuration and the simulated cluster's files."""

    def __init__(self, program, config):
        self.program = program
        self.config = config
        self.state_dir = config["state_dir"]
        self.cluster_path = os.path.join(self.state_dir, "cluster.json")
        self.lock_path = os.path.join(self.state_dir, "lock")
        self.control_path = os.path.join(self.state_dir, "control", program)
        self.invocations_path = os.path.join(self.state_dir, "invocations.jsonl")
        self.mode = NO_MODE

    def data_nodes(self):
        """[(node id, node settings)] of the configured data nodes, by id."""
        nodes = self.config["data_nodes"]
        return sorted((int(node_id), node) for node_id, node in nodes.items())

    def log_invocation(self, argv):
        """Appends who ran this simulator, how and where to invocations.jsonl."""
        record = {
            "program": self.program,
            "argv": list(argv),
            "uid": os.getuid(),
            "euid": os.geteuid(),
            "gid": os.getgid(),
            "groups": sorted(os.getgroups()),
            "cwd": os.getcwd(),
            "env": sorted(os.environ),
        }
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        fd = os.open(self.invocations_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def take_control_mode(self):
        """The failure mode asked for in control/<program>; `fail-once` is consumed."""
        try:
            with open(self.control_path, encoding="utf-8") as f:
                word = f.read().strip()
        except FileNotFoundError:
            return NO_MODE
        name, _, arg = word.partition(":")
        if name == "fail-once":
            try:
                os.unlink(self.control_path)
            except FileNotFoundError:
                return NO_MODE  # a parallel run took it
            return ControlMode("fail", None)
        return ControlMode(name, arg or None)

    def state_owner(self):
        """(uid, gid) that files written as root into the state dir must get."""
        if os.geteuid() != 0:
            return None
        st = os.stat(self.state_dir)
        return st.st_uid, st.st_gid

    @contextlib.contextmanager
    def _flock(self, operation):
        fd = os.open(self.lock_path, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, operation)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def locked_state(self):
        """Holds the exclusive lock on state_dir/lock (for files beside cluster.json)."""
        with self._flock(fcntl.LOCK_EX):
            yield

    def state_file(self, name):
        """Path of a file in the state dir, e.g. kafka_topics.json."""
        return os.path.join(self.state_dir, name)

    def read_cluster(self):
        """The simulated cluster, read under a shared lock."""
        with self._flock(fcntl.LOCK_SH):
            return load_json(self.cluster_path)

    @contextlib.contextmanager
    def locked_cluster(self):
        """Yields the cluster under an exclusive lock; saves it if the block succeeds."""
        with self._flock(fcntl.LOCK_EX):
            cluster = load_json(self.cluster_path)
            yield cluster
            self.save_cluster(cluster)

    def save_cluster(self, cluster):
        """Replaces cluster.json; the caller holds the exclusive lock."""
        data = canonical_json(cluster).encode()
        write_atomically(self.cluster_path, data, owner=self.state_owner())


def start(program, argv=None, hang=True):
    """Begins a simulator run: finds the config, logs the call, reads the control file.

    With `hang` (the default) a `hang` mode sleeps here for an hour.
    """
    argv = sys.argv[1:] if argv is None else argv
    sim = Sim(program, load_json(find_config_file(SIM_DIR)))
    sim.log_invocation(argv)
    sim.mode = sim.take_control_mode()
    if hang and sim.mode.name == "hang":
        time.sleep(HANG_SECONDS)
        sys.exit(1)
    return sim


# ------------------------------------------------------------- cluster content

def make_column(name, type_, nullable=False, default=None, auto_increment=False):
    """A table column; `default` is SQL literal text such as "'0'", or None."""
    return {"name": name, "type": type_, "nullable": nullable,
            "default": default, "auto_increment": auto_increment}


def make_index(name, columns, unique=False, built=True):
    """A secondary index; `built` is False between --disable-indexes and --rebuild-indexes."""
    return {"name": name, "columns": list(columns), "unique": unique, "built": built}


def make_table(engine, columns, primary_key, indexes=()):
    """An empty table; its rows will be lists of values in column order."""
    return {"engine": engine, "columns": list(columns), "primary_key": list(primary_key),
            "indexes": list(indexes), "rows": []}


def make_database():
    """An empty database."""
    return {"tables": {}, "views": {}, "procedures": {}, "functions": {},
            "triggers": {}, "events": {}}


def make_stored_object(definer, definition, **extra):
    """A view, routine, trigger or event: its definer and the text after its name."""
    return dict(definer=definer, definition=definition, **extra)


def account(user, host):
    """The key of a user account: `user`@`host`."""
    return f"`{user}`@`{host}`"


def make_user(user, host, plugin, auth):
    """A user account holding the implicit USAGE grant."""
    return {"user": user, "host": host, "plugin": plugin, "auth": auth,
            "grants": [f"GRANT USAGE ON *.* TO {account(user, host)}"]}


def native_password_hash(password):
    """mysql_native_password's stored form of `password`."""
    inner = hashlib.sha1(password.encode()).digest()
    return "*" + hashlib.sha1(inner).hexdigest().upper()


def primary_key(table, row):
    """The primary key values of `row` in `table`, as a list."""
    names = [column["name"] for column in table["columns"]]
    return [row[names.index(name)] for name in table["primary_key"]]


def row_hash(table, row):
    """zlib.crc32 of the row's primary key as compact JSON: places rows on nodes."""
    key = json.dumps(primary_key(table, row), separators=(",", ":"))
    return zlib.crc32(key.encode())


def ndb_tables(cluster):
    """[(database, name, table)] of the NDB tables of user databases: what a backup holds."""
    return [(db_name, name, table)
            for db_name, db in sorted(cluster["databases"].items())
            if db_name not in SYSTEM_DATABASES
            for name, table in sorted(db["tables"].items())
            if table["engine"] == "ndbcluster"]


def find_table(cluster, database, table):
    """The table `database`.`table` of the cluster, or None if it or its database is missing."""
    return cluster["databases"].get(database, {}).get("tables", {}).get(table)


def rows_as_dicts(table):
    """The rows of `table` as {column name: value}, sorted by primary key."""
    names = [column["name"] for column in table["columns"]]
    rows = sorted(table["rows"], key=lambda row: json.dumps(primary_key(table, row)))
    return [dict(zip(names, row)) for row in rows]


# ------------------------------------------------------------ HopsFS data nodes

META_FILE = re.compile(r"blk_(\d+)_(\d+)\.meta")


def finalized_blocks(data_dirs):
    """{(block id, genstamp): {lengths}} of the finalized blocks in HopsFS data dirs.

    A block is there when `blk_<id>` and `blk_<id>_<genstamp>.meta` sit in the
    same folder below `<dir>/current/<pool>/current/finalized/`; its length is the
    size of `blk_<id>`.  Missing or unreadable folders hold no blocks.
    """
    found = {}
    for data_dir in data_dirs:
        current = os.path.join(data_dir, "current")
        try:
            pools = sorted(os.listdir(current))
        except OSError:
            continue
        for pool in pools:
            finalized = os.path.join(current, pool, "current", "finalized")
            for directory, _, names in os.walk(finalized):
                _add_block_pairs(directory, names, found)
    return found


def _add_block_pairs(directory, names, found):
    present = set(names)
    for name in names:
        match = META_FILE.fullmatch(name)
        if not match or f"blk_{match.group(1)}" not in present:
            continue
        try:
            length = os.stat(os.path.join(directory, f"blk_{match.group(1)}")).st_size
        except OSError:
            continue
        key = (int(match.group(1)), int(match.group(2)))
        found.setdefault(key, set()).add(length)


# ------------------------------------------------------------ NDB backup files

class BackupFileError(Exception):
    """A simulated backup file that is missing ('missing'), not one ('header'),
    cut short or altered ('truncated'), encrypted without a password given
    ('encrypted'), encrypted with another password ('password'), or plain
    while a password was given ('not-encrypted')."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def encode_backup_file(document, password=None):
    """The simulated backup file format: magic line, JSON line, END <sha256> line;
    with `password`, all of that encrypted (see `encrypt_backup_data`)."""
    body = BACKUP_MAGIC + b"\n" + json.dumps(document, sort_keys=True).encode() + b"\n"
    data = body + b"END " + hashlib.sha256(body).hexdigest().encode() + b"\n"
    return data if password is None else encrypt_backup_data(data, password)


def _backup_keys(password, salt):
    """(cipher key, MAC key) of `password` (str) with `salt`: PBKDF2-SHA256."""
    keys = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, KDF_ITERATIONS, dklen=64)
    return keys[:32], keys[32:]


def _keystream_xor(key, data):
    """`data` XORed with the SHAKE-256 keystream of `key`."""
    if not data:
        return b""
    stream = hashlib.shake_256(key).digest(len(data))
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def _mac(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def encrypt_backup_data(data, password):
    """`data` encrypted with `password`: NDBXFRM1, a 16-byte salt, a 32-byte
    password check value, a 32-byte MAC of salt and ciphertext, the ciphertext."""
    salt = os.urandom(16)
    cipher_key, mac_key = _backup_keys(password, salt)
    ciphertext = _keystream_xor(cipher_key, data)
    check = _mac(mac_key, b"password check")
    return ENCRYPTED_MAGIC + salt + check + _mac(mac_key, salt, ciphertext) + ciphertext


def decrypt_backup_data(path, data, password):
    """The plaintext of an encrypted backup file; BackupFileError 'password' when
    `password` is not the one it was written with, 'truncated' when it was altered."""
    header = len(ENCRYPTED_MAGIC) + 16 + 32 + 32
    if len(data) < header:
        raise BackupFileError(path, "truncated")
    salt, check, mac = data[8:24], data[24:56], data[56:88]
    cipher_key, mac_key = _backup_keys(password, salt)
    if not hmac.compare_digest(check, _mac(mac_key, b"password check")):
        raise BackupFileError(path, "password")
    if not hmac.compare_digest(mac, _mac(mac_key, salt, data[header:])):
        raise BackupFileError(path, "truncated")
    return _keystream_xor(cipher_key, data[header:])


def read_backup_file(path, password=None):
    """The JSON document of a simulated backup file, after checking its END trailer.

    An encrypted file needs `password` (else BackupFileError 'encrypted'), and a
    password is only for an encrypted file (else BackupFileError 'not-encrypted').
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BackupFileError(path, "missing") from None
    encrypted = data.startswith(ENCRYPTED_MAGIC)
    if encrypted and password is None:
        raise BackupFileError(path, "encrypted")
    if password is not None and not encrypted:
        raise BackupFileError(path, "not-encrypted")
    if encrypted:
        data = decrypt_backup_data(path, data, password)
    if not data.startswith(BACKUP_MAGIC + b"\n"):
        raise BackupFileError(path, "header")
    body, _, trailer = data.rstrip(b"\n").rpartition(b"\n")
    body += b"\n"
    expected = b"END " + hashlib.sha256(body).hexdigest().encode()
    if not data.endswith(b"\n") or trailer != expected:
        raise BackupFileError(path, "truncated")
    return json.loads(body.split(b"\n")[1])


def normalize_connectstring(text):
    """host:port of an NDB connectstring element (port 1186 when left out)."""
    host, _, port = text.strip().partition(":")
    return f"{host}:{port or DEFAULT_MGM_PORT}"


def reaches_management_server(sim, connectstring):
    """Whether `connectstring` names the simulated management server."""
    wanted = normalize_connectstring(sim.config["mgm"]["connectstring"])
    elements = [e for e in connectstring.split(",") if not e.strip().startswith("nodeid=")]
    return any(normalize_connectstring(e) == wanted for e in elements)


# ------------------------------------------------------------ command lines

class UsageError(Exception):
    """A command line the real program would refuse; the text is its message."""


Option = collections.namedtuple("Option", "names key value first_only")


def option(*names, key=None, value="none", first_only=False):
    """An option: `value` is 'none', 'required' or 'optional' (attached only)."""
    canonical = key or names[-1].lstrip("-").replace("-", "_")
    return Option(names, canonical, value, first_only)


def _long_name(name):
    return name.replace("_", "-")


def parse_options(argv, options):
    """MySQL-style command line parsing: (dict of option key -> value, positionals).

    Long options accept `--name=value` and `--name value`, `_` and `-` alike;
    short ones `-Xvalue`, `-X value` and clusters of flags (`-BN`).  Flags get True.
    """
    by_name = {}
    for opt in options:
        for name in opt.names:
            by_name[_long_name(name) if name.startswith("--") else name] = opt
    values, positionals = {}, []
    args = list(argv)
    index = 0
    while args:
        arg = args.pop(0)
        index += 1
        if arg == "--":
            positionals.extend(args)
            break
        if arg.startswith("--"):
            name, has_value, value = arg.partition("=")
            opt = by_name.get(_long_name(name))
            if opt is None:
                raise UsageError(f"unknown option '{name}'")
            if opt.first_only and index != 1:
                raise UsageError(f"unknown variable '{arg[2:]}'")
            values[opt.key] = _long_value(opt, name, has_value, value, args)
        elif arg.startswith("-") and len(arg) > 1:
            _parse_short_cluster(arg, by_name, values, args)
        else:
            positionals.append(arg)
    return values, positionals


def _long_value(opt, name, has_value, value, args):
    if opt.value == "none":
        if has_value:
            raise UsageError(f"option '{name}' cannot take an argument")
        return True
    if has_value:
        return value
    if opt.value == "optional":
        return True
    if not args:
        raise UsageError(f"option '{name}' requires an argument")
    return args.pop(0)


def _parse_short_cluster(arg, by_name, values, args):
    position = 1
    while position < len(arg):
        name = "-" + arg[position]
        opt = by_name.get(name)
        if opt is None:
            raise UsageError(f"unknown option '{name}'")
        rest = arg[position + 1:]
        if opt.value == "none":
            values[opt.key] = True
            position += 1
            continue
        if rest:
            values[opt.key] = rest
        elif opt.value == "optional":
            values[opt.key] = True
        elif args:
            values[opt.key] = args.pop(0)
        else:
            raise UsageError(f"option '{name}' requires an argument")
        return


def client_option_file_settings(path, groups):
    """Settings of the [client] and `groups` sections of a MySQL option file."""
    parser = configparser.ConfigParser(allow_no_value=True, strict=False,
                                       interpolation=None, delimiters=("=",))
    parser.read(path, encoding="utf-8")
    settings = {}
    for group in ("client",) + tuple(groups):
        if parser.has_section(group):
            for key, value in parser.items(group):
                settings[key.replace("-", "_")] = (value or "").strip().strip("'\"")
    return settings


def client_socket(program, values, groups):
    """The socket a MySQL client connects to: -S, else its --defaults-file, else the default.

    A --defaults-file that cannot be read ends the program like the real one.
    """
    defaults_file = values.get("defaults_file")
    file_settings = {}
    if defaults_file:
        if not os.access(defaults_file, os.R_OK):
            die(f"{program}: [ERROR] Could not open required defaults file: {defaults_file}\n"
                f"{program}: [ERROR] Fatal error in defaults handling. Program aborted!", 1)
        file_settings = client_option_file_settings(defaults_file, groups)
    return values.get("socket") or file_settings.get("socket") or DEFAULT_SOCKET


def cant_connect_message(socket_path):
    """The client library's text when no server listens on `socket_path`."""
    return f"Can't connect to local MySQL server through socket '{socket_path}' (2)"


# ------------------------------------------------- the mysql-client.sh helper

def print_mysql_client_settings(argv):
    """Logs a mysql-client.sh run and prints its settings as shell assignments.

    MYSQL_SOCKET and MYSQL_CONF are what the real wrapper gets from its
    template; MYSQL is the simulated client.  Mode `fail` points MYSQL_CONF at a
    missing file (so mysql fails like a wrapper with a broken config) and mode
    `hang` sets SIM_HANG, on which the wrapper execs `sleep`.
    """
    sim = start("mysql-client.sh", argv, hang=False)
    conf_name = "missing.cnf" if sim.mode.name == "fail" else "my.cnf"
    mysql = sim.config.get("programs", {}).get("mysql") or os.path.join(SIM_DIR, "mysql")
    settings = {
        "MYSQL_SOCKET": sim.config["socket"],
        "MYSQL_CONF": os.path.join(sim.state_dir, conf_name),
        "MYSQL": mysql,
        "SIM_HANG": "yes" if sim.mode.name == "hang" else "",
    }
    for name, value in settings.items():
        print(f"{name}={shlex.quote(value)}")


def main(argv):
    """`hwdrsim.py mysql-client-settings ARGS...`, used by mysql-client.sh."""
    if not argv or argv[0] != "mysql-client-settings":
        die("usage: hwdrsim.py mysql-client-settings [ARG...]", 2)
    print_mysql_client_settings(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
