#!/usr/bin/env bash
# What mutual TLS between the leader and the agents costs a full backup
# (`make bench-tls`; docs/benchmarks.md, "Mutual TLS").
#
# The data does not travel through the agent API (agents write their share
# to the repository themselves; the API carries jobs and their status), so
# the expectation is no measurable change. One run, on the same generated
# data, alternating: a cold-cache full backup with `[agent] auth = token`,
# then one with `mtls` (certificates from `hwdr tls init` and `hwdr tls
# issue --all`), REPEAT times each, the repository emptied in between; the
# medians, and the leader's CPU time.
#
# Variables: BENCH_DIR (/var/tmp/hwdr-bench-tls), UNIQUE_GIB (2), REPEAT (3),
# BENCH_DOC (docs/benchmarks.md; empty: do not update it). Run as root.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/hwdr-bench-tls}
UNIQUE_GIB=${UNIQUE_GIB:-2}
REPEAT=${REPEAT:-3}
BENCH_DOC=${BENCH_DOC-$top/docs/benchmarks.md}
W=$BENCH_DIR
R=$W/results/results.env
hwdr=$top/target/release/hwdr
gen=$top/target/release/gen_datanodes

# shellcheck source=bench/lib.sh
. "$top/bench/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root"
for b in "$hwdr" "$gen"; do [ -x "$b" ] || die "$b is missing: run make bench-tls"; done
/usr/bin/time --version 2>&1 | grep -q GNU || die "GNU time is missing (apt-get install time)"
[ -e "$W/data" ] && die "$W/data is left from an earlier run: remove it or set BENCH_DIR"
mkdir -p "$W/results"
: >"$R"
trap 'stop_agents; rm -rf "$W/data" "$W/cluster"' EXIT
put commit "$(git -C "$top" rev-parse --short HEAD)"
put_machine

ensure_users
gen_mixed_data

c=$W/cluster
setup_cluster "$c" "$W/data"
# docs/security.md's two commands, then each node's [tls] drop-in (not yet active).
"$hwdr" --config "$c/etc-head1/hwdr.toml" tls init --dir "$c/tls-ca" >/dev/null
"$hwdr" --config "$c/etc-head1/hwdr.toml" tls issue --all --ca-dir "$c/tls-ca" >/dev/null
for n in head1 node1 node2 node3; do
  d=$c/tls-ca/issued/$n
  printf '[tls]\ncertificate = "%s"\nkey = "%s"\nca = "%s"\n[agent]\nauth = "mtls"\n' \
    "$d/node.pem" "$d/node.key" "$d/ca.pem" >"$c/tls-$n.toml"
done

# fresh AUTH: an empty repository, every node on AUTH, its agents started.
fresh() {
  local n
  stop_agents
  rm -rf "$c/repo" "$c"/state-*/hopsfs-list
  mkdir "$c/repo"
  for n in head1 node1 node2 node3; do
    if [ "$1" = mtls ]; then
      cp "$c/tls-$n.toml" "$c/etc-$n/hwdr.d/70-tls.toml"
    else
      rm -f "$c/etc-$n/hwdr.d/70-tls.toml"
    fi
  done
  "$hwdr" --config "$c/etc-head1/hwdr.toml" repo init >/dev/null
  start_agents "$c"
}

n_id=0
# full KEY AUTH: one cold-cache full backup; its wall and CPU time.
full() {
  local key=$1 id
  fresh "$2"
  n_id=$((n_id + 1))
  id=$(printf '26010112%02d' "$n_id")
  drop_caches
  put "${key}_load" "$(cut -d' ' -f1 /proc/loadavg)"
  /usr/bin/time -o "$W/results/$key.time" -f 'wall=%e\nuser=%U\nsys=%S' \
    "$hwdr" --config "$c/etc-head1/hwdr.toml" backup --id "$id" 2>"$W/results/$key.log" ||
    die "$key failed: $W/results/$key.log"
  sed "s/^/${key}_/" "$W/results/$key.time" >>"$R"
  if [ "$2" = mtls ]; then
    grep -q 'auth = mtls: mutual TLS' "$c"/agent-node1.log || die "$key: node1's agent is not on mutual TLS"
  fi
  say "$key: $(grep wall "$W/results/$key.time")"
}
for i in $(seq "$REPEAT"); do
  full "token$i" token
  full "mtls$i" mtls
done
stop_agents

report=$W/results/report.md
python3 - "$R" "$REPEAT" >"$report" <<'PY'
import statistics, sys
env = dict(l.rstrip("\n").split("=", 1) for l in open(sys.argv[1]) if "=" in l)
n = int(sys.argv[2])
def col(kind, f):
    return [float(env[f"{kind}{i}_{f}"]) for i in range(1, n + 1)]
tok, tls = col("token", "wall"), col("mtls", "wall")
cpu = lambda k: statistics.median(a + b for a, b in zip(col(k, "user"), col(k, "sys")))
gib = int(env["unique_bytes"]) / 2**30
print(f"Run of commit {env['commit']} on {env['machine']}: {gib:.2f} GiB of distinct blocks "
      f"({env['blocks']} blocks, 3 nodes, replication 3), {n} full backups each, alternating, cold cache.\n")
print("| `[agent] auth` | full backup, median | runs | the leader's CPU (user+sys), median | load at start |")
print("|---|---|---|---|---|")
for name, kind, xs in (("token", "token", tok), ("mtls", "mtls", tls)):
    loads = ", ".join(env[f"{kind}{i}_load"] for i in range(1, n + 1))
    print(f"| `{name}` | {statistics.median(xs):.2f} s | {', '.join(f'{x:.2f}' for x in xs)} | {cpu(kind):.2f} s | {loads} |")
diff = (statistics.median(tls) / statistics.median(tok) - 1) * 100
spread = (max(tok) - min(tok)) / statistics.median(tok) * 100
print(f"\nmTLS vs token: {diff:+.1f}% on the median full backup (the token runs alone spread {spread:.1f}%).")
PY
cat "$report"
update_doc "$BENCH_DOC" tls "$report"
