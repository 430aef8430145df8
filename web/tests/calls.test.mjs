// Paid calls in two real browsers (two contexts: two people) against the real local system: the
// caller buys coins through the Revio sandbox's checkout, finds the callee by referral code,
// calls; the callee's app rings wherever they are and they answer from the keyboard; WebRTC
// connects peer to peer and audio flows both ways (getStats: inbound audio bytes growing on both
// sides); coins move every billing period (run.sh bills a "minute" every 3 s); hang up; both
// histories show the call. A second test covers the calls that cannot be paid, and a socket that
// drops and comes back.
import { webTest, signUp, go, buyCoins, expect, assert, eventually } from './harness.mjs';

const PERIOD_SECONDS = Number(process.env.PURSE_BILLING_PERIOD_SECONDS || 3);

/** Opens the Calls screen and waits until the page's call socket is open. */
async function openCalls(page) {
  await go(page, 'calls', 'Calls');
  await expect(page.locator('#c-online')).toContainText('Online', { timeout: 20_000 });
}

/** The caller finds the callee by `idOrCode` and presses Call. */
async function call(caller, idOrCode) {
  await caller.getByLabel('User id or referral code').fill(idOrCode);
  await caller.getByRole('button', { name: 'Find' }).click();
  await expect(caller.locator('#c-found-price')).toHaveText('10.00 coins');
  await caller.getByRole('button', { name: 'Call', exact: true }).click();
}

/** The callee's incoming-call dialog (shown on whatever screen they are). */
const incoming = (page) => page.getByRole('alertdialog', { name: 'Incoming call' });
const dock = (page) => page.locator('#call-dock');

/** Inbound audio bytes of the page's call so far (RTCPeerConnection.getStats()). */
const inboundAudioBytes = (page) =>
  page.evaluate(async () => {
    const pc = window.__purseCall && window.__purseCall.pc;
    if (!pc) return -1;
    let bytes = 0;
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'audio') bytes += r.bytesReceived || 0;
    });
    return bytes;
  });

/** Two new people, each signed up in a browser context of their own: [alice, bob]. */
async function twoPeople(newPage) {
  const pages = [await newPage(), await newPage()];
  for (const page of pages) await signUp(page);
  return pages;
}

const connectionState = (page) => page.evaluate(() => (window.__purseCall && window.__purseCall.pc ? window.__purseCall.pc.connectionState : 'none'));

webTest('two people call: ring, answer, talk over WebRTC, coins move each minute, hang up, both histories show it', async ({ newPage }) => {
  const [alice, bob] = await twoPeople(newPage);
  await buyCoins(alice, 100);

  // Bob shares his referral code and waits, on another screen: the call must reach him anywhere.
  await openCalls(bob);
  const code = (await bob.locator('#c-my-code').innerText()).trim();
  assert.match(code, /^[A-Z2-9]{8}$/);
  await go(bob, 'wallet', 'Wallet');

  // Alice finds Bob by his code as a person would type it, and calls.
  await openCalls(alice);
  await call(alice, `${code.slice(0, 4)}-${code.slice(4)}`.toLowerCase());
  await expect(dock(alice)).toContainText('Ringing…');

  // Bob's app rings on the wallet screen; focus is on Accept, so Enter answers.
  await expect(incoming(bob)).toBeVisible();
  await expect(incoming(bob)).toContainText('They pay 10.00 coins a minute.');
  await eventually(async () => (await bob.evaluate(() => document.activeElement && document.activeElement.textContent)) === 'Accept', {
    timeout: 5_000,
    message: 'the focus on Accept',
  });
  await bob.keyboard.press('Enter');

  // Both in the call; WebRTC connects and audio flows into each side.
  await expect(dock(alice)).toContainText('In a call');
  await expect(dock(bob)).toContainText('In a call');
  for (const page of [alice, bob]) {
    await eventually(async () => (await connectionState(page)) === 'connected', { timeout: 20_000, message: 'WebRTC connected' });
  }
  for (const [page, who] of [[alice, 'caller'], [bob, 'callee']]) {
    const before = await inboundAudioBytes(page);
    assert.ok(before >= 0, `the ${who}'s call has inbound audio stats`);
    await eventually(async () => (await inboundAudioBytes(page)) > before, { timeout: 10_000, message: `audio reaching the ${who}` });
  }
  await expect(dock(alice)).toContainText('Connected.');

  // Every period a minute is billed: the caller's dock and the wallet in the header move
  // together (the next minute held: available = 100 - 10 x (minutes + 1)); the callee earns 70 %.
  await expect(alice.locator('#cd-minutes')).toHaveText('2', { timeout: (3 * PERIOD_SECONDS + 10) * 1000 });
  await eventually(async () => {
    const [minutes, available] = await alice.evaluate(() => [document.querySelector('#cd-minutes').textContent, document.querySelector('#hdr-balance').textContent]);
    return available === `${100 - 10 * (Number(minutes) + 1)}.00 coins`;
  }, { timeout: 5_000, message: 'the header shows the coins left after each minute' });
  await expect(alice.locator('#cd-amount')).toContainText(/^[1-9]0\.00 coins$/);
  await eventually(async () => {
    const [minutes, earned] = await bob.evaluate(() => [document.querySelector('#cd-minutes').textContent, document.querySelector('#cd-amount').textContent]);
    return Number(minutes) >= 2 && earned === `${7 * Number(minutes)}.00 coins`;
  }, { timeout: 5_000, message: 'the callee sees 70 % of each minute as earned so far' });
  assert.match(await alice.locator('#cd-timer').innerText(), /^0:\d\d$/);

  // Alice hangs up: both are told, with what it cost and earned.
  await alice.getByRole('button', { name: 'Hang up' }).click();
  await expect(dock(alice).locator('#cd-reason')).toHaveText('You hung up.');
  await expect(dock(bob).locator('#cd-reason')).toHaveText('The other person hung up.');
  const paid = (await alice.locator('#cd-amount').innerText()).replace(' coins', '');
  const earned = (await bob.locator('#cd-amount').innerText()).replace(' coins', '');
  const cents = (s) => Math.round(Number(s) * 100);
  assert.ok(cents(paid) >= 2000, `paid at least two minutes: ${paid}`);
  assert.equal(cents(earned), Math.floor((cents(paid) * 70) / 100), `the callee earns 70 % of ${paid}`);
  const left = 10000 - cents(paid);
  await expect(alice.locator('#hdr-balance')).toHaveText(`${Math.floor(left / 100)}.${String(left % 100).padStart(2, '0')} coins`);
  await alice.getByRole('button', { name: 'Close' }).click();
  await expect(dock(alice)).toBeHidden();

  // Both call lists and both histories show the call.
  await expect(alice.locator('#c-recent')).toContainText(/Outgoing · Ended/);
  await openCalls(bob);
  await expect(bob.locator('#c-recent')).toContainText(/Incoming · Ended/);
  await go(alice, 'history', 'History');
  await expect(alice.locator('#h-list')).toContainText(/Call charge/);
  // The earning is credited when the call is settled: open the history afresh until it is listed.
  const earning = new RegExp(`Call earning[\\s\\S]*\\+${earned.replace('.', '\\.')} coins`);
  await eventually(async () => {
    await go(bob, 'wallet', 'Wallet');
    await go(bob, 'history', 'History');
    await expect(bob.locator('#h-list')).toContainText(earning, { timeout: 3_000 });
    return true;
  }, { timeout: 30_000, interval: 500, message: 'the call earning in the callee’s history' });
});

webTest('calls that cannot be paid say so: no coins, a declined call, coins running out mid-call; a dropped socket comes back', async ({ newPage }) => {
  const [alice, bob] = await twoPeople(newPage);
  await openCalls(bob);
  const bobId = (await bob.locator('#c-my-id').innerText()).trim();
  // Bob's socket drops: the app connects again with a fresh ticket and he can still be called.
  await bob.evaluate(() => window.__purseSocket.close());
  await expect(bob.locator('#c-online')).toContainText('Connecting to calls…');
  await expect(bob.locator('#c-online')).toContainText('Online');

  // No coins: the call is not placed, and the app says why and offers to buy coins.
  await openCalls(alice);
  await call(alice, bobId);
  await expect(dock(alice).locator('#cd-reason')).toHaveText('You do not have enough coins available for the first minute of this call. Buy coins, then call again.');
  await expect(dock(alice).getByRole('button', { name: 'Buy coins' })).toBeVisible();
  await alice.getByRole('button', { name: 'Close' }).click();

  // 15 coins: one minute at 10.00 and a little over.
  await buyCoins(alice, 15);
  await openCalls(alice);
  await call(alice, bobId);
  await incoming(bob).getByRole('button', { name: 'Decline' }).click();
  await expect(dock(alice).locator('#cd-reason')).toHaveText('Your call was declined. Nothing was charged.');
  await expect(dock(bob).locator('#cd-reason')).toHaveText('You declined the call.');
  await alice.getByRole('button', { name: 'Close' }).click();
  await bob.getByRole('button', { name: 'Close' }).click();

  // Answered: the first minute is paid, the second cannot be held, so the call ends then.
  await alice.getByRole('button', { name: 'Call', exact: true }).click();
  await incoming(bob).getByRole('button', { name: 'Accept' }).click();
  await expect(dock(alice)).toContainText('In a call');
  await expect(dock(alice).locator('#cd-reason')).toHaveText(
    'Your coins ran out, so the call ended at the end of the last minute you could pay for. Buy coins to talk longer.',
    { timeout: (PERIOD_SECONDS + 15) * 1000 },
  );
  await expect(dock(bob).locator('#cd-reason')).toHaveText('The call ended because the caller ran out of coins.');
  await expect(alice.locator('#cd-amount')).toHaveText('10.00 coins');
  await expect(alice.locator('#hdr-balance')).toHaveText('5.00 coins');
  await expect(bob.locator('#cd-amount')).toHaveText('7.00 coins');
});
