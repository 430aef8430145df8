// The wallet (#/wallet): balance, available and held, live (a call's billing frames update it
// through ctx.wallet), and the latest movements.
import { esc, label, dateTime } from '../format.js';

export function movementRow(t, ctx) {
  // A failed movement never moved money: no sign, greyed.
  const failed = t.status === 'FAILED';
  const sign = failed ? '' : t.direction === 'debit' ? '−' : t.direction === 'credit' ? '+' : '';
  const cls = failed ? 'muted' : t.direction === 'credit' ? 'credit' : '';
  return `<li><a href="#/history/${esc(t.id)}">
    <span><span class="what">${esc(label(t.type))}</span><br><span class="muted">${esc(dateTime(t.created_at))} · ${esc(label(t.status))}</span></span>
    <span class="amount ${cls}">${sign}${esc(ctx.money(t.amount, t.currency))}</span></a></li>`;
}

export default {
  route: 'wallet',
  title: 'Wallet',
  nav: true,
  async mount(el, ctx) {
    el.innerHTML = `<h1>Wallet</h1>
    <div class="card">
      <p class="muted" style="margin:0">Available to spend</p>
      <p class="big" id="w-available" style="margin:.1rem 0 .8rem">…</p>
      <dl class="figures">
        <dt>Balance</dt><dd id="w-balance">…</dd>
        <dt>Held for pending payments</dt><dd id="w-held">…</dd>
      </dl>
      <p class="error" role="alert"></p>
      <div class="row"><a class="button primary" href="#/deposit">Buy coins</a><a class="button" href="#/history">History</a></div>
    </div>
    <h2>Latest</h2>
    <ul class="list" id="w-latest"><li class="muted"><span class="item">Loading…</span></li></ul>`;
    const show = (w) => {
      if (!w) return;
      el.querySelector('#w-available').textContent = ctx.money(w.available, w.currency);
      el.querySelector('#w-balance').textContent = ctx.money(w.balance, w.currency);
      el.querySelector('#w-held').textContent = ctx.money(w.held, w.currency);
    };
    const unsubscribe = ctx.wallet.subscribe(show);
    const err = el.querySelector('.error');
    ctx.wallet.refresh().catch((e) => ctx.showError(err, e));
    ctx
      .api('GET', '/v1/transactions', { query: { limit: 5 } })
      .then((page) => {
        el.querySelector('#w-latest').innerHTML = page.items.length
          ? page.items.map((t) => movementRow(t, ctx)).join('')
          : '<li class="muted"><span class="item">Nothing yet. Buy coins to get started.</span></li>';
      })
      .catch((e) => ctx.showError(err, e));
    return unsubscribe;
  },
};
