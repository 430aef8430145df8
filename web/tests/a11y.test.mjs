// Accessibility of the shell's screens at 360 px: axe-core finds no violation (labels, names,
// contrast, landmarks, ARIA), nothing is wider than the screen, and a person can sign in and buy
// coins with the keyboard alone, seeing where the focus is.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { webTest, signUp, open, go, expect, assert, PASSWORD } from './harness.mjs';

const axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

async function audit(page, where) {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
  });
  assert.deepEqual(result, [], `accessibility violations on ${where}`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${where} is ${overflow}px wider than the 360 px screen`);
}

webTest('the sign-in, sign-up, wallet, buy coins and history screens pass axe at 360 px', async ({ newPage }) => {
  const page = await newPage();
  await open(page, 'signin');
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  await audit(page, '#/signin');
  await open(page, 'signup');
  await page.getByRole('heading', { name: 'Create an account', level: 1 }).waitFor();
  await audit(page, '#/signup');
  await signUp(page);
  await expect(page.locator('#w-available')).toHaveText('0.00 coins');
  await audit(page, '#/wallet');
  await go(page, 'deposit', 'Buy coins');
  await audit(page, '#/deposit');
  await go(page, 'history', 'History');
  await expect(page.locator('#h-empty')).toBeVisible();
  await audit(page, '#/history');
});

webTest('a person signs in and starts buying coins with the keyboard alone, the focus always visible', async ({ newPage }) => {
  const page = await newPage();
  const user = await signUp(page);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();

  const focused = () =>
    page.evaluate(() => {
      const el = document.activeElement;
      const s = getComputedStyle(el);
      return { id: el.id, text: el.textContent.trim(), outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2 };
    });
  // Tab to the e-mail field from the top of the page.
  for (let i = 0; i < 10 && (await focused()).id !== 'email'; i++) await page.keyboard.press('Tab');
  let f = await focused();
  assert.equal(f.id, 'email');
  assert.ok(f.outline, 'the focused field shows a focus ring');
  await page.keyboard.type(user.email);
  await page.keyboard.press('Tab');
  assert.equal((await focused()).id, 'password');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Wallet', level: 1 }).waitFor();

  // Through the navigation to Buy coins.
  for (let i = 0; i < 15 && (await focused()).text !== 'Buy coins'; i++) await page.keyboard.press('Tab');
  f = await focused();
  assert.equal(f.text, 'Buy coins');
  assert.ok(f.outline, 'the focused link shows a focus ring');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Buy coins', level: 1 }).waitFor();
  // The focus moved to the new screen's heading; the amount field is the next stop.
  for (let i = 0; i < 5 && (await focused()).id !== 'amount'; i++) await page.keyboard.press('Tab');
  assert.equal((await focused()).id, 'amount');
  await page.keyboard.type('10.001');
  await page.keyboard.press('Enter');
  await expect(page.locator('form#buy [role=alert]')).toHaveText('Use at most 2 decimal places, like 25.50.');
});
