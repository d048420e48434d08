#!/usr/bin/env bash
# The main job on a simulated five-node cluster on this machine: head1,
# head2, and three nodes (RonDB data nodes 2-4, HopsFS data nodes with
# replication 3) whose agents listen on 127.0.0.3-5. Takes a backup, shows
# its log, `hwdr list` and the manifest, wipes every node, restores, and
# compares the restored cluster with the one that was backed up.
# Run as root (the runbook's programs run as mysql and hdfs). `make demo`
# calls it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
hwdr="$top/target/debug/hwdr"
demo=${HWDR_DEMO_DIR:-/tmp/hwdr-demo}
port=17878

[ "$(id -u)" = 0 ] || { echo "demo: run as root" >&2; exit 1; }
gen="$top/target/debug/gen_datanodes"
[ -x "$hwdr" ] || (cd "$top" && cargo build --locked)
[ -x "$gen" ] || (cd "$top" && cargo build --locked -p testkit --bin gen_datanodes)
id mysql >/dev/null 2>&1 || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin mysql
getent group hadoop >/dev/null || groupadd --system hadoop
id hdfs >/dev/null 2>&1 || useradd --system --user-group --groups hadoop --no-create-home --shell /usr/sbin/nologin hdfs

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

rm -rf "$demo"; mkdir -p "$demo/repo"; chmod 755 "$demo"
"$top/tests/sim/simctl" init "$demo/sim" --data-nodes 2:2,3:2,4:2 --rows 500 --socket "$demo/sim/mysql.sock" >/dev/null
head -c 24 /dev/urandom | base64 > "$demo/agent.token"; chmod 600 "$demo/agent.token"
echo "name: demo" > "$demo/cluster-definition.yml"
"$gen" --out "$demo/hopsfs" --nodes 3 --pools 2 --blocks 300 --replication 3 --min-size 0 --max-size 200000 --seed 1
chown -R hdfs:hadoop "$demo/hopsfs"
"$top/tests/sim/simctl" blocks "$demo/sim" --data-dirs "$demo/hopsfs/node1/dn,$demo/hopsfs/node2/dn,$demo/hopsfs/node3/dn" >/dev/null

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
    printf '[[nodes]]\nname = "ndb%s"\naddress = "127.0.0.%s:%s"\nroles = ["rondb", "hopsfs"]\nrondb_node_ids = [%s]\n' \
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
ndb_restore = "$demo/sim/bin/ndb_restore"
mysql_client = "$demo/sim/bin/mysql-client.sh"
connectstring = "127.0.0.1:1186"
socket = "$demo/sim/mysql.sock"
[hopsfs]
datanode_unit = ""
safemode_command = ["$demo/sim/bin/hdfs", "dfsadmin", "-safemode", "get"]
[restore]
safemode_poll = "1s"
[opensearch]
reindex_command = ["$demo/sim/bin/reindex-epipe.sh"]
[kafka]
restore_command = ["$demo/sim/bin/kafka-restore.sh"]
[config_backup]
paths = ["$demo/cluster-definition.yml"]
[agent]
token_file = "$demo/agent.token"
TOML
}

for n in head1 head2 ndb1 ndb2 ndb3; do
  mkdir -p "$demo/etc-$n/hwdr.d"
  common > "$demo/etc-$n/hwdr.toml"
  printf '[node]\nname = "%s"\n[restore]\nstate_dir = "%s"\nstaging_dir = "%s"\n[metrics]\ntextfile = "%s"\n' \
    "$n" "$demo/state-$n" "$demo/staging-$n" "$demo/state-$n/hwdr.prom" > "$demo/etc-$n/hwdr.d/50-node.toml"
done
# The repository is set up once, before the first backup.
"$hwdr" --config "$demo/etc-head1/hwdr.toml" repo init
for i in 1 2 3; do
  printf '[rondb]\nbackup_dir = "%s"\n[hopsfs]\ndata_dirs = ["%s"]\n' \
    "$demo/sim/ndb$((i + 1))/backups" "$demo/hopsfs/node$i/dn" >> "$demo/etc-ndb$i/hwdr.d/50-node.toml"
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

head1="$demo/etc-head1/hwdr.toml"
echo "== hwdr backup on head1 (log on stderr)"
"$hwdr" --config "$head1" backup
id=$(basename "$(ls -d "$demo"/repo/backups/*)")
echo "== hwdr list"
"$hwdr" --config "$head1" list
echo "== the manifest: $demo/repo/backups/$id/manifest.json"
python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(json.dumps({k: m[k] for k in ("backup_id","status","leader","rondb","hopsfs")}, indent=2)); [print(n["name"], n["status"], [s["name"]+":"+s["status"] for s in n["steps"]]) for n in m["nodes"]]' "$demo/repo/backups/$id/manifest.json"

echo "== every node wiped: an empty RonDB, no HopsFS blocks, no local RonDB backups"
"$top/tests/sim/simctl" dump "$demo/sim" > "$demo/rondb-before.json"
cp -a "$demo/hopsfs" "$demo/hopsfs-before"
"$top/tests/sim/simctl" wipe "$demo/sim"
rm -rf "$demo"/hopsfs/node*/dn "$demo"/sim/ndb*/backups/BACKUP
echo "== hwdr restore $id --plan"
"$hwdr" --config "$head1" restore "$id" --plan
echo "== hwdr restore $id (log on stderr)"
"$hwdr" --config "$head1" restore "$id"
echo "== compare"
"$top/tests/sim/simctl" dump "$demo/sim" > "$demo/rondb-after.json"
if cmp -s "$demo/rondb-before.json" "$demo/rondb-after.json"; then echo "RonDB: rows, users, schemas, indexes equal to the backup"; else echo "RonDB: DIFFERENT"; exit 1; fi
for i in 1 2 3; do
  if diff -r --exclude=in_use.lock --exclude=rbw --exclude=tmp --exclude=dfsUsed \
      "$demo/hopsfs-before/node$i/dn" "$demo/hopsfs/node$i/dn" >/dev/null; then
    echo "HopsFS node$i: every VERSION file and finalized block equal to the backup"
  else
    echo "HopsFS node$i: DIFFERENT"; exit 1
  fi
done
echo "Kafka topics: $("$top/tests/sim/simctl" topics "$demo/sim" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') recreated; OpenSearch reindexed $("$top/tests/sim/simctl" reindexes "$demo/sim") time(s)"
echo "== files are in $demo (remove it with: rm -rf $demo)"
