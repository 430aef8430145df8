// Buying coins in a real browser against the real local system: the deposit is created by the
// app, paid (or declined) on the Revio sandbox's hosted checkout, and the browser comes back to
// the app, which follows the deposit until Revio's webhook settles it.
import { webTest, signUp, go, expect, assert, API, apiCall, tokenFor } from './harness.mjs';

async function startDeposit(page, amount) {
  await page.getByRole('link', { name: 'Buy coins' }).first().click();
  await page.getByRole('heading', { name: 'Buy coins', level: 1 }).waitFor();
  await page.getByLabel('Coins to buy').fill(amount);
  await page.getByRole('button', { name: 'Continue to payment' }).click();
  // The sandbox's hosted checkout, on another origin.
  await page.waitForURL((url) => !url.href.startsWith(API));
  await page.getByRole('button', { name: 'Pay', exact: true }).waitFor();
  assert.ok(!page.url().startsWith(API), `the checkout is Revio's page, not the app's: ${page.url()}`);
}

webTest('a new person buys coins, pays on the checkout page and sees them in the wallet', async ({ newPage }) => {
  const page = await newPage();
  await signUp(page);
  await expect(page.locator('#w-available')).toHaveText('0.00 coins');

  await startDeposit(page, '25');
  await page.getByRole('button', { name: 'Pay', exact: true }).click();

  // Back in the app on the deposit's own page, which waits for the settlement.
  await page.waitForURL(/\/app\/#\/deposit\/txn_/);
  await expect(page.getByRole('status').first()).toContainText('25.00 coins added to your wallet.', { timeout: 60_000 });
  await expect(page.locator('#hdr-balance')).toHaveText('25.00 coins');

  await go(page, 'wallet', 'Wallet');
  await expect(page.locator('#w-available')).toHaveText('25.00 coins');
  await expect(page.locator('#w-balance')).toHaveText('25.00 coins');
  await expect(page.locator('#w-held')).toHaveText('0.00 coins');
  await expect(page.locator('#w-latest li')).toContainText(/Deposit[\s\S]*Completed[\s\S]*\+25\.00 coins/);

  // The history lists it, and its detail shows what it was.
  await page.getByRole('link', { name: 'History' }).first().click();
  await page.getByRole('heading', { name: 'History', level: 1 }).waitFor();
  await page.locator('#h-list a').first().click();
  await page.getByRole('heading', { name: 'Movement', level: 1 }).waitFor();
  await expect(page.locator('#detail')).toContainText(/Deposit[\s\S]*\+25\.00 coins[\s\S]*Completed/);
});

webTest('a declined payment says so, adds nothing, and offers to try again', async ({ newPage }) => {
  const page = await newPage();
  await signUp(page);
  await startDeposit(page, '40');
  await page.getByRole('button', { name: 'Decline', exact: true }).click();

  await page.waitForURL(/\/app\/#\/deposit\/txn_/);
  const status = page.getByRole('status').first();
  await expect(status).toContainText('Your payment was declined. No coins were added');
  // The deposit itself ends FAILED once Revio's webhook is applied, and the message stays.
  await expect(page.locator('#dep-state')).toHaveText('FAILED', { timeout: 60_000 });
  await expect(status).toContainText('Your payment was declined.');
  await expect(page.getByRole('button', { name: 'Continue to payment' })).toBeVisible();

  await go(page, 'wallet', 'Wallet');
  await expect(page.locator('#w-available')).toHaveText('0.00 coins');
});

webTest('a refused amount is explained in a sentence and what was typed stays', async ({ newPage }) => {
  const page = await newPage();
  await signUp(page);
  await go(page, 'deposit', 'Buy coins');
  const amount = page.getByLabel('Coins to buy');
  const alert = page.locator('form#buy [role=alert]');

  await amount.fill('10.001');
  await page.getByRole('button', { name: 'Continue to payment' }).click();
  await expect(alert).toHaveText('Use at most 2 decimal places, like 25.50.');
  await expect(amount).toHaveValue('10.001');

  await amount.fill('5');
  await page.getByRole('button', { name: 'Continue to payment' }).click();
  await expect(alert).toHaveText('That amount is below the minimum. Enter a larger amount.');
  await expect(amount).toHaveValue('5');
  assert.ok(!(await alert.innerText()).includes('{'), 'no raw JSON');
});

webTest('the history filters, pages on with the cursor, and opens a movement', async ({ newPage }) => {
  const page = await newPage();
  const user = await signUp(page);
  // Three deposits left unpaid (PENDING), made through the API to save time.
  const token = await tokenFor(user);
  for (const amount of ['11.00', '12.00', '13.00']) {
    const r = await apiCall('POST', '/v1/deposits', { token, body: { amount }, headers: { 'idempotency-key': `h-${amount}-${Date.now()}` } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  await go(page, 'history?limit=2', 'History');
  const rows = page.locator('#h-list > li');
  await expect(rows).toHaveCount(2);
  await expect(rows.first()).toContainText('+13.00 coins'); // newest first
  const more = page.getByRole('button', { name: 'Show more' });
  await more.click();
  await expect(rows).toHaveCount(3);
  await expect(rows.nth(2)).toContainText('+11.00 coins');
  await expect(more).toBeHidden();

  await page.getByLabel('Status').selectOption('COMPLETED');
  await page.getByRole('button', { name: 'Apply' }).click();
  await expect(page.locator('#h-empty')).toBeVisible();
  await expect(rows).toHaveCount(0);

  await page.getByLabel('Status').selectOption('PENDING');
  await page.getByLabel('Type').selectOption('DEPOSIT');
  await page.getByRole('button', { name: 'Apply' }).click();
  await expect(rows).toHaveCount(2);
  await rows.first().getByRole('link').click();
  await page.getByRole('heading', { name: 'Movement', level: 1 }).waitFor();
  await expect(page.locator('#detail')).toContainText(/Deposit[\s\S]*\+13\.00 coins[\s\S]*Pending/);
  await expect(page.getByRole('link', { name: 'Pay now' })).toBeVisible();
});
