#!/usr/bin/env bash
# The HopsFS backup benchmark (`make bench`; see docs/benchmarks.md).
#
# One run, on the same generated data:
#   1. three data nodes, replication 3, ~UNIQUE_GIB GiB of distinct blocks
#      (1-128 MiB blocks plus many small ones), owned by hdfs:hadoop;
#   2. a simulated cluster like tests/demo.sh: head1 (leader) + node1..3
#      (hopsfs; node1 and node2 also RonDB), agents on 127.0.0.2-4 running
#      target/release/hwdr;
#   3. cold-cache timings: full `hwdr backup` (REPEAT times, the repository
#      and the listing caches emptied in between) vs `cp -a` vs `rsync -a` of
#      the same node folders; REPEAT times 1% new blocks and a `hwdr backup`
#      (the first also vs `rsync -a --link-dest`); REPEAT backups with nothing
#      new; the medians are judged; repository size vs
#      unique and replica bytes; CRC verification (hwdr's own
#      meta::verify_file, bench/crc) vs plain reads and `cat`;
#   4. peak memory of a backup of MEM_BLOCKS (1,000,000) small blocks: the
#      leader's with GNU time (max RSS), each agent's from /proc/<pid>/status
#      (VmHWM, read before it is stopped; fresh agents for this backup).
# Then it writes the results (bench/last-run.md, and the block between the
# bench markers of docs/benchmarks.md) and removes the generated data.
#
# Variables: BENCH_DIR (/var/tmp/hwdr-bench: must be on a real disk),
# UNIQUE_GIB (8), REPEAT (3), LARGE_SHARE (90: % of the unique bytes in 1-128 MiB blocks),
# SMALL_MAX (256K), NEW_PERCENT (1), MEM_BLOCKS (1000000; 0 skips the memory
# run), MEM_LOOP (1: the million-block data set and its repository live on an
# ext4 file system in an image file on the same disk, loop-mounted with direct
# I/O, so removing 8 million files takes a second instead of many minutes),
# KEEP (0; 1 keeps the generated data), BENCH_DOC (docs/benchmarks.md; empty:
# do not update it). Run as root.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/hwdr-bench}
UNIQUE_GIB=${UNIQUE_GIB:-8}
REPEAT=${REPEAT:-3}
LARGE_SHARE=${LARGE_SHARE:-90}
SMALL_MAX=${SMALL_MAX:-256K}
NEW_PERCENT=${NEW_PERCENT:-1}
MEM_BLOCKS=${MEM_BLOCKS:-1000000}
MEM_LOOP=${MEM_LOOP:-1}
KEEP=${KEEP:-0}
BENCH_DOC=${BENCH_DOC-$top/docs/benchmarks.md}

hwdr=$top/target/release/hwdr
gen=$top/target/release/gen_datanodes
crc=$top/target/release/hwdr-bench-crc
W=$BENCH_DIR
R=$W/results/results.env

# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (hwdr reads the blocks as hdfs; the page cache is dropped)"
for t in rsync python3 curl; do command -v "$t" >/dev/null || die "$t is missing (apt-get install rsync python3 curl)"; done
/usr/bin/time --version 2>&1 | grep -q GNU || die "GNU time is missing (apt-get install time)"
for b in "$hwdr" "$gen" "$crc"; do [ -x "$b" ] || die "$b is missing: run make bench"; done

# Users as the tests create them: mysql runs the RonDB programs, hdfs (group hadoop) owns the blocks.
getent group hadoop >/dev/null || groupadd --system hadoop
id mysql >/dev/null 2>&1 || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin mysql
id hdfs >/dev/null 2>&1 || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin --groups hadoop hdfs
owner="$(id -u hdfs):$(getent group hadoop | cut -d: -f3)"

loopdev=
cleanup() {
  stop_agents
  if [ "$KEEP" != 1 ] && [ -d "$W" ]; then
    say "removing the generated data in $W (results stay in $W/results)"
    umount_mem
    rm_big "$W/big" "$W/mem"
  fi
}
umount_mem() {
  if [ -n "$loopdev" ]; then
    # Lazily if still busy (a generator killed with the run): never rm -rf a mounted tree.
    umount "$W/mem" 2>/dev/null || umount -l "$W/mem" 2>/dev/null || true
    losetup -d "$loopdev" 2>/dev/null || true
    loopdev=
  fi
  rm -f "$W/mem.img"
}
# Removes big trees, the node folders in parallel.
rm_big() {
  local d p pids=()
  for d in "$@"; do
    [ -d "$d" ] || continue
    for p in "$d"/*/*; do
      if [ -d "$p" ]; then
        rm -rf "$p" &
        pids+=($!)
      fi
    done
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  rm -rf "$@"
}
trap cleanup EXIT

# timed KEY CMD...: cold cache, wall time of CMD, then of a sync (so written
# data is on disk, as hwdr's upload syncs its file system before it reports).
timed() {
  local key=$1 s m e
  shift
  drop_caches
  put "${key}_load" "$(cut -d' ' -f1 /proc/loadavg)"
  s=$(now_ns)
  "$@"
  m=$(now_ns)
  sync
  e=$(now_ns)
  put "${key}_s" "$(secs "$s" "$m")"
  put "${key}_sync_s" "$(secs "$s" "$e")"
  say "$key: $(secs "$s" "$m") s, with sync $(secs "$s" "$e") s"
}

# CPU seconds (user+system) used so far by every agent, summed.
agents_cpu() {
  local p t=0 f
  for p in "${agent_pids[@]}"; do
    f=$(awk '{ print $14 + $15 }' "/proc/$p/stat")
    t=$((t + f))
  done
  awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

# sample_rss TIME_PID: every 0.2 s, the time and the VmRSS (kB) of the
# leader (the child of GNU time) and of each agent, tab-separated.
sample_rss() {
  local tpid=$1 lpid='' p line v
  while kill -0 "$tpid" 2>/dev/null; do
    if [ -z "$lpid" ]; then lpid=$(pgrep -P "$tpid" | head -1 || true); fi
    line=$(date +%s.%N)
    for p in "${lpid:-0}" "${agent_pids[@]}"; do
      v=$(awk '/^VmRSS/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
      line+=$'\t'"${v:-0}"
    done
    echo "$line"
    sleep 0.2
  done
}

# backup DIR KEY ID: a cold-cache `hwdr backup` on head1, timed by GNU time,
# its memory sampled by sample_rss.
backup() {
  local dir=$1 key=$2 id=$3 c0 c1 i tpid spid
  drop_caches
  put "${key}_load" "$(cut -d' ' -f1 /proc/loadavg)"
  c0=$(agents_cpu)
  /usr/bin/time -o "$W/results/$key.time" -f 'wall=%e\nuser=%U\nsys=%S\nmaxrss_kb=%M' \
    "$hwdr" --config "$dir/etc-head1/hwdr.toml" backup --id "$id" 2>"$W/results/$key.log" &
  tpid=$!
  sample_rss "$tpid" >"$W/results/$key.rss.tsv" &
  spid=$!
  wait "$tpid" || die "$key: hwdr backup failed, see $W/results/$key.log"
  wait "$spid" || true
  c1=$(agents_cpu)
  sed "s/^/${key}_/" "$W/results/$key.time" >>"$R"
  put "${key}_agents_cpu_s" "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')"
  for i in 1 2 3; do
    put "${key}_agent${i}_vmhwm_kb" "$(awk '/^VmHWM/ { print $2 }' "/proc/${agent_pids[$((i - 1))]}/status")"
  done
  cp "$dir/repo/backups/$id/manifest.json" "$W/results/$key.manifest.json"
  say "$key: $(grep wall "$W/results/$key.time")"
}

gen_nodes() { "$gen" --nodes 3 --replication 3 --pools 2 --rbw 0 --owner "$owner" "$@"; }

# ---------------------------------------------------------------- the run
for d in "$W/big" "$W/mem"; do
  if [ -e "$d" ]; then die "$d is left from an earlier run: remove it (umount $d if it is a mount; rm -rf $d) or set BENCH_DIR"; fi
done
rm -rf "$W/results"
mkdir -p "$W/results"
: >"$R"
avail_gib=$(df -BG --output=avail "$(dirname "$W")" | tail -1 | tr -dc 0-9)
need_gib=$(awk -v u="$UNIQUE_GIB" -v m="$MEM_BLOCKS" 'BEGIN { a = u * 7.5 + 1; b = m * 34 / 1048576; print int((a > b ? a : b) + 1) }')
[ "$avail_gib" -ge "$need_gib" ] || die "$(dirname "$W") has ${avail_gib} GiB free, the run needs about ${need_gib} GiB"
say "results in $W/results; page cache drops: $(echo 3 >/proc/sys/vm/drop_caches 2>/dev/null && echo allowed || echo 'not allowed')"

# The machine.
{
  echo "date=$(date -u +%FT%TZ)"
  echo "cpu_model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "cpus=$(nproc)"
  echo "mem_total_kb=$(awk '/^MemTotal/ { print $2 }' /proc/meminfo)"
  echo "kernel=$(uname -r)"
  echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "virt=$(systemd-detect-virt 2>/dev/null || echo unknown); hypervisor=$(lscpu | sed -n 's/^Hypervisor vendor: *//p')"
  src=$(df --output=source "$(dirname "$W")" | tail -1)
  dev=$(basename "$src")
  echo "fs=$(df -h --output=source,fstype,size,avail "$(dirname "$W")" | tail -1 | tr -s ' ')"
  echo "mount_opts=$(awk -v s="$src" '$1 == s { print $4; exit }' /proc/mounts)"
  echo "disk=$(lsblk -dno NAME,SIZE,ROTA,TYPE,MODEL "/dev/$dev" 2>/dev/null | tr -s ' ')"
  echo "disk_scheduler=$(cat "/sys/block/$dev/queue/scheduler" 2>/dev/null)"
  echo "hwdr_version=$("$hwdr" --version)"
  echo "hwdr_commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null)$(git -C "$top" diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted changes in src/')"
  echo "rustc=$(rustc --version 2>/dev/null)"
  echo "cp=$(cp --version | head -1)"
  echo "rsync=$(rsync --version | head -1)"
  echo "gnu_time=$(dpkg-query -W -f '${Version}' time 2>/dev/null)"
  echo "start_load=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$W/results/machine.env"

# 1. The data: LARGE_SHARE % of the unique bytes in 1-128 MiB blocks (mean
# 64.5 MiB), the rest in 0-SMALL_MAX blocks.
small_max_b=$(numfmt --from=iec "$SMALL_MAX")
n_large=$(awk -v u="$UNIQUE_GIB" -v s="$LARGE_SHARE" 'BEGIN { n = int(u * 1024 * s / 100 / 64.5 + 0.5); print (n < 1 ? 1 : n) }')
n_small=$(awk -v u="$UNIQUE_GIB" -v s="$LARGE_SHARE" -v m="$small_max_b" 'BEGIN { print int(u * 1073741824 * (100 - s) / 100 / (m / 2) + 0.5) }')
add_large=$(awk -v n="$n_large" -v p="$NEW_PERCENT" 'BEGIN { a = n * p / 100; a = (a == int(a)) ? a : int(a) + 1; print a }')
add_small=$(awk -v n="$n_small" -v p="$NEW_PERCENT" 'BEGIN { print int(n * p / 100 + 0.5) }')
put unique_gib_setting "$UNIQUE_GIB"
put mem_blocks_setting "$MEM_BLOCKS"
put small_max "$SMALL_MAX"
put new_percent "$NEW_PERCENT"
put n_large "$n_large"
put n_small "$n_small"
put add_large "$add_large"
put add_small "$add_small"
big=$W/big
say "generating 3 nodes: $n_large blocks of 1-128 MiB + $n_small blocks of 0-$SMALL_MAX, replication 3"
s=$(now_ns)
gen_nodes --out "$big/data" --blocks "$n_large" --min-size 1M --max-size 128M --seed 1 >"$W/results/gen-big.txt"
if [ "$n_small" -gt 0 ]; then
  gen_nodes --out "$big/data" --blocks "$n_large" --min-size 0 --max-size "$SMALL_MAX" --seed 1 --add "$n_small" >>"$W/results/gen-big.txt"
fi
sync
put gen_big_s "$(secs "$s" "$(now_ns)")"
put tree_bytes "$(file_bytes "$big/data")"
put tree_files "$(find "$big/data" -type f | wc -l)"
put block_file_bytes "$(find "$big/data" -type f -name 'blk_*' ! -name '*.meta' -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')"
tail -1 "$W/results/gen-big.txt" | tr ' ' '\n' | sed 's/^/gen1_/' >>"$R"

# 2. The cluster.
setup_cluster "$big" "$big/data"
start_agents "$big"

# Backup ids: one minute each, from 2026-01-01 12:00.
n_id=0
next_id() { n_id=$((n_id + 1)); id=$(printf '26010112%02d' "$n_id"); }
put repeat "$REPEAT"

# 3a. Full backups: the repository, its blocks and the nodes' listing caches
# are emptied before each but the first.
for i in $(seq "$REPEAT"); do
  if [ "$i" -gt 1 ]; then rm -rf "$big/repo/backups" "$big/repo/blocks" "$big"/state-*/hopsfs-list; fi
  say "full hwdr backup $i of $REPEAT"
  next_id
  backup "$big" "full$i" "$id"
done
put repo_after_full_bytes "$(file_bytes "$big/repo/blocks")"

# 3b, 3c. cp -a and rsync -a of the same node folders.
say "cp -a"
mkdir "$big/cp"
timed cp cp -a "$big/data/node1" "$big/data/node2" "$big/data/node3" "$big/cp/"
put cp_copied_bytes "$(file_bytes "$big/cp")"
rm_big "$big/cp"
say "rsync -a"
mkdir "$big/rsync1"
timed rsync1 rsync -a "$big/data/node1" "$big/data/node2" "$big/data/node3" "$big/rsync1/"
put rsync1_copied_bytes "$(file_bytes "$big/rsync1")"

# 3d. REPEAT times: NEW_PERCENT % new blocks of each kind, then a backup; the
# first one also vs rsync --link-dest.
for i in $(seq "$REPEAT"); do
  say "adding $add_large + $add_small blocks ($i of $REPEAT)"
  gen_nodes --out "$big/data" --blocks "$n_large" --min-size 1M --max-size 128M --seed 1 --add "$add_large" >"$W/results/gen-add$i.txt"
  if [ "$add_small" -gt 0 ]; then
    gen_nodes --out "$big/data" --blocks "$n_large" --min-size 0 --max-size "$SMALL_MAX" --seed 1 --add "$add_small" >>"$W/results/gen-add$i.txt"
  fi
  tail -1 "$W/results/gen-add$i.txt" | tr ' ' '\n' | sed "s/^/gen_add${i}_/" >>"$R"
  say "hwdr backup after 1% new ($i of $REPEAT)"
  next_id
  backup "$big" "incr$i" "$id"
  if [ "$i" = 1 ]; then
    say "rsync -a --link-dest"
    mkdir "$big/rsync2"
    timed rsync2 rsync -a --link-dest="$big/rsync1" "$big/data/node1" "$big/data/node2" "$big/data/node3" "$big/rsync2/"
    put rsync2_new_bytes "$(find "$big/rsync2" -type f -links 1 -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')"
  fi
done
for i in $(seq "$REPEAT"); do
  say "a backup with nothing new ($i of $REPEAT)"
  next_id
  backup "$big" "same$i" "$id"
done

# 3e. Repository size.
put repo_blocks_du_b "$(du -sb "$big/repo/blocks" | cut -f1)"
put repo_block_files "$(find "$big/repo/blocks" -type f -name 'blk_*' ! -name '*.meta' | wc -l)"
put repo_block_bytes "$(find "$big/repo/blocks" -type f -name 'blk_*' ! -name '*.meta' -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')"
put repo_meta_bytes "$(find "$big/repo/blocks" -type f -name '*.meta' -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')"
put repo_du_disk_kb "$(du -sk "$big/repo/blocks" | cut -f1)"
put data_du_disk_kb "$(du -sk "$big/data" | cut -f1)"
stop_agents

# 3f. CRC verification (hwdr's meta::verify_file) vs reading the same block
# files, one node's tree (it holds every block: replication 3 on 3 nodes).
dn1=$big/data/node1/dn
say "CRC verification vs reads of $dn1"
drop_caches
"$crc" verify "$dn1" | tr ' ' '\n' | sed 's/^/crc_verify_cold_/' >>"$R"
"$crc" verify "$dn1" | tr ' ' '\n' | sed 's/^/crc_verify_warm_/' >>"$R"
drop_caches
"$crc" read "$dn1" | tr ' ' '\n' | sed 's/^/crc_read_cold_/' >>"$R"
"$crc" read "$dn1" | tr ' ' '\n' | sed 's/^/crc_read_warm_/' >>"$R"
cat_files() { find "$dn1" -type f -name 'blk_*' ! -name '*.meta' -print0 | sort -z | xargs -0 cat >/dev/null; }
timed cat_cold cat_files
s=$(now_ns)
cat_files
put cat_warm_s "$(secs "$s" "$(now_ns)")"
put dropped "$dropped"

if [ "$KEEP" != 1 ]; then
  say "removing the big data set"
  s=$(now_ns)
  rm_big "$big"
  put rm_big_s "$(secs "$s" "$(now_ns)")"
fi

# 4. Memory: MEM_BLOCKS blocks of 1-2 KiB, replication 3, fresh agents.
if [ "$MEM_BLOCKS" -gt 0 ]; then
  mem=$W/mem
  mkdir -p "$mem"
  if [ "$MEM_LOOP" = 1 ]; then
    truncate -s "$((MEM_BLOCKS * 36 / 1024 / 1024 + 3))G" "$W/mem.img"
    mkfs.ext4 -q -F -N "$((MEM_BLOCKS * 9 + 1000000))" -E lazy_itable_init=0,lazy_journal_init=0 "$W/mem.img"
    loopdev=$(losetup --find --show --direct-io=on "$W/mem.img")
    mount "$loopdev" "$mem"
    put mem_fs "ext4 on $loopdev (direct I/O) backed by $W/mem.img"
  fi
  say "generating $MEM_BLOCKS blocks of 1-2 KiB on 3 nodes, replication 3"
  s=$(now_ns)
  gen_nodes --out "$mem/data" --blocks "$MEM_BLOCKS" --min-size 1K --max-size 2K --seed 2 >"$W/results/gen-mem.txt"
  sync
  put gen_mem_s "$(secs "$s" "$(now_ns)")"
  tail -1 "$W/results/gen-mem.txt" | tr ' ' '\n' | sed 's/^/gen_mem_/' >>"$R"
  setup_cluster "$mem" "$mem/data"
  start_agents "$mem"
  for i in 1 2 3; do put "mem_agent${i}_idle_vmhwm_kb" "$(awk '/^VmHWM/ { print $2 }' "/proc/${agent_pids[$((i - 1))]}/status")"; done
  say "hwdr backup of $MEM_BLOCKS blocks"
  backup "$mem" mem 2601011300
  put mem_inventory_bytes "$(file_bytes "$mem/repo/backups/2601011300/hopsfs")"
  stop_agents
  if [ "$KEEP" != 1 ]; then
    say "removing the million-block data set"
    s=$(now_ns)
    umount_mem
    rm_big "$mem"
    put rm_mem_s "$(secs "$s" "$(now_ns)")"
  fi
fi

# 5. The report.
python3 "$top/bench/report.py" "$W/results" >"$W/results/report.md"
cp "$W/results/report.md" "$top/bench/last-run.md"
if [ -n "$BENCH_DOC" ] && [ -f "$BENCH_DOC" ] && grep -q '<!-- bench:begin -->' "$BENCH_DOC"; then
  python3 - "$BENCH_DOC" "$W/results/report.md" <<'PY'
import sys
doc, rep = sys.argv[1], open(sys.argv[2]).read()
text = open(doc).read()
head, rest = text.split("<!-- bench:begin -->", 1)
_, tail = rest.split("<!-- bench:end -->", 1)
open(doc, "w").write(head + "<!-- bench:begin -->\n" + rep + "<!-- bench:end -->" + tail)
PY
  say "updated the results in $BENCH_DOC"
fi
cat "$W/results/report.md"
say "done; raw results in $W/results"
