#!/usr/bin/env bash
# Memory over a sustained run: promrelay relaying remote_write to a local blackhole under
# steady load from `promrelay bench --url` for DURATION seconds (default 600), sampling the
# relay's RSS every 10 s. Prints the samples and RSS at minute 1 and at the end; appends the
# pair to perf/results.tsv. Loopback only; the load stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
source perf/lib.sh
BH=$(free_port); PR=$(free_port)
"$BIN" blackhole --listen "127.0.0.1:$BH" 2>/dev/null & pids+=($!)
cat >"$work/promrelay.yaml" <<YAML
server:
  listen: "127.0.0.1:$PR"
tasks:
  - name: soak
    filter: |
      __name__=AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization
      id=i-2ze0mxp.*
    labels: {deliver_test_key1: ssss}
    targets:
      - name: blackhole
        type: remote_write
        url: http://127.0.0.1:$BH/api/v1/write
YAML
RUST_LOG=warn "$BIN" run --config "$work/promrelay.yaml" 2>"$work/promrelay.log" & PID=$!; pids+=($PID)
wait_port "$BH"; wait_port "$PR"
"$BIN" bench --quiet --url "http://127.0.0.1:$PR/api/v1/write" --pid "$PID" --connections 4 --duration "$DURATION" >"$work/bench.txt" & LOAD=$!
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }
echo "seconds rss_kib"
t=0
while kill -0 "$LOAD" 2>/dev/null; do
  sleep 10; t=$((t + 10))
  r=$(rss); echo "$t $r"
  [ "$t" = 60 ] && first=$r
  last=$r
done
wait "$LOAD" || true
cat "$work/bench.txt"
python3 - "${first:-0}" "${last:-0}" <<'PY'
import sys
a, b = int(sys.argv[1]), int(sys.argv[2])
print(f"RSS at minute 1: {a/1024:.1f} MiB, at the end: {b/1024:.1f} MiB ({(b-a)/max(a,1)*100:+.1f} %)")
PY
printf '%s\t%s\tsoak_%ss\tpromrelay\t-\trss_min1_kib=%s\trss_end_kib=%s\t-\t-\n' "$(date -u +%FT%TZ)" "$REV" "$DURATION" "${first:-0}" "${last:-0}" >>perf/results.tsv
