#!/usr/bin/env bash
# Start the local stack in the background: the AWS emulator (moto + DynamoDB
# lock, tools/stack/emulator.py) and the Revio sandbox (tools/sandbox/revio.py).
#
#   PURSE_EMULATOR_PORT  emulator port (default 4566)
#   PURSE_REVIO_PORT     Revio sandbox port (default 4580)
#   PURSE_STACK_DIR      state dir for pids and logs (default <repo>/.stack)
#   REVIO_SANDBOX_*      passed through to the sandbox (see revio.py); the signing
#                        key defaults to $PURSE_STACK_DIR/revio-key.pem so that
#                        restarts keep the same public key.
#
# Idempotent: if the stack this script started (per the pid files) is alive and
# healthy on the same ports, it does nothing. Fails loudly, with the log tail,
# if a server does not answer within ~20 s.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="${PURSE_STACK_DIR:-$root/.stack}"
emu_port="${PURSE_EMULATOR_PORT:-4566}"
revio_port="${PURSE_REVIO_PORT:-4580}"
py="$root/.venv/bin/python"

"$here/venv.sh"
mkdir -p "$state"

# Prints the command line of a live (non-zombie) process, nothing otherwise.
proc_cmd() {
  if [[ -d /proc/$1 ]]; then
    tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null || true
  else # no procfs (macOS)
    ps -p "$1" -o stat=,command= 2>/dev/null | awk '$1 !~ /^Z/ { $1 = ""; print }' || true
  fi
}
alive() { # name script: the pid file names a live process of ours
  local pidf="$state/$1.pid" pid
  [[ -f "$pidf" ]] || return 1
  pid="$(cat "$pidf")"
  [[ -n "$pid" ]] && [[ "$(proc_cmd "$pid")" == *"$2"* ]]
}
healthy() { # url
  "$py" -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1).read()' "$1" >/dev/null 2>&1
}
emu_url="http://127.0.0.1:$emu_port"
revio_url="http://127.0.0.1:$revio_port"

if alive emulator emulator.py && alive revio revio.py \
   && [[ "$(cat "$state/emulator.port" 2>/dev/null)" == "$emu_port" ]] \
   && [[ "$(cat "$state/revio.port" 2>/dev/null)" == "$revio_port" ]] \
   && healthy "$emu_url/_emulator/stats" && healthy "$revio_url/_sandbox/health"; then
  exit 0
fi

# Something of ours half-running or on other ports: stop it first.
PURSE_STACK_DIR="$state" "$here/down.sh"

start() { # name port script...
  local name="$1" port="$2"; shift 2
  : > "$state/$name.log"
  # setsid: own session, so a Ctrl-C meant for a later foreground command does not hit it
  if command -v setsid >/dev/null; then
    setsid "$py" "$@" --port "$port" >>"$state/$name.log" 2>&1 < /dev/null &
  else
    "$py" "$@" --port "$port" >>"$state/$name.log" 2>&1 < /dev/null &
  fi
  echo $! > "$state/$name.pid"
  echo "$port" > "$state/$name.port"
}

export REVIO_SANDBOX_KEY_FILE="${REVIO_SANDBOX_KEY_FILE:-$state/revio-key.pem}"
start emulator "$emu_port" "$here/emulator.py"
start revio "$revio_port" "$root/tools/sandbox/revio.py"

fail() { # name message
  echo "up.sh: $1 $2; last lines of $state/$1.log:" >&2
  tail -n 30 "$state/$1.log" >&2 || true
  PURSE_STACK_DIR="$state" "$here/down.sh" || true
  exit 1
}

deadline=$((SECONDS + 20))
emu_ok=0 revio_ok=0
while (( emu_ok == 0 || revio_ok == 0 )); do
  if (( emu_ok == 0 )); then
    alive emulator emulator.py || fail emulator "exited during start-up"
    healthy "$emu_url/_emulator/stats" && emu_ok=1
  fi
  if (( revio_ok == 0 )); then
    alive revio revio.py || fail revio "exited during start-up"
    healthy "$revio_url/_sandbox/health" && revio_ok=1
  fi
  if (( emu_ok == 0 || revio_ok == 0 )); then
    (( SECONDS < deadline )) || { (( emu_ok )) || fail emulator "did not answer within 20 s"; fail revio "did not answer within 20 s"; }
    sleep 0.2
  fi
done
echo "up.sh: emulator $emu_url, revio sandbox $revio_url (state in $state)" >&2
