#!/usr/bin/env bash
# Stop what up.sh started (by the pid files in $PURSE_STACK_DIR, default
# <repo>/.stack). Idempotent: missing or stale pid files are fine.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="${PURSE_STACK_DIR:-$root/.stack}"

stop() { # name script
  local pidf="$state/$1.pid" pid i
  [[ -f "$pidf" ]] || return 0
  pid="$(cat "$pidf")"
  # only signal the process if it still is ours (pids get reused)
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -q "$2" "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.1
    fi
  fi
  rm -f "$pidf" "$state/$1.port"
}

stop emulator emulator.py
stop revio revio.py
