#!/usr/bin/env bash
# Create (idempotently) the project-local virtualenv <repo>/.venv and install
# tools/stack/requirements.txt into it when missing or when requirements.txt
# changed since the last install (sha256 stamp kept in .venv/.requirements.sha256).
# Quiet unless it installs. Prints nothing on the fast path.
#
# Env: PURSE_PYTHON  interpreter used to create the venv (default: python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
py="${PURSE_PYTHON:-python3}"

hash_of() {
  "$py" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
}

want="$(hash_of "$req")"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "venv.sh: creating $venv" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
fi

echo "venv.sh: installing $(basename "$req") into $venv" >&2
rm -f "$stamp"
"$venv/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip >&2 || true
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req" >&2
echo "$want" > "$stamp"
echo "venv.sh: done" >&2
