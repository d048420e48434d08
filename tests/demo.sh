#!/usr/bin/env bash
# A backup of a simulated five-node cluster on this machine: head1, head2,
# and three RonDB nodes whose agents listen on 127.0.0.3-5. Shows the
# backup's log, `hwdr list` and the manifest, then stops the agents.
# Run as root (the runbook's programs run as mysql). `make demo` calls it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
hwdr="$top/target/debug/hwdr"
demo=${HWDR_DEMO_DIR:-/tmp/hwdr-demo}
port=17878

[ "$(id -u)" = 0 ] || { echo "demo: run as root" >&2; exit 1; }
[ -x "$hwdr" ] || (cd "$top" && cargo build --locked)
id mysql >/dev/null 2>&1 || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin mysql

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

rm -rf "$demo"; mkdir -p "$demo/repo"; chmod 755 "$demo"
"$top/tests/sim/simctl" init "$demo/sim" --data-nodes 2:2,3:2,4:2 --rows 500 --socket "$demo/sim/mysql.sock" >/dev/null
head -c 24 /dev/urandom | base64 > "$demo/agent.token"; chmod 600 "$demo/agent.token"
echo "name: demo" > "$demo/cluster-definition.yml"

common() {
  cat <<TOML
[cluster]
name = "demo"
[[nodes]]
name = "head1"
address = "127.0.0.1:$port"
roles = ["head"]
[[nodes]]
name = "head2"
address = "127.0.0.2:$port"
roles = ["head"]
TOML
  for i in 1 2 3; do
    printf '[[nodes]]\nname = "ndb%s"\naddress = "127.0.0.%s:%s"\nroles = ["rondb"]\nrondb_node_ids = [%s]\n' \
      "$i" $((i + 2)) "$port" $((i + 1))
  done
  cat <<TOML
[repository]
path = "$demo/repo"
[rondb]
mgm_client = "$demo/sim/bin/mgm-client.sh"
mysqlpump = "$demo/sim/bin/mysqlpump"
mysqldump = "$demo/sim/bin/mysqldump"
mysql = "$demo/sim/bin/mysql"
socket = "$demo/sim/mysql.sock"
[config_backup]
paths = ["$demo/cluster-definition.yml"]
[agent]
token_file = "$demo/agent.token"
TOML
}

for n in head1 head2 ndb1 ndb2 ndb3; do
  mkdir -p "$demo/etc-$n/hwdr.d"
  common > "$demo/etc-$n/hwdr.toml"
  printf '[node]\nname = "%s"\n' "$n" > "$demo/etc-$n/hwdr.d/50-node.toml"
done
for i in 1 2 3; do
  printf '[rondb]\nbackup_dir = "%s"\n' "$demo/sim/ndb$((i + 1))/backups" >> "$demo/etc-ndb$i/hwdr.d/50-node.toml"
  "$hwdr" --config "$demo/etc-ndb$i/hwdr.toml" agent 2>"$demo/agent-ndb$i.log" &
  pids+=($!)
done
for i in 3 4 5; do
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.$i:$port/v1/health" >/dev/null 2>&1 && break
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.$i', $port), 0.2)" 2>/dev/null && break
    sleep 0.1
  done
done

echo "== hwdr backup on head1 (log on stderr)"
"$hwdr" --config "$demo/etc-head1/hwdr.toml" backup
echo "== hwdr list"
"$hwdr" --config "$demo/etc-head1/hwdr.toml" list
echo "== the manifest: $(ls -d "$demo"/repo/backups/*)/manifest.json"
python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(json.dumps({k: m[k] for k in ("backup_id","status","leader","rondb")}, indent=2)); [print(n["name"], n["status"], [s["name"]+":"+s["status"] for s in n["steps"]]) for n in m["nodes"]]' "$demo"/repo/backups/*/manifest.json
echo "== files are in $demo (remove it with: rm -rf $demo)"
