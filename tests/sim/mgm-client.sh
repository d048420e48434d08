#!/usr/bin/python3
"""Simulated Hopsworks `mgm-client.sh`: the wrapper around `ndb_mgm -c <mgm> -e "..."`.

Takes the wrapper's options (`-e COMMAND...`, `-c CONNECTSTRING`, `-h`; without
`-e`, the commands are read from standard input, one a line, as ndb_mgm does)
and runs SHOW, START BACKUP and ABORT BACKUP against the simulated cluster.
START BACKUP writes the simulated backup files of every data node, encrypted
with ENCRYPT PASSWORD='...' (docs/simulators.md).
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import hwdrsim  # noqa: E402

PROGRAM = "mgm-client.sh"
FAILED = 255
MAX_BACKUP_ID = 4294967294
USAGE = """usage: <prog> [ -c | --connectstring MGMD_HOST:MGMD_PORT ] ] [ -e [command] ]

To view the state of the cluster (which nodes are connected), type:
./mgm-client.sh -e show
"""
ALREADY_EXISTS = """Backup failed
*  3001: Could not start backup
*        Backup failed: file already exists (use 'START BACKUP <backup id>'): \
Temporary error: Temporary Resource error"""


def parse_wrapper_args(argv):
    """(connectstring or None, command or None), read the way the real wrapper's loop does.

    Like the real script, `-c X` ends option parsing, so a later `-e` is ignored.
    """
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help", "-help"):
            hwdrsim.die(USAGE, 0, sys.stdout)
        if arg == "-e":
            return None, " ".join(args)
        if arg in ("-c", "--connectstring"):
            return (args[0] if args else ""), None
        hwdrsim.die(f"Unknown option '{arg}'", FAILED, sys.stdout)
    return None, None


def fail_if_unreachable(sim, connectstring):
    """Ends with ndb_mgm's connect error when the control file or -c says so."""
    mode = sim.mode.name
    wrong_server = (connectstring is not None
                    and not hwdrsim.reaches_management_server(sim, connectstring))
    if mode in ("unreachable", "unreachable-error") or wrong_server:
        prefix = "ERROR: " if mode == "unreachable-error" else ""
        target = connectstring if connectstring is not None else sim.config["mgm"]["connectstring"]
        hwdrsim.die(f"{prefix}Unable to connect with connect string: nodeid=0,{target}", FAILED)
    if mode in ("no-contact", "fail"):
        hwdrsim.die("No contact with database nodes", FAILED, sys.stdout)


# -------------------------------------------------------------------- SHOW

def show(sim):
    """Prints the cluster configuration like `ndb_mgm -e SHOW`."""
    nodes = sim.data_nodes()
    mgm = sim.config["mgm"]
    mgm_address = hwdrsim.normalize_connectstring(mgm["connectstring"])
    mgm_host = mgm_address.rpartition(":")[0]
    lines = [f"Connected to Management Server at: {mgm_address}",
             "Cluster Configuration", "---------------------",
             f"[ndbd(NDB)]\t{len(nodes)} node(s)"]
    for position, (node_id, node) in enumerate(nodes):
        master = ", *" if position == 0 else ""
        host = node.get("host", "127.0.0.1")
        lines.append(f"id={node_id}\t@{host}  ({hwdrsim.RONDB_VERSION}, "
                     f"Nodegroup: {position // 2}{master})")
    lines += ["", "[ndb_mgmd(MGM)]\t1 node(s)",
              f"id={mgm['node_id']}\t@{mgm_host}  ({hwdrsim.RONDB_VERSION})",
              "", "[mysqld(API)]\t1 node(s)",
              f"id=67\t@127.0.0.1  ({hwdrsim.RONDB_VERSION})", ""]
    print("\n".join(lines))


# ------------------------------------------------------------- START BACKUP

ENCRYPT_PASSWORD = re.compile(r"""\bENCRYPT\s+PASSWORD\s*=\s*(?:'([^']*)'|"([^"]*)")""", re.IGNORECASE)


def parse_start_backup(text):
    """(backup id or None, wait mode, password or None) from what follows START BACKUP.

    The id must come first; then NOWAIT, WAIT STARTED, WAIT COMPLETED,
    SNAPSHOTSTART, SNAPSHOTEND and ENCRYPT PASSWORD='...' (or "...", which may
    hold spaces) in any order. Returns None for a command ndb_mgm would call invalid.
    """
    password = None
    found = ENCRYPT_PASSWORD.search(text)
    if found:
        password = found.group(1) if found.group(1) is not None else found.group(2)
        text = text[:found.start()] + " " + text[found.end():]
    words = text.split()
    backup_id, wait = None, "COMPLETED"
    if words and words[0].isdigit():
        backup_id = int(words.pop(0))
        if not 1 <= backup_id <= MAX_BACKUP_ID:
            hwdrsim.die(f"Backup ID out of range [1 - {MAX_BACKUP_ID}]", FAILED, sys.stdout)
    while words:
        word = words.pop(0).upper()
        if word == "NOWAIT":
            wait = None
        elif word == "WAIT" and words and words[0].upper() in ("STARTED", "COMPLETED"):
            wait = words.pop(0).upper()
        elif word not in ("SNAPSHOTSTART", "SNAPSHOTEND"):
            return None
    return backup_id, wait, password


def backup_dir(node, backup_id):
    """<backup_dir>/BACKUP/BACKUP-<id> of a data node."""
    return os.path.join(node["backup_dir"], "BACKUP", f"BACKUP-{backup_id}")


def existing_backup_ids(sim):
    """Ids of the BACKUP-<id> directories on any data node."""
    ids = set()
    for _, node in sim.data_nodes():
        backup_root = os.path.join(node["backup_dir"], "BACKUP")
        if os.path.isdir(backup_root):
            ids.update(int(name[7:]) for name in os.listdir(backup_root)
                       if name.startswith("BACKUP-") and name[7:].isdigit())
    return ids


def spread_rows(sim, tables):
    """{(node id, part): [(database, name, rows)]}: every row placed on one node part.

    A row goes to node sorted_ids[crc % n] and there to part (crc // n) % P + 1,
    crc being hwdrsim.row_hash of its primary key.
    """
    nodes = sim.data_nodes()
    node_ids = [node_id for node_id, _ in nodes]
    parts_of = {node_id: node["ldm_parts"] for node_id, node in nodes}
    placed = {(node_id, part): [] for node_id, parts in parts_of.items()
              for part in range(1, parts + 1)}
    for db_name, name, table in tables:
        by_place = {place: [] for place in placed}
        for row in table["rows"]:
            crc = hwdrsim.row_hash(table, row)
            node_id = node_ids[crc % len(node_ids)]
            part = (crc // len(node_ids)) % parts_of[node_id] + 1
            by_place[(node_id, part)].append(row)
        for place, rows in by_place.items():
            placed[place].append((db_name, name, rows))
    return placed


def part_dir(node, backup_id, part):
    """Where a node part's three files go: the backup dir, or its PART-p-OF-P subdir."""
    parts = node["ldm_parts"]
    directory = backup_dir(node, backup_id)
    if parts == 1:
        return directory
    return os.path.join(directory, f"BACKUP-{backup_id}-PART-{part}-OF-{parts}")


def padding(sim, node_id):
    """Filler bytes for node `node_id`'s .Data files (mode pad:N:BYTES), to make a big node."""
    if sim.mode.name != "pad" or not sim.mode.arg:
        return 0
    node, _, size = sim.mode.arg.partition(":")
    return int(size) if node.isdigit() and int(node) == node_id and size.isdigit() else 0


def write_node_part(sim, backup, node_id, part, placed_tables, skip_log):
    """Writes one node part's .ctl, .Data and .log (encrypted with the backup's
    password, if it has one); returns (data bytes, log bytes)."""
    node = dict(sim.data_nodes())[node_id]
    backup_id = backup["backup_id"]
    header = {"backup_id": backup_id, "node_id": node_id, "part": part,
              "parts": node["ldm_parts"]}
    directory = part_dir(node, backup_id, part)
    os.makedirs(directory, exist_ok=True)
    documents = {
        f"BACKUP-{backup_id}.{node_id}.ctl": dict(header, **backup["meta"]),
        f"BACKUP-{backup_id}-0.{node_id}.Data": dict(header, tables=[
            {"database": db, "name": name, "rows": rows} for db, name, rows in placed_tables],
            padding="0" * padding(sim, node_id)),
        f"BACKUP-{backup_id}.{node_id}.log": dict(header, entries=[]),
    }
    if skip_log:
        del documents[f"BACKUP-{backup_id}.{node_id}.log"]
    sizes = {}
    for name, document in documents.items():
        data = hwdrsim.encode_backup_file(document, backup["password"])
        hwdrsim.write_atomically(os.path.join(directory, name), data)
        sizes[name.rpartition(".")[2]] = len(data)
    return sizes["Data"], sizes.get("log", 0)


def skipped(sim, mode_name):
    """The data node id named by a skip-node:N / skip-log:N mode, else None."""
    if sim.mode.name == mode_name and sim.mode.arg and sim.mode.arg.isdigit():
        return int(sim.mode.arg)
    return None


def schema_of(table):
    """A table without its rows: what a .ctl file holds."""
    return {key: value for key, value in table.items() if key != "rows"}


def take_backup(sim, backup_id, password=None):
    """Writes backup `backup_id` (or the next id) on all data nodes, encrypted with
    `password` if given; returns its summary.

    Returns None, writing nothing, when BACKUP-<id> already exists on a data node.
    """
    with sim.locked_cluster() as cluster:
        taken = existing_backup_ids(sim)
        if backup_id is None:
            backup_id = max(taken, default=0) + 1
        elif backup_id in taken:
            return None
        tables = hwdrsim.ndb_tables(cluster)
        start_gcp = cluster["gcp"] + 1
        stop_gcp = start_gcp + 3
        cluster["gcp"] = stop_gcp
        meta = {"start_gcp": start_gcp, "stop_gcp": stop_gcp,
                "data_nodes": [node_id for node_id, _ in sim.data_nodes()],
                "tables": [dict(database=db, name=name, **schema_of(table))
                           for db, name, table in tables]}
        backup = {"backup_id": backup_id, "meta": meta, "password": password}
        data_bytes = log_bytes = 0
        for (node_id, part), placed_tables in spread_rows(sim, tables).items():
            if node_id == skipped(sim, "skip-node"):
                continue
            skip_log = part == 1 and node_id == skipped(sim, "skip-log")
            sizes = write_node_part(sim, backup, node_id, part, placed_tables, skip_log)
            data_bytes += sizes[0]
            log_bytes += sizes[1]
    records = sum(len(table["rows"]) for _, _, table in tables)
    return dict(backup_id=backup_id, start_gcp=start_gcp, stop_gcp=stop_gcp,
                records=records, data_bytes=data_bytes, log_bytes=log_bytes)


def start_backup(sim, text):
    """Runs START BACKUP (`text` is what follows it) and prints ndb_mgm's report."""
    parsed = parse_start_backup(text)
    if parsed is None:
        invalid_command("START BACKUP " + text.strip())
    backup_id, wait, password = parsed
    if wait:
        print(f"Waiting for {wait.lower()}, this may take several minutes", flush=True)
    try:
        summary = take_backup(sim, backup_id, password)
    except OSError as error:
        hwdrsim.die(f"Backup failed\n*  3001: Could not start backup\n*        {error}",
                    FAILED, sys.stdout)
    if summary is None:
        hwdrsim.die(ALREADY_EXISTS, FAILED, sys.stdout)
    master = sim.data_nodes()[0][0]
    started = (f"Node {master}: Backup {summary['backup_id']} started "
               f"from node {sim.config['mgm']['node_id']}")
    if wait:
        print(started)
    if wait == "COMPLETED":
        print(f"{started} completed\n"
              f" StartGCP: {summary['start_gcp']} StopGCP: {summary['stop_gcp']}\n"
              f" #Records: {summary['records']} #LogRecords: 0\n"
              f" Data: {summary['data_bytes']} bytes Log: {summary['log_bytes']} bytes")


# ------------------------------------------------------------------ dispatch

def invalid_command(command):
    """Ends like ndb_mgm does for a command it does not know."""
    hwdrsim.die(f"Invalid command: {command}\nType HELP for help.\n", FAILED, sys.stdout)


def execute(sim, command):
    """Runs one management client command."""
    words = command.split()
    upper = [word.upper() for word in words]
    if upper == ["SHOW"]:
        show(sim)
    elif upper[:2] == ["START", "BACKUP"]:
        if sim.mode.name == "hang":
            # A backup that never completes; the management server still
            # answers other commands (ABORT BACKUP) at once.
            time.sleep(hwdrsim.HANG_SECONDS)
            sys.exit(1)
        start_backup(sim, re.split(r"(?i)\s*start\s+backup", command, maxsplit=1)[1])
    elif upper[:2] == ["ABORT", "BACKUP"] and len(words) == 3 and words[2].isdigit():
        print(f"Abort of backup {words[2]} ordered")
    else:
        invalid_command(command.strip())


def interactive(sim):
    """ndb_mgm without -e (what the wrapper runs after -c): commands from standard input."""
    print("-- NDB Cluster -- Management Client --")
    for line in sys.stdin:
        if line.strip():
            execute(sim, line)


def main():
    """Entry point."""
    sim = hwdrsim.start(PROGRAM, hang=False)
    connectstring, command = parse_wrapper_args(sys.argv[1:])
    fail_if_unreachable(sim, connectstring)
    if command is None:
        interactive(sim)
    else:
        execute(sim, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
