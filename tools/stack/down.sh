#!/usr/bin/env bash
# Stop what up.sh started (by the pid files in $PURSE_STACK_DIR, default
# <repo>/.stack). Idempotent: missing or stale pid files are fine.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="${PURSE_STACK_DIR:-$root/.stack}"

# Prints the command line of a live (non-zombie) process, nothing otherwise.
proc_cmd() {
  if [[ -d /proc/$1 ]]; then
    tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null || true
  else # no procfs (macOS)
    ps -p "$1" -o stat=,command= 2>/dev/null | awk '$1 !~ /^Z/ { $1 = ""; print }' || true
  fi
}

stop() { # name script
  local pidf="$state/$1.pid" pid i
  [[ -f "$pidf" ]] || return 0
  pid="$(cat "$pidf")"
  # only signal the process if it still is ours (pids get reused)
  if [[ -n "$pid" && "$(proc_cmd "$pid")" == *"$2"* ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      [[ "$(proc_cmd "$pid")" == *"$2"* ]] || break
      sleep 0.1
    done
    if [[ "$(proc_cmd "$pid")" == *"$2"* ]]; then
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.1
    fi
  fi
  rm -f "$pidf" "$state/$1.port"
}

stop emulator emulator.py
stop revio revio.py
stop kyc kyc.py
stop telephony telephony.py
