#!/usr/bin/env bash
# The encryption and compression benchmark (`make bench-sealing`, and part
# of `make bench`; see docs/benchmarks.md, "Encryption and compression").
#
# One run, on the same generated data, with a POSIX repository on this disk:
#   1. two data sets of ~UNIQUE_GIB GiB of distinct blocks each (bench/lib.sh:
#      three data nodes, replication 3, 1-128 MiB blocks plus small ones):
#      `random` (incompressible, as Parquet/ORC blocks) and `text` (CSV
#      lines, which zstd shrinks); a simulated RonDB of SEAL_ROWS rows;
#   2. for each data set, three clusters on the same data node folders, each
#      with its own repository: `plain` (no encryption, no compression),
#      `enc` (encrypted, compression_level = 0) and `encz` (encrypted and
#      compressed, compression_level = SEAL_LEVEL);
#   3. REPEAT rounds of a full `hwdr backup` of each (plain, enc, encz in
#      turn; the repository and the listing caches emptied before each but
#      the first), cold cache, wall time and CPU (the leader and its children
#      by GNU time, the agents from /proc/<pid>/stat);
#   4. what the last round stored: the block files and their .meta, and the
#      RonDB parts, against the originals (apparent sizes of the object
#      files vs the source files; per block, how many were stored smaller);
#   5. REPEAT rounds of a full HopsFS restore from each (`hwdr restore ID
#      --only hopsfs` into wiped data node folders), timed with the sync
#      after it, its CPU as for the backups; the last round's restored files
#      compared with the originals (MD5, owner and mode).
# The machine (CPU, AES-NI and AVX2 flags, cores, kernel) and the load
# average at the start and the end go with the results. Then the report
# (bench/last-run-sealing.md, and the block between the bench-sealing
# markers of docs/benchmarks.md); the generated data is removed, also when
# the run fails.
#
# Variables: BENCH_DIR (/var/tmp/hwdr-bench: a real disk; this part works in
# its folder sealing/), SEAL_UNIQUE_GIB (1.5: unique GiB of each data set),
# SEAL_REPEAT (REPEAT, else 3), SEAL_ROWS (50000: rows of the simulated
# RonDB), SEAL_LEVEL (3: zstd level of encz), LARGE_SHARE (90), SMALL_MAX
# (256K) as in bench/hopsfs.sh, KEEP (0; 1 keeps the data), BENCH_DOC
# (docs/benchmarks.md; empty: do not update it). Run as root.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/hwdr-bench}
# The full run's sizes; smaller ones are reported as a reduced run.
FULL_GIB=1.5
FULL_REPEAT=3
UNIQUE_GIB=${SEAL_UNIQUE_GIB:-$FULL_GIB}
REPEAT=${SEAL_REPEAT:-${REPEAT:-$FULL_REPEAT}}
SIM_ROWS=${SEAL_ROWS:-50000}
LEVEL=${SEAL_LEVEL:-3}
LARGE_SHARE=${LARGE_SHARE:-90}
SMALL_MAX=${SMALL_MAX:-256K}
NEW_PERCENT=1
KEEP=${KEEP:-0}
BENCH_DOC=${BENCH_DOC-$top/docs/benchmarks.md}

hwdr=$top/target/release/hwdr
gen=$top/target/release/gen_datanodes
W=$BENCH_DIR/sealing
R=$W/results/results.env
KINDS=(random text)
CONFIGS=(plain enc encz)

# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (hwdr reads the blocks as hdfs; the page cache is dropped)"
for t in python3 curl; do command -v "$t" >/dev/null || die "$t is missing (apt-get install python3 curl)"; done
/usr/bin/time --version 2>&1 | grep -q GNU || die "GNU time is missing (apt-get install time)"
for b in "$hwdr" "$gen"; do [ -x "$b" ] || die "$b is missing: run make bench-sealing"; done
"$gen" --help | grep -q -- --content || die "$gen cannot make compressible blocks (--content): run make bench-sealing"

ensure_users

cleanup() {
  stop_agents
  if [ "$KEEP" != 1 ] && [ -d "$W" ]; then
    say "removing the generated data in $W (results stay in $W/results)"
    rm_big "${KINDS[@]/#/$W/}"
    rm -f "$W/repo.key"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# An encrypted repository's manifest is sealed: the backup's row of `hwdr
# list --json` (status, sizes) stands for it.
fetch_manifest() {
  "$hwdr" --config "$1/etc-head1/hwdr.toml" list --json |
    python3 -c 'import json,sys; print(json.dumps([r for r in json.load(sys.stdin) if r["id"] == sys.argv[1]][0]))' "$2" >"$3"
}

fresh_agents() {
  stop_agents
  start_agents "$1"
}

# repository CFG DIR: the [repository] keys of configuration CFG.
repository() {
  case $1 in
    plain) printf 'path = "%s/repo"' "$2" ;;
    enc) printf 'path = "%s/repo"\nkey_file = "%s"\ncompression_level = 0' "$2" "$W/repo.key" ;;
    encz) printf 'path = "%s/repo"\nkey_file = "%s"\ncompression_level = %s' "$2" "$W/repo.key" "$LEVEL" ;;
  esac
}

# gen_kind KIND: data set KIND (plan_dataset's blocks, --content KIND) in
# $W/KIND/data; its figures in $R (KIND_gen_*).
gen_kind() {
  local kind=$1 out=$W/$1/data s
  say "generating the $kind data set: $n_large blocks of 1-128 MiB + $n_small blocks of 0-$SMALL_MAX, replication 3"
  s=$(now_ns)
  gen_nodes --out "$out" --blocks "$n_large" --min-size 1M --max-size 128M --seed 1 --content "$kind" >"$W/results/gen-$kind.txt"
  if [ "$n_small" -gt 0 ]; then
    gen_nodes --out "$out" --blocks "$n_large" --min-size 0 --max-size "$SMALL_MAX" --seed 1 --add "$n_small" \
      --content "$kind" >>"$W/results/gen-$kind.txt"
  fi
  sync
  put "${kind}_gen_s" "$(secs "$s" "$(now_ns)")"
  tail -1 "$W/results/gen-$kind.txt" | tr ' ' '\n' | sed "s/^/${kind}_gen_/" >>"$R"
}

# hwdr_restore DIR KEY ID: `hwdr restore ID --only hopsfs` under GNU time.
hwdr_restore() {
  /usr/bin/time -o "$W/results/$2.time" -f 'wall=%e\nuser=%U\nsys=%S\nmaxrss_kb=%M' \
    "$hwdr" --config "$1/etc-head1/hwdr.toml" restore "$3" --only hopsfs >"$W/results/$2.log" 2>&1 ||
    die "$2: hwdr restore failed, see $W/results/$2.log"
}

# restore_run DIR DATA KEY ID: DATA's node folders wiped, fresh agents, a
# cold-cache restore of HopsFS from backup ID (lib.sh `timed`: wall time and
# with the sync), the leader's CPU (GNU time) and the agents'.
restore_run() {
  local dir=$1 data=$2 key=$3 id=$4 c0 c1 i
  wipe_nodes "$data"
  rm -rf "$dir"/state-*/restore
  fresh_agents "$dir"
  c0=$(agents_cpu)
  timed "$key" hwdr_restore "$dir" "$key" "$id"
  c1=$(agents_cpu)
  sed "s/^/${key}_/" "$W/results/$key.time" >>"$R"
  put "${key}_agents_cpu_s" "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')"
  for i in 1 2 3; do
    put "${key}_agent${i}_vmhwm_kb" "$(awk '/^VmHWM/ { print $2 }' "/proc/${agent_pids[$((i - 1))]}/status")"
  done
  stop_agents
}

# stored KEY DIR DATA ID: the repository's block files, .meta files and
# RonDB parts of backup ID against the originals (the block files of node1,
# which holds every block, and the simulated data nodes' backup folders):
# apparent sizes, and how many blocks were stored smaller than they are.
stored() {
  python3 - "$1" "$2" "$3" "$4" >>"$R" <<'PY'
import json, os, sys
key, d, data, bid = sys.argv[1:]
def files(root):
    for base, _, names in os.walk(root):
        for n in names:
            yield os.path.join(base, n)
out = {}
def add(k, v):
    out[k] = out.get(k, 0) + v
# <repo>/blocks/<pool>/subdir<a>/subdir<b>/blk_<id>_<genstamp>[.meta] is
# node1's dn/current/<pool>/current/finalized/subdir<a>/subdir<b>/ blk_<id>
# (or blk_<id>_<genstamp>.meta).
for p in files(f"{d}/repo/blocks"):
    rel = os.path.relpath(p, f"{d}/repo/blocks").split(os.sep)
    if not rel[-1].startswith("blk_"):
        continue
    kind = "meta" if rel[-1].endswith(".meta") else "block"
    name = rel[-1] if kind == "meta" else rel[-1].rsplit("_", 1)[0]
    orig = os.path.join(data, "node1/dn/current", rel[0], "current/finalized", *rel[1:-1], name)
    a, b = os.path.getsize(orig), os.path.getsize(p)
    with open(p, "rb") as stored:
        if stored.read(8) == b"HWDRSEAL":
            add(f"{kind}_sealed", 1)
    out.setdefault(f"{kind}_sealed", 0)
    add(f"{kind}_files", 1)
    add(f"{kind}_orig_bytes", a)
    add(f"{kind}_stored_bytes", b)
    if b < a:
        add(f"{kind}_smaller", 1)
    out.setdefault(f"{kind}_smaller", 0)
# <repo>/backups/<id>/rondb/X is <backup_dir>/BACKUP/X of one data node.
sim = json.load(open(f"{d}/sim/hwdr-sim.json"))
dirs = [n["backup_dir"] for n in sim["data_nodes"].values()]
for p in files(f"{d}/repo/backups/{bid}/rondb"):
    rel = os.path.relpath(p, f"{d}/repo/backups/{bid}/rondb")
    if not rel.startswith("BACKUP-"):
        continue
    origs = [os.path.join(b, "BACKUP", rel) for b in dirs if os.path.exists(os.path.join(b, "BACKUP", rel))]
    if len(origs) != 1:
        sys.exit(f"{p}: {len(origs)} originals")
    kind = "parts_data" if rel.endswith(".Data") else "parts_other"
    add(f"{kind}_files", 1)
    add(f"{kind}_orig_bytes", os.path.getsize(origs[0]))
    add(f"{kind}_stored_bytes", os.path.getsize(p))
for k, v in sorted(out.items()):
    print(f"{key}_{k}={v}")
PY
}

# check_restored KEY DATA REF: the restored trees against the originals.
check_restored() {
  local key=$1 got=$W/results/$1.sums
  tree_sums "$2" "$got"
  put "${key}_files" "$(wc -l <"$got.md5")"
  put "${key}_content_diffs" "$(LC_ALL=C comm -23 "$3.md5" "$got.md5" | wc -l)"
  put "${key}_attr_diffs" "$(LC_ALL=C comm -23 "$3.attr" "$got.attr" | wc -l)"
  say "$key: $(wc -l <"$got.md5") files, $(LC_ALL=C comm -23 "$3.md5" "$got.md5" | wc -l) differ or are missing"
  rm -f "$got.md5" "$got.attr"
}

# ---------------------------------------------------------------- the run
for k in "${KINDS[@]}"; do
  if [ -e "$W/$k" ]; then die "$W/$k is left from an earlier run: remove it (rm -rf $W/$k) or set BENCH_DIR"; fi
done
rm -rf "$W/results"
mkdir -p "$W/results"
: >"$R"
# One data set at a time: its replicas, and three repositories of at most its
# unique bytes each.
need_space "$(awk -v u="$UNIQUE_GIB" 'BEGIN { print int(u * 6.5 + 2) }')"
say "results in $W/results; page cache drops: $(echo 3 >/proc/sys/vm/drop_caches 2>/dev/null && echo allowed || echo 'not allowed')"
{
  describe_machine
  echo "aes_ni=$(grep -qw aes /proc/cpuinfo && echo yes || echo no)"
  echo "avx2=$(grep -qw avx2 /proc/cpuinfo && echo yes || echo no)"
  echo "avx512f=$(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
} >"$W/results/machine.env"
put repeat "$REPEAT"
put full_gib "$FULL_GIB"
put full_repeat "$FULL_REPEAT"
put sim_rows "$SIM_ROWS"
put level "$LEVEL"
put configs "${CONFIGS[*]}"
put kinds "${KINDS[*]}"
plan_dataset
(umask 077 && head -c 32 /dev/urandom >"$W/repo.key")

# Backup ids: one minute each, from 2026-01-01 12:01; the last of each
# configuration's is the one restored.
n_id=0
next_id() { n_id=$((n_id + 1)); id=$(date -u -d "2026-01-01 12:00 UTC + $n_id min" +%y%m%d%H%M); }
declare -A last

for kind in "${KINDS[@]}"; do
  data=$W/$kind/data
  gen_kind "$kind"
  put "${kind}_block_file_bytes" "$(find "$data/node1" -type f -name 'blk_*' ! -name '*.meta' -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')"
  for cfg in "${CONFIGS[@]}"; do
    say "the $kind/$cfg cluster ($SIM_ROWS rows in its simulated RonDB)"
    case $cfg in
      plain) setup_cluster "$W/$kind/$cfg" "$data" "$(repository "$cfg" "$W/$kind/$cfg")" ;;
      *) setup_cluster "$W/$kind/$cfg" "$data" "$(repository "$cfg" "$W/$kind/$cfg")" --encrypt ;;
    esac
    "$hwdr" --config "$W/$kind/$cfg/etc-head1/hwdr.toml" list >"$W/results/$kind-$cfg.list.txt" 2>&1
  done

  # Full backups, REPEAT rounds, plain, enc and encz in turn.
  for i in $(seq "$REPEAT"); do
    for cfg in "${CONFIGS[@]}"; do
      dir=$W/$kind/$cfg
      if [ "$i" -gt 1 ]; then rm -rf "$dir/repo/backups" "$dir/repo/blocks" "$dir"/state-*/hopsfs-list; fi
      say "$kind: full backup, $cfg, round $i of $REPEAT"
      fresh_agents "$dir"
      next_id
      backup "$dir" "${kind}_${cfg}_b$i" "$id"
      stop_agents
      grep -q '"status": "complete"' "$W/results/${kind}_${cfg}_b$i.manifest.json" ||
        die "${kind}_${cfg}_b$i: the backup is not complete: $(cat "$W/results/${kind}_${cfg}_b$i.manifest.json")"
      last[$cfg]=$id
    done
  done

  # What the last round stored.
  for cfg in "${CONFIGS[@]}"; do
    stored "${kind}_${cfg}" "$W/$kind/$cfg" "$data" "${last[$cfg]}"
    put "${kind}_${cfg}_repo_du_kb" "$(du -sk "$W/$kind/$cfg/repo" | cut -f1)"
  done

  # Restores, REPEAT rounds; the last round's checked.
  ref=$W/results/$kind.reference
  say "$kind: checksums of the data nodes"
  tree_sums "$data" "$ref"
  put "${kind}_ref_files" "$(wc -l <"$ref.md5")"
  for i in $(seq "$REPEAT"); do
    for cfg in "${CONFIGS[@]}"; do
      say "$kind: restore, $cfg, round $i of $REPEAT"
      restore_run "$W/$kind/$cfg" "$data" "${kind}_${cfg}_r$i" "${last[$cfg]}"
      if [ "$i" = "$REPEAT" ]; then check_restored "${kind}_${cfg}_r$i" "$data" "$ref"; fi
    done
  done
  rm -f "$ref.md5" "$ref.attr"
  if [ "$KEEP" != 1 ]; then
    say "removing the $kind data set and its repositories"
    rm_big "$W/$kind"
  fi
done
put dropped "$dropped"
echo "end_load=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$W/results/machine.env"
echo "end_date=$(date -u +%FT%TZ)" >>"$W/results/machine.env"

# The report.
python3 "$top/bench/report_sealing.py" "$W/results" >"$W/results/report.md"
cp "$W/results/report.md" "$top/bench/last-run-sealing.md"
update_doc "$BENCH_DOC" bench-sealing "$W/results/report.md"
cat "$W/results/report.md"
say "done; raw results in $W/results"
