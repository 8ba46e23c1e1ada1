#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the integration tests need
# (each step skipped when already done), then runs every test. README.md and .ci/run call this.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Real Prometheus 2.42 (Debian's package): the sender and receiver in tests/prometheus_*.rs.
if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing prometheus (Debian package)…"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
prometheus --version 2>&1 | head -1

cargo test --locked --all-targets "$@"
