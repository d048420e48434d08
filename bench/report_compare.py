#!/usr/bin/env python3
"""The report of bench/compare.sh: hwdr, restic, borg and `cp -a` side by
side (medians of the rounds), as Markdown on stdout.

Usage: report_compare.py RESULTS_DIR (holding results.env and machine.env).
"""

import statistics
import sys
from pathlib import Path

PHASES = [
    ("full", "full backup"),
    ("new", "backup after 1% new"),
    ("same", "backup with nothing new"),
    ("restore", "restore of HopsFS"),
    ("verify", "verify every stored byte"),
]
COMMAND = {
    "hwdr": {
        "full": "`hwdr backup`",
        "new": "`hwdr backup`",
        "same": "`hwdr backup`",
        "restore": "`hwdr restore <id> --only hopsfs`",
        "verify": "`hwdr verify <id> --full`",
    },
    "restic": {
        "full": "`restic backup`",
        "new": "`restic backup`",
        "same": "`restic backup`",
        "restore": "`restic restore latest`",
        "verify": "`restic check --read-data`",
    },
    "borg": {
        "full": "`borg create`",
        "new": "`borg create`",
        "same": "`borg create`",
        "restore": "`borg extract`",
        "verify": "`borg check --verify-data`",
    },
    "cp": {"full": "`cp -a`", "restore": "`cp -a` back"},
}


def load(path):
    values = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


def num(values, key):
    try:
        return float(values[key])
    except (KeyError, ValueError):
        return None


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def human(n):
    if n is None:
        return "–"
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"]:
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def secs(x):
    return "–" if x is None else f"{x:.2f} s"


def spread(xs):
    xs = [x for x in xs if x]
    if len(xs) < 2:
        return "–"
    return f"{max(xs) / min(xs):.2f}"


def cell(values, tool, phase, repeat):
    """The medians of one tool's phase over the rounds."""
    keys = [f"{tool}_{phase}{i}" for i in range(1, repeat + 1)]
    if not any(f"{k}_wall" in values for k in keys):
        return None
    walls = [num(values, f"{k}_sync_s") or num(values, f"{k}_wall") for k in keys]
    return {
        "wall": median(walls),
        "spread": spread(walls),
        "cpu": median(
            [
                (num(values, f"{k}_user") or 0) + (num(values, f"{k}_sys") or 0) + (num(values, f"{k}_agents_cpu_s") or 0)
                for k in keys
            ]
        ),
        "rss": median([num(values, f"{k}_maxrss_kb") for k in keys]),
        "agents": median(
            [max((num(values, f"{k}_agent{a}_vmhwm_kb") or 0) for a in (1, 2, 3)) or None for k in keys]
        ),
        "growth": median([num(values, f"{k}_growth_bytes") for k in keys]),
        "diffs": [values.get(f"{k}_content_diffs") for k in keys if f"{k}_content_diffs" in values],
        "files": [values.get(f"{k}_files") for k in keys if f"{k}_files" in values],
    }


def main():
    results = Path(sys.argv[1])
    values = load(results / "results.env")
    machine = load(results / "machine.env")
    repeat = int(values.get("repeat", "3"))
    tools = values.get("tools", "hwdr restic borg cp").split()
    out = []
    out.append(f"Run of {machine.get('date', '?')}, hwdr {machine.get('hwdr_commit', '?')}.\n")
    out.append("#### Machine and tools\n")
    for key in ["cpu_model", "cpus", "mem_total_kb", "kernel", "os", "virt", "fs", "disk", "start_load"]:
        out.append(f"- {key}: {machine.get(key, '?')}")
    for key in ["hwdr_version", "restic", "borg", "cp"]:
        out.append(f"- {key}: {machine.get(key, '?')}")
    out.append("")
    out.append("#### Data\n")
    unique = num(values, "gen1_unique_bytes")
    out.append(
        f"- 3 data nodes, replication 3: {values.get('n_large', '?')} blocks of 1-128 MiB and "
        f"{values.get('n_small', '?')} of 0-{values.get('small_max', '?')}; "
        f"{human(unique)} unique, {human(num(values, 'tree_bytes'))} in the node folders"
    )
    out.append(
        f"- each 1%-new round adds {values.get('add_large', '?')} + {values.get('add_small', '?')} blocks; "
        f"the restores give back {values.get('ref_files', '?')} files ({human(num(values, 'ref_bytes'))})"
    )
    out.append("")
    out.append(f"#### Results (medians of {repeat}; time includes a final `sync`; CPU = user + system, hwdr's agents included)\n")
    out.append("| phase | tool | command | time | max/min | CPU | repository growth | peak memory | restored trees equal |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for phase, label in PHASES:
        for tool in tools:
            c = cell(values, tool, phase, repeat)
            if c is None:
                continue
            memory = human(c["rss"] * 1024) if c["rss"] else "–"
            if tool == "hwdr" and c["agents"]:
                memory = f"leader {memory}, agents ≤ {human(c['agents'] * 1024)}"
            growth = human(c["growth"]) if phase in ("full", "new", "same") else "–"
            if phase == "restore":
                equal = "yes" if c["diffs"] and all(d == "0" for d in c["diffs"]) else f"NO ({c['diffs']})"
                equal += f" ({c['files'][0]} files)" if c["files"] else ""
            else:
                equal = "–"
            out.append(
                f"| {label} | {tool} | {COMMAND.get(tool, {}).get(phase, '')} | {secs(c['wall'])} | {c['spread']} | "
                f"{secs(c['cpu'])} | {growth} | {memory} | {equal} |"
            )
    out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
