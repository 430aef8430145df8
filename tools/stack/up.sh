#!/usr/bin/env bash
# Start the local stack in the background: the AWS emulator (moto + DynamoDB
# lock, tools/stack/emulator.py), the Revio sandbox (tools/sandbox/revio.py), the
# KYC (PAN verification) sandbox (tools/sandbox/kyc.py) and the telephony (Twilio
# stand-in) sandbox (tools/sandbox/telephony.py).
#
#   PURSE_EMULATOR_PORT  emulator port (default 4566)
#   PURSE_REVIO_PORT     Revio sandbox port (default 4580)
#   PURSE_KYC_PORT       KYC sandbox port (default 4590)
#   PURSE_TELEPHONY_PORT telephony sandbox port (default 4600)
#   PURSE_STACK_DIR      state dir for pids and logs (default <repo>/.stack)
#   PURSE_EMULATOR_FAULTS  fault spec for the emulator's global scope, e.g.
#                        conflict=0.1,throttle=0.05,seed=7 (see emulator.py); the
#                        servers inherit the whole environment.
#   PURSE_IAM            enforce (default) | record | off: whether the emulator refuses
#                        a function what its template policy does not allow
#                        (tools/stack/iam_policy.py).
#   REVIO_SANDBOX_*      passed through to the sandbox (see revio.py); the signing
#                        key defaults to $PURSE_STACK_DIR/revio-key.pem so that
#                        restarts keep the same public key.
#   KYC_SANDBOX_*        passed through to the KYC sandbox (see kyc.py).
#   TELEPHONY_SANDBOX_*  passed through to the telephony sandbox (see telephony.py).
#
# Idempotent: if the stack this script started (per the pid files) is alive and
# healthy on the same ports, it does nothing (a changed PURSE_EMULATOR_FAULTS is
# then not applied: run down.sh first, or use POST /_emulator/faults). Refuses to
# start on a port something else listens on. Fails loudly, with the log tail,
# if a server exits or does not answer within 60 s.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="${PURSE_STACK_DIR:-$root/.stack}"
emu_port="${PURSE_EMULATOR_PORT:-4566}"
revio_port="${PURSE_REVIO_PORT:-4580}"
kyc_port="${PURSE_KYC_PORT:-4590}"
tel_port="${PURSE_TELEPHONY_PORT:-4600}"
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
# The process exists and is not a zombie, whatever it executes. For the start-up
# wait: right after `cmd &` the child is still a fork of this bash (its cmdline
# is bash's) until it execs, so alive() would wrongly report it gone.
running() { # pid
  local st
  kill -0 "$1" 2>/dev/null || return 1
  if [[ -r /proc/$1/stat ]]; then
    st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    st="${st##*) }" # the state follows "(comm) ", and comm may contain ") "
    [[ -n "$st" && "${st:0:1}" != Z && "${st:0:1}" != X ]]
  else # no procfs (macOS)
    st="$(ps -p "$1" -o stat= 2>/dev/null)" || return 1
    [[ -n "$st" && "$st" != Z* ]]
  fi
}
port_free() { # port: prints why not and fails if 127.0.0.1:<port> cannot be bound
  "$py" -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError as e:
    print(e.strerror or e)
    sys.exit(1)
finally:
    s.close()' "$1"
}
healthy() { # url
  "$py" -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1).read()' "$1" >/dev/null 2>&1
}
emu_url="http://127.0.0.1:$emu_port"
revio_url="http://127.0.0.1:$revio_port"
kyc_url="http://127.0.0.1:$kyc_port"
tel_url="http://127.0.0.1:$tel_port"

if alive emulator emulator.py && alive revio revio.py && alive kyc kyc.py \
   && alive telephony telephony.py \
   && [[ "$(cat "$state/emulator.port" 2>/dev/null)" == "$emu_port" ]] \
   && [[ "$(cat "$state/revio.port" 2>/dev/null)" == "$revio_port" ]] \
   && [[ "$(cat "$state/kyc.port" 2>/dev/null)" == "$kyc_port" ]] \
   && [[ "$(cat "$state/telephony.port" 2>/dev/null)" == "$tel_port" ]] \
   && healthy "$emu_url/_emulator/stats" && healthy "$revio_url/_sandbox/health" \
   && healthy "$kyc_url/_sandbox/health" && healthy "$tel_url/_sandbox/health"; then
  exit 0
fi

# Something of ours half-running or on other ports: stop it first.
PURSE_STACK_DIR="$state" "$here/down.sh"

# A port taken by someone else (another stack, a `make dev` in another checkout, ...)
# would make our server exit at once, or worse, the health check would succeed
# against the other server. Say so plainly instead.
for spec in "emulator:$emu_port:PURSE_EMULATOR_PORT" "revio:$revio_port:PURSE_REVIO_PORT" \
            "KYC sandbox:$kyc_port:PURSE_KYC_PORT" "telephony sandbox:$tel_port:PURSE_TELEPHONY_PORT"; do
  IFS=: read -r name port var <<<"$spec"
  if ! why="$(port_free "$port")"; then
    echo "up.sh: cannot start the $name: port $port is in use by another process ($why)." >&2
    echo "up.sh: stop it (\`lsof -iTCP:$port -sTCP:LISTEN\` or \`ss -ltnp\` shows which it is) or choose another $var." >&2
    exit 1
  fi
done

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
pid_of() { cat "$state/$1.pid"; }

export REVIO_SANDBOX_KEY_FILE="${REVIO_SANDBOX_KEY_FILE:-$state/revio-key.pem}"
if [[ -n "${PURSE_EMULATOR_FAULTS:-}" ]]; then
  echo "up.sh: emulator fault injection on: PURSE_EMULATOR_FAULTS=$PURSE_EMULATOR_FAULTS" >&2
fi
start emulator "$emu_port" "$here/emulator.py"
start revio "$revio_port" "$root/tools/sandbox/revio.py"
start kyc "$kyc_port" "$root/tools/sandbox/kyc.py"
start telephony "$tel_port" "$root/tools/sandbox/telephony.py"

fail() { # name message
  echo "up.sh: $1 $2; last lines of $state/$1.log:" >&2
  tail -n 30 "$state/$1.log" >&2 || true
  # down.sh below only signals processes that run our scripts; a server that is
  # still a fork of this script, not yet exec'd, has our command line: stop it here
  local n pid self
  self="$(proc_cmd $$)"
  for n in emulator revio kyc telephony; do
    pid="$(pid_of "$n" 2>/dev/null)" || continue
    if [[ -n "$pid" ]] && running "$pid" && [[ "$(proc_cmd "$pid")" == "$self" ]]; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  PURSE_STACK_DIR="$state" "$here/down.sh" || true
  exit 1
}
exited() { # name: fail, with the exit status of our child when it is gone
  local pid rc=0
  pid="$(pid_of "$1" 2>/dev/null)" || true
  if [[ -n "$pid" ]] && ! running "$pid"; then
    wait "$pid" 2>/dev/null || rc=$?
    fail "$1" "exited during start-up (exit status $rc)"
  fi
  fail "$1" "is no longer the process up.sh started (pid ${pid:-?})"
}

# Generous: moto imports slowly, and on a loaded 2-core machine (a cargo build
# beside us) start-up has been seen to take well over 10 s.
timeout_s=60
deadline=$((SECONDS + timeout_s))
emu_ok=0 revio_ok=0 kyc_ok=0 tel_ok=0
while (( emu_ok == 0 || revio_ok == 0 || kyc_ok == 0 || tel_ok == 0 )); do
  if (( emu_ok == 0 )); then
    running "$(pid_of emulator)" || exited emulator
    healthy "$emu_url/_emulator/stats" && emu_ok=1
  fi
  if (( revio_ok == 0 )); then
    running "$(pid_of revio)" || exited revio
    healthy "$revio_url/_sandbox/health" && revio_ok=1
  fi
  if (( kyc_ok == 0 )); then
    running "$(pid_of kyc)" || exited kyc
    healthy "$kyc_url/_sandbox/health" && kyc_ok=1
  fi
  if (( tel_ok == 0 )); then
    running "$(pid_of telephony)" || exited telephony
    healthy "$tel_url/_sandbox/health" && tel_ok=1
  fi
  if (( emu_ok == 0 || revio_ok == 0 || kyc_ok == 0 || tel_ok == 0 )); then
    if (( SECONDS >= deadline )); then
      (( emu_ok )) || fail emulator "did not answer within $timeout_s s"
      (( revio_ok )) || fail revio "did not answer within $timeout_s s"
      (( kyc_ok )) || fail kyc "did not answer within $timeout_s s"
      fail telephony "did not answer within $timeout_s s"
    fi
    sleep 0.2
  fi
done
# All answered; make sure the answers came from our processes (not a server that
# grabbed the port meanwhile while ours died).
alive emulator emulator.py || exited emulator
alive revio revio.py || exited revio
alive kyc kyc.py || exited kyc
alive telephony telephony.py || exited telephony
echo "up.sh: emulator $emu_url, revio sandbox $revio_url, kyc sandbox $kyc_url," \
  "telephony sandbox $tel_url (state in $state)" >&2
