#!/usr/bin/env bash
# Forwarding everything to a *slow* receiver: a blackhole that answers each request DELAY_MS
# (default 20) after reading it, as a remote store across a network would. RATE samples/s
# (default 300000) are offered for SECS (default 20) to a relay with the default queue (four
# lanes); the script reports what it delivered per second, its CPU per delivered sample, and
# how many requests went whole (passed through as their sender compressed them).
# QUEUE='{capacity: 20000}' sets the target's queue (a YAML map): with a small memory queue the
# relay spills to its overflow at the start and must drain the disk while the load goes on.
# OTHER_BIN=path runs another build (e.g. an older revision's release binary) the same way,
# rounds alternating (ROUNDS, default 2): the before and after of a change to the lanes.
# Everything listens on 127.0.0.1 and every run is bounded by SECS.
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/lib.sh
DELAY_MS=${DELAY_MS:-20}
RATE=${RATE:-300000}
SECS=${SECS:-20}
ROUNDS=${ROUNDS:-2}
BH=$(free_port)
"$BIN" blackhole --listen "127.0.0.1:$BH" --delay-ms "$DELAY_MS" 2>"$work/blackhole.log" & pids+=($!)
wait_port "$BH"
# The first number of a metric's first line in a /metrics page.
metric() { awk -v m="$2" 'index($0, m) == 1 { print $NF; exit }' "$1"; }

run() { # LABEL BIN ROUND
  local label=$1 bin=$2 round=$3 port pid
  port=$(free_port)
  cat >"$work/relay.yaml" <<EOF
server:
  listen: "127.0.0.1:$port"
  data_dir: "$work/data-$label-$round"
tasks:
  - name: all
    targets:
      - {name: slow, type: remote_write, url: "http://127.0.0.1:$BH/api/v1/write"${QUEUE:+, queue: $QUEUE}}
EOF
  RUST_LOG=warn "$bin" run --config "$work/relay.yaml" 2>"$work/relay-$label-$round.log" & pid=$!
  pids+=("$pid")
  wait_port "$port"
  "$BIN" bench --quiet --url "http://127.0.0.1:$port/api/v1/write" --pid "$pid" \
    --duration "$SECS" --rate "$RATE" >"$work/bench.txt"
  curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics.txt"
  local cpu delivered passed spilled batches
  cpu=$(awk '{ print ($14 + $15) / 100 }' "/proc/$pid/stat")
  delivered=$(metric "$work/metrics.txt" 'promrelay_target_delivered_samples_total{')
  passed=$(metric "$work/metrics.txt" 'promrelay_target_passed_through_requests_total{')
  spilled=$(metric "$work/metrics.txt" 'promrelay_target_spool_bytes{')
  batches=$(metric "$work/metrics.txt" 'promrelay_target_sent_batches_total{')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$label" "$round" "$delivered" "$SECS" "$cpu" "${passed:-0}" "${spilled:-0}" "${batches:-0}" <<'PY'
import sys
label, rnd, delivered, secs, cpu, passed, spilled, batches = sys.argv[1:]
d = float(delivered)
print(f"{label:<10} round {rnd}: delivered {d / float(secs):>10,.0f} samples/s, "
      f"{d / max(float(cpu), 1e-9):>12,.0f} per CPU-second, {float(passed):>6,.0f} requests whole, "
      f"{d / max(float(batches), 1):>6,.0f} samples per batch, "
      f"{float(spilled):>12,.0f} bytes on disk at the end")
PY
}

echo "machine: $(nproc) cores; receiver delay ${DELAY_MS} ms; ${RATE} samples/s offered for ${SECS} s; queue ${QUEUE:-default}; promrelay $REV"
for round in $(seq 1 "$ROUNDS"); do
  run this "$BIN" "$round"
  if [ -n "${OTHER_BIN:-}" ]; then run other "$OTHER_BIN" "$round"; fi
done
