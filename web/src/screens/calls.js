// Calls (#/calls, #/calls/<id or referral code>): find a person by id or referral code and see
// what a minute with them costs (GET /v1/users/{id}), call them, share one's own id and code, set
// one's own price (PUT /v1/me/call-price), and the recent calls (GET /v1/calls, page by page).
// The phone itself (socket, WebRTC, billing) is ../calls/phone.js, opened on sign-in; the call
// is shown by the dock (../calls/dock.js) on every screen.
import * as phone from '../calls/phone.js';
import { mountDock, unmountDock, callError, CALL_ERRORS } from '../calls/dock.js';
import { esc, dateTime, duration } from '../format.js';

const LOOKUP_ERRORS = {
  user_not_found: 'No one has this id or referral code. Check it and try again.',
};

const REASONS = {
  hangup: 'Ended',
  canceled: 'Cancelled',
  rejected: 'Declined',
  no_answer: 'No answer',
  unavailable: 'Not online',
  insufficient_funds: 'Coins ran out',
  disconnected: 'Connection lost',
  max_duration: 'Longest call reached',
};

function recentItem(ctx, c) {
  const out = c.role === 'caller';
  const who = out ? c.callee_id : c.caller_id;
  const state = c.status === 'ENDED' ? REASONS[c.end_reason] || 'Ended' : c.status === 'ACTIVE' ? 'In progress' : 'Ringing';
  const talk = c.duration_seconds ? ' · ' + duration(c.duration_seconds) : '';
  const sign = out ? '−' : '+';
  const amount = c.amount && c.amount !== '0.00' ? sign + ctx.money(c.amount, c.currency) : ctx.money('0', c.currency);
  return `<li><div class="item" data-call="${esc(c.id)}"><span><strong>${out ? 'Outgoing' : 'Incoming'}</strong> · ${esc(state)}${esc(talk)}<br>
    <span class="muted peer">${out ? 'To' : 'From'} ${esc(who)}</span><br><span class="muted">${esc(dateTime(c.created_at))}</span></span>
    <span class="amount${out ? '' : ' credit'}">${esc(amount)}</span></div></li>`;
}

export default {
  route: 'calls',
  title: 'Calls',
  nav: true,
  admin: false,
  // Codes of the call socket that no other screen answers with (the rest: ../calls/dock.js).
  errors: Object.fromEntries(['device_busy', 'call_not_ringing', 'call_ended', 'not_callee', 'other_device', 'signal_too_large'].map((k) => [k, CALL_ERRORS[k]])),

  onSignIn(ctx) {
    mountDock(ctx);
    phone.start(ctx);
  },
  onSignOut() {
    phone.stop();
    unmountDock();
  },

  async mount(el, ctx, param) {
    const me = ctx.user;
    el.innerHTML = `<h1>Calls</h1>
      <p id="c-online" class="muted" role="status"></p>
      <form class="card stack" id="c-find" novalidate>
        <div><label for="c-who">User id or referral code</label>
          <input id="c-who" name="who" autocomplete="off" autocapitalize="characters" spellcheck="false" required aria-describedby="c-who-hint">
          <p class="hint" id="c-who-hint">Like K7M2-QX9D, or an id starting usr_.</p></div>
        <p class="error" role="alert"></p>
        <button type="submit" class="primary">Find</button>
      </form>
      <div class="card stack" id="c-found" hidden></div>
      <section class="card stack" aria-labelledby="c-you">
        <h2 id="c-you">People can call you</h2>
        <p class="muted">Share your id or your referral code. You can receive calls while Purse is open.</p>
        <dl class="figures"><dt>Your referral code</dt><dd id="c-my-code">${esc(me.referral_code || '')}</dd></dl>
        <p>Your id: <span class="peer" id="c-my-id">${esc(me.id)}</span></p>
        <form id="c-price" class="stack" novalidate>
          <div><label for="c-price-in">Your price per minute (coins)</label>
            <input id="c-price-in" name="price" inputmode="decimal" autocomplete="off" aria-describedby="c-price-hint">
            <p class="hint" id="c-price-hint"></p></div>
          <p class="error" role="alert"></p>
          <button type="submit">Save price</button>
        </form>
      </section>
      <section aria-labelledby="c-recent-h"><h2 id="c-recent-h">Recent calls</h2>
        <ul class="list" id="c-recent"></ul>
        <p class="error" role="alert" id="c-recent-err"></p>
        <button type="button" id="c-more" hidden>Show more</button></section>`;
    const q = (s) => el.querySelector(s);
    const find = q('#c-find');
    const found = q('#c-found');
    let user = null; // the person found
    let gone = false;

    // ---- the socket's state, and the Call button following the phone --------------------
    const renderFound = () => {
      if (!user) {
        found.hidden = true;
        return;
      }
      const self = user.id === me.id;
      const w = ctx.wallet.get();
      found.hidden = false;
      found.innerHTML = `<h2>Call this person</h2>
        <p class="peer" id="c-found-id">${esc(user.id)}${self ? ' (you)' : ''}</p>
        <dl class="figures"><dt>Price per minute</dt><dd id="c-found-price">${esc(ctx.money(user.price_per_minute, user.currency))}</dd>
          ${w ? `<dt>Your available coins</dt><dd>${esc(ctx.money(w.available, w.currency))}</dd>` : ''}</dl>
        <p class="hint">${user.billing_period_seconds === 60 ? 'Billed by the minute' : `A "minute" here is ${esc(user.billing_period_seconds)} seconds`}; the first minute is held when they answer, a last part-minute is charged by the second.</p>
        <p class="error" role="alert" id="c-call-err"></p>
        <button type="button" class="primary" id="c-call" ${self ? 'disabled' : ''}>${self ? 'This is you' : 'Call'}</button>`;
      syncButton(phone.snapshot());
    };
    const syncButton = (s) => {
      const b = q('#c-call');
      if (!b || !user || user.id === me.id) return;
      b.disabled = !!(s.call && s.call.state !== 'ended');
    };
    const offPhone = phone.subscribe((s) => {
      if (gone) return;
      q('#c-online').textContent = s.online ? 'Online: you can call and be called.' : 'Connecting to calls…';
      syncButton(s);
      if (s.call && s.call.state === 'ended' && !s.call.listed) {
        s.call.listed = true;
        loadRecent(true);
      }
    });
    const offWallet = ctx.wallet.subscribe(() => !gone && user && !found.contains(document.activeElement) && renderFound());

    const lookup = async (text) => {
      const err = find.querySelector('.error');
      err.textContent = '';
      const btn = find.querySelector('button');
      btn.disabled = true;
      try {
        user = await ctx.api('GET', '/v1/users/' + encodeURIComponent(text));
        renderFound();
        q('#c-call').focus();
      } catch (e) {
        user = null;
        renderFound();
        if (LOOKUP_ERRORS[e.code]) {
          err.setAttribute('role', 'alert');
          err.textContent = LOOKUP_ERRORS[e.code];
        } else ctx.showError(err, e);
      } finally {
        btn.disabled = false;
      }
    };
    find.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const text = find.who.value.trim();
      if (!text) {
        find.querySelector('.error').textContent = 'Enter a user id or a referral code.';
        find.who.focus();
        return;
      }
      lookup(text);
    });
    found.addEventListener('click', (ev) => {
      if (!ev.target.closest('#c-call') || !user) return;
      q('#c-call-err').textContent = '';
      const refused = phone.invite(user);
      if (refused) q('#c-call-err').textContent = callError(ctx, refused);
    });

    // ---- one's own price ------------------------------------------------------------------
    const priceForm = q('#c-price');
    ctx
      .api('GET', '/v1/users/' + encodeURIComponent(me.id))
      .then((u) => {
        if (gone) return;
        if (!priceForm.price.value) priceForm.price.value = u.price_per_minute;
        q('#c-price-hint').textContent = `Callers pay ${ctx.money(u.price_per_minute, u.currency)} a minute to call you now.`;
      })
      .catch(() => {});
    priceForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const err = priceForm.querySelector('.error');
      err.textContent = '';
      try {
        const p = await ctx.api('PUT', '/v1/me/call-price', { body: { price_per_minute: priceForm.price.value.trim() } });
        q('#c-price-hint').textContent = `Callers pay ${ctx.money(p.price_per_minute, p.currency)} a minute to call you now; ${p.callee_share_percent} % of it is yours.`;
        ctx.toast('Your price is saved.');
      } catch (e) {
        ctx.showError(err, e);
      }
    });

    // ---- recent calls ---------------------------------------------------------------------
    let cursor = null;
    const more = q('#c-more');
    async function loadRecent(fresh) {
      const list = q('#c-recent');
      const err = q('#c-recent-err');
      try {
        const page = await ctx.api('GET', '/v1/calls', { query: { limit: 10, cursor: fresh ? undefined : cursor } });
        if (gone) return;
        err.textContent = '';
        const items = page.items.map((c) => recentItem(ctx, c)).join('');
        if (fresh) list.innerHTML = items || '<li><div class="item muted">No calls yet.</div></li>';
        else list.insertAdjacentHTML('beforeend', items);
        cursor = page.next_cursor;
        more.hidden = !cursor;
      } catch (e) {
        if (!gone) ctx.showError(err, e);
      }
    }
    more.addEventListener('click', () => loadRecent(false));
    loadRecent(true);

    if (param) {
      find.who.value = param;
      lookup(param);
    }
    return () => {
      gone = true;
      offPhone();
      offWallet();
    };
  },
};
