#!/usr/bin/env bash
# Race promrelay against vmagent on this machine, side by side, for every case in
# perf/cases.tsv (or only the case named in $1):
#   the same generated remote-write bodies (promrelay bench --url), doing the same work (the
#   case's mode in perf/cases.tsv: a 2-condition filter as promrelay conditions and vmagent
#   `keep` rules, everything forwarded, labels added, or N tasks, with literal or regex names,
#   as N vmagent URLs, or one sending lane each), both forwarding remote_write to the same local blackhole that answers
#   204; runs alternate (ROUNDS of each); each case starts its own pair of relays.
# Prints samples/s, samples per CPU-second of the relay process (/proc/PID/stat) and its peak
# RSS, with the ratio, and appends each figure to perf/results.tsv with the git revision.
# Everything listens on 127.0.0.1 and every run is bounded by its duration.
# RATE=N sends at most N samples/s to each relay on a fixed schedule (promrelay bench --rate):
# the same steady load for both, below what either falls behind at, instead of as fast as each
# answers (which measures a relay that has fallen behind once its sending cannot keep up).
# SPOOL=1 gives promrelay's target a spool (disk first; ACK=queued|spooled|delivered picks the
# task's ack, default spooled); vmagent keeps its usual persistent queue (-remoteWrite.tmpDataPath),
# which it writes only when its in-memory queue overflows.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
only=${1:-}

if ! command -v vmagent >/dev/null 2>&1; then
  echo "installing vmagent (Debian package victoria-metrics)…"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo=sudo; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq victoria-metrics >/dev/null
fi
source perf/lib.sh
VMAGENT_VERSION="vmagent $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null || echo unknown)"
# The first word after a `promrelay bench` report key ("samples/s", "peak RSS", …).
field() { awk -v k="$2" 'index($0, k " ") == 1 { s = substr($0, length(k) + 1); sub(/^ +/, "", s); split(s, a, " "); print a[1]; exit }' "$1"; }

BH=$(free_port)
"$BIN" blackhole --listen "127.0.0.1:$BH" 2>"$work/blackhole.log" & pids+=($!)
wait_port "$BH"
NAMES=(AliyunEcs_CPUUtilization AliyunEcs_memory_usedutilization node_cpu_seconds_total
  node_memory_MemAvailable_bytes node_network_receive_bytes_total node_filesystem_avail_bytes
  container_cpu_usage_seconds_total container_memory_working_set_bytes kube_pod_status_phase
  http_requests_total apiserver_request_duration_seconds_bucket process_resident_memory_bytes)

# Task i's metric-name regex in the tasksN / rtasksN modes: name i mod 12, as a literal or as
# a regex that is not one (`NAME(_sum|_count)?`).
name_condition() { # MODE I
  local name=${NAMES[$(($2 % 12))]}
  if [ "${1#r}" != "$1" ]; then printf '%s(_sum|_count)?' "$name"; else printf '%s' "$name"; fi
}

# Start both relays configured for one mode (see perf/cases.tsv); sets PR, VM, PR_PID, VM_PID.
start_relays() {
  local mode=$1 spool="" ack="" i
  PR=$(free_port); VM=$(free_port)
  if [ "${SPOOL:-0}" = 1 ]; then
    spool="        spool: {dir: \"$work/spool-$mode\"}"
    ack="    ack: ${ACK:-spooled}"
  fi
  local vm_args=(-httpListenAddr="127.0.0.1:$VM" -remoteWrite.tmpDataPath="$work/vmagent-$mode" -loggerLevel=ERROR)
  {
    printf 'server:\n  listen: "127.0.0.1:%s"\ntasks:\n' "$PR"
    case $mode in
      filter|all|all1|labels)
        printf '  - name: race\n'
        [ -z "$ack" ] || printf '%s\n' "$ack"
        if [ "$mode" = filter ]; then
          printf '    filter: |\n      __name__=AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization\n      id=i-2ze0mxp.*\n'
        fi
        if [ "$mode" = labels ]; then printf '    labels: {deliver_test_key1: ssss}\n'; fi
        printf '    targets:\n      - name: blackhole\n        type: remote_write\n        url: http://127.0.0.1:%s/api/v1/write\n' "$BH"
        if [ "$mode" = labels ]; then printf '        external_labels: {source_cluster: cluster-01}\n'; fi
        if [ "$mode" = all1 ]; then printf '        queue: {shards: 1}\n'; fi
        [ -z "$spool" ] || printf '%s\n' "$spool"
        ;;
      tasks*|rtasks*)
        for i in $(seq 0 $((${mode#*tasks} - 1))); do
          printf '  - name: t%s\n' "$i"
          [ -z "$ack" ] || printf '%s\n' "$ack"
          printf '    filter: ["__name__=%s", "id=i-2ze0mxp.*"]\n' "$(name_condition "$mode" "$i")"
          printf '    targets:\n      - name: blackhole\n        type: remote_write\n        url: http://127.0.0.1:%s/api/v1/write\n' "$BH"
          [ -z "$spool" ] || printf '%s\n' "${spool/spool-$mode/spool-$mode-$i}"
        done
        ;;
    esac
  } >"$work/promrelay-$mode.yaml"
  case $mode in
    filter)
      printf -- '- action: keep\n  source_labels: [__name__]\n  regex: AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization\n- action: keep\n  source_labels: [id]\n  regex: i-2ze0mxp.*\n' >"$work/relabel-$mode.yml"
      vm_args+=(-remoteWrite.url="http://127.0.0.1:$BH/api/v1/write" -remoteWrite.urlRelabelConfig="$work/relabel-$mode.yml")
      ;;
    all)
      vm_args+=(-remoteWrite.url="http://127.0.0.1:$BH/api/v1/write")
      ;;
    all1)
      vm_args+=(-remoteWrite.url="http://127.0.0.1:$BH/api/v1/write" -remoteWrite.queues=1)
      ;;
    labels)
      vm_args+=(-remoteWrite.url="http://127.0.0.1:$BH/api/v1/write" -remoteWrite.label=deliver_test_key1=ssss -remoteWrite.label=source_cluster=cluster-01)
      ;;
    tasks*|rtasks*)
      for i in $(seq 0 $((${mode#*tasks} - 1))); do
        printf -- '- action: keep\n  source_labels: [__name__]\n  regex: %s\n- action: keep\n  source_labels: [id]\n  regex: i-2ze0mxp.*\n' "$(name_condition "$mode" "$i")" >"$work/relabel-$mode-$i.yml"
        vm_args+=(-remoteWrite.url="http://127.0.0.1:$BH/api/v1/write?task=$i" -remoteWrite.urlRelabelConfig="$work/relabel-$mode-$i.yml")
      done
      ;;
  esac
  RUST_LOG=warn "$BIN" run --config "$work/promrelay-$mode.yaml" 2>"$work/promrelay-$mode.log" & PR_PID=$!
  vmagent "${vm_args[@]}" >"$work/vmagent-$mode.log" 2>&1 & VM_PID=$!
  pids+=("$PR_PID" "$VM_PID")
  wait_port "$PR"; wait_port "$VM"
}
stop_relays() { kill "$PR_PID" "$VM_PID" 2>/dev/null || true; wait "$PR_PID" "$VM_PID" 2>/dev/null || true; }

if [ "${SPOOL:-0}" = 1 ]; then echo "promrelay with a spool, ack ${ACK:-spooled}"; fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); promrelay $REV; $VMAGENT_VERSION"
printf '%-12s %-10s %14s %18s %12s\n' case relay "samples/s" "samples/cpu-s" "peak RSS MiB"
while IFS=$'\t' read -r name series labels conns secs mode; do
  [ -n "$name" ] || continue
  [ -z "$only" ] || [ "$only" = "$name" ] || continue
  start_relays "${mode:-filter}"
  declare -A sum_cpu=() sum_rate=() rss=()
  for round in $(seq 1 "$ROUNDS"); do
    for relay in promrelay vmagent; do
      if [ "$relay" = promrelay ]; then port=$PR; pid=$PR_PID; else port=$VM; pid=$VM_PID; fi
      label=$relay
      if [ "$relay" = promrelay ] && [ "${SPOOL:-0}" = 1 ]; then label="promrelay+spool/${ACK:-spooled}"; fi
      out="$work/$name-$relay-$round.txt"
      "$BIN" bench --quiet --url "http://127.0.0.1:$port/api/v1/write" --pid "$pid" \
        --connections "$conns" --duration "$secs" --series "$series" --labels "$labels" \
        ${RATE:+--rate "$RATE"} >"$out"
      rate=$(field "$out" "samples/s"); cpu=$(field "$out" "samples/cpu-second"); mem=$(field "$out" "peak RSS")
      errors=$(field "$out" "errors")
      [ "$errors" = 0 ] || echo "warning: $relay had $errors failed requests: $(grep '^errors' "$out")" >&2
      printf '%-12s %-10s %14.0f %18.0f %12s   (round %s)\n' "$name" "$label" "$rate" "$cpu" "$mem" "$round"
      printf '%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%s\t%s\n' "$(date -u +%FT%TZ)" "$REV" "$name" "$label" "$round" "$rate" "$cpu" "$mem" "$VMAGENT_VERSION" >>perf/results.tsv
      sum_cpu[$relay]=$(python3 -c "print(${sum_cpu[$relay]:-0} + $cpu)")
      sum_rate[$relay]=$(python3 -c "print(${sum_rate[$relay]:-0} + $rate)")
      rss[$relay]=$mem
    done
  done
  python3 - "$name" "${sum_rate[promrelay]}" "${sum_rate[vmagent]}" "${sum_cpu[promrelay]}" "${sum_cpu[vmagent]}" "$ROUNDS" <<'PY'
import sys
name, rp, rv, cp, cv, n = sys.argv[1], *map(float, sys.argv[2:6]), int(sys.argv[6])
print(f"{name:<12} mean samples/s: promrelay {rp/n:,.0f}, vmagent {rv/n:,.0f} (x{rp/rv:.2f}); "
      f"samples/cpu-s: promrelay {cp/n:,.0f}, vmagent {cv/n:,.0f} (x{cp/cv:.2f})")
PY
  stop_relays
done < <(grep -v '^#' perf/cases.tsv)
