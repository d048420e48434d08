# Shell functions shared by the benchmarks (bench/hopsfs.sh, bench/s3.sh,
# bench/durability.sh, bench/sealing.sh): messages and results, page-cache
# drops, the generated data set, a simulated four-node cluster (head1 +
# node1..3) whose agents run "$hwdr", timed and measured backups, the
# checksums a restore is compared with, and the report's block in the docs. The sourcing script sets W (work folder), R (results file), top
# (the checkout), hwdr and gen (the binaries) first.

say() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; exit 1; }
put() { echo "$1=$2" >>"$R"; }
now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

agent_pids=()
stop_agents() {
  local p
  for p in "${agent_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${agent_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  agent_pids=()
}
# Drops the page cache so every timed copy reads from the disk.
drop_caches() {
  sync
  if echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then dropped=yes; else dropped=no; fi
}

# Sum of the sizes of the regular files below the arguments.
file_bytes() { find "$@" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }'; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# setup_cluster DIR NODES_ROOT [REPOSITORY_TOML [INIT_ARG...]]: repository
# (`hwdr repo init INIT_ARG...`), simulated RonDB (data nodes 2 on node1, 3
# on node2; SIM_ROWS rows, 200 unless set), token, and the config of head1,
# node1..3. The [repository] section's keys are REPOSITORY_TOML, by default
# `path = "DIR/repo"`.
setup_cluster() {
  local dir=$1 nodes=$2 repository=${3:-} port i n
  shift $(($# < 3 ? $# : 3))
  [ -n "$repository" ] || repository="path = \"$dir/repo\""
  port=$(free_port)
  mkdir -p "$dir/repo"
  chmod 755 "$dir"
  "$top/tests/sim/simctl" init "$dir/sim" --data-nodes 2:1,3:1 --rows "${SIM_ROWS:-200}" --socket "$dir/sim/mysql.sock" >/dev/null
  head -c 24 /dev/urandom | base64 >"$dir/agent.token"
  chmod 600 "$dir/agent.token"
  {
    printf '[cluster]\nname = "bench"\n'
    printf '[[nodes]]\nname = "head1"\naddress = "127.0.0.1:%s"\nroles = ["head"]\n' "$port"
    printf '[[nodes]]\nname = "node1"\naddress = "127.0.0.2:%s"\nroles = ["rondb", "hopsfs"]\nrondb_node_ids = [2]\n' "$port"
    printf '[[nodes]]\nname = "node2"\naddress = "127.0.0.3:%s"\nroles = ["rondb", "hopsfs"]\nrondb_node_ids = [3]\n' "$port"
    printf '[[nodes]]\nname = "node3"\naddress = "127.0.0.4:%s"\nroles = ["hopsfs"]\n' "$port"
    cat <<TOML
[repository]
$repository
[rondb]
mgm_client = "$dir/sim/bin/mgm-client.sh"
mysqlpump = "$dir/sim/bin/mysqlpump"
mysqldump = "$dir/sim/bin/mysqldump"
mysql = "$dir/sim/bin/mysql"
socket = "$dir/sim/mysql.sock"
[agent]
token_file = "$dir/agent.token"
[hopsfs]
datanode_unit = ""
TOML
  } >"$dir/common.toml"
  for n in head1 node1 node2 node3; do
    mkdir -p "$dir/etc-$n/hwdr.d"
    cp "$dir/common.toml" "$dir/etc-$n/hwdr.toml"
    printf '[node]\nname = "%s"\n[restore]\nstate_dir = "%s"\n' "$n" "$dir/state-$n" >"$dir/etc-$n/hwdr.d/50-node.toml"
  done
  for i in 1 2; do
    printf '[rondb]\nbackup_dir = "%s"\n' \
      "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data_nodes"][sys.argv[2]]["backup_dir"])' \
        "$dir/sim/hwdr-sim.json" $((i + 1)))" >>"$dir/etc-node$i/hwdr.d/50-node.toml"
  done
  for i in 1 2 3; do
    printf '[hopsfs]\ndata_dirs = ["%s"]\n' "$nodes/node$i/dn" >"$dir/etc-node$i/hwdr.d/60-hopsfs.toml"
  done
  # Once, before the first backup: every command requires the marker.
  "$hwdr" --config "$dir/etc-head1/hwdr.toml" repo init "$@" >/dev/null
  echo "$port" >"$dir/port"
}

start_agents() {
  local dir=$1 port i ok
  port=$(cat "$dir/port")
  for i in 1 2 3; do
    "$hwdr" --config "$dir/etc-node$i/hwdr.toml" agent 2>"$dir/agent-node$i.log" &
    agent_pids+=($!)
  done
  for i in 2 3 4; do
    ok=no
    for _ in $(seq 200); do
      # Any HTTP answer: an agent on mutual TLS answers plain HTTP with 400.
      [ "$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.$i:$port/v1/health" 2>/dev/null)" != 000 ] && { ok=yes; break; }
      sleep 0.1
    done
    [ $ok = yes ] || die "the agent on 127.0.0.$i did not come up: $(cat "$dir"/agent-node*.log)"
  done
}


# The users the tests create: mysql runs the RonDB programs, hdfs (group
# hadoop) owns the blocks. Sets owner (uid:gid of hdfs:hadoop).
ensure_users() {
  getent group hadoop >/dev/null || groupadd --system hadoop
  id mysql >/dev/null 2>&1 || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin mysql
  id hdfs >/dev/null 2>&1 || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin --groups hadoop hdfs
  owner="$(id -u hdfs):$(getent group hadoop | cut -d: -f3)"
}

gen_nodes() { "$gen" --nodes 3 --replication 3 --pools 2 --rbw 0 --owner "$owner" "$@"; }

# need_space GIB: dies unless the folder holding W has about GIB GiB free.
need_space() {
  local avail
  avail=$(df -BG --output=avail "$(dirname "$W")" | tail -1 | tr -dc 0-9)
  [ "$avail" -ge "$1" ] || die "$(dirname "$W") has ${avail} GiB free, the run needs about $1 GiB"
}

# describe_machine: KEY=VALUE lines on the machine, the disk holding W, hwdr
# and the load (the caller adds the versions of the tools it compares with).
describe_machine() {
  local src dev
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
  echo "gnu_time=$(dpkg-query -W -f '${Version}' time 2>/dev/null)"
  echo "start_load=$(cut -d' ' -f1-3 /proc/loadavg)"
}

# plan_dataset: the block counts of data set 1 from UNIQUE_GIB, LARGE_SHARE
# (% of the unique bytes in 1-128 MiB blocks, mean 64.5 MiB; the rest in
# 0-SMALL_MAX blocks) and NEW_PERCENT (blocks added before each backup after
# 1% new): n_large, n_small, add_large, add_small, also put in $R.
plan_dataset() {
  local small_max_b
  small_max_b=$(numfmt --from=iec "$SMALL_MAX")
  n_large=$(awk -v u="$UNIQUE_GIB" -v s="$LARGE_SHARE" 'BEGIN { n = int(u * 1024 * s / 100 / 64.5 + 0.5); print (n < 1 ? 1 : n) }')
  n_small=$(awk -v u="$UNIQUE_GIB" -v s="$LARGE_SHARE" -v m="$small_max_b" 'BEGIN { print int(u * 1073741824 * (100 - s) / 100 / (m / 2) + 0.5) }')
  add_large=$(awk -v n="$n_large" -v p="$NEW_PERCENT" 'BEGIN { a = n * p / 100; a = (a == int(a)) ? a : int(a) + 1; print a }')
  add_small=$(awk -v n="$n_small" -v p="$NEW_PERCENT" 'BEGIN { print int(n * p / 100 + 0.5) }')
  put unique_gib_setting "$UNIQUE_GIB"
  put small_max "$SMALL_MAX"
  put new_percent "$NEW_PERCENT"
  put n_large "$n_large"
  put n_small "$n_small"
  put add_large "$add_large"
  put add_small "$add_small"
}

# gen_dataset OUT: data set 1 (plan_dataset) into OUT/node1..3; its figures
# in $R (gen1_*, gen_big_s, tree_bytes, tree_files, block_file_bytes).
gen_dataset() {
  local out=$1 s
  say "generating 3 nodes: $n_large blocks of 1-128 MiB + $n_small blocks of 0-$SMALL_MAX, replication 3"
  s=$(now_ns)
  gen_nodes --out "$out" --blocks "$n_large" --min-size 1M --max-size 128M --seed 1 >"$W/results/gen-big.txt"
  if [ "$n_small" -gt 0 ]; then
    gen_nodes --out "$out" --blocks "$n_large" --min-size 0 --max-size "$SMALL_MAX" --seed 1 --add "$n_small" >>"$W/results/gen-big.txt"
  fi
  sync
  put gen_big_s "$(secs "$s" "$(now_ns)")"
  put tree_bytes "$(file_bytes "$out")"
  put tree_files "$(find "$out" -type f | wc -l)"
  put block_file_bytes "$(find "$out" -type f -name 'blk_*' ! -name '*.meta' -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')"
  tail -1 "$W/results/gen-big.txt" | tr ' ' '\n' | sed 's/^/gen1_/' >>"$R"
}

# add_new OUT I: NEW_PERCENT % new blocks of each kind in data set 1 (the
# I-th time); its figures in $R (gen_addI_*).
add_new() {
  local out=$1 i=$2
  say "adding $add_large + $add_small blocks ($i of $REPEAT)"
  gen_nodes --out "$out" --blocks "$n_large" --min-size 1M --max-size 128M --seed 1 --add "$add_large" >"$W/results/gen-add$i.txt"
  if [ "$add_small" -gt 0 ]; then
    gen_nodes --out "$out" --blocks "$n_large" --min-size 0 --max-size "$SMALL_MAX" --seed 1 --add "$add_small" >>"$W/results/gen-add$i.txt"
  fi
  tail -1 "$W/results/gen-add$i.txt" | tr ' ' '\n' | sed "s/^/gen_add${i}_/" >>"$R"
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

# tree_sums DATA OUT: what a restore must give back (the files hwdr backs up:
# every VERSION and every file below finalized/) of node1..3 in DATA:
# OUT.md5 (MD5 and path) and OUT.attr (path, owner, mode), sorted.
tree_sums() {
  local data=$1 out=$2 n pids=()
  for n in 1 2 3; do
    (
      cd "$data/node$n/dn"
      find . -type f \( -path ./current/VERSION -o -path '*/current/VERSION' -o -path '*/current/finalized/*' \) \
        -printf '%P\t%u:%g %m\n' | LC_ALL=C sort >"$out.attr$n"
      cut -f1 "$out.attr$n" | xargs -r -d '\n' md5sum | sed "s|  |  node$n/|" >"$out.md5$n"
      sed -i "s|^|node$n/|" "$out.attr$n"
    ) &
    pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n"; done
  cat "$out".md5[123] >"$out.md5"
  cat "$out".attr[123] >"$out.attr"
  rm -f "$out".md5[123] "$out".attr[123]
}

# wipe_nodes DATA: every data node's folder removed, as after a disk loss.
wipe_nodes() { rm_big "$1"/node*; }

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

# fetch_manifest DIR ID DEST: the manifest of backup ID of the cluster in
# DIR, copied to DEST (a script whose repository is not DIR/repo redefines it).
fetch_manifest() { cp "$1/repo/backups/$2/manifest.json" "$3"; }

# backup DIR KEY ID: a cold-cache `hwdr backup` on head1, timed by GNU time,
# its memory sampled by sample_rss; then each agent's VmHWM and the manifest.
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
  fetch_manifest "$dir" "$id" "$W/results/$key.manifest.json"
  say "$key: $(grep wall "$W/results/$key.time")"
}

# update_doc DOC NAME REPORT: replaces what stands between the markers
# `<!-- NAME:begin -->` and `<!-- NAME:end -->` of DOC with REPORT's text;
# nothing when DOC is empty, missing or without the markers.
update_doc() {
  local doc=$1 name=$2 report=$3
  [ -n "$doc" ] && [ -f "$doc" ] && grep -q "<!-- $name:begin -->" "$doc" || return 0
  python3 - "$doc" "$name" "$report" <<'PY'
import sys
doc, name, rep = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
text = open(doc).read()
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(doc, "w").write(head + begin + "\n" + rep + end + tail)
PY
  say "updated the results in $doc"
}

# The machine, for the report: cores, memory, the disk under $W.
put_machine() {
  put machine "$(nproc) cores, $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(df -h --output=source,fstype "$W" | tail -1 | tr -s ' ')"
}

# gen_mixed_data: UNIQUE_GIB into $W/data, 90 % in 1-128 MiB blocks, the rest
# in 0-256 KiB ones (3 nodes, replication 3); unique_bytes and blocks in $R.
gen_mixed_data() {
  local n_large n_small
  n_large=$(awk -v u="$UNIQUE_GIB" 'BEGIN { print int(u * 1024 * 0.9 / 64.5 + 0.5) }')
  n_small=$(awk -v u="$UNIQUE_GIB" 'BEGIN { print int(u * 1073741824 * 0.1 / 131072 + 0.5) }')
  say "generating $n_large large and $n_small small blocks on 3 nodes, replication 3"
  gen_nodes --out "$W/data" --blocks "$n_large" --min-size 1M --max-size 128M --seed 1 >"$W/results/gen.txt"
  gen_nodes --out "$W/data" --blocks "$n_large" --min-size 0 --max-size 256K --seed 1 --add "$n_small" >>"$W/results/gen.txt"
  put unique_bytes "$(tail -1 "$W/results/gen.txt" | tr ' ' '\n' | sed -n 's/^unique_bytes=//p')"
  put blocks "$((n_large + n_small))"
  sync
}
