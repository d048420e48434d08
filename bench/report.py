#!/usr/bin/env python3
"""Turns the raw results of bench/hopsfs.sh (results.env, machine.env, the
manifests) into the Markdown results section of docs/benchmarks.md.

Usage: report.py RESULTS_DIR > report.md
"""

import json
import sys
from datetime import datetime
from pathlib import Path

MIB = 1 << 20
GIB = 1 << 30


def load_env(path):
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def ts(text):
    # RFC 3339 with up to nanoseconds; Python takes microseconds.
    text = text.replace("Z", "+00:00")
    if "." in text:
        head, frac = text.split(".", 1)
        digits = "".join(c for c in frac if c.isdigit())
        zone = frac[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.fromisoformat(text)


def steps(manifest):
    """{step name: (first start, last end, [(node, seconds)])} over all nodes."""
    out = {}
    for node in manifest["nodes"]:
        for s in node["steps"]:
            if not s.get("started_at") or not s.get("finished_at"):
                continue
            a, b = ts(s["started_at"]), ts(s["finished_at"])
            first, last, per = out.get(s["name"], (a, b, []))
            per.append((node["name"], (b - a).total_seconds()))
            out[s["name"]] = (min(first, a), max(last, b), per)
    return out


def hopsfs_span(manifest):
    """Seconds from the first hopsfs-list start to the last hopsfs step end."""
    st = [v for k, v in steps(manifest).items() if k.startswith("hopsfs-")]
    if not st:
        return None
    return (max(v[1] for v in st) - min(v[0] for v in st)).total_seconds()


def span(manifest, name):
    v = steps(manifest).get(name)
    return (v[1] - v[0]).total_seconds() if v else 0.0


def whole(manifest):
    return (ts(manifest["finished_at"]) - ts(manifest["started_at"])).total_seconds()


def rss_phases(manifest, tsv):
    """[(phase, peak leader kB, peak agent kB, samples)] from a sample_rss file."""
    rows = []
    for line in tsv.read_text().splitlines():
        f = line.split("\t")
        if len(f) >= 2:
            rows.append((float(f[0]), int(f[1] or 0), max((int(x or 0) for x in f[2:]), default=0)))
    st = steps(manifest)
    epoch = lambda d: d.timestamp()  # noqa: E731
    start, end = epoch(ts(manifest["started_at"])), epoch(ts(manifest["finished_at"]))
    hops = {k: v for k, v in st.items() if k.startswith("hopsfs-")}
    phases = [("process start → backup start", float("-inf"), start)]
    if "hopsfs-list" in hops:
        l0 = epoch(hops["hopsfs-list"][0])
        phases.append(("RonDB steps", start, l0))
        phases.append(("hopsfs-list", l0, epoch(hops["hopsfs-list"][1])))
    if "hopsfs-plan" in hops:
        phases.append(("hopsfs-plan (merge, missing, assign)", epoch(hops["hopsfs-plan"][0]), epoch(hops["hopsfs-plan"][1])))
    ups = [v for k, v in hops.items() if k.startswith("hopsfs-upload") or k.startswith("hopsfs-retry")]
    if ups:
        phases.append(("hopsfs-upload", min(epoch(v[0]) for v in ups), max(epoch(v[1]) for v in ups)))
    phases.append(("manifest written → exit (pruning)", end, float("inf")))
    out = []
    for name, a, b in phases:
        sel = [r for r in rows if a <= r[0] <= b]
        out.append((name, max((r[1] for r in sel), default=0), max((r[2] for r in sel), default=0), len(sel)))
    return out


def machine_table(m, r, tools):
    """The machine section's lines (machine.env of lib.sh's describe_machine);
    tools: the version lines of the programs compared with hwdr."""
    return [
        "#### Machine\n",
        "| | |\n|---|---|",
        f"| CPU | {m['cpus']} × {m['cpu_model']} ({m['virt']}) |",
        f"| RAM | {int(m['mem_total_kb']) / 1024 / 1024:.1f} GiB |",
        f"| disk | {m['disk']} (NAME SIZE ROTA TYPE), scheduler `{m['disk_scheduler']}` |",
        f"| file system | {m['fs']} (source fstype size avail), `{m['mount_opts']}` |",
        f"| kernel, OS | {m['kernel']}, {m['os']} |",
        f"| versions | {m['hwdr_version']} ({m['hwdr_commit']}), {m['rustc']}, {', '.join(tools)}, GNU time {m['gnu_time']} |",
        f"| load average at start | {m['start_load']} |",
        f"| page cache dropped before each timed run | {r.get('dropped', '?')} |",
        "",
    ]


def f(x, nd=2):
    return f"{x:.{nd}f}"


def mibs(nbytes, secs):
    return f"{nbytes / MIB / secs:.0f} MiB/s" if secs > 0 else "n/a"


def yes(ok):
    return "**yes**" if ok else "**no**"


def main():
    d = Path(sys.argv[1])
    r = load_env(d / "results.env")
    m = load_env(d / "machine.env")
    num = lambda k: float(r[k])  # noqa: E731
    man = {p.name[: -len(".manifest.json")]: json.loads(p.read_text()) for p in d.glob("*.manifest.json")}
    # Each kind of backup ran `repeat` times (full1, full2, ...): the run with
    # the median wall time stands for its kind (full, incr, same) below.
    repeat = int(r.get("repeat", "1"))
    runs = {}
    for kind in ("full", "incr", "same"):
        walls = sorted((num(f"{kind}{i}_wall"), i) for i in range(1, repeat + 1))
        runs[kind] = walls
        med = walls[(len(walls) - 1) // 2][1]
        for k in list(r):
            if k.startswith(f"{kind}{med}_"):
                r[f"{kind}_" + k[len(f"{kind}{med}_"):]] = r[k]
        man[kind] = man[f"{kind}{med}"]
    last = f"gen_add{repeat}"
    out = []
    p = out.append

    p(f"Run of {m['date']}: `make bench` with UNIQUE_GIB={r['unique_gib_setting']}, MEM_BLOCKS={r.get('mem_blocks_setting', '?')}. "
      "Generated by bench/report.py from the raw results; the machine was shared with other work "
      "(see the load averages).\n")
    out.extend(machine_table(m, r, [m["cp"], m["rsync"]]))

    U1, RB1 = num("gen1_unique_bytes"), num("gen1_replica_bytes")
    U2 = num("gen_add1_unique_bytes")
    U3, RB3 = num(f"{last}_unique_bytes"), num(f"{last}_replica_bytes")
    p("#### Data\n")
    p(f"- Data set 1: 3 data nodes, replication 3, 2 block pools, no `rbw/`; "
      f"{int(r['n_large'])} blocks of 1–128 MiB + {int(r['n_small'])} blocks of 0–{r.get('small_max', '256K')} "
      f"= {int(num('gen1_blocks'))} distinct blocks, **{U1 / GIB:.2f} GiB unique**, "
      f"{RB1 / GIB:.2f} GiB of replicas; {int(r['tree_files'])} files, {num('tree_bytes') / GIB:.2f} GiB "
      f"with the `.meta` files (what `cp -a` copies). Generated in {f(num('gen_big_s'), 0)} s.")
    p(f"- {r.get('new_percent', '1')}% new: {r['add_large']} block(s) of 1–128 MiB + {r['add_small']} blocks of 0–{r.get('small_max', '256K')} added "
      f"(`--add`) before each of the {repeat} backups after 1% new; the first time "
      f"{int(num('gen_add1_blocks') - num('gen1_blocks'))} blocks, "
      f"{(U2 - U1) / MIB:.1f} MiB new unique ({100 * (U2 - U1) / U1:.2f}% of the bytes, "
      f"{100 * (num('gen_add1_blocks') - num('gen1_blocks')) / num('gen1_blocks'):.2f}% of the blocks); "
      + ", ".join(
          f"then {(num(f'gen_add{i}_unique_bytes') - num(f'gen_add{i - 1}_unique_bytes')) / MIB:.1f} MiB"
          for i in range(2, repeat + 1)
      )
      + ".")
    if "gen_mem_blocks" in r:
        p(f"- Data set 2 (memory): {int(num('gen_mem_blocks')):,} distinct blocks of 1–2 KiB, "
          f"replication 3 on 3 nodes ({3 * int(num('gen_mem_blocks')):,} replicas, "
          f"{6 * int(num('gen_mem_blocks')):,} files), {num('gen_mem_unique_bytes') / GIB:.2f} GiB unique. "
          f"Generated in {f(num('gen_mem_s'), 0)} s.")
    p("")

    full, incr, same = man["full"], man["incr"], man["same"]
    hf = full["hopsfs"]
    t_full = num("full_wall")
    t_full_h = hopsfs_span(full)
    t_cp, t_cp_s = num("cp_s"), num("cp_sync_s")
    t_rs, t_rs_s = num("rsync1_s"), num("rsync1_sync_s")
    C = num("cp_copied_bytes")
    p("#### Results\n")
    p("Every timed run starts with `sync; echo 3 > /proc/sys/vm/drop_caches`. hwdr's upload ends "
      "with `syncfs` on the repository, so `cp` and `rsync` are shown with the `sync` after them "
      "as well (the fair comparison) and without it.\n")
    p("| run | time (s) | bytes moved | throughput | unique bytes / time | load at start |")
    p("|---|---:|---:|---:|---:|---:|")
    p(f"| `hwdr backup`, full (whole run) | {f(t_full)} | {hf['new_bytes'] / GIB:.2f} GiB | {mibs(hf['new_bytes'], t_full)} | {mibs(U1, t_full)} | {r.get('full_load', '')} |")
    p(f"| — its HopsFS part (hopsfs-list → last upload) | {f(t_full_h)} | | | {mibs(U1, t_full_h)} |  |")
    p(f"| `cp -a` of the 3 node folders, + `sync` | {f(t_cp_s)} | {C / GIB:.2f} GiB | {mibs(C, t_cp_s)} | {mibs(U1, t_cp_s)} | {r.get('cp_load', '')} |")
    p(f"| `cp -a`, without the `sync` | {f(t_cp)} | | {mibs(C, t_cp)} | {mibs(U1, t_cp)} |  |")
    p(f"| `rsync -a`, + `sync` | {f(t_rs_s)} | {num('rsync1_copied_bytes') / GIB:.2f} GiB | {mibs(num('rsync1_copied_bytes'), t_rs_s)} | {mibs(U1, t_rs_s)} | {r.get('rsync1_load', '')} |")
    p(f"| `rsync -a`, without the `sync` | {f(t_rs)} | | {mibs(num('rsync1_copied_bytes'), t_rs)} | {mibs(U1, t_rs)} |  |")
    hi = incr["hopsfs"]
    t_incr, t_incr_h = num("incr_wall"), hopsfs_span(incr)
    p(f"| `hwdr backup` after 1% new (whole run) | {f(t_incr)} | {hi['new_bytes'] / MIB:.1f} MiB | {mibs(hi['new_bytes'], t_incr)} | | {r.get('incr_load', '')} |")
    p(f"| — its HopsFS part | {f(t_incr_h)} | | | |  |")
    p(f"| `rsync -a --link-dest` after 1% new, + `sync` | {f(num('rsync2_sync_s'))} | {num('rsync2_new_bytes') / MIB:.1f} MiB | | | {r.get('rsync2_load', '')} |")
    p(f"| `rsync -a --link-dest`, without the `sync` | {f(num('rsync2_s'))} | | | |  |")
    t_same = num("same_wall")
    p(f"| `hwdr backup` with nothing new (whole run) | {f(t_same)} | {man['same']['hopsfs']['new_bytes']} B | | | {r.get('same_load', '')} |")
    p(f"| — its HopsFS part | {f(hopsfs_span(same))} | | | |  |")
    p("")

    p(f"Each kind of `hwdr backup` ran {repeat} times (whole run, GNU time; the HopsFS part in brackets); "
      "the median run is the one in the table above and below and the one the targets judge:\n")
    p("| backup | " + " | ".join(f"run {i}" for i in range(1, repeat + 1)) + " | median |")
    p("|---|" + "---:|" * (repeat + 1))
    for kind, label in (("full", "full"), ("incr", "after 1% new"), ("same", "nothing new")):
        cells = []
        for i in range(1, repeat + 1):
            h = hopsfs_span(man[f"{kind}{i}"])
            cells.append(f"{f(num(f'{kind}{i}_wall'))} ({f(h) if h is not None else '–'})")
        walls = runs[kind]
        p(f"| {label} | " + " | ".join(cells) + f" | {f(walls[(len(walls) - 1) // 2][0])} |")
    p("")
    p("Step times of the median hwdr backups (seconds; for node steps the slowest node, then each node):\n")
    p("| step | full | 1% new | nothing new |")
    p("|---|---:|---:|---:|")
    names = [s for s in steps(full)]
    for name in names:
        cells = []
        for mm in (full, incr, same):
            v = steps(mm).get(name)
            if not v:
                cells.append("")
                continue
            per = v[2]
            if len(per) > 1:
                cells.append(f"{max(x for _, x in per):.2f} (" + ", ".join(f"{n} {x:.2f}" for n, x in per) + ")")
            else:
                cells.append(f"{per[0][1]:.2f}")
        p(f"| {name} | " + " | ".join(cells) + " |")
    p(f"| whole backup (manifest start → end) | {f(whole(full))} | {f(whole(incr))} | {f(whole(same))} |")
    p(f"| `hwdr backup` process (GNU time) | {f(t_full)} | {f(t_incr)} | {f(t_same)} |")
    p(f"| leader CPU user+sys | {f(num('full_user') + num('full_sys'))} | {f(num('incr_user') + num('incr_sys'))} | {f(num('same_user') + num('same_sys'))} |")
    p(f"| agents' CPU user+sys (3 agents) | {r['full_agents_cpu_s']} | {r['incr_agents_cpu_s']} | {r['same_agents_cpu_s']} |")
    p("")

    # Repository size.
    rb, rm_ = num("repo_block_bytes"), num("repo_meta_bytes")
    p(f"Repository after all backups (data set 1 + {repeat} × 1% new):\n")
    p("| | bytes | GiB |")
    p("|---|---:|---:|")
    p(f"| block files in `<repo>/blocks` ({int(num('repo_block_files'))} files) | {int(rb):,} | {rb / GIB:.3f} |")
    p(f"| unique block bytes (generator, last manifest's `distinct_bytes`) | {int(U3):,} / {man[f'same{repeat}']['hopsfs']['distinct_bytes']:,} | {U3 / GIB:.3f} |")
    p(f"| replica bytes | {int(RB3):,} | {RB3 / GIB:.3f} |")
    p(f"| `.meta` files in the store | {int(rm_):,} | {rm_ / GIB:.3f} |")
    p(f"| `du -sb <repo>/blocks` (files + folders) | {int(num('repo_blocks_du_b')):,} | {num('repo_blocks_du_b') / GIB:.3f} |")
    p(f"| `du -sk <repo>/blocks` (disk used) vs `du -sk` of the data nodes | {int(num('repo_du_disk_kb')) * 1024:,} vs {int(num('data_du_disk_kb')) * 1024:,} | {num('repo_du_disk_kb') / 1048576:.3f} vs {num('data_du_disk_kb') / 1048576:.3f} |")
    p("")

    # CRC.
    p("CRC verification of one node's blocks (all distinct blocks: replication 3 on 3 nodes), single-threaded, "
      "with hwdr's `meta::verify_file` (the `BlockVerifier` every upload runs; `bench/crc`) "
      "vs the same program only reading (same 1 MiB reads) vs `cat`:\n")
    p("| | cold cache | warm cache |")
    p("|---|---:|---:|")
    cb = num("crc_verify_cold_bytes")
    p(f"| verify (read + CRC32C per 512 B) | {mibs(cb, num('crc_verify_cold_seconds'))} ({f(num('crc_verify_cold_seconds'))} s) | {mibs(cb, num('crc_verify_warm_seconds'))} ({f(num('crc_verify_warm_seconds'))} s) |")
    p(f"| read only | {mibs(cb, num('crc_read_cold_seconds'))} ({f(num('crc_read_cold_seconds'))} s) | {mibs(cb, num('crc_read_warm_seconds'))} ({f(num('crc_read_warm_seconds'))} s) |")
    p(f"| `cat` > /dev/null | {mibs(cb, num('cat_cold_s'))} ({f(num('cat_cold_s'))} s) | {mibs(cb, num('cat_warm_s'))} ({f(num('cat_warm_s'))} s) |")
    crc_only = num("crc_verify_warm_seconds") - num("crc_read_warm_seconds")
    if crc_only > 0:
        p(f"| CRC alone, estimated (warm verify time − warm read time) | | {mibs(cb, crc_only)} |")
    p("")

    # Memory.
    if "mem" in man:
        mm = man["mem"]
        p(f"Memory, backup of {mm['hopsfs']['distinct_blocks']:,} blocks ({mm['hopsfs']['replicas']:,} replicas) "
          f"on {r.get('mem_fs', 'the same disk')}; load average at start {r.get('mem_load', '?')}:\n")
        p("| process | peak RSS | how measured |")
        p("|---|---:|---|")
        p(f"| leader `hwdr backup` | {num('mem_maxrss_kb') / 1024:.1f} MiB | GNU time, Maximum resident set size |")
        for i in (1, 2, 3):
            p(f"| agent node{i} | {num(f'mem_agent{i}_vmhwm_kb') / 1024:.1f} MiB (idle before: {num(f'mem_agent{i}_idle_vmhwm_kb') / 1024:.1f}) | `VmHWM` of /proc/<pid>/status before it was stopped |")
        p("")
        tsv = d / "mem.rss.tsv"
        if tsv.exists():
            p("Resident memory over the backup (VmRSS sampled every 0.2 s; the peak within each phase):\n")
            p("| phase | leader | largest agent | samples |")
            p("|---|---:|---:|---:|")
            for name, lead, agent, n in rss_phases(mm, tsv):
                if n == 0:
                    continue
                p(f"| {name} | {lead / 1024:.1f} MiB | {agent / 1024:.1f} MiB | {n} |")
            p("")
        p("| step | seconds |")
        p("|---|---:|")
        for name, (a, b, per) in steps(mm).items():
            if len(per) > 1:
                p(f"| {name} | {max(x for _, x in per):.1f} (" + ", ".join(f"{n} {x:.1f}" for n, x in per) + ") |")
            else:
                p(f"| {name} | {per[0][1]:.1f} |")
        p(f"| `hwdr backup` process (GNU time) | {f(num('mem_wall'), 1)} |")
        p(f"| leader CPU user+sys; agents' CPU | {f(num('mem_user') + num('mem_sys'), 1)}; {r['mem_agents_cpu_s']} |")
        p(f"| inventories + assignments in the backup folder | {num('mem_inventory_bytes') / MIB:.1f} MiB |")
        if r.get("mem_pieces_bytes"):
            p(f"| inventory pieces (`inventories/`, shared with later backups) | {num('mem_pieces_bytes') / MIB:.1f} MiB |")
        if r.get("mem_same_hopsfs_bytes"):
            p(f"| the next backup with nothing new: HopsFS files it adds | {int(num('mem_same_hopsfs_bytes')):,} B |")
        p("")
    p("The same backups' peak memory on data set 1 (few large blocks): leader "
      f"{num('full_maxrss_kb') / 1024:.1f} MiB, agents "
      + ", ".join(f"{num(f'same_agent{i}_vmhwm_kb') / 1024:.1f}" for i in (1, 2, 3)) + " MiB.\n")

    # Targets.
    ratio = (U1 / t_full) / (C / t_cp_s)
    ratio_h = (U1 / t_full_h) / (C / t_cp_s)
    ratio_ns = (U1 / t_full) / (C / t_cp)
    p("#### Targets\n")
    p("| target | result | met |")
    p("|---|---|---|")
    p(f"| full backup ≥ 0.9× the throughput of `cp -a`, for the unique bytes | hwdr (median run) {mibs(U1, t_full)} of unique bytes (whole run) vs `cp -a` {mibs(C, t_cp_s)} of bytes copied (with sync): **{ratio:.2f}×** ({ratio_ns:.2f}× vs `cp -a` without the sync; {ratio_h:.2f}× for the HopsFS part alone) | {yes(ratio >= 0.9)} |")
    pct = 100 * t_incr / t_full
    pct_h = 100 * t_incr_h / t_full_h
    worst = 100 * runs["incr"][-1][0] / runs["full"][0][0]
    p(f"| 1%-new backup < 5% of the full backup's time | medians {f(t_incr)} s vs {f(t_full)} s = **{pct:.1f}%** (HopsFS part: {f(t_incr_h)} s vs {f(t_full_h)} s = {pct_h:.1f}%; slowest 1%-new run vs fastest full run: {worst:.1f}%) | {yes(pct < 5)} |")
    eq = int(rb) == int(U3)
    p(f"| repository size = the unique blocks, not the replicas | {int(rb):,} B of block files {'=' if eq else '≠'} {int(U3):,} B unique ({RB3 / rb:.2f}× less than the replicas); + {rm_ / MIB:.1f} MiB of `.meta` | {yes(eq)} |")
    if "mem" in man:
        peak = max(num("mem_maxrss_kb"), *(num(f"mem_agent{i}_vmhwm_kb") for i in (1, 2, 3))) / 1024
        nb = int(man["mem"]["hopsfs"]["distinct_blocks"])
        label = "a million blocks" if nb == 1_000_000 else f"a million blocks (this run: {nb:,} blocks, so not a test of the target)"
        p(f"| peak memory < 200 MiB for {label} | highest of leader and agents: **{peak:.1f} MiB** (leader {num('mem_maxrss_kb') / 1024:.1f}) | {yes(peak < 200)} |")
    p("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
