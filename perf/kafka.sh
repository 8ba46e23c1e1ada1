#!/usr/bin/env bash
# The Kafka path, whole system: `promrelay bench --url` drives promrelay, which filters
# (keeping ~16 %), encodes seed-format JSON arrays, snappy-compresses them and produces to a
# local Tansu broker. No relay peer here has an open-source Kafka output to race (vmagent's is
# enterprise-only), so the figures are absolute: samples/s and samples per CPU-second of the
# relay. Set KEEP_ALL=1 to deliver every sample instead (JSON encoding then dominates).
# Loopback only; the load stops by itself after DURATION seconds (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
export PATH="$HOME/.cargo/bin:$PATH"
command -v tansu >/dev/null || cargo install tansu --version 0.6.0 --features dynostore --locked --quiet
source perf/lib.sh
KP=$(free_port); PR=$(free_port)
RUST_LOG=warn tansu broker --storage-engine memory://tansu/ --listener-url "tcp://127.0.0.1:$KP" \
  --advertised-listener-url "tcp://127.0.0.1:$KP" >"$work/tansu.log" 2>&1 & pids+=($!)
wait_port "$KP"
tansu topic create --broker "tcp://127.0.0.1:$KP" --partitions 4 metrics >/dev/null
if [ "${KEEP_ALL:-0}" = 1 ]; then filter='["__name__=.+"]'; case=kafka_all; else
  filter='["__name__=AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization", "id=i-2ze0mxp.*"]'; case=kafka_16pct; fi
cat >"$work/promrelay.yaml" <<YAML
server:
  listen: "127.0.0.1:$PR"
tasks:
  - name: lake
    filter: $filter
    targets:
      - name: tansu
        type: kafka
        brokers: 127.0.0.1:$KP
        topic: metrics
YAML
RUST_LOG=warn "$BIN" run --config "$work/promrelay.yaml" 2>"$work/promrelay.log" & PID=$!; pids+=($PID)
wait_port "$PR"
"$BIN" bench --quiet --url "http://127.0.0.1:$PR/api/v1/write" --pid "$PID" --connections 4 --duration "$DURATION" | tee "$work/bench.txt"
rate=$(awk '/^samples\/s / {print $2}' "$work/bench.txt"); cpu=$(awk '/^samples\/cpu-second / {print $2}' "$work/bench.txt")
printf '%s\t%s\t%s\tpromrelay\t1\t%.0f\t%.0f\t-\ttansu 0.6.0\n' "$(date -u +%FT%TZ)" "$REV" "$case" "$rate" "$cpu" >>perf/results.tsv
grep -E "delivered_samples|dropped_samples|retries" <(curl -s "http://127.0.0.1:$PR/metrics" 2>/dev/null || true) | head -5
