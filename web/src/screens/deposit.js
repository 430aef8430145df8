// Buy coins (#/deposit): create a deposit (POST /v1/deposits with an Idempotency-Key), open
// Revio's checkout, and on the way back (#/deposit/<id>?result=paid|failed) follow the deposit
// until Revio's webhook settles it.
import { newKey } from '../api.js';
import { esc } from '../format.js';

const PICKS = ['50', '100', '250', '500'];
let attempt = null; // {amount, key}: a retry of the same amount reuses its key (one deposit)

// Why a deposit failed (Transaction.failure_reason), for people.
const FAILURES = {
  payment_failed: 'Your payment was declined. No coins were added and no money was taken. You can try again, or use another card.',
  provider_unavailable: 'The payment service did not answer. No coins were added; try again in a few minutes.',
  provider_rejected: 'The payment service refused this payment. No coins were added.',
  amount_mismatch: 'The amount paid did not match this deposit, so it was not added. Please contact support.',
  never_reached_provider: 'This deposit never reached the payment service. Nothing was charged; start a new one.',
  expired: 'This payment page expired before it was paid. Start a new deposit.',
};
const DECLINED = FAILURES.payment_failed;

function buyForm(ctx) {
  return `<form class="card stack" id="buy" novalidate>
    <div><label for="amount">Coins to buy</label>
      <input id="amount" name="amount" inputmode="decimal" autocomplete="off" required aria-describedby="amount-hint" placeholder="100">
      <p class="hint" id="amount-hint">One coin costs R1. You pay on Revio's secure page.</p></div>
    <fieldset><legend>Quick amounts</legend><div class="picks">${PICKS.map((p) => `<button type="button" data-pick="${p}">${esc(ctx.money(p, 'COIN'))}</button>`).join('')}</div></fieldset>
    <p class="error" role="alert"></p>
    <button class="primary" type="submit">Continue to payment</button>
  </form>`;
}

function wireForm(el, ctx) {
  const f = el.querySelector('#buy');
  const err = f.querySelector('.error');
  f.addEventListener('click', (ev) => {
    const pick = ev.target.closest('[data-pick]');
    if (pick) {
      f.amount.value = pick.dataset.pick;
      f.amount.focus();
    }
  });
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    const amount = f.amount.value.trim();
    if (!attempt || attempt.amount !== amount) attempt = { amount, key: newKey() };
    const btn = f.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      const txn = await ctx.api('POST', '/v1/deposits', { body: { amount }, idempotencyKey: attempt.key });
      attempt = null;
      if (!txn.checkout_url) throw { code: 'payment_provider_unavailable' };
      btn.textContent = 'Opening the payment page…';
      location.assign(txn.checkout_url);
    } catch (e) {
      // A final refusal gets a new key next time; a retryable one keeps it, so a retry is the same deposit.
      if (e.status && e.status < 500 && e.code !== 'idempotency_request_in_progress') attempt = null;
      ctx.showError(err, e);
      btn.disabled = false;
    }
  });
}

export default {
  route: 'deposit',
  title: 'Buy coins',
  nav: true,
  errors: {},
  mount(el, ctx, id, query) {
    if (!id) {
      el.innerHTML = `<h1>Buy coins</h1>${buyForm(ctx)}`;
      wireForm(el, ctx);
      return;
    }
    const result = query && query.get('result');
    el.innerHTML = `<h1>Buy coins</h1>
      <div class="card">
        <p id="dep-status" role="status" aria-live="polite">${result === 'failed' ? esc(DECLINED) : 'Payment received. Waiting for the payment service to confirm it…'}</p>
        <dl class="figures" id="dep-figures"></dl>
        <p class="error" role="alert"></p>
        <div class="row"><a class="button" href="#/wallet">Wallet</a><a class="button" href="#/history/${esc(id)}">Details</a></div>
      </div>
      <div id="again" hidden><h2>Try again</h2>${buyForm(ctx)}</div>`;
    const status = el.querySelector('#dep-status');
    const err = el.querySelector('.error');
    if (result === 'failed') {
      status.className = 'bad';
      el.querySelector('#again').hidden = false;
      wireForm(el, ctx);
    } else {
      wireForm(el, ctx);
    }
    let stopped = false;
    let timer = 0;
    const started = Date.now();
    const poll = async () => {
      if (stopped) return;
      try {
        const t = await ctx.api('GET', '/v1/transactions/' + encodeURIComponent(id));
        if (stopped) return;
        err.textContent = '';
        el.querySelector('#dep-figures').innerHTML = `<dt>Amount</dt><dd>${esc(ctx.money(t.amount, t.currency))}</dd><dt>Status</dt><dd id="dep-state">${esc(t.status)}</dd>`;
        if (t.status === 'COMPLETED') {
          status.className = 'ok';
          const w = await ctx.wallet.refresh().catch(() => null);
          status.textContent = `${ctx.money(t.amount, t.currency)} added to your wallet.` + (w ? ` Available now: ${ctx.money(w.available, w.currency)}.` : '');
          return;
        }
        if (t.status === 'FAILED') {
          status.className = 'bad';
          status.textContent = FAILURES[t.failure_reason] || 'This deposit failed. No coins were added.';
          el.querySelector('#again').hidden = false;
          return;
        }
        if (result !== 'failed' && Date.now() - started > 60000) {
          status.textContent = 'The payment service has not confirmed this payment yet. It will show in your history once it does; you can leave this page.';
        }
      } catch (e) {
        if (stopped) return;
        ctx.showError(err, e);
        if (e.code === 'not_found') return;
      }
      const wait = Date.now() - started < 20000 ? 1000 : 3000;
      if (Date.now() - started < 10 * 60000) timer = setTimeout(poll, wait);
    };
    poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  },
};
