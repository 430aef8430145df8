#!/usr/bin/env bash
# Create (idempotently) the project-local virtualenv <repo>/.venv and install
# tools/stack/requirements.txt into it when missing or when requirements.txt
# changed since the last successful install (sha256 stamp in
# .venv/.requirements.sha256). Prints nothing on the fast path; reports to
# stderr only when it creates or installs.
#
# Env: PURSE_PYTHON        interpreter used to create the venv (default: python3)
#      PURSE_VENV          venv directory (default: <repo>/.venv)
#      PURSE_REQUIREMENTS  requirements file (default: tools/stack/requirements.txt)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${PURSE_VENV:-$root/.venv}"
req="${PURSE_REQUIREMENTS:-$here/requirements.txt}"
stamp="$venv/.requirements.sha256"
py="${PURSE_PYTHON:-python3}"

hash_of() {
  "$py" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
}
up_to_date() {
  [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]
}

want="$(hash_of "$req")"
up_to_date && exit 0

# Slow path. Serialise concurrent runs (e.g. `make dev` and a test run) with a
# lock directory (portable, no flock needed); a lock older than 15 min is stale.
lock="$venv.lock"
for ((i = 0; ; i++)); do
  mkdir "$lock" 2>/dev/null && break
  if [[ -n "$(find "$lock" -maxdepth 0 -mmin +15 2>/dev/null)" ]]; then
    rmdir "$lock" 2>/dev/null || true
    continue
  fi
  if ((i >= 1800)); then
    echo "venv.sh: timed out waiting for $lock (remove it if no install is running)" >&2
    exit 1
  fi
  sleep 0.2
done
trap 'rmdir "$lock" 2>/dev/null || true' EXIT
up_to_date && exit 0 # another run installed it meanwhile

if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "venv.sh: creating $venv" >&2
  rm -rf "$venv"
  if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
    # e.g. Debian without python3-venv (no ensurepip): a venv without pip,
    # filled by the interpreter's own pip below.
    rm -rf "$venv"
    "$py" -m venv --without-pip "$venv"
  fi
fi

if "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  pip=("$venv/bin/python" -m pip)
else
  pip=("$py" -m pip --python "$venv/bin/python")
fi

echo "venv.sh: installing $(basename "$req") into $venv" >&2
rm -f "$stamp"
"${pip[@]}" install --disable-pip-version-check -q -r "$req" >&2
echo "$want" >"$stamp"
echo "venv.sh: done" >&2
