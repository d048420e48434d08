#!/usr/bin/env bash
# Restore and verify at disk speed (`make bench`, restore part; `make
# bench-restore`; docs/benchmarks.md, "Restore and verify at disk speed").
#
# On one generated data set (3 data nodes, replication 3, UNIQUE_GIB GiB of
# distinct blocks) and one full backup of it, REPEAT rounds, each of them, in
# this order so that every figure of a round sees the same machine:
#   - raw `dd` write: as many bytes as the restore writes (every replica's
#     block and .meta), from /dev/zero into one file, 1 MiB writes,
#     `conv=fdatasync` (the time includes the flush);
#   - raw `dd` read: that file read back, 1 MiB reads, cold cache;
#   - for each binary (BASELINE first if set, then this tree's): the node
#     folders wiped, fresh agents, `hwdr restore ID --only hopsfs`, cold
#     cache, timed with the `sync` after it; the agents' CPU; the largest
#     Dirty + Writeback of /proc/meminfo during it; each node's stage and
#     place times (its job's start in the restore's state file, the end of
#     each phase in the agent's log); then `hwdr verify ID --full` on the
#     leader, cold cache.
# The last restore of this tree's binary is compared with the originals
# (MD5, owner and mode of every VERSION and every file below finalized/).
# Medians of the rounds and max/min are judged against the targets: restore
# >= 0.9x raw write, max/min <= 1.3; verify --full >= 0.9x raw read.
#
# Variables: BENCH_DIR (/var/tmp/hwdr-bench-restore), UNIQUE_GIB (4), REPEAT
# (3), BASELINE (a baseline hwdr binary; none by default), NEW (the binary
# measured: target/release/hwdr), BENCH_DOC
# (docs/benchmarks.md; empty: do not update it), KEEP (0). Run as root.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/hwdr-bench-restore}
UNIQUE_GIB=${UNIQUE_GIB:-4}
REPEAT=${REPEAT:-3}
BASELINE=${BASELINE:-}
BENCH_DOC=${BENCH_DOC-$top/docs/benchmarks.md}
KEEP=${KEEP:-0}
W=$BENCH_DIR
R=$W/results/results.env
new=${NEW:-$top/target/release/hwdr}
hwdr=$new
gen=$top/target/release/gen_datanodes

# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (the blocks are hdfs's; the page cache is dropped)"
/usr/bin/time --version 2>&1 | grep -q GNU || die "GNU time is missing (apt-get install time)"
for b in "$new" "$gen" ${BASELINE:+"$BASELINE"}; do [ -x "$b" ] || die "$b is missing: run make bench-restore"; done
for d in "$W/data" "$W/cluster"; do
  [ -e "$d" ] && die "$d is left from an earlier run: remove it or set BENCH_DIR"
done
rm -rf "$W/results"
mkdir -p "$W/results"
: >"$R"
cleanup() {
  stop_agents
  rm -f "$W/dd.img"
  if [ "$KEEP" != 1 ]; then rm_big "$W/data" "$W/cluster"; fi
}
trap cleanup EXIT
# The replicas (3x), the repository (1x) and the dd file (3x), with room.
need_space "$(awk -v u="$UNIQUE_GIB" 'BEGIN { print int(u * 7.5 + 2) }')"

describe_machine >"$W/results/machine.env"
echo "dirty=$(cat /proc/sys/vm/dirty_background_ratio)/$(cat /proc/sys/vm/dirty_ratio) % (background/throttle), expire $(cat /proc/sys/vm/dirty_expire_centisecs) cs" >>"$W/results/machine.env"
put_machine
put repeat "$REPEAT"
put baseline "${BASELINE:+$("$BASELINE" --version)}"
put new_commit "$(git -C "$top" rev-parse --short HEAD)$(git -C "$top" diff --quiet HEAD -- src 2>/dev/null || echo '+changes')"

ensure_users
gen_mixed_data
c=$W/cluster
setup_cluster "$c" "$W/data"
start_agents "$c"
id=2601011201
say "the full backup restored in every round"
"$hwdr" --config "$c/etc-head1/hwdr.toml" backup --id "$id" 2>"$W/results/backup.log" || die "the backup failed: $W/results/backup.log"
stop_agents
tree_sums "$W/data" "$W/results/ref"
written=$(find "$W/data" -type f -path '*/finalized/*' -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')
put restore_written_bytes "$written"
put restore_files "$(find "$W/data" -type f -path '*/finalized/*' | wc -l)"
put verify_read_bytes "$(file_bytes "$c/repo/blocks")"

# The largest Dirty + Writeback (kB) of /proc/meminfo until file $1 exists.
dirty_max() {
  local m=0 v
  while [ ! -e "$1" ]; do
    v=$(awk '/^(Dirty|Writeback):/ { s += $2 } END { print s }' /proc/meminfo)
    [ "$v" -gt "$m" ] && m=$v
    sleep 0.2
  done
  echo "$m"
}

hwdr_restore() {
  /usr/bin/time -o "$W/results/$2.time" -f 'wall=%e\nuser=%U\nsys=%S\nmaxrss_kb=%M' \
    "$hwdr" --config "$1/etc-head1/hwdr.toml" restore "$3" --only hopsfs >"$W/results/$2.log" 2>&1 ||
    die "$2: hwdr restore failed, see $W/results/$2.log"
}

# restore_run KEY BIN: wiped nodes, fresh agents of BIN, a timed restore.
restore_run() {
  local key=$1 c0 c1 spid i
  hwdr=$2
  wipe_nodes "$W/data"
  rm -rf "$c"/state-*/restore
  start_agents "$c"
  c0=$(agents_cpu)
  rm -f "$W/results/$key.done"
  dirty_max "$W/results/$key.done" >"$W/results/$key.dirty" &
  spid=$!
  timed "$key" hwdr_restore "$c" "$key" "$id"
  c1=$(agents_cpu)
  touch "$W/results/$key.done"
  wait "$spid" || true
  put "${key}_dirty_max_kb" "$(cat "$W/results/$key.dirty")"
  put "${key}_agents_cpu_s" "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')"
  sed "s/^/${key}_/" "$W/results/$key.time" >>"$R"
  cp "$c/state-head1/restore/$id.json" "$W/results/$key.state.json"
  for i in 1 2 3; do cp "$c/agent-node$i.log" "$W/results/$key.agent$i.log"; done
  stop_agents
}

# verify_run KEY BIN: a cold-cache `hwdr verify ID --full` on the leader.
verify_run() {
  local key=$1 bin=$2 s e
  drop_caches
  s=$(now_ns)
  "$bin" --config "$c/etc-head1/hwdr.toml" verify "$id" --full >"$W/results/$key.log" 2>&1 ||
    die "$key: hwdr verify --full failed, see $W/results/$key.log"
  e=$(now_ns)
  put "${key}_s" "$(secs "$s" "$e")"
  say "$key: $(secs "$s" "$e") s"
}

dd_write() { dd if=/dev/zero of="$W/dd.img" bs=1M count="$(((written + 1048575) / 1048576))" conv=fdatasync status=none; }
dd_read() { dd if="$W/dd.img" of=/dev/null bs=1M status=none; }

for i in $(seq "$REPEAT"); do
  say "round $i of $REPEAT: raw dd write and read"
  timed "dd_write$i" dd_write
  timed "dd_read$i" dd_read
  rm -f "$W/dd.img"
  if [ -n "$BASELINE" ]; then
    say "round $i: restore and verify --full, baseline"
    restore_run "base_restore$i" "$BASELINE"
    verify_run "base_verify$i" "$BASELINE"
  fi
  say "round $i: restore and verify --full, this tree"
  restore_run "restore$i" "$new"
  verify_run "verify$i" "$new"
done
got=$W/results/got
tree_sums "$W/data" "$got"
put restored_files "$(wc -l <"$got.md5")"
put restored_diffs "$(LC_ALL=C comm -3 "$W/results/ref.md5" "$got.md5" | wc -l)"
put restored_attr_diffs "$(LC_ALL=C comm -3 "$W/results/ref.attr" "$got.attr" | wc -l)"

python3 "$top/bench/report_restore.py" "$W/results" >"$W/results/report.md"
cp "$W/results/report.md" "$top/bench/last-run-restore.md"
update_doc "$BENCH_DOC" bench-restore "$W/results/report.md"
cat "$W/results/report.md"
