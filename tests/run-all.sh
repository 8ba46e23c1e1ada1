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

# A real Kafka-compatible broker: Tansu 0.6.0, built from crates.io (one-time, ~15 min on 2 cores).
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v tansu >/dev/null 2>&1; then
  echo "installing tansu 0.6.0 (cargo install, one time)…"
  cargo install tansu --version 0.6.0 --features dynostore --locked --quiet
fi

# The independent Kafka client the tests read topics with.
if ! python3 -c "import kafka, cramjam" >/dev/null 2>&1; then
  echo "installing kafka-python and cramjam (pip)…"
  python3 -m pip install --quiet --disable-pip-version-check kafka-python cramjam
fi

# Headless Chromium and selenium for tests/browser.rs (the status page in a real browser).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver (Debian packages)…"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if ! python3 -c "import selenium" >/dev/null 2>&1; then
  echo "installing selenium (pip)…"
  python3 -m pip install --quiet --disable-pip-version-check selenium
fi

cargo test --locked --all-targets "$@"
