#!/usr/bin/env bash
# Race two promrelay builds side by side on this machine: the same generated remote-write
# bodies (promrelay bench --url), the same task (MODE: `filter`, the 2-condition filter of
# perf/cases.tsv, or `all`, every sample forwarded), both forwarding to one local blackhole;
# runs alternate A B A B … (ROUNDS of each, SECS seconds each). Prints samples per CPU-second of
# each relay process per run and the means, with the ratio A/B. For a change's before and after,
# where the vmagent race (perf/compare.sh) would add the noise of a third process.
#   usage: perf/ab.sh BIN_A BIN_B [MODE]      env: ROUNDS (4), SECS (10), RATE (samples/s, all
#   connections together; default: as fast as each relay answers), PIN=1 (each relay with one
#   shard on CPU 0, the load generator and the blackhole on CPU 1: a relay with a core of its
#   own, as in a deployment, instead of sharing both cores and their caches with the load),
#   QUEUE_A / QUEUE_B (a YAML flow mapping for that relay's target `queue`, e.g.
#   '{max_samples_per_send: 10000}': two settings of one build, with BIN_A = BIN_B)
# Everything listens on 127.0.0.1 and every run is bounded by SECS.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:?usage: perf/ab.sh BIN_A BIN_B [MODE]}
B=${2:?usage: perf/ab.sh BIN_A BIN_B [MODE]}
MODE=${3:-filter}
ROUNDS=${ROUNDS:-4}
SECS=${SECS:-10}
PROMRELAY_BIN=$A
source perf/lib.sh

pin_relay=(); pin_load=(); shards=""
if [ "${PIN:-0}" = 1 ]; then pin_relay=(taskset -c 0); pin_load=(taskset -c 1); shards="  shards: 1\n"; fi
BH=$(free_port)
"${pin_load[@]}" "$A" blackhole --listen "127.0.0.1:$BH" 2>"$work/blackhole.log" & pids+=($!)
wait_port "$BH"
start() { # BIN PORT QUEUE -> pid on stdout
  local cfg="$work/relay-$2.yaml"
  {
    printf 'server:\n  listen: "127.0.0.1:%s"\n'"$shards"'tasks:\n  - name: race\n' "$2"
    if [ "$MODE" = filter ]; then
      printf '    filter: |\n      __name__=AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization\n      id=i-2ze0mxp.*\n'
    fi
    printf '    targets:\n      - name: blackhole\n        type: remote_write\n        url: http://127.0.0.1:%s/api/v1/write\n' "$BH"
    if [ -n "$3" ]; then printf '        queue: %s\n' "$3"; fi
  } >"$cfg"
  RUST_LOG=warn "${pin_relay[@]}" "$1" run --config "$cfg" >"$work/relay-$2.log" 2>&1 &
  echo $!
}
PA_PORT=$(free_port); PB_PORT=$(free_port)
PA=$(start "$A" "$PA_PORT" "${QUEUE_A:-}"); pids+=("$PA")
PB=$(start "$B" "$PB_PORT" "${QUEUE_B:-}"); pids+=("$PB")
wait_port "$PA_PORT"; wait_port "$PB_PORT"
echo "mode $MODE, $ROUNDS rounds of ${SECS} s${RATE:+, $RATE samples/s offered}${shards:+, pinned}; A = $A${QUEUE_A:+ queue $QUEUE_A}, B = $B${QUEUE_B:+ queue $QUEUE_B}"
sum_a=0; sum_b=0
for round in $(seq 1 "$ROUNDS"); do
  for x in A B; do
    if [ "$x" = A ]; then port=$PA_PORT; pid=$PA; else port=$PB_PORT; pid=$PB; fi
    out=$("${pin_load[@]}" "$A" bench --quiet --url "http://127.0.0.1:$port/api/v1/write" --pid "$pid" \
      --connections 4 --duration "$SECS" ${RATE:+--rate "$RATE"})
    cpu=$(awk '/^samples\/cpu-second/ {print $2}' <<<"$out")
    errors=$(awk '/^errors/ {print $2}' <<<"$out")
    [ "$errors" = 0 ] || echo "warning: $x had $errors failed requests" >&2
    printf '%s  round %s  %12.0f samples/cpu-s\n' "$x" "$round" "$cpu"
    if [ "$x" = A ]; then sum_a=$(python3 -c "print($sum_a + $cpu)"); else sum_b=$(python3 -c "print($sum_b + $cpu)"); fi
  done
done
python3 -c "a, b, n = $sum_a, $sum_b, $ROUNDS; print(f'mean samples/cpu-s: A {a/n:,.0f}, B {b/n:,.0f} (A/B x{a/b:.3f})')"
