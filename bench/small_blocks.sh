#!/usr/bin/env bash
# Small blocks, before/after (issue 17; docs/benchmarks.md, "The
# million-block backup"). As root:
#   bench/small_blocks.sh gen N                 N blocks of 1-2 KiB, 3 nodes, replication 3
#   bench/small_blocks.sh backup N HWDR LABEL   one full backup of them with the binary HWDR
# The data set sits on its own loop-mounted ext4 image (direct I/O, like
# MEM_LOOP=1 of bench/hopsfs.sh) and is kept between runs; each backup gets a
# fresh repository on a fresh image, fresh agents, empty listing caches and
# a dropped page cache (bench/lib.sh's setup_cluster, start_agents, backup).
# One summary line per run goes to $BENCH_DIR/out/summary.txt. Variables:
# BENCH_DIR (/var/tmp/hwdr-small), GEN (target/release/gen_datanodes),
# EXTRA_TOML (files appended to every node's drop-ins), STRACE=1 (strace -c
# -f of node1's agent), PERF=1 (perf record -g of the agents).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
W=${BENCH_DIR:-/var/tmp/hwdr-small}
R=$W/results.env
mkdir -p $W/out
. "$top/bench/lib.sh"
gen=${GEN:-$top/target/release/gen_datanodes}
ensure_users
mode=$1 N=$2
D=$W/n$N
mountimg() { # img dir size inodes
  local img=$1 dir=$2
  mkdir -p "$dir"
  if ! mountpoint -q "$dir"; then
    if [ "${5:-}" = fresh ] || [ ! -e "$img" ]; then
      rm -f "$img"; truncate -s "$3" "$img"
      mkfs.ext4 -q -F -N "$4" -E lazy_itable_init=0,lazy_journal_init=0 "$img"
    fi
    local dev; dev=$(losetup --find --show --direct-io=on "$img")
    mount "$dev" "$dir"
  fi
}
umountimg() { local dir=$1 dev; dev=$(findmnt -no SOURCE "$dir" || true); umount "$dir"; [ -n "$dev" ] && losetup -d "$dev" || true; }
case $mode in
gen)
  mountimg $D.data.img $D/data "$((N * 36 / 1024 / 1024 + 2))G" "$((N * 7 + 100000))" fresh
  "$gen" --nodes 3 --replication 3 --pools 2 --rbw 0 --owner "$owner" --out "$D/data/d" --blocks "$N" --min-size 1K --max-size 2K --seed 2 | tail -1
  sync
  ;;
backup)
  hwdr=$3; label=$4
  mountimg $D.data.img $D/data x x
  mountpoint -q $D/c && umountimg $D/c
  mountimg $D.repo.img $D/c "$((N * 20 / 1024 / 1024 + 2))G" "$((N * 3 + 100000))" fresh
  : > $R
  setup_cluster "$D/c" "$D/data/d" >/dev/null
  for f in ${EXTRA_TOML:-}; do for n in node1 node2 node3 head1; do cat "$f" >> "$D/c/etc-$n/hwdr.d/70-extra.toml"; done; done
  start_agents "$D/c"
  trap stop_agents EXIT
  mkdir -p $W/results
  key=$label
  spid=
  if [ -n "${STRACE:-}" ]; then
    strace -c -f -o $W/out/$label.strace $(for t in /proc/${agent_pids[0]}/task/*; do echo -p ${t##*/}; done) & spid=$!
    sleep 1
  fi
  if [ -n "${PERF:-}" ]; then
    perf record -g -o $W/out/$label.perf -p "$(IFS=,; echo "${agent_pids[*]}")" 2>/dev/null & spid=$!
    sleep 1
  fi
  backup "$D/c" "$key" 2601011300
  if [ -n "$spid" ]; then kill -INT $spid; wait $spid || true; fi
  stop_agents
  cp $R $W/out/$label.env
  python3 - "$W/results/$key.manifest.json" "$W/out/$label.env" "$top/bench" <<'PY' | tee -a $W/out/summary.txt
import json,sys
sys.path.insert(0,sys.argv[3])
import report
m=json.load(open(sys.argv[1]))
env=report.load_env(__import__("pathlib").Path(sys.argv[2]))
st=report.steps(m)
def sp(n):
    v=st.get(n); return (v[1]-v[0]).total_seconds() if v else 0
lab=sys.argv[2].split("/")[-1][:-4]
print(f"{lab}: whole {report.whole(m):.1f}s list {sp('hopsfs-list'):.1f} plan {sp('hopsfs-plan'):.1f} upload {sp('hopsfs-upload'):.1f} leader_maxrss {int(env[lab+'_maxrss_kb'])/1024:.1f}MiB agents_cpu {env[lab+'_agents_cpu_s']} load {env[lab+'_load']} agent_hwm {max(int(env[lab+f'_agent{i}_vmhwm_kb']) for i in (1,2,3))/1024:.1f}MiB")
PY
  ;;
esac
