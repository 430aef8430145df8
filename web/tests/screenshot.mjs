// Takes the README's screenshot of the app (docs/webapp-wallet.png) at 360 px wide, after a
// real purchase. Not a test; run it with: web/tests/run.sh web/tests/screenshot.mjs
import { join } from 'node:path';
import { webTest, signUp, go, expect, buyCoins } from './harness.mjs';

const out = join(import.meta.dirname, '..', '..', 'docs', 'webapp-wallet.png');

webTest('screenshot of the wallet for the README', async ({ newPage }) => {
  const page = await newPage({ viewport: { width: 360, height: 640 } });
  await signUp(page, { email: 'asha@example.com' });
  await buyCoins(page, 250);
  await go(page, 'wallet', 'Wallet');
  await expect(page.locator('#w-latest li')).toContainText('Deposit');
  await page.locator('h1').blur();
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
});
