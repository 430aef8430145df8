#!/usr/bin/env bash
# `make dev`: the whole system on localhost. Starts the emulator, the Revio, KYC and telephony
# sandboxes, provisions them from template.yaml, and serves every function (HTTP routes, the
# webhook URLs, SQS consumers, scheduled jobs) on http://127.0.0.1:${PURSE_PORT:-3000} and the
# WebSocket API on ws://127.0.0.1:${PURSE_WS_PORT:-3001}, and the web app at /app/ of the first. Ctrl-C
# stops all.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

export PURSE_PORT="${PURSE_PORT:-3000}"
export PURSE_EMULATOR_PORT="${PURSE_EMULATOR_PORT:-4566}"
export PURSE_REVIO_PORT="${PURSE_REVIO_PORT:-4580}"
export PURSE_KYC_PORT="${PURSE_KYC_PORT:-4590}"
export PURSE_TELEPHONY_PORT="${PURSE_TELEPHONY_PORT:-4600}"
export AWS_ENDPOINT_URL="http://127.0.0.1:${PURSE_EMULATOR_PORT}"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export PURSE_REVIO_URL="http://127.0.0.1:${PURSE_REVIO_PORT}"
export PURSE_KYC_URL="http://127.0.0.1:${PURSE_KYC_PORT}"
export PURSE_TELEPHONY_URL="http://127.0.0.1:${PURSE_TELEPHONY_PORT}"
# The sandbox's hosted checkout sends the browser back to the dev server.
export REVIO_SANDBOX_RETRY_BASE_MS="${REVIO_SANDBOX_RETRY_BASE_MS:-1000}"
export KYC_SANDBOX_RETRY_BASE_MS="${KYC_SANDBOX_RETRY_BASE_MS:-1000}"

echo "building the dev server (first build takes a few minutes)..."
cargo build -p purse-devserver
echo "building the web app (web/, served at /app/)..."
bash web/build.sh || echo "dev.sh: the web app could not be built (Node.js 20+ and npm needed); the API runs without it" >&2

trap 'bash tools/stack/down.sh >/dev/null 2>&1 || true' EXIT
# PURSE_EMULATOR_FAULTS (e.g. conflict=0.1,throttle=0.05,lost_response=0.02,seed=7) reaches the
# emulator through the environment. up.sh leaves an already running stack alone, so also set
# the emulator's global faults explicitly: the environment of this run is what applies.
bash tools/stack/up.sh
.venv/bin/python - "$AWS_ENDPOINT_URL/_emulator/faults" "${PURSE_EMULATOR_FAULTS:-}" <<'PY'
import json, sys, urllib.error, urllib.request
url, spec = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url, data=json.dumps({"spec": spec}).encode(), method="POST",
                             headers={"Content-Type": "application/json"})
try:
    config = json.load(urllib.request.urlopen(req, timeout=10))["config"]
except urllib.error.HTTPError as e:
    sys.exit(f"dev.sh: bad PURSE_EMULATOR_FAULTS={spec!r}: {json.load(e).get('error')}")
if config:
    print("dev.sh: emulator fault injection ON: "
          + ",".join(f"{k}={config[k]:g}" for k in ("conflict", "throttle", "internal", "lost_response") if config[k])
          + f",seed={config['seed']} (DynamoDB/SQS calls fail on purpose; "
          + f"change with POST {url} {{\"spec\": \"off\"}})", file=sys.stderr)
PY
# Fresh state every run: the emulator keeps everything in memory.
target/debug/purse-devserver
