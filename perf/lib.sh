# Shared by the perf/ scripts (sourced, not run): release build, a temp dir cleaned on exit,
# background processes killed on exit, free loopback ports.
# PROMRELAY_BIN=path races an already built binary instead (e.g. an older revision's, to
# compare before and after in one session; REV then says "bin:" and the path).
if [ -n "${PROMRELAY_BIN:-}" ]; then
  BIN=$PROMRELAY_BIN
  REV="bin:$PROMRELAY_BIN"
else
  cargo build --release --locked --quiet
  BIN=$PWD/target/release/promrelay
  REV=$(git rev-parse --short HEAD)$(git diff --quiet || echo "+dirty")
fi
work=$(mktemp -d)
pids=()
# KEEP_LOGS=dir keeps the relays' logs there (the temp dir is removed on exit).
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS"; cp "$work"/*.log "$KEEP_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
[ -f perf/results.tsv ] || printf 'date\trevision\tcase\trelay\tround\tsamples_per_s\tsamples_per_cpu_s\tpeak_rss_mib\tpeer_version\n' >perf/results.tsv
