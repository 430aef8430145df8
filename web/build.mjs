// Builds web/ into web/dist/: one minified, fingerprinted JavaScript bundle (assets/app-<hash>.js,
// cached for a year) and index.html (never cached) with the stylesheet inline. esbuild does the
// bundling; nothing is fetched at run time.
//
//   node build.mjs                 base href /app/ (the dev server's, `make dev`)
//   PURSE_WEB_BASE=/ PURSE_API_URL=https://<api>/<stage> node build.mjs
//                                  for a site of its own (S3 + CloudFront), the API elsewhere
import { build } from 'esbuild';
import { readFile, writeFile, rm, mkdir, rename, readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.env.PURSE_WEB_OUT || join(here, 'dist'); // the benchmark builds elsewhere
const base = process.env.PURSE_WEB_BASE || '/app/';
if (!/^\/([^\s"<>]*\/)?$/.test(base)) throw new Error(`PURSE_WEB_BASE must be a path starting and ending with "/", not ${base}`);
// The API's base URL when it is not the app's own origin (a deployed stack: the ApiUrl output).
const apiUrl = process.env.PURSE_API_URL || '';
if (apiUrl && !/^https?:\/\/[^\s"<>]+$/.test(apiUrl)) throw new Error(`PURSE_API_URL must be an http(s) URL, not ${apiUrl}`);

// Several test runs may build while a dev server serves dist/: nothing is deleted first, the new
// bundle has a new name, index.html is replaced atomically, and old bundles go after an hour.
await mkdir(join(out, 'assets'), { recursive: true });
const result = await build({
  entryPoints: [join(here, 'src/app.js')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  outdir: join(out, 'assets'),
  entryNames: 'app-[hash]',
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});
const js = Object.keys(result.metafile.outputs).find((f) => f.endsWith('.js'));
const jsName = js.split('/').pop();

let html = await readFile(join(here, 'index.html'), 'utf8');
const script = '<script type="module" src="./src/app.js"></script>';
if (!html.includes(script)) throw new Error('index.html no longer loads ./src/app.js; update build.mjs');
html = html
  .replace(script, `<script type="module" src="./assets/${jsName}"></script>`)
  .replace('<base href="/app/">', `<base href="${base}">`)
  .replace('<meta name="purse-api" content="">', `<meta name="purse-api" content="${apiUrl}">`)
  // The inline stylesheet, lightly minified: comments and runs of white space.
  .replace(/<style>([\s\S]*?)<\/style>/, (_, css) => `<style>${css.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\s*\n\s*/g, '')}</style>`)
  .replace(/>\s*\n\s*</g, '><');
const tmp = join(out, `.index.html.${process.pid}`);
await writeFile(tmp, html);
await rename(tmp, join(out, 'index.html'));
for (const f of await readdir(join(out, 'assets'))) {
  const file = join(out, 'assets', f);
  if (f !== jsName && Date.now() - (await stat(file)).mtimeMs > 3600_000) await rm(file, { force: true });
}
console.log(`web: built ${out}/index.html and assets/${jsName}`);
