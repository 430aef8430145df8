// Bank accounts and withdrawals in a real browser against the real local system: coins bought
// on the Revio sandbox's checkout, identity verified with the KYC sandbox, a bank account added,
// and a withdrawal followed until the payout settles. The Revio sandbox's bank decides by
// account number (tools/sandbox/revio.py): 110000001 is paid, 910000001 is rejected. Locally a
// new account may be used at once (no cooling-off period).
import { webTest, signUp, go, buyCoins, expect, assert } from './harness.mjs';

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const letter = () => LETTERS[Math.floor(Math.random() * 26)];

/** Verifies the person's identity through the KYC screen (a PAN the sandbox verifies at once). */
async function verifyIdentity(page) {
  await page.getByRole('heading', { name: 'Verify your identity', level: 1 }).waitFor();
  await page.getByLabel('PAN', { exact: true }).fill(`${letter()}${letter()}${letter()}P${letter()}3333${letter()}`);
  await page.getByLabel('Full name as on the PAN card').fill('Ada Lovelace');
  await page.getByLabel('Date of birth').fill('1990-12-10');
  await page.getByLabel('I agree to my PAN being checked').check();
  await page.getByRole('button', { name: 'Verify' }).click();
  await expect(page.locator('#kyc-badge')).toHaveText('Verified', { timeout: 30_000 });
}

/** Adds a bank account on the bank accounts screen; answers its masked number. */
async function addBankAccount(page, number) {
  await go(page, 'bank', 'Bank accounts');
  await page.getByLabel('Account holder').fill('Ada Lovelace');
  await page.getByLabel('Account number').fill(number);
  await page.getByLabel('Branch code').fill('250655');
  await page.getByLabel('Account type').selectOption('savings');
  await page.getByRole('button', { name: 'Add account' }).click();
  const masked = 'xxxxx' + number.slice(-4);
  const item = page.locator('#bank-list li', { hasText: masked });
  await expect(item).toContainText('Ready for withdrawals.');
  await expect(item).toContainText('Savings · branch 250655');
  assert.ok(!(await page.locator('#bank-list').innerText()).includes(number), 'the account number is shown masked only');
  await expect(page.getByLabel('Account number')).toHaveValue(''); // the form is cleared after success
  return masked;
}

/** Requests a withdrawal on the withdrawals screen. */
async function withdraw(page, amount, masked) {
  await go(page, 'withdrawals', 'Withdraw coins');
  const value = await page.locator('#wd-account option', { hasText: masked }).getAttribute('value');
  await page.getByLabel('To bank account').selectOption(value);
  await page.getByLabel('Amount in coins').fill(amount);
  await page.getByRole('button', { name: 'Withdraw' }).click();
}

webTest('a verified person adds a bank account, withdraws, and sees the payout completed', async ({ newPage }) => {
  const page = await newPage();
  await signUp(page);
  await buyCoins(page, 100);
  const masked = await addBankAccount(page, '110000001');

  // Not verified yet: the screen says so, and the refusal is a sentence that says what to do.
  await withdraw(page, '30', masked);
  await expect(page.locator('#wd-kyc')).toBeVisible();
  const alert = page.locator('#wd-error');
  await expect(alert).toHaveText('Verify your identity before withdrawing: open “Verify identity”, then try again.');
  await expect(page.getByLabel('Amount in coins')).toHaveValue('30');
  await page.locator('#wd-kyc').getByRole('link', { name: 'Verify identity' }).click();
  await verifyIdentity(page);

  // More than is available: refused, nothing held, the amount stays for correcting.
  await withdraw(page, '1000', masked);
  await expect(alert).toContainText('You do not have enough available coins for this withdrawal.');
  await expect(page.getByLabel('Amount in coins')).toHaveValue('1000');
  await expect(page.locator('#wd-available')).toHaveText('100.00 coins');

  await page.getByLabel('Amount in coins').fill('30');
  await page.getByRole('button', { name: 'Withdraw' }).click();
  await expect(alert).toBeHidden();
  const item = page.locator('#wd-list li').first();
  await expect(item).toContainText(`30.00 coins to ${masked}`);
  // Followed without reloading until the bank has paid it.
  await expect(item.locator('.status')).toHaveText('Completed', { timeout: 45_000 });
  await expect(item).toContainText('Paid into your bank account.');
  await expect(page.locator('#wd-available')).toHaveText('70.00 coins');
  await expect(page.locator('#hdr-balance')).toHaveText('70.00 coins');
  await expect(item.getByRole('button', { name: /Cancel/ })).toHaveCount(0);

  // The wallet and the history agree.
  await go(page, 'wallet', 'Wallet');
  await expect(page.locator('#w-balance')).toHaveText('70.00 coins');
  await expect(page.locator('#w-held')).toHaveText('0.00 coins');
});

webTest('a withdrawal to an account the bank rejects fails in words and the coins come back', async ({ newPage }) => {
  const page = await newPage();
  await signUp(page);
  await buyCoins(page, 60);
  await go(page, 'kyc', 'Verify your identity');
  await verifyIdentity(page);
  const masked = await addBankAccount(page, '910000001');

  await withdraw(page, '25', masked);
  const item = page.locator('#wd-list li').first();
  await expect(item).toContainText(`25.00 coins to ${masked}`);
  await expect(item.locator('.status')).toHaveText('Failed', { timeout: 45_000 });
  await expect(item).toContainText('The bank rejected this account, so nothing was paid. The coins are back in your available balance');
  await expect(page.locator('#wd-available')).toHaveText('60.00 coins');

  await go(page, 'wallet', 'Wallet');
  await expect(page.locator('#w-available')).toHaveText('60.00 coins');
  await expect(page.locator('#w-balance')).toHaveText('60.00 coins');
  await expect(page.locator('#w-held')).toHaveText('0.00 coins');
});
