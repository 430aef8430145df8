// Signing up, in and out in a real browser: the session survives a reload, the access token is
// renewed before it expires without the person noticing, and signing out ends the session.
import { webTest, signUp, signIn, open, go, expect, assert, uniqueEmail, PASSWORD, BASE, apiCall, tokenFor } from './harness.mjs';

webTest('a session survives a reload and ends with sign-out', async ({ newPage }) => {
  const page = await newPage();
  const user = await signUp(page);
  await expect(page.locator('#who')).toContainText(user.email); // shown from 480 px up

  await page.reload();
  await page.getByRole('heading', { name: 'Wallet', level: 1 }).waitFor();
  await expect(page.locator('#w-available')).toHaveText('0.00 coins');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  await page.reload();
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  // A signed-out person asking for a screen is sent to sign in, then brought there.
  await go(page, 'history');
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  await page.getByLabel('E-mail').fill(user.email);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'History', level: 1 }).waitFor();
});

webTest('the access token is renewed silently before it expires', async ({ newPage }) => {
  const page = await newPage();
  await page.clock.install();
  await signUp(page);
  // 15-minute tokens are renewed a minute early: jump 14 minutes and a half.
  const refreshed = page.waitForResponse((r) => r.url().endsWith('/v1/auth/refresh') && r.request().method() === 'POST');
  await page.clock.fastForward('14:30');
  assert.equal((await refreshed).status(), 200);
  // The next calls carry the new token: the screens load, nobody is sent to sign in.
  await go(page, 'history', 'History');
  await expect(page.locator('#h-empty')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Sign out' })).toBeVisible();
});

webTest('sign-in and sign-up errors are sentences and the form keeps what was typed', async ({ newPage }) => {
  const page = await newPage();
  const user = await signUp(page);
  await page.getByRole('button', { name: 'Sign out' }).click();

  await page.getByLabel('E-mail').fill(user.email);
  await page.getByLabel('Password', { exact: true }).fill('not-the-password-1');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toHaveText('The e-mail or the password is not right.');
  await expect(page.getByLabel('E-mail')).toHaveValue(user.email);

  await open(page, 'signup');
  await page.getByLabel('E-mail').fill(user.email);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByRole('alert')).toHaveText('An account with this e-mail already exists. Sign in instead.');

  const email = uniqueEmail();
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password', { exact: true }).fill('aaaaaaaaaaaa');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByRole('alert')).toContainText('Choose a stronger password');
  await expect(page.getByLabel('E-mail')).toHaveValue(email);
  await signIn(page, user);
});

webTest('a referral link opens sign-up with the code filled in, and the code is accepted', async ({ newPage }) => {
  const friend = await newPage();
  const referrer = await signUp(friend);
  const me = await apiCall('GET', '/v1/me', { token: await tokenFor(referrer) });
  const code = me.body.referral_code;

  // The link the API hands out: <FrontendUrl>/signup?ref=CODE, a path the app turns into its screen.
  const page = await newPage();
  await page.goto(BASE + 'signup?ref=' + code);
  await page.getByRole('heading', { name: 'Create an account', level: 1 }).waitFor();
  await expect(page.getByLabel('Referral code (optional)')).toHaveValue(code);
  assert.equal(new URL(page.url()).pathname, '/app/', 'the address is the app\'s own again');
  await page.getByLabel('E-mail').fill(uniqueEmail('referee'));
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Wallet', level: 1 }).waitFor();
});
