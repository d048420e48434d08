#!/usr/bin/env bash
# What the block store's durability costs, and how fast an interrupted
# backup stops (`make bench-durability`; docs/benchmarks.md, "Durability").
#
# Since issue 11 an upload renames a block into place only after a `syncfs`
# made its bytes durable (one per batch of 256 blocks or 256 MiB). This run
# measures, on the same generated data, in one run, alternating:
#   - full backups with the baseline binary (BASELINE: before issue 11, no
#     sync before the renames) and with this tree's binary, REPEAT times
#     each, cold cache, the repository emptied in between; the medians;
#   - STOPS times: a full backup of this tree's binary sent SIGTERM in the
#     middle of its upload, and how long it takes to exit (and that its
#     manifest says failed, "interrupted", and the lock is gone).
#
# Variables: BENCH_DIR (/var/tmp/hwdr-bench-durability), UNIQUE_GIB (4),
# REPEAT (3), STOPS (3), BASELINE (a baseline hwdr binary; default: built
# from BASELINE_REV, 7d7cb4f, into $BENCH_DIR/baseline), BENCH_DOC
# (docs/benchmarks.md; empty: do not update it). Run as root.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/hwdr-bench-durability}
UNIQUE_GIB=${UNIQUE_GIB:-4}
REPEAT=${REPEAT:-3}
STOPS=${STOPS:-3}
BASELINE_REV=${BASELINE_REV:-7d7cb4f}
BENCH_DOC=${BENCH_DOC-$top/docs/benchmarks.md}
W=$BENCH_DIR
R=$W/results/results.env
new=$top/target/release/hwdr
hwdr=$new
gen=$top/target/release/gen_datanodes

# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root"
for b in "$new" "$gen"; do [ -x "$b" ] || die "$b is missing: run make bench-durability"; done
[ -e "$W/data" ] && die "$W/data is left from an earlier run: remove it or set BENCH_DIR"
mkdir -p "$W/results"
: >"$R"
trap 'stop_agents; rm -rf "$W/data" "$W/cluster"' EXIT

# The baseline binary: given, or built from BASELINE_REV in a worktree of its own.
if [ -z "${BASELINE:-}" ]; then
  src=$W/baseline/src
  if [ ! -x "$W/baseline/target/release/hwdr" ]; then
    say "building the baseline hwdr at $BASELINE_REV"
    rm -rf "$src"
    git -C "$top" worktree add --detach "$src" "$BASELINE_REV" >/dev/null
    CARGO_TARGET_DIR=$W/baseline/target cargo build --release --locked --manifest-path "$src/Cargo.toml" --bin hwdr
    git -C "$top" worktree remove --force "$src"
  fi
  BASELINE=$W/baseline/target/release/hwdr
fi
put baseline "$BASELINE_REV"
put new_commit "$(git -C "$top" rev-parse --short HEAD)"
put_machine

ensure_users
gen_mixed_data

c=$W/cluster
setup_cluster "$c" "$W/data"

# A fresh, empty repository for binary $1, and its agents.
fresh() {
  stop_agents
  rm -rf "$c/repo" "$c"/state-*/hopsfs-list
  mkdir "$c/repo"
  hwdr=$1
  # A binary that knows `hwdr repo init` needs it; the baseline writes its own marker.
  "$1" --config "$c/etc-head1/hwdr.toml" repo init >/dev/null 2>&1 || true
  start_agents "$c"
}

n_id=0
next_id() { n_id=$((n_id + 1)); id=$(printf '26010112%02d' "$n_id"); }

# full KEY BIN: one cold-cache full backup; its wall time.
full() {
  local key=$1 bin=$2 s
  fresh "$bin"
  next_id
  drop_caches
  s=$(now_ns)
  "$bin" --config "$c/etc-head1/hwdr.toml" backup --id "$id" 2>"$W/results/$key.log" || die "$key failed: $W/results/$key.log"
  put "${key}_s" "$(secs "$s" "$(now_ns)")"
  say "$key: $(secs "$s" "$(now_ns)") s"
}

for i in $(seq "$REPEAT"); do
  full "base$i" "$BASELINE"
  full "new$i" "$new"
done

# stop KEY: a full backup SIGTERMed once its upload has stored some blocks.
stop() {
  local key=$1 pid s e status
  fresh "$new"
  next_id
  drop_caches
  "$new" --config "$c/etc-head1/hwdr.toml" backup --id "$id" 2>"$W/results/$key.log" &
  pid=$!
  for _ in $(seq 600); do
    [ "$(find "$c/repo/blocks" -name 'blk_*' 2>/dev/null | head -50 | wc -l)" -ge 50 ] && break
    sleep 0.1
  done
  s=$(now_ns)
  kill -TERM "$pid"
  status=0
  wait "$pid" || status=$?
  e=$(now_ns)
  put "${key}_s" "$(secs "$s" "$e")"
  put "${key}_exit" "$status"
  put "${key}_manifest" "$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["status"], "interrupted" in (m["error"] or ""))' "$c/repo/backups/$id/manifest.json")"
  put "${key}_lock_left" "$([ -e "$c/repo/lock" ] && echo yes || echo no)"
  say "$key: stopped $(secs "$s" "$e") s after SIGTERM, exit $status"
}
for i in $(seq "$STOPS"); do stop "stop$i"; done
stop_agents

python3 - "$R" "$REPEAT" "$STOPS" >"$W/results/report.md" <<'PY'
import statistics, sys
r = dict(l.rstrip("\n").split("=", 1) for l in open(sys.argv[1]) if "=" in l)
n, stops = int(sys.argv[2]), int(sys.argv[3])
base = [float(r[f"base{i}_s"]) for i in range(1, n + 1)]
new = [float(r[f"new{i}_s"]) for i in range(1, n + 1)]
gib = int(r["unique_bytes"]) / 2**30
mb, mn = statistics.median(base), statistics.median(new)
print(f"Run of {r['new_commit']} against {r['baseline']} on {r['machine']}: "
      f"{gib:.2f} GiB of unique blocks ({r['blocks']} blocks, replication 3, 3 data nodes).\n")
print("| full backup | runs (s) | median (s) | MiB/s of unique bytes |")
print("|---|---|---|---|")
print(f"| before (no sync before the renames) | {', '.join(f'{x:.2f}' for x in base)} | {mb:.2f} | {gib * 1024 / mb:.0f} |")
print(f"| after (`syncfs` per batch, then renames) | {', '.join(f'{x:.2f}' for x in new)} | {mn:.2f} | {gib * 1024 / mn:.0f} |")
print(f"\nThe durability costs {100 * (mn - mb) / mb:+.1f}% on the median full backup.\n")
times = [float(r[f"stop{i}_s"]) for i in range(1, stops + 1)]
print("| SIGTERM during the upload | seconds to exit | exit code | manifest | lock left |")
print("|---|---|---|---|---|")
for i in range(1, stops + 1):
    print(f"| {i} | {r[f'stop{i}_s']} | {r[f'stop{i}_exit']} | {r[f'stop{i}_manifest']} | {r[f'stop{i}_lock_left']} |")
print(f"\nMedian stop: {statistics.median(times):.2f} s.")
PY
cat "$W/results/report.md"
update_doc "$BENCH_DOC" durability "$W/results/report.md"
