// History (#/history): the movements, newest first, with filters and "Show more" (the API's
// cursor); #/history/<id> is one movement's detail.
import { esc, label, dateTime } from '../format.js';
import { movementRow } from './wallet.js';

const TYPES = ['DEPOSIT', 'WITHDRAWAL', 'CALL_CHARGE', 'CALL_EARNING', 'REFERRAL_REWARD', 'REWARD', 'GAME_FEE', 'ADJUSTMENT', 'REVERSAL', 'WITHDRAWAL_REVERSAL'];
const STATUSES = ['PENDING', 'COMPLETED', 'FAILED'];
let filters = { type: '', status: '', from: '', to: '' }; // kept while the app is open

const options = (values, chosen, all) =>
  `<option value="">${all}</option>` + values.map((v) => `<option value="${v}"${v === chosen ? ' selected' : ''}>${esc(label(v))}</option>`).join('');

// A local calendar day as the API's RFC 3339 bounds: the whole day, in the person's time zone.
function dayBound(day, end) {
  if (!day) return undefined;
  const d = new Date(day + (end ? 'T23:59:59.999' : 'T00:00:00'));
  return isNaN(d) ? day : d.toISOString();
}

async function detail(el, ctx, id) {
  el.innerHTML = `<h1>Movement</h1><div class="card" id="detail"><p class="muted">Loading…</p></div><p><a href="#/history">Back to history</a></p>`;
  const box = el.querySelector('#detail');
  try {
    const t = await ctx.api('GET', '/v1/transactions/' + encodeURIComponent(id));
    const sign = t.status === 'FAILED' ? '' : t.direction === 'debit' ? '−' : t.direction === 'credit' ? '+' : '';
    const rows = [
      ['Type', label(t.type)],
      ['Amount', sign + ctx.money(t.amount, t.currency)],
      ['Status', label(t.status)],
      ['Description', t.description],
      t.failure_reason && ['Why it failed', ctx.sentence(t.failure_reason, label(t.failure_reason))],
      t.payout_status && ['Payout', label(t.payout_status)],
      t.reference && ['Reference', t.reference],
      ['Created', dateTime(t.created_at)],
      t.completed_at && ['Completed', dateTime(t.completed_at)],
      ['Id', t.id],
    ].filter(Boolean);
    box.innerHTML = `<dl class="figures">${rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd style="word-break:break-word">${esc(v)}</dd>`).join('')}</dl>` +
      (t.status === 'PENDING' && t.checkout_url ? `<p><a class="button primary" href="${esc(t.checkout_url)}">Pay now</a></p>` : '');
  } catch (e) {
    box.innerHTML = '<p role="alert"></p>';
    ctx.showError(box.firstChild, e);
  }
}

export default {
  route: 'history',
  title: 'History',
  nav: true,
  async mount(el, ctx, id, params) {
    if (id) return detail(el, ctx, id);
    // Page size: 20, or #/history?limit=N (1-100).
    const limit = Math.min(100, Math.max(1, Number(params && params.get('limit')) || 20));
    el.innerHTML = `<h1>History</h1>
    <form class="card" id="filters">
      <div class="row" style="align-items:flex-end">
        <div style="flex:1 1 9rem"><label for="f-type">Type</label><select id="f-type" name="type">${options(TYPES, filters.type, 'All types')}</select></div>
        <div style="flex:1 1 9rem"><label for="f-status">Status</label><select id="f-status" name="status">${options(STATUSES, filters.status, 'Any status')}</select></div>
        <div style="flex:1 1 9rem"><label for="f-from">From</label><input type="date" id="f-from" name="from" value="${esc(filters.from)}"></div>
        <div style="flex:1 1 9rem"><label for="f-to">To</label><input type="date" id="f-to" name="to" value="${esc(filters.to)}"></div>
        <button type="submit">Apply</button>
      </div>
    </form>
    <p class="error" role="alert"></p>
    <ul class="list" id="h-list" aria-live="polite"></ul>
    <p id="h-empty" class="muted" hidden>No movements match.</p>
    <p><button type="button" id="h-more" hidden>Show more</button></p>`;
    const list = el.querySelector('#h-list');
    const more = el.querySelector('#h-more');
    const err = el.querySelector('.error');
    const form = el.querySelector('#filters');
    let cursor = null;
    let gone = false;
    const query = () => ({ type: filters.type, status: filters.status, from: dayBound(filters.from, false), to: dayBound(filters.to, true), limit });
    const load = async (reset) => {
      err.textContent = '';
      more.disabled = true;
      try {
        const page = await ctx.api('GET', '/v1/transactions', { query: { ...query(), cursor: reset ? undefined : cursor } });
        if (gone) return;
        if (reset) list.innerHTML = '';
        list.insertAdjacentHTML('beforeend', page.items.map((t) => movementRow(t, ctx)).join(''));
        cursor = page.next_cursor;
        more.hidden = !cursor;
        el.querySelector('#h-empty').hidden = list.children.length > 0;
      } catch (e) {
        if (!gone) ctx.showError(err, e);
        if (e.code === 'invalid_cursor') cursor = null;
      } finally {
        more.disabled = false;
      }
    };
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = (n) => form.elements.namedItem(n).value;
      filters = { type: v('type'), status: v('status'), from: v('from'), to: v('to') };
      cursor = null;
      load(true);
    });
    more.addEventListener('click', () => cursor && load(false));
    await load(true);
    return () => {
      gone = true;
    };
  },
};
