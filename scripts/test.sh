#!/usr/bin/env bash
# The test command. From a fresh clone it:
#   1. creates a Python virtual environment with the pinned tools (moto server, cfn-lint, SAM CLI,
#      cargo-lambda) from requirements-dev.txt, reused while that file is unchanged;
#   2. starts the local DynamoDB/SQS emulator (moto) on 127.0.0.1 on a free port;
#   3. checks formatting, clippy and the SAM template, then runs the whole Rust test suite with
#      AWS_ENDPOINT_URL pointing at the emulator;
#   4. stops the emulator on exit, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_PROFILE_DEV_DEBUG=0
# One target dir outside the clone, so a fresh clone on this machine rebuilds in seconds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pearlsync-target}"

venv="${PEARLSYNC_VENV:-/var/tmp/pearlsync-venv-$(sha256sum requirements-dev.txt | cut -c1-12)}"
if [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/cfn-lint" ]; then
  echo "==> creating $venv from requirements-dev.txt (about 2 minutes the first time)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt
fi
export PATH="$venv/bin:$PATH" SAM_CLI_TELEMETRY=0

# Test credentials for the emulator only; nothing here can reach AWS.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp -t pearlsync-moto.XXXXXX.log)"
moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
cleanup() { kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then echo "moto server failed to start:"; cat "$log"; exit 1; fi
  sleep 0.2
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
echo "==> DynamoDB/SQS emulator (moto) on $AWS_ENDPOINT_URL"

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
if [ -f template.yaml ]; then
  echo "==> cfn-lint template.yaml (with the Serverless Rules)"
  cfn-lint template.yaml -a cfn_lint_serverless.rules
fi
echo "==> binaries (the CLI tests and the crash bench run the pearlsync binary)"
cargo build --workspace --bins --locked
echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
