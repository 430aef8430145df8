// Identity verification (KYC) in a real browser against the real local system and the KYC
// sandbox, whose answer depends on the PAN's four digits (tools/sandbox/kyc.py): 1111 is
// checked asynchronously and verified (the provider's webhook brings the result), 2222 is
// rejected for a name mismatch, 3333 is verified at once. Every PAN is fresh: a PAN belongs to
// one account.
import { webTest, signUp, go, expect, assert } from './harness.mjs';

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const letter = () => LETTERS[Math.floor(Math.random() * 26)];
/** A person's PAN (fourth letter P) nobody has used, with the sandbox's outcome digits. */
const pan = (digits) => `${letter()}${letter()}${letter()}P${letter()}${digits}${letter()}`;
const masked = (p) => `${p.slice(0, 3)}xxxxx${p.slice(8)}`;

async function openKyc(page) {
  await page.getByRole('link', { name: 'Verify identity' }).first().click();
  await page.getByRole('heading', { name: 'Verify your identity', level: 1 }).waitFor();
}

async function fill(page, { pan: p, name = 'Ada Lovelace', dob = '1990-12-10' }) {
  await page.getByLabel('PAN', { exact: true }).fill(p);
  await page.getByLabel('Full name as on the PAN card').fill(name);
  await page.getByLabel('Date of birth').fill(dob);
  await page.getByLabel('I agree to my PAN being checked').check();
}

webTest('a person verifies their identity with a PAN and sees it go from checking to verified', async ({ newPage }) => {
  const page = await newPage();
  await signUp(page);
  await openKyc(page);
  const card = page.locator('#kyc-status-card');
  await expect(page.locator('#kyc-badge')).toHaveText('Not started');

  // A company's PAN (fourth letter not P) is refused in a sentence; what was typed stays.
  await fill(page, { pan: 'ABCDE1234F' });
  await page.getByRole('button', { name: 'Verify' }).click();
  const alert = page.locator('#kyc-error');
  await expect(alert).toContainText('Enter your PAN as on the card');
  assert.ok(!(await alert.innerText()).includes('{'), 'no raw JSON');
  await expect(page.getByLabel('Full name as on the PAN card')).toHaveValue('Ada Lovelace');
  await expect(page.getByLabel('Date of birth')).toHaveValue('1990-12-10');
  await expect(page.getByLabel('PAN', { exact: true })).toHaveValue('ABCDE1234F');

  // A good PAN: PENDING while the provider checks, then VERIFIED when its webhook arrives,
  // without reloading.
  const good = pan('1111');
  await page.getByLabel('PAN', { exact: true }).fill(good.toLowerCase()); // lower case is forgiven
  await page.getByLabel('I agree to my PAN being checked').check();
  await page.getByRole('button', { name: 'Verify' }).click();
  await expect(alert).toBeHidden();
  await expect(page.locator('#kyc-badge')).toHaveText(/Checking|Verified/);
  await expect(page.locator('#kyc-badge')).toHaveText('Verified', { timeout: 30_000 });
  await expect(page.locator('#kyc-status')).toContainText(`Your identity is verified (PAN ${masked(good)})`);
  assert.equal(await card.getAttribute('data-status'), 'VERIFIED');
  await expect(page.locator('#kyc-form')).toBeHidden();

  // It stays verified after a reload (the API is the truth, not the page).
  await page.reload();
  await page.getByRole('heading', { name: 'Verify your identity', level: 1 }).waitFor();
  await expect(page.locator('#kyc-badge')).toHaveText('Verified');
  assert.ok(!(await page.content()).includes(good), 'the full PAN is never shown again');
});

webTest('a rejected check shows the reason, keeps the details, and a resubmission verifies', async ({ newPage }) => {
  const page = await newPage();
  await signUp(page);
  await openKyc(page);

  const rejected = pan('2222');
  await fill(page, { pan: rejected, name: 'Ada Lovelase' });
  await page.getByRole('button', { name: 'Verify' }).click();
  await expect(page.locator('#kyc-badge')).toHaveText('Rejected', { timeout: 30_000 });
  await expect(page.locator('#kyc-status')).toContainText(
    'Your identity check was rejected (PAN ' + masked(rejected) + '): the name you entered does not match the name on the PAN card.',
  );
  // The form is offered again, for a resubmission, with what was typed.
  await expect(page.getByRole('heading', { name: 'Correct your details and submit again' })).toBeVisible();
  await expect(page.getByLabel('Full name as on the PAN card')).toHaveValue('Ada Lovelase');
  await expect(page.getByLabel('Date of birth')).toHaveValue('1990-12-10');

  // Consent is asked for each submission.
  await page.getByLabel('Full name as on the PAN card').fill('Ada Lovelace');
  await page.getByRole('button', { name: 'Submit again' }).click();
  await expect(page.locator('#kyc-error')).toHaveText('Tick the box to agree to your PAN being checked.');

  const good = pan('3333'); // the sandbox verifies it at once
  await page.getByLabel('PAN', { exact: true }).fill(good);
  await page.getByLabel('I agree to my PAN being checked').check();
  await page.getByRole('button', { name: 'Submit again' }).click();
  await expect(page.locator('#kyc-badge')).toHaveText('Verified', { timeout: 30_000 });
  await expect(page.locator('#kyc-status')).toContainText(`(PAN ${masked(good)})`);
  await expect(page.locator('#kyc-form')).toBeHidden();

  // Another account cannot use the verified PAN: its own sentence, not a code.
  const other = await newPage();
  await signUp(other);
  await openKyc(other);
  await fill(other, { pan: good });
  await other.getByRole('button', { name: 'Verify' }).click();
  await expect(other.locator('#kyc-error')).toHaveText('This PAN is already verified on another account. If it is yours, contact support.');
  await expect(other.getByLabel('PAN', { exact: true })).toHaveValue(good);
});
