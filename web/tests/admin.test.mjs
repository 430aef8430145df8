// The operators' screen in a real browser against the real local system: only an administrator
// sees it; it shows the dead-letter queue depths, and adjusts a wallet by e-mail with a reason
// (the audit trail), the adjusted person seeing the coins in their own wallet.
import { webTest, signUp, signIn, go, expect, assert, admin, eventually, API } from './harness.mjs';

const REVIO = process.env.PURSE_REVIO_URL;

/**
 * Money paid on our Revio brand for a purchase no deposit of ours belongs to (made outside
 * Purse, as anyone holding the API key could): its webhook opens an UNKNOWN_PURCHASE_PAID case.
 */
async function paidStrangerPurchase() {
  const resp = await fetch(`${REVIO}/api/v1/purchases/`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${process.env.REVIO_SANDBOX_API_KEY || 'sandbox-revio-key'}` },
    body: JSON.stringify({
      brand_id: process.env.REVIO_SANDBOX_BRAND_ID || 'sandbox-brand',
      client: { email: 'mallory@example.com' },
      purchase: { currency: 'ZAR', products: [{ name: 'coins', price: 3300 }] },
      reference: `made-outside-purse-${Date.now()}`,
      success_callback: `${API}/webhooks/revio`,
    }),
  });
  assert.equal(resp.status, 201, await resp.clone().text());
  const { id } = await resp.json();
  const paid = await fetch(`${REVIO}/_sandbox/purchases/${id}/pay`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(paid.status, 200, await paid.text());
  return id;
}

webTest('an administrator sees the queues and credits a wallet with a reason; others see no admin screen', async ({ newPage }) => {
  const page = await newPage();
  const person = await signUp(page);
  await expect(page.getByRole('link', { name: 'Admin' })).toHaveCount(0);

  const setup = await newPage();
  const boss = await signUp(setup);
  await admin('grant-admin', boss.email);
  const op = await newPage(); // a new sign-in: roles come from the token
  await signIn(op, boss);
  await op.getByRole('link', { name: 'Admin' }).first().click();
  await op.getByRole('heading', { name: 'Admin', level: 1 }).waitFor();

  // Every dead-letter queue with its depth, and the total in words.
  await expect(op.locator('#adm-queues tbody tr')).toHaveCount(5);
  await expect(op.locator('#adm-queues tbody')).toContainText('payouts-dlq');
  await expect(op.locator('#adm-q-total')).toHaveText(/^(Nothing is parked\.|\d+ messages? parked\.)$/);
  await expect(op.locator('#adm-c-none, #adm-cases li').first()).toBeVisible();

  // A deposit that needs a person: refunded with a reason, after which it is no longer listed.
  const purchase = await paidStrangerPurchase();
  const caseItem = op.locator('#adm-cases li', { hasText: purchase });
  await eventually(async () => {
    await op.getByRole('button', { name: 'Refresh everything' }).click();
    await expect(op.getByRole('button', { name: 'Refresh everything' })).toBeVisible(); // not busy
    return (await caseItem.count()) === 1;
  }, { timeout: 30_000, interval: 1000, message: 'the case to be listed' });
  await expect(caseItem).toContainText('Paid purchase with no deposit of ours');
  await expect(caseItem).toContainText('33.00');
  await expect(caseItem.getByLabel('Crediting the user’s wallet')).toBeVisible();
  assert.ok(await caseItem.getByLabel('Crediting the user’s wallet').isDisabled(), 'no user to credit: refund only');
  await caseItem.getByRole('button', { name: 'Resolve case' }).click();
  await expect(caseItem.locator('[role=alert]')).toHaveText('Write a reason (up to 500 characters); it is kept in the audit trail.');
  await caseItem.getByLabel('Reason').fill('Purchase made outside Purse; refunding the payer');
  await caseItem.getByRole('button', { name: 'Resolve case' }).click();
  await expect(caseItem).toHaveCount(0, { timeout: 20_000 });

  // A reason is required, and the form keeps what was typed.
  await op.getByLabel('User id or e-mail').fill(person.email);
  await op.getByLabel('Amount in coins').fill('12.5');
  await op.getByRole('button', { name: 'Make adjustment' }).click();
  await expect(op.locator('#adm-a-error')).toHaveText('Write a reason (up to 500 characters); it is kept in the audit trail.');
  await expect(op.getByLabel('Amount in coins')).toHaveValue('12.5');

  const reason = `Goodwill credit for the outage (ticket ${Date.now()})`;
  await op.getByLabel('Reason (kept in the audit trail)').fill(reason);
  await op.getByRole('button', { name: 'Make adjustment' }).click();
  await expect(op.locator('#adm-user-found')).toHaveText(`Credited 12.50 coins for ${person.email}; available now 12.50 coins.`);
  await expect(op.locator('#adm-adjustments li', { hasText: reason })).toContainText('+12.50 coins');

  // A debit beyond the available balance is refused in words and takes nothing.
  await op.getByLabel('Debit (take coins)').check();
  await op.getByLabel('Amount in coins').fill('100');
  await op.getByLabel('Reason (kept in the audit trail)').fill('Clawback test');
  await op.getByRole('button', { name: 'Make adjustment' }).click();
  await expect(op.locator('#adm-a-error')).toHaveText('The user’s available balance does not cover this debit. Nothing was taken.');
  assert.equal(await op.getByLabel('Amount in coins').inputValue(), '100');

  // The person sees the credit in their own wallet.
  await go(page, 'history', 'History');
  await go(page, 'wallet', 'Wallet');
  await expect(page.locator('#w-available')).toHaveText('12.50 coins');
});
