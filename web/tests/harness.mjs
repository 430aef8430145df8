// Browser-test harness: Debian's chromium driven by playwright-core, against the real local
// system (web/tests/run.sh starts the dev server on free ports against a private stack and sets
// PURSE_WEB_URL). Every test gets its own browser contexts (one per person), 360 px wide like a
// low-end phone, with fake camera and microphone; a failing test leaves a screenshot of each of
// its pages in target/web-tests/<test name>[-<n>].png and their console in a .log beside it.
//
//   import { webTest, signUp, expect } from './harness.mjs';
//   webTest('a person can buy coins', async ({ newPage }) => {
//     const page = await newPage();
//     const user = await signUp(page);
//     ...
//   });
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS as CLOSED_NETWORK_ARGS, CHROMIUM_PATH } from '../../tools/chromium.mjs';

export { assert };
import { expect as expectImported } from './expect.mjs';
export { expectImported as expect };

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The app's URL, e.g. http://127.0.0.1:41234/app/ (set by run.sh). */
export const BASE = process.env.PURSE_WEB_URL || 'http://127.0.0.1:3000/app/';
/** The API's origin (the app's, without /app/). */
export const API = new URL(BASE).origin;
/** Where failure screenshots go. */
export const SHOTS = join(root, 'target', 'web-tests');

/** Chromium's flags: the project's closed-network ones (tools/chromium.mjs), with fake media and WebRTC on loopback. */
export const CHROMIUM_ARGS = [
  ...CLOSED_NETWORK_ARGS,
  // Calls: a fake microphone (a beeping tone), no permission prompt, ICE host candidates with
  // real loopback addresses instead of mDNS names that nothing here resolves.
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

let browserPromise = null;
/** The one browser of this test file (launched on first use, closed after the file). */
export function browser() {
  browserPromise ??= chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  return browserPromise;
}
after(async () => {
  if (browserPromise) await (await browserPromise).close().catch(() => {});
});

const slug = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 80);

/**
 * A browser test. `fn({ newPage, pages }, t)`: `newPage(options)` opens a page in a new context
 * (a new person: own storage, own session), 360x740 unless `options.viewport` says otherwise.
 * On failure every page is screenshotted to target/web-tests/ before the error is reported.
 */
export function webTest(name, fn, { timeout = 180_000 } = {}) {
  test(name, { timeout }, async (t) => {
    const b = await browser();
    const contexts = [];
    const pages = [];
    const logs = [];
    const newPage = async (options = {}) => {
      const context = await b.newContext({
        viewport: { width: 360, height: 740 },
        deviceScaleFactor: 1,
        isMobile: false,
        permissions: ['microphone'],
        ...options,
      });
      context.setDefaultTimeout(20_000);
      contexts.push(context);
      const page = await context.newPage();
      const n = pages.push(page);
      page.on('console', (m) => logs.push(`[page ${n}] ${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`[page ${n}] pageerror: ${e.message}`));
      return page;
    };
    try {
      await fn({ newPage, pages }, t);
    } catch (err) {
      await mkdir(SHOTS, { recursive: true });
      const base = join(SHOTS, slug(name));
      for (const [i, page] of pages.entries()) {
        const file = pages.length === 1 ? `${base}.png` : `${base}-${i + 1}.png`;
        await page.screenshot({ path: file, fullPage: true }).catch(() => {});
        t.diagnostic(`screenshot: ${file} (${page.url()})`);
      }
      await writeFile(`${base}.log`, logs.join('\n') + '\n').catch(() => {});
      throw err;
    } finally {
      for (const c of contexts) await c.close().catch(() => {});
    }
  });
}

let counter = 0;
/** A fresh e-mail address for a new account. */
export function uniqueEmail(tag = 'web') {
  counter += 1;
  return `${tag}-${Date.now().toString(36)}-${process.pid}-${counter}@example.com`;
}

/** A password the API accepts. */
export const PASSWORD = 'correct-horse-battery-9';

/** Opens a route of the app, e.g. open(page, 'history'), and waits for the shell to be ready. */
export async function open(page, route = '') {
  await page.goto(BASE + (route ? '#/' + route : ''));
  await page.locator('html[data-ready="1"]').waitFor();
}

/**
 * Signs a new person up through the sign-up screen and waits for their wallet.
 * @returns {{email: string, password: string}}
 */
export async function signUp(page, { email = uniqueEmail(), password = PASSWORD, referral = '' } = {}) {
  await open(page, 'signup' + (referral ? '?ref=' + encodeURIComponent(referral) : ''));
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Wallet', level: 1 }).waitFor();
  return { email, password };
}

/** Signs an existing person in through the sign-in screen and waits for their wallet. */
export async function signIn(page, { email, password = PASSWORD }) {
  await open(page, 'signin');
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Wallet', level: 1 }).waitFor();
}

/** Navigates inside the app (hash route) and waits for the screen's heading. */
export async function go(page, route, heading) {
  await page.evaluate((r) => {
    location.hash = '#/' + r;
  }, route);
  if (heading) await page.getByRole('heading', { name: heading, level: 1 }).waitFor();
}

/** Polls `fn` until it returns a truthy value (or throws the last error after `timeout` ms). */
export async function eventually(fn, { timeout = 30_000, interval = 250, message = 'condition not met' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw last || new Error(`${message} within ${timeout} ms`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Calls the API from Node (test setup only; the flows under test go through the UI). */
export async function apiCall(method, path, { token, body, headers = {} } = {}) {
  const resp = await fetch(API + path, {
    method,
    headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: 'Bearer ' + token } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

/** An access token for a person (for setup through apiCall). */
export async function tokenFor({ email, password = PASSWORD }) {
  const r = await apiCall('POST', '/v1/auth/login', { body: { email, password } });
  assert.equal(r.status, 200, `sign-in for setup failed: ${JSON.stringify(r.body)}`);
  return r.body.access_token;
}

const run = promisify(execFile);
/**
 * Runs the operator tool against this test run's stack, e.g. admin('grant-admin', email).
 * (cargo run -p purse-admin; the same as `make admin ARGS=...` against `make dev`.)
 */
export async function admin(...args) {
  const env = {
    ...process.env,
    PURSE_TABLE: (process.env.PURSE_STACK_PREFIX || 'purse-dev-') + 'PurseTable',
    REVIO_BASE_URL: process.env.PURSE_REVIO_URL || '',
    REVIO_ALLOW_INSECURE_HTTP: 'true',
    REVIO_SECRET_ID: (process.env.PURSE_STACK_PREFIX || 'purse-dev-') + 'RevioApiSecret',
  };
  const { stdout } = await run('cargo', ['run', '-q', '-p', 'purse-admin', '--', ...args], { cwd: root, env, maxBuffer: 1 << 20 });
  return stdout;
}

/**
 * Buys `amount` whole coins through the app: Buy coins → the Revio sandbox's hosted checkout →
 * Pay → back in the app until the deposit is settled. Shared by the tests that need coins.
 */
export async function buyCoins(page, amount) {
  await go(page, 'deposit', 'Buy coins');
  await page.getByLabel('Coins to buy').fill(String(amount));
  await page.getByRole('button', { name: 'Continue to payment' }).click();
  await page.waitForURL((url) => url.origin !== API); // the checkout is Revio's page
  await page.getByRole('button', { name: 'Pay', exact: true }).click();
  await page.waitForURL(/\/app\/#\/deposit\/txn_/);
  await expectImported(page.getByRole('status').first()).toContainText(`${amount}.00 coins added to your wallet.`, { timeout: 60_000 });
}
