#!/usr/bin/env bash
# Checks the Mermaid diagrams of README.md and docs/ with Mermaid's own parser (check.mjs), after
# installing this folder's pinned packages (package-lock.json: mermaid, playwright-core) when they
# are missing or stale. Needs Node.js 20+, npm and chromium (PURSE_CHROMIUM, else /usr/bin/chromium).
# Arguments, if any, are Markdown files to check instead.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "tools/lint/mermaid/check.sh: Node.js and npm are needed (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
# npm ci again only when the lockfile changed since the last install.
stamp="$here/node_modules/.purse-lock"
if [ ! -f "$stamp" ] || ! cmp -s "$here/package-lock.json" "$stamp"; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$here/package-lock.json" "$stamp"
fi
exec node "$here/check.mjs" "$@"
