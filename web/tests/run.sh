#!/usr/bin/env bash
# The browser tests: builds the web app and the dev server, starts the dev server on free ports
# against the stack in the environment (tools/stack/with-stack.sh provides one; without it this
# script starts its own), waits for it, and runs `node --test` on web/tests/*.test.mjs (or the
# files given as arguments) one file at a time. Screenshots of failures: target/web-tests/.
#
#   tools/stack/with-stack.sh web/tests/run.sh                 all browser tests
#   web/tests/run.sh web/tests/deposit.test.mjs                one file (starts its own stack)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

if [[ -z "${AWS_ENDPOINT_URL:-}" || -z "${PURSE_REVIO_URL:-}" ]]; then
  exec bash tools/stack/with-stack.sh bash "$root/web/tests/run.sh" "$@"
fi

chromium="${PURSE_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  echo "web/tests/run.sh: no chromium at $chromium (Debian: apt-get install chromium; or set PURSE_CHROMIUM)" >&2
  exit 1
fi

bash web/build.sh
cargo build -q -p purse-devserver

out="$root/target/web-tests"
mkdir -p "$out"
read -r port ws_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks: s.close()')

export PURSE_PORT="$port" PURSE_WS_PORT="$ws_port"
# Calls bill a "minute" every 3 s (demo mode), so the calls test sees coins move quickly.
export PURSE_BILLING_PERIOD_SECONDS="${PURSE_BILLING_PERIOD_SECONDS:-3}"
export PURSE_STACK_PREFIX="${PURSE_STACK_PREFIX:-purse-web-}"
log="$out/devserver-$port.log"
target/debug/purse-devserver >"$log" 2>&1 &
server=$!
stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap stop EXIT

export PURSE_WEB_URL="http://127.0.0.1:$port/app/"
export PURSE_WS_URL="ws://127.0.0.1:$ws_port"
for _ in $(seq 1 240); do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "web/tests/run.sh: the dev server stopped; its log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  if curl -fsS -o /dev/null "$PURSE_WEB_URL" 2>/dev/null \
     && [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/wallet")" == 401 ]]; then
    break
  fi
  sleep 0.5
done
curl -fsS -o /dev/null "$PURSE_WEB_URL" || { echo "web/tests/run.sh: the dev server did not come up; log: $log" >&2; exit 1; }

if (( $# )); then
  files=("$@")
else
  files=(web/tests/*.test.mjs)
fi
echo "web/tests/run.sh: ${#files[@]} file(s) against $PURSE_WEB_URL (dev server log: $log)"
node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
