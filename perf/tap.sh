#!/usr/bin/env bash
# The tap's cost on the data path: `promrelay bench --url` through a relay forwarding to the
# blackhole, with no tap, with a slow tap (a connection that never reads), with a tap read as
# fast as curl can (at the default rate, then at the most a listener may ask for). Needs a
# release build (cargo build --release). Prints one line per case.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/promrelay}
DUR=${DUR:-10}
DIR=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT
"$BIN" blackhole --listen 127.0.0.1:9391 >/dev/null 2>&1 &
cat > "$DIR/bench.yaml" <<'YAML'
server: {listen: "127.0.0.1:9291"}
tasks:
  - name: bench
    targets: [{name: blackhole, type: remote_write, url: http://127.0.0.1:9391/api/v1/write}]
YAML
"$BIN" run --config "$DIR/bench.yaml" --log.level warn >/dev/null 2>&1 &
RELAY=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:9291/-/ready >/dev/null && break; sleep 0.1; done
bench() { "$BIN" bench --url http://127.0.0.1:9291/api/v1/write --pid $RELAY --duration "$DUR" --quiet 2>&1 | grep -E '^samples/s|cpu-second|RSS' | tr -s ' ' | tr '\n' ';'; echo; }

echo "no tap:        $(bench)"
python3 - <<'PY' &
import socket, time
s = socket.create_connection(("127.0.0.1", 9291))
s.sendall(b"GET /api/v1/tasks/bench/tap HTTP/1.1\r\nhost: r\r\n\r\n")
time.sleep(3600)
PY
SLOW=$!
sleep 1
echo "slow tap:      $(bench)"
kill $SLOW
curl -sN -H 'Accept: application/x-ndjson' http://127.0.0.1:9291/api/v1/tasks/bench/tap > /dev/null &
READ=$!
sleep 1
echo "read tap:      $(bench)"
kill $READ
curl -sN -H 'Accept: application/x-ndjson' 'http://127.0.0.1:9291/api/v1/tasks/bench/tap?rate=100000' > /dev/null &
READ=$!
sleep 1
echo "read tap, max rate: $(bench)"
kill $READ
sleep 1
echo "no tap again:  $(bench)"
