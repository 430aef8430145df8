#!/usr/bin/env bash
# Everything CI checks: format, clippy, unit and integration tests (against the emulator, the
# Revio sandbox and the KYC sandbox, which this script starts and stops), the sandboxes' own
# tests, and the template linters.
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

step "emulator fault injection (tools/stack/test_emulator_faults.py)"
"$root/.venv/bin/python" -m unittest discover -s tools/stack -p 'test_*.py'

step "provider sandboxes (tools/sandbox/test_*.py)"
"$root/.venv/bin/python" -m unittest discover -s tools/sandbox -p 'test_*.py'

step "unit and integration tests (emulator + Revio and KYC sandboxes, chaos suite on fixed seeds)"
bash tools/stack/with-stack.sh cargo test --workspace --locked
