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

ensure_users

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
trap cleanup EXIT

# ---------------------------------------------------------------- the run
for d in "$W/big" "$W/mem"; do
  if [ -e "$d" ]; then die "$d is left from an earlier run: remove it (umount $d if it is a mount; rm -rf $d) or set BENCH_DIR"; fi
done
rm -rf "$W/results"
mkdir -p "$W/results"
: >"$R"
need_space "$(awk -v u="$UNIQUE_GIB" -v m="$MEM_BLOCKS" 'BEGIN { a = u * 7.5 + 1; b = m * 34 / 1048576; print int((a > b ? a : b) + 1) }')"
say "results in $W/results; page cache drops: $(echo 3 >/proc/sys/vm/drop_caches 2>/dev/null && echo allowed || echo 'not allowed')"

# The machine.
{
  describe_machine
  echo "cp=$(cp --version | head -1)"
  echo "rsync=$(rsync --version | head -1)"
} >"$W/results/machine.env"

# 1. The data: LARGE_SHARE % of the unique bytes in 1-128 MiB blocks (mean
# 64.5 MiB), the rest in 0-SMALL_MAX blocks.
plan_dataset
put mem_blocks_setting "$MEM_BLOCKS"
big=$W/big
gen_dataset "$big/data"

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
  add_new "$big/data" "$i"
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
  put mem_pieces_bytes "$(file_bytes "$mem/repo/inventories")"
  # The next backup with nothing new: the HopsFS files it adds (its folder's
  # hopsfs/ and new inventory pieces), apart from the RonDB dump and manifest.
  say "hwdr backup of $MEM_BLOCKS blocks again, nothing new"
  pieces_before=$(file_bytes "$mem/repo/inventories")
  backup "$mem" memsame 2601011301
  put mem_same_hopsfs_bytes "$(($(file_bytes "$mem/repo/inventories") - pieces_before + $(file_bytes "$mem/repo/backups/2601011301/hopsfs")))"
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
update_doc "$BENCH_DOC" bench "$W/results/report.md"
cat "$W/results/report.md"
say "done; raw results in $W/results"
