#!/usr/bin/env bash
# Installs the web app's pinned dependencies (web/package-lock.json) when they are missing or
# stale, and builds web/dist/ (node web/build.mjs). Used by `make dev`, web/tests/run.sh and the
# web benchmark. Needs Node.js 20+ and npm.
set -euo pipefail
web="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$web"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "web/build.sh: Node.js and npm are needed for the web app (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
# npm ci again only when the lockfile changed since the last install.
stamp=node_modules/.purse-lock
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
node build.mjs
