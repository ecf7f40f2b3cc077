#!/usr/bin/env bash
# Measures the figures reported on the cell issue, on this machine, with a
# release build: idle memory, time to a ready API, metadata write throughput
# and latency on a 3-node cell, failure detection and leader election times.
# Every figure comes with a baseline measured in the same run.
#
# Usage: scripts/figures.sh            (prints a Markdown report)
set -euo pipefail
cd "$(dirname "$0")/.."

[ -n "${WOS_BIN:-}" ] || cargo build --release -q -p wos
W="${WOS_BIN:-$PWD/target/release/wos}"
T=$(mktemp -d)
PORT=${PORT:-7790}
cleanup() { pkill -f "$T" 2>/dev/null || true; sleep 0.5; rm -rf "$T"; }
trap cleanup EXIT
export HOME="$T/home" XDG_CONFIG_HOME="$T/home/config" XDG_DATA_HOME="$T/home/data"
mkdir -p "$HOME"
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
now() { date +%s%N; }

# Baseline: a fork+exec of the binary that does nothing but print its version.
S=$(now); for _ in 1 2 3 4 5 6 7 8 9 10; do "$W" --version >/dev/null; done; EXEC_MS=$(( $(ms "$S") / 10 ))

# 1. wos up: first run (creates the cell) and resume (warm), to a ready API.
S=$(now); "$W" up --data "$T/single" --listen "127.0.0.1:$PORT" >/dev/null 2>&1 &
UP=$!
until "$W" status >/dev/null 2>&1; do sleep 0.01; done; FIRST_MS=$(ms "$S")
sleep 5
RSS_KB=$(awk '/VmRSS/ {print $2}' /proc/$UP/status)
kill -INT $UP; wait $UP || true
S=$(now); "$W" up --data "$T/single" --listen "127.0.0.1:$PORT" >/dev/null 2>&1 &
UP=$!
until "$W" status >/dev/null 2>&1; do sleep 0.01; done; WARM_MS=$(ms "$S")
until "$W" kv put ready yes >/dev/null 2>&1; do sleep 0.01; done; WARM_WRITE_MS=$(ms "$S")
kill -INT $UP; wait $UP || true

# 2. A 3-node local cell: idle memory, write benchmark, failure detection, election.
"$W" up --data "$T/multi" --nodes 3 --listen "127.0.0.1:$PORT" >/dev/null 2>&1 &
MULTI=$!
until [ "$("$W" node ls --json 2>/dev/null | grep -c '"alive"')" = 3 ]; do sleep 0.1; done
sleep 5
RSS3=$(for p in $(pgrep -f "agent --data $T/multi"); do awk '/VmRSS/ {print $2}' /proc/$p/status; done | sort -n | tr '\n' ' ')
BENCH16=$("$W" bench meta --writes 2000 --concurrency 16 --json)
BENCH1=$("$W" bench meta --writes 300 --concurrency 1 --json)

node_state() { "$W" --cell "$1" node ls --json 2>/dev/null | python3 -c "import json,sys; print([n['state'] for n in json.load(sys.stdin) if n['name']=='$2'][0])" 2>/dev/null || true; }
leader() { "$W" --cell "$1" status --json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['leader'])" 2>/dev/null || true; }

# Detection of a dead node: SIGKILL node-3, watch node-1.
P3=$(pgrep -f "agent --data $T/multi/node-3( |$)")
S=$(now); kill -KILL "$P3"
until [ "$(node_state "127.0.0.1:$PORT" node-3)" = dead ]; do sleep 0.05; done; DEAD_MS=$(ms "$S")

# Election: bring node-3 back, then SIGKILL the leader and watch a survivor.
"$W" agent --data "$T/multi/node-3" >/dev/null 2>&1 &
until [ "$("$W" node ls --json 2>/dev/null | grep -c '"alive"')" = 3 ]; do sleep 0.1; done
sleep 2
# Revocation: from `wos cap revoke` to refusal on every node.
"$W" kv put rv x >/dev/null
CAP=$("$W" cap mint --object kv:rv --rights read --ttl 10m)
for n in 1 2 3; do "$W" --cell "127.0.0.$n:$PORT" --cap "$CAP" kv get rv >/dev/null; done
S=$(now); "$W" cap revoke "$CAP" >/dev/null
for n in 1 2 3; do
    until ! "$W" --cell "127.0.0.$n:$PORT" --cap "$CAP" kv get --stale rv >/dev/null 2>&1; do sleep 0.01; done
done
REVOKE_MS=$(ms "$S")
CAPBENCH=$("$W" bench cap --iterations 3000 --json)
# Remote execution from node-1 onto node-2 (needs root, cgroups, and
# wos-wasm next to wos for the WebAssembly figure).
WASMDIR="$T/wasm"
WASMARG=()
if "$(dirname "$0")/../crates/wos-wasm/scripts/build-wasm-programs.sh" "$WASMDIR" >/dev/null 2>&1 \
    && [ -x "$(dirname "$W")/wos-wasm" ]; then
    WASMARG=(--wasm "$WASMDIR/hello.wasm")
fi
RUNBENCH=$("$W" bench run --on node-2 --runs 200 --jobs 400 --cli-runs 50 "${WASMARG[@]}" --json)

L=$(leader "127.0.0.1:$PORT")
case "$L" in node-1) OTHER="127.0.0.2:$PORT" ;; *) OTHER="127.0.0.1:$PORT" ;; esac
PL=$(pgrep -f "agent --data $T/multi/$L( |$)")
S=$(now); kill -KILL "$PL"
until L2=$(leader "$OTHER") && [ -n "$L2" ] && [ "$L2" != "None" ] && [ "$L2" != "$L" ]; do sleep 0.05; done
ELECT_MS=$(ms "$S")
kill -INT $MULTI 2>/dev/null || true

py() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($2)" "$1"; }
cat <<REPORT
| figure | value | baseline (same run) |
|---|---|---|
| resident memory of an idle single node (5 s after start) | $(( RSS_KB / 1024 )) MiB | goal < 40 MiB |
| resident memory of the idle nodes of a 3-node cell | $(for k in $RSS3; do printf '%s ' "$(( k / 1024 ))"; done)MiB | |
| \`wos up\` to a ready API, new cell | ${FIRST_MS} ms | fork+exec of \`wos --version\`: ${EXEC_MS} ms |
| \`wos up\` to a ready API, resumed cell (warm) | ${WARM_MS} ms | fork+exec: ${EXEC_MS} ms |
| \`wos up\` (resumed) to the first committed write | ${WARM_WRITE_MS} ms | |
| metadata writes, 3 nodes, 16 in flight | $(py "$BENCH16" "round(d['writes_per_sec'])") writes/s, p50 $(py "$BENCH16" "round(d['p50_ms'],2)") ms, p99 $(py "$BENCH16" "round(d['p99_ms'],2)") ms | local redb commit p50 $(py "$BENCH16" "round(d['local_commit_p50_ms'],2)") ms |
| metadata writes, 3 nodes, 1 in flight | $(py "$BENCH1" "round(d['writes_per_sec'])") writes/s, p50 $(py "$BENCH1" "round(d['p50_ms'],2)") ms, p99 $(py "$BENCH1" "round(d['p99_ms'],2)") ms | p50 = $(py "$BENCH1" "round(d['p50_ratio_to_local_commit'],1)")x a local commit |
| SIGKILL to "dead" on another node | ${DEAD_MS} ms | goal < 10 s |
| SIGKILL of the leader to a new leader seen by a survivor | ${ELECT_MS} ms | goal < 5 s |
| \`wos cap revoke\` to refusal on all 3 nodes (CLI polling each) | ${REVOKE_MS} ms | goal < 5 s |
| \`true\` on node-2 from node-1, API round trip | p50 $(py "$RUNBENCH" "round(d['api_round_trip_p50_ms'],2)") ms, p99 $(py "$RUNBENCH" "round(d['api_round_trip_p99_ms'],2)") ms | local fork+exec p50 $(py "$RUNBENCH" "round(d['local_fork_exec_p50_ms'],3)") ms (ratio $(py "$RUNBENCH" "round(d['ratio_to_local'],1)")); goal p50 < 10 ms |
| \`wos run --on node-2 -- true\` as a new process | p50 $(py "$RUNBENCH" "round(d['cli_round_trip_p50_ms'],2)") ms, p99 $(py "$RUNBENCH" "round(d['cli_round_trip_p99_ms'],2)") ms | |
| short jobs sustained by one node (8 in flight) | $(py "$RUNBENCH" "round(d['jobs_per_sec'])") jobs/s | local fork+exec $(py "$RUNBENCH" "round(d['local_fork_exec_per_sec'])")/s; goal >= 100/s |
| WebAssembly hello, start to first output, warm node | p50 $(py "$RUNBENCH" "d['wasm_first_output_p50_ms'] and round(d['wasm_first_output_p50_ms'],2)") ms | goal < 5 ms |
| capability check, 3-link delegated token, cached | $(py "$CAPBENCH" "round(d['cached_us_per_request'],1)") µs/request | full verification $(py "$CAPBENCH" "round(d['uncached_us_per_request'],1)") µs (ratio $(py "$CAPBENCH" "round(d['cached_ratio'],2)")); goal < 50 µs |
REPORT
