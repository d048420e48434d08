#!/usr/bin/env bash
# The S3 part of the benchmark (`make bench` after bench/hopsfs.sh, or
# `make bench-s3`; see docs/benchmarks.md, "HopsFS backup to object storage").
#
# One run, on the same generated data (bench/lib.sh: three data nodes,
# replication 3, ~S3_UNIQUE_GIB GiB of distinct blocks), against one Garage
# server on loopback whose data folder is on the same disk as the data nodes:
#   1. full `hwdr backup` into s3://BUCKET/hwdr vs `rclone copy` of the three
#      data node folders to s3://BUCKET/rclone, rclone with its defaults (one
#      process, --transfers 4) and per node (three processes at once, one per
#      node, --transfers = upload_parallelism, as hwdr moves files: each node
#      its own); REPEAT rounds, each into a fresh server (its data and
#      metadata folders emptied);
#   2. REPEAT times 1% new blocks, then `hwdr backup` and `rclone copy` (which
#      skips the files already there);
#   3. REPEAT times: the data node folders wiped, `hwdr restore <last id>
#      --only hopsfs` (each agent fetches its node's blocks), and the same
#      wiped folders filled by `rclone copy` back (defaults, and per node);
#      after each, the restored files are compared with the originals (MD5
#      of every block, .meta and VERSION file; hwdr's also owner and mode);
#   4. peak memory (VmHWM) of fresh agents during a backup (multipart uploads)
#      and a restore of BIG_BLOCKS blocks of 256 MiB (replication 1, spread
#      evenly, so every node stores its own), next to upload_parallelism x
#      part size; rclone's peak (GNU time) on the same files.
# Every timed run starts with a cold page cache (sync; drop_caches); the
# load average is recorded. Then the report (bench/last-run-s3.md, and the
# block between the bench-s3 markers of docs/benchmarks.md); the generated
# data and the server are removed, also when the run fails.
#
# Variables: BENCH_DIR (/var/tmp/hwdr-bench: a real disk; this part works in
# its folder s3/, beside bench/hopsfs.sh's), S3_UNIQUE_GIB
# (4), S3_REPEAT (REPEAT, else 3), LARGE_SHARE (90), SMALL_MAX (256K),
# NEW_PERCENT (1) as in bench/hopsfs.sh, PARALLELISM (4: hwdr's
# upload_parallelism), PART_MIB (16: part_size_mib), BIG_BLOCKS (12: blocks
# of 256 MiB for the memory run; 0 skips it), RCLONE_PER_NODE (1; 0 skips the
# per-node rclone runs), KEEP (0; 1 keeps the data and the server's folder),
# BENCH_DOC (docs/benchmarks.md; empty: do not update it), HWDR_GARAGE (the
# garage binary; else PATH, then ~/.cargo/bin). Run as root.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/hwdr-bench}
UNIQUE_GIB=${S3_UNIQUE_GIB:-4}
REPEAT=${S3_REPEAT:-${REPEAT:-3}}
LARGE_SHARE=${LARGE_SHARE:-90}
SMALL_MAX=${SMALL_MAX:-256K}
NEW_PERCENT=${NEW_PERCENT:-1}
PARALLELISM=${PARALLELISM:-4}
PART_MIB=${PART_MIB:-16}
BIG_BLOCKS=${BIG_BLOCKS:-12}
RCLONE_PER_NODE=${RCLONE_PER_NODE:-1}
KEEP=${KEEP:-0}
BENCH_DOC=${BENCH_DOC-$top/docs/benchmarks.md}

hwdr=$top/target/release/hwdr
gen=$top/target/release/gen_datanodes
W=$BENCH_DIR/s3
R=$W/results/results.env

# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (hwdr reads the blocks as hdfs; the page cache is dropped)"
for t in rclone python3 curl; do command -v "$t" >/dev/null || die "$t is missing (make deps; or apt-get install rclone python3 curl)"; done
/usr/bin/time --version 2>&1 | grep -q GNU || die "GNU time is missing (apt-get install time)"
for b in "$hwdr" "$gen"; do [ -x "$b" ] || die "$b is missing: run make bench-s3"; done
garage=${HWDR_GARAGE:-$(PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin" command -v garage || true)}
[ -n "$garage" ] && [ -x "$garage" ] || die "garage is missing: run make deps (or set HWDR_GARAGE)"

ensure_users
# rclone 1.60's S3 client fails on any AWS_CA_BUNDLE in the environment
# ("unsupported transport"); the server is plain http on loopback.
rclone=(env -u AWS_CA_BUNDLE rclone)

# ------------------------------------------------------------ the server
G=$W/garage
bucket=hwdr-bench
garage_pid=
hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# garage_config: its garage.toml (as testkit/src/garage/setup.rs writes
# one: one node, SQLite metadata, loopback), and the key the server creates
# at start; rclone's remote `garage` and hwdr's credentials file name it.
garage_config() {
  local s3 rpc admin
  s3=$(free_port)
  rpc=$(free_port)
  admin=$(free_port)
  mkdir -p "$G"
  chmod 700 "$G"
  # Random blocks do not compress: no zstd pass over them on the shared cores.
  cat >"$G/garage.toml" <<TOML
metadata_dir = "$G/meta"
data_dir = "$G/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
TOML
  endpoint="http://127.0.0.1:$s3"
  key_id="GK$(hex 12)"
  key_secret=$(hex 32)
  (umask 077 && printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$key_id" "$key_secret" >"$W/s3.credentials")
  # rclone reads its remote from the environment only: no secret in an argv.
  : >"$W/rclone.conf"
  export RCLONE_CONFIG=$W/rclone.conf
  export RCLONE_CONFIG_GARAGE_TYPE=s3 RCLONE_CONFIG_GARAGE_PROVIDER=Other
  export RCLONE_CONFIG_GARAGE_ENDPOINT=$endpoint RCLONE_CONFIG_GARAGE_REGION=garage
  export RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE=true RCLONE_CONFIG_GARAGE_NO_CHECK_BUCKET=true
  export RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID=$key_id RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY=$key_secret
}

# garage_fresh: the server stopped, its data and metadata removed, started
# again (same ports and key, the bucket made anew); returns once the bucket
# answers a listing.
garage_fresh() {
  garage_stop
  rm -rf "$G/meta" "$G/data"
  mkdir -p "$G/meta" "$G/data"
  GARAGE_DEFAULT_ACCESS_KEY=$key_id GARAGE_DEFAULT_SECRET_KEY=$key_secret GARAGE_DEFAULT_BUCKET=$bucket \
    NO_COLOR=1 RUST_LOG=warn "$garage" -c "$G/garage.toml" server --single-node --default-bucket >>"$G/garage.log" 2>&1 &
  garage_pid=$!
  for _ in $(seq 600); do
    "${rclone[@]}" lsf "garage:$bucket" >/dev/null 2>&1 && return 0
    kill -0 "$garage_pid" 2>/dev/null || die "garage exited at start: $(tail -20 "$G/garage.log")"
    sleep 0.1
  done
  die "garage did not answer at $endpoint within 60 s: $(tail -20 "$G/garage.log"; "${rclone[@]}" lsf "garage:$bucket" 2>&1 | tail -3)"
}

# SIGTERM (Garage finishes what it serves), SIGKILL after 15 s.
garage_stop() {
  [ -n "$garage_pid" ] || return 0
  kill "$garage_pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$garage_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$garage_pid" 2>/dev/null || true
  wait "$garage_pid" 2>/dev/null || true
  garage_pid=
}

cleanup() {
  stop_agents
  garage_stop
  if [ "$KEEP" != 1 ] && [ -d "$W" ]; then
    say "removing the generated data and the server's folder in $W (results stay in $W/results)"
    rm_big "$W/big" "$W/mem"
    rm -rf "$G" "$W/s3.credentials" "$W/rclone.conf"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The manifest is in the bucket.
fetch_manifest() { "${rclone[@]}" cat "garage:$bucket/$(basename "$1")/backups/$2/manifest.json" >"$3"; }

# --------------------------------------------------------- measurements
lo_bytes() { awk '$1 == "lo:" { print $2 }' /proc/net/dev; }

# bucket_bytes PREFIX [FILTER...]: "objects bytes" below PREFIX of the bucket.
bucket_bytes() {
  local prefix=$1
  shift
  "${rclone[@]}" size --json "$@" "garage:$bucket/$prefix" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["count"], d["bytes"])'
}

# hwdr_blocks PREFIX KEY: objects and bytes of hwdr's store below PREFIX:
# block files, their .meta, everything.
hwdr_blocks() {
  local n b
  read -r n b < <(bucket_bytes "$1/blocks" --exclude '*.meta')
  put "${2}_block_objects" "$n"
  put "${2}_block_bytes" "$b"
  read -r n b < <(bucket_bytes "$1/blocks" --include '*.meta')
  put "${2}_meta_bytes" "$b"
  read -r n b < <(bucket_bytes "$1")
  put "${2}_objects" "$n"
  put "${2}_bytes" "$b"
}

# measured KEY CMD...: cold cache, CMD's wall time, then a sync's (Garage
# does not fsync; a restore writes the data nodes' disk), the loopback bytes
# (the S3 traffic; also anything else on lo meanwhile), the load before.
measured() {
  local key=$1 s m e l0 rc=0
  shift
  drop_caches
  put "${key}_load" "$(cut -d' ' -f1 /proc/loadavg)"
  l0=$(lo_bytes)
  s=$(now_ns)
  "$@" || rc=$?
  m=$(now_ns)
  [ "$rc" = 0 ] || die "$key failed (exit $rc): see $W/results/$key.*log"
  sync
  e=$(now_ns)
  put "${key}_s" "$(secs "$s" "$m")"
  put "${key}_sync_s" "$(secs "$s" "$e")"
  put "${key}_lo_bytes" "$(($(lo_bytes) - l0))"
  say "$key: $(secs "$s" "$m") s, with sync $(secs "$s" "$e") s"
}

# rclone_run KEY WHICH SRC DST [FLAGS...]: rclone copy under GNU time (its
# peak RSS), log in results/KEY.WHICH.log.
rclone_run() {
  local key=$1 which=$2 src=$3 dst=$4
  shift 4
  /usr/bin/time -o "$W/results/$key.$which.time" -f 'maxrss_kb=%M\nuser=%U\nsys=%S' \
    "${rclone[@]}" copy "$src" "$dst" "$@" --log-file "$W/results/$key.$which.log" ||
    { say "$key: rclone copy $src $dst failed"; return 1; }
}

# rclone_times KEY: the summed CPU and the largest peak RSS of its rclone runs.
rclone_times() {
  local key=$1
  cat "$W/results/$key".*.time | awk -F= -v k="$key" '
    $1 == "maxrss_kb" && $2 > m { m = $2 } $1 == "user" || $1 == "sys" { c += $2 }
    END { printf "%s_maxrss_kb=%d\n%s_cpu_s=%.2f\n", k, m, k, c }' >>"$R"
}

# rclone_up KEY DATA: the three node folders in DATA into rclone/, in one
# process, with rclone's defaults.
rclone_up() { rclone_run "$1" up "$2" "garage:$bucket/rclone"; }
# rclone_up_nodes KEY DATA: one process per node at once, each with
# --transfers = hwdr's upload_parallelism (else rclone's defaults).
rclone_up_nodes() {
  local n st=0 pids=()
  for n in 1 2 3; do
    rclone_run "$1" "up$n" "$2/node$n" "garage:$bucket/rclone/node$n" --transfers "$PARALLELISM" &
    pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n" || st=1; done
  return $st
}
# rclone_down KEY DATA, rclone_down_nodes KEY DATA: the same, back.
rclone_down() { rclone_run "$1" down "garage:$bucket/rclone" "$2"; }
rclone_down_nodes() {
  local n st=0 pids=()
  for n in 1 2 3; do
    rclone_run "$1" "down$n" "garage:$bucket/rclone/node$n" "$2/node$n" --transfers "$PARALLELISM" &
    pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n" || st=1; done
  return $st
}

# check_restored KEY: the restored trees against the originals.
check_restored() {
  local key=$1 got=$W/results/$1.sums
  tree_sums "$big/data" "$got"
  put "${key}_files" "$(wc -l <"$got.md5")"
  put "${key}_content_diffs" "$(LC_ALL=C comm -23 "$ref.md5" "$got.md5" | wc -l)"
  put "${key}_attr_diffs" "$(LC_ALL=C comm -23 "$ref.attr" "$got.attr" | wc -l)"
  put "${key}_restored_bytes" "$(file_bytes "$big/data")"
  say "$key: $(wc -l <"$got.md5") files, $(LC_ALL=C comm -23 "$ref.md5" "$got.md5" | wc -l) files differ or are missing"
  rm -f "$got.md5" "$got.attr"
}

# Fresh agents (their VmHWM is the run's).
fresh_agents() {
  stop_agents
  start_agents "$1"
}

# hwdr_restore DIR KEY ID: `hwdr restore ID --only hopsfs` under GNU time.
hwdr_restore() {
  /usr/bin/time -o "$W/results/$2.time" -f 'wall=%e\nuser=%U\nsys=%S\nmaxrss_kb=%M' \
    "$hwdr" --config "$1/etc-head1/hwdr.toml" restore "$3" --only hopsfs >"$W/results/$2.log" 2>&1
}

# restore DIR KEY ID: a cold-cache `hwdr restore ID --only hopsfs` on head1
# (every node's restore job fetches its blocks), timed by GNU time; then
# each agent's VmHWM.
restore() {
  local dir=$1 key=$2 id=$3 i
  rm -rf "$dir"/state-*/restore
  fresh_agents "$dir"
  measured "$key" hwdr_restore "$dir" "$key" "$id"
  sed "s/^/${key}_/" "$W/results/$key.time" >>"$R"
  for i in 1 2 3; do
    put "${key}_agent${i}_vmhwm_kb" "$(awk '/^VmHWM/ { print $2 }' "/proc/${agent_pids[$((i - 1))]}/status")"
  done
}

# s3_backup DIR KEY ID: `backup` (lib.sh: cold cache, GNU time, VmHWM of
# fresh agents, the manifest), then the time of a sync and the loopback bytes.
s3_backup() {
  local dir=$1 key=$2 id=$3 s l0
  fresh_agents "$dir"
  l0=$(lo_bytes)
  backup "$dir" "$key" "$id"
  put "${key}_lo_bytes" "$(($(lo_bytes) - l0))"
  s=$(now_ns)
  sync
  put "${key}_after_sync_s" "$(secs "$s" "$(now_ns)")"
}

# even_seed N: the first seed that places N blocks of replication 1 evenly
# on the 3 nodes (at most one apart), found with blocks of 1 KiB: blocks of
# any one size take the same random draws, so 256 MiB ones land alike.
even_seed() {
  local n=$1 seed probe=$W/seed-probe
  for seed in $(seq 1 100); do
    rm -rf "$probe"
    "$gen" --nodes 3 --replication 1 --pools 1 --rbw 0 --out "$probe" --blocks "$n" --min-size 1K --max-size 1K --seed "$seed" >/dev/null
    if find "$probe" -type f -name 'blk_*' ! -name '*.meta' | sed -n 's|.*/node\([0-9]\)/.*|\1|p' | sort | uniq -c |
      awk -v n="$n" '{ c[NR] = $1 } END { lo = (NR < 3) ? 0 : c[1]; hi = 0; for (i in c) { if (c[i] < lo) lo = c[i]; if (c[i] > hi) hi = c[i] }; exit !(hi - lo <= 1) }'; then
      rm -rf "$probe"
      echo "$seed"
      return 0
    fi
  done
  rm -rf "$probe"
  echo 3
}

# repository DIR: the [repository] keys of a cluster whose repository is
# s3://BUCKET/<DIR's name>.
repository() {
  printf 'url = "s3://%s/%s"\nendpoint = "%s"\nregion = "garage"\npath_style = true\ncredentials_file = "%s"\nupload_parallelism = %s\npart_size_mib = %s' \
    "$bucket" "$(basename "$1")" "$endpoint" "$W/s3.credentials" "$PARALLELISM" "$PART_MIB"
}
repo_init() { "$hwdr" --config "$1/etc-head1/hwdr.toml" repo init >/dev/null; }

# ---------------------------------------------------------------- the run
for d in "$W/big" "$W/mem" "$G"; do
  if [ -e "$d" ]; then die "$d is left from an earlier run: remove it (rm -rf $d) or set BENCH_DIR"; fi
done
rm -rf "$W/results"
mkdir -p "$W/results"
: >"$R"
# Data set 1 (3 replicas), and in the server hwdr's copy (the unique bytes)
# and rclone's (Garage stores a block of the same content once); then the
# 256 MiB blocks, on the data nodes and in the server.
need_space "$(awk -v u="$UNIQUE_GIB" -v b="$BIG_BLOCKS" 'BEGIN { a = u * 5 + 1; m = b / 4 * 2 + 1; print int((a > m ? a : m) + 1) }')"
say "results in $W/results; page cache drops: $(echo 3 >/proc/sys/vm/drop_caches 2>/dev/null && echo allowed || echo 'not allowed')"
{
  describe_machine
  echo "rclone=$(rclone version | head -1)"
  echo "garage=$("$garage" --version | head -1)"
} >"$W/results/machine.env"
put repeat "$REPEAT"
put parallelism "$PARALLELISM"
put part_mib "$PART_MIB"
put big_blocks_setting "$BIG_BLOCKS"
put rclone_per_node "$RCLONE_PER_NODE"

# 1. The data and the cluster; its repository is s3://BUCKET/big.
plan_dataset
big=$W/big
gen_dataset "$big/data"
garage_config
garage_fresh
setup_cluster "$big" "$big/data" "$(repository "$big")"
n_id=0
next_id() { n_id=$((n_id + 1)); id=$(printf '26010112%02d' "$n_id"); }

# 2. Full: REPEAT rounds, each into an emptied server: rclone per node; the
# server emptied; rclone with its defaults, then hwdr (into a server holding
# rclone's copy). The last round's copies stay for the 1%-new runs.
for i in $(seq "$REPEAT"); do
  say "round $i of $REPEAT of full copies"
  stop_agents
  if [ "$RCLONE_PER_NODE" = 1 ]; then
    garage_fresh
    measured "rclonen$i" rclone_up_nodes "rclonen$i" "$big/data"
    rclone_times "rclonen$i"
    read -r n b < <(bucket_bytes rclone)
    put "rclonen${i}_objects" "$n"
    put "rclonen${i}_bytes" "$b"
  fi
  garage_fresh
  measured "rclone$i" rclone_up "rclone$i" "$big/data"
  rclone_times "rclone$i"
  read -r n b < <(bucket_bytes rclone)
  put "rclone${i}_objects" "$n"
  put "rclone${i}_bytes" "$b"
  repo_init "$big"
  rm -rf "$big"/state-*/hopsfs-list
  next_id
  s3_backup "$big" "full$i" "$id"
  hwdr_blocks big "full$i"
done
read -r n b < <(bucket_bytes rclone)
put rclone_before_incr_bytes "$b"
put garage_after_full_kb "$(du -sk "$G/data" | cut -f1)"

# 3. 1% new blocks, then hwdr and rclone (which compares size and time of
# every file with the bucket's and sends the new ones).
for i in $(seq "$REPEAT"); do
  add_new "$big/data" "$i"
  next_id
  say "hwdr backup after 1% new ($i of $REPEAT)"
  s3_backup "$big" "incr$i" "$id"
  hwdr_blocks big "incr$i"
  say "rclone copy after 1% new ($i of $REPEAT)"
  measured "rincr$i" rclone_up "rincr$i" "$big/data"
  rclone_times "rincr$i"
  read -r n b < <(bucket_bytes rclone)
  put "rincr${i}_objects" "$n"
  put "rincr${i}_bytes" "$b"
done
last_id=$id
put last_id "$last_id"
put tree_bytes_last "$(file_bytes "$big/data")"
put tree_files_last "$(find "$big/data" -type f | wc -l)"

# 4. Restore: the trees to give back, then REPEAT rounds of a wipe and a
# restore by each tool, each checked.
ref=$W/results/reference
say "checksums of the data nodes"
tree_sums "$big/data" "$ref"
put ref_files "$(wc -l <"$ref.md5")"
for i in $(seq "$REPEAT"); do
  say "restore round $i of $REPEAT"
  wipe_nodes "$big/data"
  restore "$big" "restore$i" "$last_id"
  check_restored "restore$i"
  wipe_nodes "$big/data"
  measured "rback$i" rclone_down "rback$i" "$big/data"
  rclone_times "rback$i"
  check_restored "rback$i"
  if [ "$RCLONE_PER_NODE" = 1 ]; then
    wipe_nodes "$big/data"
    measured "rbackn$i" rclone_down_nodes "rbackn$i" "$big/data"
    rclone_times "rbackn$i"
    check_restored "rbackn$i"
  fi
done
stop_agents
rm -f "$ref.md5" "$ref.attr"
if [ "$KEEP" != 1 ]; then
  say "removing data set 1"
  rm_big "$big"
fi

# 5. Memory: BIG_BLOCKS blocks of 256 MiB, replication 1 (each node stores
# its own: BIG_BLOCKS / 3 each, upload_parallelism at once), fresh agents,
# an emptied server; its repository is s3://BUCKET/mem.
if [ "$BIG_BLOCKS" -gt 0 ]; then
  mem=$W/mem
  seed=$(even_seed "$BIG_BLOCKS")
  say "generating $BIG_BLOCKS blocks of 256 MiB on 3 nodes, replication 1 (seed $seed)"
  "$gen" --nodes 3 --replication 1 --pools 1 --rbw 0 --owner "$owner" --out "$mem/data" \
    --blocks "$BIG_BLOCKS" --min-size 256M --max-size 256M --seed "$seed" >"$W/results/gen-mem.txt"
  tail -1 "$W/results/gen-mem.txt" | tr ' ' '\n' | sed 's/^/gen_mem_/' >>"$R"
  sync
  stop_agents
  garage_fresh
  setup_cluster "$mem" "$mem/data" "$(repository "$mem")"
  start_agents "$mem"
  for i in 1 2 3; do put "mem_agent${i}_idle_vmhwm_kb" "$(awk '/^VmHWM/ { print $2 }' "/proc/${agent_pids[$((i - 1))]}/status")"; done
  say "hwdr backup of $BIG_BLOCKS blocks of 256 MiB"
  l0=$(lo_bytes)
  backup "$mem" mem 2601011300
  put "mem_lo_bytes" "$(($(lo_bytes) - l0))"
  hwdr_blocks mem mem
  for n in 1 2 3; do
    put "mem_node${n}_blocks" "$(find "$mem/data/node$n" -type f -name 'blk_*' ! -name '*.meta' | wc -l)"
  done
  say "rclone copy of the same folders, per node"
  measured rmem rclone_up_nodes rmem "$mem/data"
  rclone_times rmem
  say "hwdr restore of the 256 MiB blocks"
  wipe_nodes "$mem/data"
  restore "$mem" mem_restore 2601011300
  stop_agents
  if [ "$KEEP" != 1 ]; then rm_big "$mem"; fi
fi
put dropped "$dropped"

# 6. The report.
python3 "$top/bench/report_s3.py" "$W/results" >"$W/results/report.md"
cp "$W/results/report.md" "$top/bench/last-run-s3.md"
update_doc "$BENCH_DOC" bench-s3 "$W/results/report.md"
cat "$W/results/report.md"
say "done; raw results in $W/results"
