# Shell functions shared by the benchmarks (bench/hopsfs.sh,
# bench/durability.sh): messages and results, page-cache drops, and a
# simulated four-node cluster (head1 + node1..3) whose agents run "$hwdr".
# The sourcing script sets W (work folder), R (results file), top (the
# checkout) and hwdr (the binary) first.

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

# setup_cluster DIR NODES_ROOT: repository (`hwdr repo init`), simulated
# RonDB (data nodes 2 on node1, 3 on node2), token, and the config of head1,
# node1..3.
setup_cluster() {
  local dir=$1 nodes=$2 port i n
  port=$(free_port)
  mkdir -p "$dir/repo"
  chmod 755 "$dir"
  "$top/tests/sim/simctl" init "$dir/sim" --data-nodes 2:1,3:1 --rows 200 --socket "$dir/sim/mysql.sock" >/dev/null
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
path = "$dir/repo"
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
  "$hwdr" --config "$dir/etc-head1/hwdr.toml" repo init >/dev/null
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
      curl -fsS "http://127.0.0.$i:$port/v1/health" >/dev/null 2>&1 && { ok=yes; break; }
      sleep 0.1
    done
    [ $ok = yes ] || die "the agent on 127.0.0.$i did not come up: $(cat "$dir"/agent-node*.log)"
  done
}

