#!/usr/bin/env bash
# Run a command against a private, throw-away stack:
#   tools/stack/with-stack.sh cargo test --workspace
# Starts emulator + Revio sandbox + KYC sandbox + telephony sandbox on free ports
# (or PURSE_EMULATOR_PORT / PURSE_REVIO_PORT / PURSE_KYC_PORT /
# PURSE_TELEPHONY_PORT if given), with state
# in <repo>/.stack/run-<pid>, exports
#   AWS_ENDPOINT_URL=http://127.0.0.1:<emulator port>  AWS_REGION=us-east-1
#   AWS_DEFAULT_REGION=us-east-1  AWS_ACCESS_KEY_ID=testing
#   AWS_SECRET_ACCESS_KEY=testing  PURSE_REVIO_URL=http://127.0.0.1:<revio port>
#   PURSE_KYC_URL=http://127.0.0.1:<kyc port>
#   PURSE_TELEPHONY_URL=http://127.0.0.1:<telephony port>
#   PURSE_EMULATOR_PORT  PURSE_REVIO_PORT  PURSE_KYC_PORT  PURSE_TELEPHONY_PORT
# runs the command, stops the stack on any exit (also Ctrl-C / failure) and
# returns the command's exit code. The run's state dir is removed when the
# command succeeds and kept (with the logs) when it fails.
set -euo pipefail

if (( $# == 0 )); then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

"$here/venv.sh"
py="$root/.venv/bin/python"

if [[ -z "${PURSE_EMULATOR_PORT:-}" || -z "${PURSE_REVIO_PORT:-}" || -z "${PURSE_KYC_PORT:-}" \
      || -z "${PURSE_TELEPHONY_PORT:-}" ]]; then
  read -r p1 p2 p3 p4 < <("$py" -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks: s.close()')
  export PURSE_EMULATOR_PORT="${PURSE_EMULATOR_PORT:-$p1}"
  export PURSE_REVIO_PORT="${PURSE_REVIO_PORT:-$p2}"
  export PURSE_KYC_PORT="${PURSE_KYC_PORT:-$p3}"
  export PURSE_TELEPHONY_PORT="${PURSE_TELEPHONY_PORT:-$p4}"
fi

export PURSE_STACK_DIR="$root/.stack/run-$$"
rc=0
cleanup() {
  trap - EXIT INT TERM
  "$here/down.sh" || true
  if (( rc == 0 )); then
    rm -rf "$PURSE_STACK_DIR"
  else
    echo "with-stack.sh: exit $rc; stack logs kept in $PURSE_STACK_DIR" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'rc=130; cleanup' INT
trap 'rc=143; cleanup' TERM

if ! out="$("$here/up.sh" 2>&1)"; then
  echo "$out" >&2
  rc=1
  exit 1
fi

export AWS_ENDPOINT_URL="http://127.0.0.1:$PURSE_EMULATOR_PORT"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export PURSE_REVIO_URL="http://127.0.0.1:$PURSE_REVIO_PORT"
export PURSE_KYC_URL="http://127.0.0.1:$PURSE_KYC_PORT"
export PURSE_TELEPHONY_URL="http://127.0.0.1:$PURSE_TELEPHONY_PORT"

set +e
"$@"
rc=$?
set -e
exit "$rc"
