#!/usr/bin/env bash
# The demo: builds the pearlsync CLI and runs one whole cycle against the bundled sandbox
# (Brightpearl + Shopify + BigCommerce + WooCommerce simulators) with embedded state and the
# in-process queue. Nothing leaves 127.0.0.1. Extra arguments go to `pearlsync demo`
# (for example --skus 500 --orders 40 --json).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_PROFILE_DEV_DEBUG=0
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pearlsync-target}"
cargo build --quiet -p pearlsync-cli
exec "$CARGO_TARGET_DIR/debug/pearlsync" demo "$@"
