#!/usr/bin/env bash
# Web app benchmark (not part of `make test`): builds web/ for a site of its own, reports the
# bytes a first visit transfers (index.html + JS + CSS, gzip and brotli) and runs Lighthouse's
# mobile performance audit (npm `lighthouse`, its default simulated throttling: a slow 4G
# network and a 4x slower CPU) against Debian's chromium, served as CloudFront serves it.
# Goals (issue 10): <= 60 KB compressed for the first screen, performance score >= 95.
# Writes target/bench/web.json and target/bench/web-lighthouse.{json,html}.
#
#   bash tools/bench/web.sh          (needs Node.js 20+, npm and /usr/bin/chromium)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out="$root/target/bench"
site="$out/web-site"
mkdir -p "$out"
chromium="${PURSE_CHROMIUM:-/usr/bin/chromium}"
[[ -x "$chromium" ]] || { echo "tools/bench/web.sh: needs chromium at $chromium (apt-get install chromium)" >&2; exit 1; }

# 1. Build as deployed: at the site's root, the API elsewhere (its origin does not matter here:
#    the first screen, sign-in, calls nothing).
rm -rf "$site"
PURSE_WEB_OUT="$site" PURSE_WEB_BASE=/ bash web/build.sh >/dev/null

# 2. Lighthouse, pinned in tools/bench/web/package-lock.json.
lh=tools/bench/web
if [[ ! -f "$lh/node_modules/.purse-lock" ]] || ! cmp -s "$lh/package-lock.json" "$lh/node_modules/.purse-lock"; then
  (cd "$lh" && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.purse-lock)
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
node "$lh/serve.mjs" "$site" "$port" &
server=$!
profile="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$profile"' EXIT
for _ in $(seq 1 50); do curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break; sleep 0.1; done

CHROME_PATH="$chromium" "$lh/node_modules/.bin/lighthouse" "http://127.0.0.1:$port/" \
  --only-categories=performance --output=json --output=html --output-path="$out/web-lighthouse" \
  --chrome-flags="--headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking --disable-component-update --disable-sync --disable-dev-shm-usage --user-data-dir=$profile" \
  --quiet
mv "$out/web-lighthouse.report.json" "$out/web-lighthouse.json"
mv "$out/web-lighthouse.report.html" "$out/web-lighthouse.html"

# 3. The figures.
node - "$site" "$out/web-lighthouse.json" "$out/web.json" <<'JS'
const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');
const [site, lhFile, outFile] = process.argv.slice(2);
const html = fs.readFileSync(path.join(site, 'index.html'));
const js = [...html.toString().matchAll(/src="\.\/(assets\/[^"]+\.js)"/g)].map((m) => m[1]);
const css = [...html.toString().matchAll(/href="\.\/(assets\/[^"]+\.css)"/g)].map((m) => m[1]);
const files = ['index.html', ...js, ...css];
const rows = files.map((f) => {
  const b = fs.readFileSync(path.join(site, f));
  return {
    file: f,
    raw: b.length,
    gzip: zlib.gzipSync(b, { level: 9 }).length,
    brotli: zlib.brotliCompressSync(b, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 } }).length,
  };
});
const sum = (k) => rows.reduce((a, r) => a + r[k], 0);
const lh = JSON.parse(fs.readFileSync(lhFile, 'utf8'));
const a = (id) => lh.audits[id];
const result = {
  first_screen: { files: rows, raw: sum('raw'), gzip: sum('gzip'), brotli: sum('brotli'), goal_bytes: 60 * 1024 },
  lighthouse: {
    version: lh.lighthouseVersion,
    form_factor: lh.configSettings.formFactor,
    throttling: lh.configSettings.throttlingMethod,
    performance: Math.round(lh.categories.performance.score * 100),
    goal: 95,
    first_contentful_paint_ms: Math.round(a('first-contentful-paint').numericValue),
    largest_contentful_paint_ms: Math.round(a('largest-contentful-paint').numericValue),
    speed_index_ms: Math.round(a('speed-index').numericValue),
    total_blocking_time_ms: Math.round(a('total-blocking-time').numericValue),
    cumulative_layout_shift: a('cumulative-layout-shift').numericValue,
    transferred_bytes: a('total-byte-weight').numericValue,
  },
};
fs.writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n');
const kb = (n) => (n / 1024).toFixed(1) + ' KB';
console.log('Web app, first screen (sign-in) as a new visitor loads it:');
for (const r of rows) console.log(`  ${r.file.padEnd(28)} ${kb(r.raw).padStart(9)} raw ${kb(r.gzip).padStart(9)} gzip ${kb(r.brotli).padStart(9)} brotli`);
console.log(`  ${'total'.padEnd(28)} ${kb(sum('raw')).padStart(9)} raw ${kb(sum('gzip')).padStart(9)} gzip ${kb(sum('brotli')).padStart(9)} brotli   (goal <= 60 KB compressed: ${sum('gzip') <= 60 * 1024 ? 'met' : 'MISSED'})`);
const l = result.lighthouse;
console.log(`Lighthouse ${l.version}, ${l.form_factor}, ${l.throttling} throttling: performance ${l.performance} (goal >= 95: ${l.performance >= 95 ? 'met' : 'MISSED'})`);
console.log(`  FCP ${l.first_contentful_paint_ms} ms, LCP ${l.largest_contentful_paint_ms} ms, Speed Index ${l.speed_index_ms} ms, TBT ${l.total_blocking_time_ms} ms, CLS ${l.cumulative_layout_shift.toFixed(3)}, transferred ${kb(l.transferred_bytes)}`);
console.log(`Details: ${outFile}, target/bench/web-lighthouse.html`);
JS
