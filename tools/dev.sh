#!/usr/bin/env bash
# `make dev`: the whole system on localhost. Starts the emulator and the Revio sandbox,
# provisions them from template.yaml, and serves every function (HTTP routes, the Revio webhook
# URL, SQS consumers, scheduled jobs) on http://127.0.0.1:${PURSE_PORT:-3000}. Ctrl-C stops all.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

export PURSE_PORT="${PURSE_PORT:-3000}"
export PURSE_EMULATOR_PORT="${PURSE_EMULATOR_PORT:-4566}"
export PURSE_REVIO_PORT="${PURSE_REVIO_PORT:-4580}"
export AWS_ENDPOINT_URL="http://127.0.0.1:${PURSE_EMULATOR_PORT}"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export PURSE_REVIO_URL="http://127.0.0.1:${PURSE_REVIO_PORT}"
# The sandbox's hosted checkout sends the browser back to the dev server.
export REVIO_SANDBOX_RETRY_BASE_MS="${REVIO_SANDBOX_RETRY_BASE_MS:-1000}"

echo "building the dev server (first build takes a few minutes)..."
cargo build -p purse-devserver

trap 'bash tools/stack/down.sh >/dev/null 2>&1 || true' EXIT
bash tools/stack/up.sh
# Fresh state every run: the emulator keeps everything in memory.
target/debug/purse-devserver
