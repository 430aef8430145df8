// Checks every ```mermaid block of README.md and docs/**/*.md with Mermaid's own parser: the
// pinned mermaid package's browser bundle (dist/mermaid.min.js) runs in Debian's headless
// chromium (driven by playwright-core) and `mermaid.parse` is called on each block. A failing
// block is reported as file:line (its opening fence; and the line Mermaid points at, when it
// says one) with Mermaid's message. Exits 1 if any block fails, 2 if the check itself cannot run.
//
//   bash tools/lint/mermaid/check.sh            (installs the pinned packages first)
//   node tools/lint/mermaid/check.mjs [FILE.md ...]
import { readFile, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../../chromium.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const require = createRequire(import.meta.url);
const bundle = require.resolve('mermaid/dist/mermaid.min.js');
const { version } = require('mermaid/package.json');

/** README.md and every .md under docs/, or the files named on the command line. */
async function markdownFiles() {
  if (process.argv.length > 2) return process.argv.slice(2);
  const files = [join(root, 'README.md')];
  const walk = async (dir) => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.name.endsWith('.md')) files.push(p);
    }
  };
  await walk(join(root, 'docs'));
  return files;
}

/**
 * The mermaid blocks of a Markdown text: { line, text } with `line` the 1-based line of the
 * opening fence (``` or ~~~, three or more, indented up to three spaces, info string `mermaid`).
 * An unclosed block is returned with `unclosed: true` (CommonMark runs it to the end of the file,
 * which is never what was meant).
 */
export function mermaidBlocks(markdown) {
  const lines = markdown.split(/\r?\n/);
  const blocks = [];
  let open = null; // { fence, indent, line, body, mermaid }
  lines.forEach((l, i) => {
    if (!open) {
      const m = /^( {0,3})(`{3,}|~{3,})\s*([^\s`]*)/.exec(l);
      if (m && !(m[2][0] === '`' && l.slice(m[0].length).includes('`'))) {
        open = { fence: m[2], indent: m[1].length, line: i + 1, body: [], mermaid: m[3].toLowerCase() === 'mermaid' };
      }
      return;
    }
    const close = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(l);
    if (close && close[1][0] === open.fence[0] && close[1].length >= open.fence.length) {
      if (open.mermaid) blocks.push({ line: open.line, text: open.body.join('\n') });
      open = null;
      return;
    }
    open.body.push(l.replace(new RegExp(`^ {0,${open.indent}}`), ''));
  });
  if (open?.mermaid) blocks.push({ line: open.line, text: open.body.join('\n'), unclosed: true });
  return blocks;
}

async function main() {
  const started = Date.now();
  const files = await markdownFiles();
  const blocks = [];
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    const rel = relative(root, file);
    const name = rel && !rel.startsWith('..') ? rel : file;
    for (const b of mermaidBlocks(text)) blocks.push({ ...b, file: name });
  }

  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
  let results;
  try {
    const page = await browser.newPage();
    // Nothing here needs the network: refuse it, so a diagram cannot fetch anything.
    await page.route('**/*', (route) => route.abort());
    await page.setContent('<!doctype html><html><head></head><body></body></html>');
    await page.addScriptTag({ content: await readFile(bundle, 'utf8') });
    results = await page.evaluate(async (texts) => {
      const mermaid = globalThis.mermaid;
      mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' });
      const out = [];
      for (const text of texts) {
        try {
          const r = await mermaid.parse(text);
          out.push(r ? { ok: true, type: r.diagramType } : { ok: false, message: 'mermaid.parse returned false' });
        } catch (e) {
          const loc = e?.hash?.loc;
          out.push({
            ok: false,
            message: String(e?.message ?? e),
            line: loc?.first_line ?? e?.hash?.line ?? null,
          });
        }
      }
      return out;
    }, blocks.map((b) => b.text));
  } finally {
    await browser.close();
  }

  let failed = 0;
  blocks.forEach((b, i) => {
    const r = results[i];
    if (b.unclosed) {
      failed++;
      console.error(`${b.file}:${b.line}: mermaid block is never closed`);
    }
    if (r.ok) return;
    failed++;
    // Mermaid's line numbers count from the block's first line (1 = the line after the fence).
    let at = b.line;
    const m = /\bon line (\d+)/.exec(r.message);
    const rel = m ? Number(m[1]) : typeof r.line === 'number' ? r.line : null;
    if (rel && rel >= 1) at = b.line + rel;
    const where = at === b.line ? `${b.file}:${b.line}` : `${b.file}:${at} (block at ${b.file}:${b.line})`;
    console.error(`${where}: mermaid syntax error:\n${r.message.replace(/^/gm, '    ')}`);
  });
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  const summary = `${blocks.length} mermaid block(s) in ${files.length} file(s), mermaid ${version}, ${secs}s`;
  if (failed) {
    console.error(`mermaid: ${failed} failing: ${summary}`);
    process.exit(1);
  }
  console.log(`mermaid: all ok: ${summary}`);
}

main().catch((e) => {
  console.error(`tools/lint/mermaid/check.mjs: ${e?.stack ?? e}`);
  process.exit(2);
});
