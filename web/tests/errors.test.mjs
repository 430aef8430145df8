// Every error code the API documents (docs/openapi.yaml) and the call socket sends
// (docs/websocket.md) has a sentence a person can act on: in src/errors.js or in a screen's own
// `errors` table. No browser needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sentence, knownCodes } from '../src/errors.js';
import { money, plain } from '../src/format.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

async function screenTables() {
  // The screens are browser modules; their `errors` tables are plain data, read from the source.
  const index = await readFile(join(root, 'web/src/screens/index.js'), 'utf8');
  const files = [...index.matchAll(/from '\.\/([a-z_]+\.js)'/g)].map((m) => m[1]);
  const codes = new Set();
  for (const f of files) {
    const src = await readFile(join(root, 'web/src/screens', f), 'utf8');
    for (const m of src.matchAll(/^\s{2,}([a-z_]+):\s*['"`]/gm)) codes.add(m[1]);
  }
  return codes;
}

test('every error code in docs/openapi.yaml has a sentence', async () => {
  const spec = await readFile(join(root, 'docs/openapi.yaml'), 'utf8');
  const codes = new Set();
  for (const m of spec.matchAll(/^\s*code:\s*\n\s*enum:\s*\[([^\]]*)\]/gm)) for (const c of m[1].split(',')) codes.add(c.trim());
  assert.ok(codes.size > 50, `found only ${codes.size} codes: the openapi layout changed`);
  const known = new Set([...knownCodes(), ...(await screenTables())]);
  const missing = [...codes].filter((c) => !known.has(c));
  assert.deepEqual(missing, [], 'codes without a sentence (add them to web/src/errors.js)');
});

test('every error code the call socket sends (docs/websocket.md) has a sentence', async () => {
  const doc = await readFile(join(root, 'docs/websocket.md'), 'utf8');
  const table = doc.slice(doc.indexOf('| `code` | sent for |'));
  const codes = [...table.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]).filter((c) => c !== 'code');
  assert.ok(codes.length > 10, `found only ${codes.length} codes: the websocket.md layout changed`);
  const known = new Set([...knownCodes(), ...(await screenTables()), ...(await callsTables())]);
  const missing = codes.filter((c) => !known.has(c));
  assert.deepEqual(missing, [], 'call socket codes without a sentence (add them to the calls screen or web/src/errors.js)');
});

async function callsTables() {
  const codes = new Set();
  const dir = join(root, 'web/src/calls');
  const { readdir } = await import('node:fs/promises');
  for (const f of await readdir(dir).catch(() => [])) {
    const src = await readFile(join(dir, f), 'utf8');
    for (const m of src.matchAll(/^\s{2,}([a-z_]+):\s*['"`]/gm)) codes.add(m[1]);
  }
  return codes;
}

test('a sentence is never raw: unknown codes get a fallback or a generic sentence', () => {
  assert.equal(sentence('insufficient_funds'), 'You do not have enough coins available for this.');
  assert.equal(sentence('no_such_code', 'Fallback.'), 'Fallback.');
  assert.equal(sentence(undefined), 'Something went wrong. Please try again.');
  assert.equal(sentence('insufficient_funds', undefined, { insufficient_funds: 'Mine.' }), 'Mine.');
});

test('money keeps the currency places with string arithmetic', () => {
  assert.equal(money('12.5', 'COIN'), '12.50 coins');
  assert.equal(money('1234567.05', 'COIN'), '1,234,567.05 coins');
  assert.equal(money('-3', 'COIN'), '−3.00 coins');
  assert.equal(money('0.1', 'COIN'), '0.10 coins');
  assert.equal(money('900719925474099.99', 'COIN'), '900,719,925,474,099.99 coins'); // beyond a float's exact range
  assert.equal(plain('7', 'COIN'), '7.00');
});
