#!/usr/bin/python3
"""Simulated `/srv/hops/epipe/bin/reindex-epipe.sh`: rebuilds OpenSearch from RonDB.

The real script exits 1 with "A Epipe server is already running. Kill it first."
when ePipe runs (facts, section 5), else runs `epipe --reindex`.  Here a reindex
counts the projects, feature groups and inodes in cluster.json, prints them and
appends a record of the run to state_dir/reindex.jsonl (docs/simulators.md).
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import hwdrsim  # noqa: E402

PROGRAM = "reindex-epipe.sh"
SOURCES = (  # (record key, database, table, what the line calls them)
    ("projects", "hopsworks", "project", "projects"),
    ("feature_groups", "hopsworks", "feature_group", "feature groups"),
    ("inodes", "hops", "hdfs_inodes", "inodes"),
)


def counts(sim):
    """{record key: rows} of the tables ePipe reindexes; ends like ePipe if one is missing."""
    cluster = sim.read_cluster()
    found = {}
    for key, database, name, _ in SOURCES:
        table = hwdrsim.find_table(cluster, database, name)
        if table is None:
            hwdrsim.die(f"[error] Failed to get table {database}.{name}: "
                        "723: No such table existed", 1)
        found[key] = len(table["rows"])
    return found


def record_run(sim, found):
    """Appends this run to state_dir/reindex.jsonl under the state lock."""
    record = dict(found, time=round(time.time(), 3), uid=os.getuid(), euid=os.geteuid())
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    path = sim.state_file(hwdrsim.REINDEX_LOG_FILE)
    with sim.locked_state():
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            owner = sim.state_owner()
            if owner is not None:  # root: the file belongs to the state dir's owner
                os.fchown(fd, *owner)
            if owner is not None or os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, 0o666)  # simctl init makes it 0666; keep it so
            os.write(fd, line)
        finally:
            os.close(fd)


def main():
    """Entry point (arguments are ignored, like the real script does)."""
    sim = hwdrsim.start(PROGRAM)
    if sim.mode.name == "epipe-running":
        hwdrsim.die("A Epipe server is already running. Kill it first.", 1, sys.stdout)
    if sim.mode.name == "fail":
        hwdrsim.die("[error] Failed to connect to OpenSearch at https://127.0.0.1:9200: "
                    "Connection refused", 1)
    found = counts(sim)
    for key, database, name, label in SOURCES:
        print(f"Reindexing {database}.{name}: {found[key]} {label}", flush=True)
    record_run(sim, found)
    print(f"Reindex done: {found['projects']} projects, {found['feature_groups']} feature "
          f"groups, {found['inodes']} inodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
