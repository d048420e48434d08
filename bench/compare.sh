#!/usr/bin/env bash
# hwdr side by side with restic, borg and `cp -a` (`make bench-compare`,
# part of `make bench`; docs/benchmarks.md, "Side by side").
#
# One run, on the same generated data (3 data nodes, replication 3,
# UNIQUE_GIB GiB of distinct blocks, 90 % of the bytes in 1-128 MiB blocks,
# the rest in 0-256 KiB ones), each tool in turn, REPEAT times each, cold
# cache (sync and drop_caches before every timed command):
#   full       a first backup into an empty repository (emptied in between);
#   new1       the backup after NEW_PERCENT % new blocks;
#   same       the backup after that with nothing new;
#   restore    the HopsFS blocks back into emptied node folders (hwdr:
#              `hwdr restore <id> --only hopsfs` in place; restic: `restore
#              latest --target`; borg: `extract`; cp: `cp -a` back), the
#              restored trees checked against the originals for hwdr;
#   verify     reading back and checking every stored byte (hwdr: `verify
#              --full`; restic: `check --read-data`; borg: `check
#              --verify-data`; cp: not applicable).
# For each: wall time, the tool's peak RSS (GNU time; for hwdr the leader's,
# and the largest agent VmHWM separately), and the repository's growth
# (`du -sb` before and after). The medians of REPEAT are reported.
#
# Each tool as it is normally used: restic 0.14 (Debian) with repository
# format 2, its default compression (auto, zstd) and its encryption (always
# on); borg 1.2 (Debian) with `repokey-blake2` encryption and its default
# compression (lz4); hwdr with a plaintext repository on the same disk (its
# default) — its encrypted, compressed cost is `make bench-sealing`.
# restic and borg read all three node folders (they deduplicate the
# replicas by content); hwdr reads one replica of each block (it knows they
# are replicas); `cp -a` copies all three.
#
# Variables: BENCH_DIR (/var/tmp/hwdr-bench-compare), UNIQUE_GIB (4),
# REPEAT (3), NEW_PERCENT (1), TOOLS ("hwdr restic borg cp"), BENCH_DOC
# (docs/benchmarks.md; empty: do not update it). Run as root.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/hwdr-bench-compare}
UNIQUE_GIB=${UNIQUE_GIB:-4}
REPEAT=${REPEAT:-3}
NEW_PERCENT=${NEW_PERCENT:-1}
TOOLS=${TOOLS:-hwdr restic borg cp}
BENCH_DOC=${BENCH_DOC-$top/docs/benchmarks.md}
W=$BENCH_DIR
R=$W/results/results.env
hwdr=$top/target/release/hwdr
gen=$top/target/release/gen_datanodes
LARGE_SHARE=90
SMALL_MAX=256K

# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (hwdr reads the blocks as hdfs; the page cache is dropped)"
for t in restic borg rsync python3 curl; do
  command -v "$t" >/dev/null || die "$t is missing (apt-get install restic borgbackup rsync python3 curl)"
done
/usr/bin/time --version 2>&1 | grep -q GNU || die "GNU time is missing (apt-get install time)"
for b in "$hwdr" "$gen"; do [ -x "$b" ] || die "$b is missing: run make bench-compare"; done
for d in "$W/data" "$W/cluster"; do [ -e "$d" ] && die "$d is left from an earlier run: remove it or set BENCH_DIR"; done

data=$W/data
cluster=$W/cluster
out=$W/out
trap 'stop_agents; rm_big "$data" "$W/aside" "$cluster" "$W/restic" "$W/borg" "$W/cp" "$out"' EXIT
rm -rf "$W/results"
mkdir -p "$W/results"
: >"$R"
need_space "$(awk -v u="$UNIQUE_GIB" 'BEGIN { print int(u * 12 + 2) }')" # node folders, cp copy and a restore: 3 each; 3 repositories

{
  describe_machine
  echo "restic=$(restic version | head -1)"
  echo "borg=$(borg --version)"
  echo "cp=$(cp --version | head -1)"
} >"$W/results/machine.env"
put repeat "$REPEAT"
put tools "$TOOLS"

export RESTIC_PASSWORD_FILE=$W/secret BORG_PASSCOMMAND="cat $W/secret"
export BORG_BASE_DIR=$W/borg-home RESTIC_CACHE_DIR=$W/restic-cache
head -c 32 /dev/urandom | base64 >"$W/secret"
chmod 600 "$W/secret"
nodes=("$data/node1" "$data/node2" "$data/node3")

# run KEY CMD...: cold cache, CMD under GNU time (wall, CPU, peak RSS), then
# a sync (the tool's writes on disk, as hwdr's are when it reports).
run() {
  local key=$1 s e
  shift
  drop_caches
  put "${key}_load" "$(cut -d' ' -f1 /proc/loadavg)"
  s=$(now_ns)
  /usr/bin/time -o "$W/results/$key.time" -f 'wall=%e\nuser=%U\nsys=%S\nmaxrss_kb=%M' "$@" \
    >"$W/results/$key.log" 2>&1 || die "$key failed: see $W/results/$key.log"
  sync
  e=$(now_ns)
  sed "s/^/${key}_/" "$W/results/$key.time" >>"$R"
  put "${key}_sync_s" "$(secs "$s" "$e")"
  say "$key: $(secs "$s" "$e") s with the sync"
}

size_of() { if [ -e "$1" ]; then du -sb "$1" | cut -f1; else echo 0; fi; }

# grown KEY DIR CMD...: runs KEY (run), and DIR's growth meanwhile.
grown() {
  local key=$1 dir=$2 before
  shift 2
  before=$(size_of "$dir")
  run "$key" "$@"
  put "${key}_growth_bytes" "$(($(size_of "$dir") - before))"
}

# check_tree KEY ROOT: the trees below ROOT/node1..3 against the originals.
check_tree() {
  local key=$1 root=$2 got=$W/results/$1.sums
  tree_sums "$root" "$got"
  put "${key}_files" "$(wc -l <"$got.md5")"
  put "${key}_content_diffs" "$(LC_ALL=C comm -3 "$W/results/ref.md5" "$got.md5" | wc -l)"
  put "${key}_attr_diffs" "$(LC_ALL=C comm -3 "$W/results/ref.attr" "$got.attr" | wc -l)"
  rm -f "$got.md5" "$got.attr"
}

# agents_hwm KEY: each (fresh) agent's peak RSS after KEY.
agents_hwm() {
  local a
  for a in 1 2 3; do
    put "${1}_agent${a}_vmhwm_kb" "$(awk '/^VmHWM/ { print $2 }' "/proc/${agent_pids[$((a - 1))]}/status")"
  done
}

# hwdr: the simulated cluster of bench/lib.sh on the same data, fresh agents
# for every command (their VmHWM is the command's).
n_id=0
hwdr_backup() {
  local key=$1 before
  before=$(size_of "$cluster/repo")
  n_id=$((n_id + 1))
  last_id=$(printf '26010112%02d' "$n_id")
  stop_agents
  start_agents "$cluster"
  backup "$cluster" "$key" "$last_id"
  put "${key}_growth_bytes" "$(($(size_of "$cluster/repo") - before))"
}
hwdr_cmd() {
  local key=$1
  shift
  stop_agents
  start_agents "$cluster"
  local c0
  c0=$(agents_cpu)
  run "$key" "$hwdr" --config "$cluster/etc-head1/hwdr.toml" "$@"
  put "${key}_agents_cpu_s" "$(awk -v a="$c0" -v b="$(agents_cpu)" 'BEGIN { printf "%.2f", b - a }')"
  agents_hwm "$key"
}

# full TOOL KEY: a first backup into an empty repository.
full() {
  case $1 in
    hwdr)
      rm -rf "$cluster/repo/backups" "$cluster/repo/blocks" "$cluster"/state-*/hopsfs-list
      hwdr_backup "$2"
      ;;
    restic)
      rm -rf "$W/restic" "$W/restic-cache"
      restic init --repo "$W/restic" --repository-version 2 >/dev/null
      grown "$2" "$W/restic" restic --repo "$W/restic" backup "${nodes[@]}"
      ;;
    borg)
      rm -rf "$W/borg" "$W/borg-home"
      borg init -e repokey-blake2 "$W/borg" >/dev/null 2>&1
      grown "$2" "$W/borg" borg create "$W/borg::$2" "${nodes[@]}"
      ;;
    cp)
      rm_big "$W/cp"
      mkdir -p "$W/cp"
      grown "$2" "$W/cp" cp -a "${nodes[@]}" "$W/cp/"
      ;;
    *) die "unknown tool $1 (TOOLS: hwdr restic borg cp)" ;;
  esac
}

# again TOOL KEY: the next backup into the same repository.
again() {
  case $1 in
    hwdr) hwdr_backup "$2" ;;
    restic) grown "$2" "$W/restic" restic --repo "$W/restic" backup "${nodes[@]}" ;;
    borg) grown "$2" "$W/borg" borg create "$W/borg::$2" "${nodes[@]}" ;;
    cp) # no incremental form: a new full copy (rsync --link-dest is bench/hopsfs.sh's)
      rm_big "$W/cp"
      mkdir -p "$W/cp"
      grown "$2" "$W/cp" cp -a "${nodes[@]}" "$W/cp/"
      ;;
  esac
}

# restore TOOL KEY: the last backup back, checked against the originals.
# hwdr restores in place into emptied node folders (the originals moved
# aside and back); the others into a new folder.
restore() {
  rm_big "$out"
  mkdir -p "$out"
  case $1 in
    hwdr)
      mv "$data" "$W/aside"
      rm -rf "$cluster"/state-*/restore
      hwdr_cmd "$2" restore "$last_id" --only hopsfs
      check_tree "$2" "$data"
      rm_big "$data"
      mv "$W/aside" "$data"
      ;;
    restic)
      run "$2" restic --repo "$W/restic" restore latest --target "$out"
      check_tree "$2" "$out$data"
      ;;
    borg)
      run "$2" bash -c 'cd "$1" && borg extract "$2"' _ "$out" "$W/borg::$(borg list --short --last 1 "$W/borg")"
      check_tree "$2" "$out$data"
      ;;
    cp)
      run "$2" cp -a "$W/cp/node1" "$W/cp/node2" "$W/cp/node3" "$out/"
      check_tree "$2" "$out"
      ;;
  esac
  rm_big "$out"
}

# verify TOOL KEY: every stored byte read back and checked.
verify() {
  case $1 in
    hwdr) hwdr_cmd "$2" verify "$last_id" --full ;;
    restic) run "$2" restic --repo "$W/restic" check --read-data ;;
    borg) run "$2" borg check --verify-data "$W/borg" ;;
    cp) ;;
  esac
}

# ---------------------------------------------------------------- the run
ensure_users
plan_dataset
gen_dataset "$data"
setup_cluster "$cluster" "$data"

# 1. Full backups, REPEAT times each, the repository emptied in between.
for i in $(seq "$REPEAT"); do
  for t in $TOOLS; do
    say "$t: full backup $i of $REPEAT"
    full "$t" "${t}_full$i"
  done
done
# 2. REPEAT rounds of NEW_PERCENT % new blocks, then a backup by each tool;
# then REPEAT backups with nothing new.
for i in $(seq "$REPEAT"); do
  add_new "$data" "$i"
  for t in $TOOLS; do
    say "$t: backup after ${NEW_PERCENT}% new ($i of $REPEAT)"
    again "$t" "${t}_new$i"
  done
done
for i in $(seq "$REPEAT"); do
  for t in $TOOLS; do
    say "$t: backup with nothing new ($i of $REPEAT)"
    again "$t" "${t}_same$i"
  done
done
# 3. Restores and verifications of each tool's last backup.
say "the checksums every restore must give back"
tree_sums "$data" "$W/results/ref"
put ref_files "$(wc -l <"$W/results/ref.md5")"
put ref_bytes "$(file_bytes "$data")"
for i in $(seq "$REPEAT"); do
  for t in $TOOLS; do
    say "$t: restore $i of $REPEAT"
    restore "$t" "${t}_restore$i"
    say "$t: verify $i of $REPEAT"
    verify "$t" "${t}_verify$i"
  done
done
stop_agents

python3 "$top/bench/report_compare.py" "$W/results" >"$W/results/report.md"
cp "$W/results/report.md" "$top/bench/last-run-compare.md"
update_doc "$BENCH_DOC" compare "$W/results/report.md"
cat "$W/results/report.md"
say "done; raw results in $W/results"
