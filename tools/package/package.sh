#!/usr/bin/env bash
# `make package`: `sam build` of every function for arm64 (provided.al2023, BuildMethod
# rust-cargolambda), then each function's bootstrap zipped the way `sam deploy` uploads it, and a
# table of sizes. Fails when a stripped binary is larger than PURSE_MAX_BINARY_BYTES (6 MB).
#
# The fast path (docs/deploy.md, "make package"): SAM runs `cargo lambda build --release --arm64
# --bin <Binary>` once per function, in the workspace root. Run one after the other from clean,
# those are 54 cargo invocations that each wait for the previous one. So the whole workspace is
# built first with exactly the same package selection and flags (`cargo lambda build --release
# --arm64`, every member, one cargo run that links the binaries two at a time); SAM's 54
# invocations then find every binary fresh and only copy it (`sam build --parallel`).
#
#   PURSE_MAX_BINARY_BYTES  largest stripped binary allowed, bytes (default 6000000, 6 MB)
#   PACKAGE_SKIP_PREBUILD=1 leave every build to sam build (the slow path, to check it matches)
#   PACKAGE_SKIP_BUILD=1    only zip and measure what is in .aws-sam/build
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
limit="${PURSE_MAX_BINARY_BYTES:-6000000}"
out="$root/.aws-sam/package"

# Tools: SAM CLI from the linters' virtualenv, cargo-lambda (and the Zig toolchain it
# cross-compiles with) from this directory's requirements, the arm64 Rust standard library.
PURSE_VENV="$root/.venv-lint" PURSE_REQUIREMENTS="$root/tools/lint/requirements.txt" bash tools/stack/venv.sh
PURSE_VENV="$root/.venv-package" PURSE_REQUIREMENTS="$root/tools/package/requirements.txt" bash tools/stack/venv.sh
export PATH="$root/.venv-package/bin:$PATH"
export SAM_CLI_TELEMETRY=0
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi

if [[ "${PACKAGE_SKIP_BUILD:-}" != 1 ]]; then
  started=$SECONDS
  if [[ "${PACKAGE_SKIP_PREBUILD:-}" != 1 ]]; then
    echo "package: cargo lambda build --release --arm64 (the whole workspace, once)..." >&2
    cargo lambda build --release --arm64
  fi
  echo "package: sam build --parallel (samconfig.toml turns on beta_features)..." >&2
  "$root/.venv-lint/bin/sam" build --parallel
  echo "package: built in $((SECONDS - started)) s" >&2
fi

"$root/.venv-package/bin/python" tools/package/sizes.py --build-dir "$root/.aws-sam/build" --out "$out" \
  --template template.yaml --limit "$limit"
