#!/usr/bin/python3
"""Simulated `/srv/hops/kafka/bin/kafka-restore.sh` (kafka-cookbook kafka-restore.sh.erb).

The real script (run as root) selects `topic_name, num_partitions, num_replicas`
from `hopsworks.project_topics` with mysql and runs `kafka-topics.sh --create
--if-not-exists` for each row (facts, section 5).  Here the topics go to
state_dir/kafka_topics.json, {name: {"partitions": n, "replicas": r}}
(docs/simulators.md).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import hwdrsim  # noqa: E402

PROGRAM = "kafka-restore.sh"
NO_TABLE = "ERROR 1146 (42S02) at line 1: Table 'hopsworks.project_topics' doesn't exist"
TIMEOUT = "Timed out waiting for a node assignment. Call: createTopics"


def read_topics(path):
    """The topics in kafka_topics.json ({} when there is none)."""
    try:
        return hwdrsim.load_json(path)
    except FileNotFoundError:
        return {}


def topic_rows(sim):
    """(name, partitions, replicas) of every row of hopsworks.project_topics, by id.

    A missing table (or database) ends the run with mysql's error; under mode
    `no-pipefail` with status 0, as the real script's `mysql ... | sed` pipeline does.
    """
    table = hwdrsim.find_table(sim.read_cluster(), "hopsworks", "project_topics")
    if table is None:
        print(NO_TABLE, file=sys.stderr, flush=True)
        sys.exit(0 if sim.mode.name == "no-pipefail" else 1)
    return [(row.get("topic_name"), row.get("num_partitions"), row.get("num_replicas"))
            for row in hwdrsim.rows_as_dicts(table)]


def kafka_unreachable(rows):
    """Mode `fail`: the first kafka-topics.sh times out and `set -e` ends the script."""
    if rows:
        print(f"Creating topic: {rows[0][0]}", flush=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S,000")
    hwdrsim.die(f"Error while executing topic command : {TIMEOUT}\n"
                f"[{stamp}] ERROR org.apache.kafka.common.errors.TimeoutException: {TIMEOUT}\n"
                " (kafka.admin.TopicCommand$)", 1)


def main():
    """Entry point (arguments are ignored, like the real script does)."""
    sim = hwdrsim.start(PROGRAM)
    if os.geteuid() != 0:
        hwdrsim.die(f"hwdr-sim: {PROGRAM} must run as root (the runbook runs it as super "
                    f"user), not uid {os.geteuid()}", 1)
    rows = topic_rows(sim)
    if sim.mode.name == "fail":
        kafka_unreachable(rows)
    path = sim.state_file(hwdrsim.KAFKA_TOPICS_FILE)
    with sim.locked_state():
        topics = read_topics(path)
        before = dict(topics)
        for name, partitions, replicas in rows:
            if partitions is None or replicas is None:
                print(f"Skipping creating topic: {name} as configuration is NULL")
                continue
            print(f"Creating topic: {name}")
            if name not in topics:  # --if-not-exists: an existing topic is left as it is
                topics[name] = {"partitions": int(partitions), "replicas": int(replicas)}
                print(f"Created topic {name}.")
        if topics != before or not os.path.exists(path):
            hwdrsim.write_atomically(path, hwdrsim.canonical_json(topics).encode(),
                                     owner=sim.state_owner())
    return 0


if __name__ == "__main__":
    sys.exit(main())
