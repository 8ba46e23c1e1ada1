#!/usr/bin/env bash
# The Kafka source, whole system: `promrelay bench --kafka-brokers` produces MESSAGES generated
# messages (2,000 samples each, the seed's raw-snappy JSON arrays) to a 4-partition topic on a
# local Tansu broker, and measures RELAYS relays (1 or 2, one consumer group) reading them into
# `promrelay blackhole`: samples/s over all relays, and each relay's CPU seconds from /proc.
# Loopback only; bounded by MESSAGES (default 3000).
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-3000}; RELAYS=${RELAYS:-1}
export PATH="$HOME/.cargo/bin:$PATH"
command -v tansu >/dev/null || cargo install tansu --version 0.6.0 --features dynostore --locked --quiet
source perf/lib.sh
KP=$(free_port); BH=$(free_port)
RUST_LOG=warn tansu broker --storage-engine memory://tansu/ --listener-url "tcp://127.0.0.1:$KP" \
  --advertised-listener-url "tcp://127.0.0.1:$KP" >"$work/tansu.log" 2>&1 & pids+=($!)
wait_port "$KP"
tansu topic create --broker "tcp://127.0.0.1:$KP" --partitions 4 lake >/dev/null
"$BIN" blackhole --listen "127.0.0.1:$BH" >"$work/blackhole.log" 2>&1 & pids+=($!)
urls=(); relay_pids=()
for r in $(seq 1 "$RELAYS"); do
  PR=$(free_port)
  cat >"$work/relay-$r.yaml" <<YAML
server:
  listen: "127.0.0.1:$PR"
  data_dir: "$work/data-$r"
sources:
  - name: lake
    kafka: {brokers: "127.0.0.1:$KP", topics: [lake], group_id: bench}
tasks:
  - name: all
    source: lake
    targets:
      - {name: sink, type: remote_write, url: "http://127.0.0.1:$BH/api/v1/write", queue: {capacity: 1000000}}
YAML
  RUST_LOG=warn "$BIN" run --config "$work/relay-$r.yaml" 2>"$work/relay-$r.log" & relay_pids+=($!); pids+=($!)
  wait_port "$PR"; urls+=("http://127.0.0.1:$PR/metrics")
done
sleep 8 # the group settles: every relay owns partitions before the load
cpu() { awk '{print ($14+$15)}' "/proc/$1/stat"; }
before=(); for p in "${relay_pids[@]}"; do before+=("$(cpu "$p")"); done
"$BIN" bench --quiet --kafka-brokers "127.0.0.1:$KP" --kafka-topic lake --messages "$MESSAGES" \
  --metrics-url "$(IFS=,; echo "${urls[*]}")" --pid "${relay_pids[0]}" | tee "$work/bench.txt"
ticks=$(getconf CLK_TCK)
for i in "${!relay_pids[@]}"; do
  echo "relay $((i + 1)) CPU seconds over the run: $(echo "scale=2; ($(cpu "${relay_pids[$i]}") - ${before[$i]}) / $ticks" | bc)"
done
