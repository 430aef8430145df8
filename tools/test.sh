#!/usr/bin/env bash
# Everything CI checks: format, clippy, unit and integration tests (against the emulator, the
# Revio sandbox and the KYC sandbox, which this script starts and stops), the sandboxes' own
# tests, the template and workflow linters, and the browser tests of the web app (web/tests/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "installing tools (emulator venv, template linters)"
bash tools/stack/venv.sh
PURSE_VENV="$root/.venv-lint" PURSE_REQUIREMENTS="$root/tools/lint/requirements.txt" bash tools/stack/venv.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "template: cfn-lint and sam validate --lint"
export SAM_CLI_TELEMETRY=0
"$root/.venv-lint/bin/cfn-lint" template.yaml
"$root/.venv-lint/bin/sam" validate --lint --region us-east-1 --template-file template.yaml

step "workflows: actionlint .github/workflows (runs shellcheck on run: scripts when it is on PATH)"
"$root/.venv-lint/bin/actionlint" .github/workflows/*.yml

step "emulator fault injection (tools/stack/test_emulator_faults.py)"
"$root/.venv/bin/python" -m unittest discover -s tools/stack -p 'test_*.py'

step "provider sandboxes (tools/sandbox/test_*.py)"
"$root/.venv/bin/python" -m unittest discover -s tools/sandbox -p 'test_*.py'

step "tools/lint/test_*.py: least privilege, hardening, alarms, binary weight, docs/coverage.md and every document's links"
"$root/.venv/bin/python" -m unittest discover -s tools/lint -p 'test_*.py'

step "unit and integration tests (emulator + Revio and KYC sandboxes, chaos suite on fixed seeds)"
bash tools/stack/with-stack.sh cargo test --workspace --locked

step "browser tests (web/: playwright-core driving Debian's chromium through the app at /app/)"
missing=()
[[ -x "${PURSE_CHROMIUM:-/usr/bin/chromium}" ]] || missing+=(chromium)
command -v npm >/dev/null || missing+=(nodejs npm)
if (( ${#missing[@]} )); then
  # CI is a fresh Debian machine where we are root; elsewhere, install them yourself.
  if (( EUID == 0 )); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "tools/test.sh: the browser tests need: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
bash tools/stack/with-stack.sh bash web/tests/run.sh

step "docs: Mermaid diagrams of README.md and docs/ through Mermaid's parser (tools/lint/mermaid/)"
bash tools/lint/mermaid/check.sh
