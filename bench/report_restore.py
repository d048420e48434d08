#!/usr/bin/env python3
"""The report of bench/restore.sh: restore and verify --full against raw dd
writes and reads, medians of the rounds and max/min, in Markdown."""

import json
import statistics
import sys
from datetime import datetime

results = sys.argv[1]
r = dict(l.rstrip("\n").split("=", 1) for l in open(f"{results}/results.env") if "=" in l)
machine = dict(l.rstrip("\n").split("=", 1) for l in open(f"{results}/machine.env") if "=" in l)
n = int(r["repeat"])
written, read = int(r["restore_written_bytes"]), int(r["verify_read_bytes"])
MiB = 1 << 20


def f(key):
    return float(r[key])


def med(xs):
    return statistics.median(xs)


def spread(xs):
    return max(xs) / min(xs)


def when(t):
    return datetime.fromisoformat(t.replace("Z", "+00:00"))


def phases(key):
    """The slowest node's stage and place (s): each node's HopsFS job from
    its start (the restore's state file) to the agent's "staged" line, and
    from there to its "restored" line."""
    state = json.load(open(f"{results}/{key}.state.json"))
    step = next(s for s in state["steps"] if s["name"] == "hopsfs")
    stage, place = 0.0, 0.0
    for part in step["parts"]:
        if not part["started_at"]:
            continue
        ends = {}
        for line in open(f"{results}/{key}.agent{part['node'][-1]}.log", errors="replace"):
            for word, what in (("staged the HopsFS blocks", "staged"), ("restored the HopsFS storage", "placed")):
                if word in line:
                    ends[what] = when(line.split()[0])
        start = when(part["started_at"])
        if "staged" in ends and "placed" in ends:
            stage = max(stage, (ends["staged"] - start).total_seconds())
            place = max(place, (ends["placed"] - ends["staged"]).total_seconds())
    return stage, place


binaries = [("before", "base_")] if r.get("baseline") else []
binaries.append(("after" if binaries else "this tree", ""))
dd_w = [written / MiB / f(f"dd_write{i}_sync_s") for i in range(1, n + 1)]
dd_r = [written / MiB / f(f"dd_read{i}_s") for i in range(1, n + 1)]

print(
    f"Run of {r['new_commit']}{' against ' + r['baseline'] if r.get('baseline') else ''} "
    f"on {r['machine']} ({machine.get('cpu_model', '?')}, {machine.get('virt', '?')}), "
    f"{machine.get('date', '?')}, load at the start {machine.get('start_load', '?')}; "
    f"page cache {machine.get('dirty', '?')}.\n"
)
print(
    f"Data: {int(r['unique_bytes']) / 2**30:.2f} GiB of unique blocks ({r['blocks']} blocks, 3 data nodes, "
    f"replication 3); a restore writes {written / 2**30:.2f} GiB ({r['restore_files']} block and .meta files), "
    f"`verify --full` reads {read / 2**30:.2f} GiB of the repository. {n} rounds; in each the raw `dd` figures, "
    "then each binary's restore and `verify --full`.\n"
)
print("| | median | runs | max/min |")
print("|---|---:|---|---:|")
print(f"| raw `dd` write (MiB/s, with `fdatasync`) | {med(dd_w):,.0f} | {', '.join(f'{x:,.0f}' for x in dd_w)} | {spread(dd_w):.2f} |")
print(f"| raw `dd` read (MiB/s, cold cache) | {med(dd_r):,.0f} | {', '.join(f'{x:,.0f}' for x in dd_r)} | {spread(dd_r):.2f} |")
judged = {}
for name, p in binaries:
    rs = [f(f"{p}restore{i}_sync_s") for i in range(1, n + 1)]
    vs = [f(f"{p}verify{i}_s") for i in range(1, n + 1)]
    cpu = [f(f"{p}restore{i}_agents_cpu_s") for i in range(1, n + 1)]
    judged[name] = (rs, vs)
    print(f"| {name}: restore, s with the `sync` | {med(rs):.2f} | {', '.join(f'{x:.2f}' for x in rs)} | {spread(rs):.2f} |")
    print(f"| {name}: restore, MiB/s written | {written / MiB / med(rs):,.0f} | | |")
    print(f"| {name}: restore, agents' CPU s | {med(cpu):.1f} | {', '.join(f'{x:.1f}' for x in cpu)} | {spread(cpu):.2f} |")
    print(f"| {name}: `verify --full`, s | {med(vs):.2f} | {', '.join(f'{x:.2f}' for x in vs)} | {spread(vs):.2f} |")
    print(f"| {name}: `verify --full`, MiB/s read | {read / MiB / med(vs):,.0f} | | |")

print("\nEach restore: wall time (s) without and with the `sync` after it, the slowest node's stage and place (from the restore's state file and the agents' logs), the largest Dirty + Writeback during it, the agents' CPU, the 1-minute load before it:\n")
print("| binary | round | restore | with sync | stage | place | dirty max | agents CPU s | load |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, p in binaries:
    for i in range(1, n + 1):
        k = f"{p}restore{i}"
        stage, place = phases(k)
        print(
            f"| {name} | {i} | {f(k + '_s'):.2f} | {f(k + '_sync_s'):.2f} | {stage:.2f} | {place:.2f} |"
            f" {int(r[k + '_dirty_max_kb']) / 1024:,.0f} MiB | {f(k + '_agents_cpu_s'):.1f} | {r[k + '_load']} |"
        )

diffs = int(r["restored_diffs"]) + int(r["restored_attr_diffs"])
print(
    f"\nThe last restore against the originals: {r['restored_files']} files, "
    f"{'**equal** (contents, owners, modes)' if diffs == 0 else f'**{diffs} differ**'}.\n"
)
rs, vs = judged[binaries[-1][0]]
rw, vr = written / MiB / med(rs), read / MiB / med(vs)
print("| target | result | met |")
print("|---|---|---|")
print(f"| restore >= 0.9x raw `dd` write, median | {rw:,.0f} vs {med(dd_w):,.0f} MiB/s: {rw / med(dd_w):.2f}x | {'yes' if rw >= 0.9 * med(dd_w) else '**no**'} |")
print(f"| restore max/min <= 1.3 | {spread(rs):.2f} | {'yes' if spread(rs) <= 1.3 else '**no**'} |")
print(f"| `verify --full` >= 0.9x raw `dd` read, median | {vr:,.0f} vs {med(dd_r):,.0f} MiB/s: {vr / med(dd_r):.2f}x | {'yes' if vr >= 0.9 * med(dd_r) else '**no**'} |")
print(f"| restored trees equal | {'yes' if diffs == 0 else 'no'} | {'yes' if diffs == 0 else '**no**'} |")
