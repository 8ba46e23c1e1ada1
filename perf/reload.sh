#!/usr/bin/env bash
# What reloads cost the requests that arrive meanwhile: the relay runs TASKS tasks (each a regex
# name condition, a prefix and a substring test, and one remote_write target to a local
# blackhole), a steady load of RATE samples/s comes in (promrelay bench --url), and the relay
# is sent SIGHUP every PERIOD seconds, each reload loading, compiling and assembling every task
# again. Prints the load generator's request count, latency p50 / p99 and errors, and how many
# reloads the relay logged. Run it with PROMRELAY_BIN=an older build for the before figure.
#   usage: perf/reload.sh      env: TASKS (600), RATE (200000), SECS (20), PERIOD (2)
# Everything listens on 127.0.0.1 and the run is bounded by SECS.
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${TASKS:-600}
RATE=${RATE:-200000}
SECS=${SECS:-20}
PERIOD=${PERIOD:-2}
source perf/lib.sh

BH=$(free_port)
"$BIN" blackhole --listen "127.0.0.1:$BH" 2>"$work/blackhole.log" & pids+=($!)
wait_port "$BH"
PR=$(free_port)
NAMES=(AliyunEcs_CPUUtilization node_cpu_seconds_total http_requests_total kube_pod_status_phase)
{
  printf 'server:\n  listen: "127.0.0.1:%s"\ntasks:\n' "$PR"
  for i in $(seq 0 $((TASKS - 1))); do
    printf '  - name: t%s\n    filter: ["__name__=%s_%s(_sum|_count)?", "id=i-2ze0mxp.*", "job=~.*x%s.*"]\n' \
      "$i" "${NAMES[$((i % 4))]}" "$i" "$i"
    printf '    targets: [{name: bh, type: remote_write, url: "http://127.0.0.1:%s/api/v1/write"}]\n' "$BH"
  done
} >"$work/relay.yaml"
"$BIN" run --config "$work/relay.yaml" >"$work/relay.log" 2>&1 & relay=$!; pids+=($relay)
wait_port "$PR"
"$BIN" bench --url "http://127.0.0.1:$PR/api/v1/write" --rate "$RATE" --duration "$SECS" --quiet \
  >"$work/bench.txt" & load=$!
for _ in $(seq 1 $(((SECS - 1) / PERIOD))); do sleep "$PERIOD"; kill -HUP "$relay"; done
wait "$load"
echo "promrelay $REV: $TASKS tasks, $RATE samples/s offered, SIGHUP every ${PERIOD}s for ${SECS}s"
grep -E '^(requests|latency|errors)' "$work/bench.txt"
echo "reloads applied: $(grep -c 'config reloaded' "$work/relay.log" || true)"
