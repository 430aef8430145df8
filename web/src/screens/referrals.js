// Referrals (GET /v1/referrals): my code and a link to share it, the people who signed up with
// it (e-mails masked by the API), and the rewards earned. A referral pays once the referee's
// first deposit has completed and their identity is verified.

import { esc, showError, clearError, busy } from '../accounts/common.js';
import { dateTime } from '../format.js';

const yes = (b) => (b ? 'Yes' : 'Not yet');

/** A referee's standing, in words. */
function standing(r, ctx) {
  if (r.status === 'COMPLETED') {
    return r.outcome === 'cap_reached'
      ? 'Completed; no reward (you had reached the most rewards allowed).'
      : `Rewarded ${ctx.money(r.reward, 'COIN')}.`;
  }
  if (r.first_deposit && r.kyc_verified) return 'Both steps done; the reward is on its way.';
  return 'Waiting for their first deposit and identity check.';
}

export default {
  route: 'referrals',
  title: 'Invite friends',
  nav: true,
  admin: false,
  errors: {},

  async mount(el, ctx) {
    el.innerHTML = `
      <section class="referrals" aria-labelledby="ref-h">
        <h1 id="ref-h">Invite friends</h1>
        <p role="alert" id="ref-error" class="error" hidden></p>
        <div class="card" id="ref-card" hidden>
          <p>Your referral code: <strong id="ref-code" class="mono"></strong></p>
          <label for="ref-link">Link to share</label>
          <input id="ref-link" readonly>
          <p class="row">
            <button type="button" id="ref-copy">Copy link</button>
            <button type="button" id="ref-share" class="secondary" hidden>Share…</button>
          </p>
          <p id="ref-terms" class="hint muted"></p>
          <p>Rewards earned: <strong id="ref-earned"></strong> <span id="ref-count" class="hint muted"></span></p>
        </div>
        <h2>People who joined with your code</h2>
        <ul id="ref-list" style="list-style:none;padding:0;margin:0"></ul>
        <p id="ref-none" hidden>No one has joined with your code yet.</p>
        <p><button type="button" id="ref-more" class="secondary" hidden>Show more</button></p>
      </section>`;
    const $ = (s) => el.querySelector(s);
    let cursor = null;

    const row = (r) => `
      <li class="card referee" data-id="${esc(r.referral_id)}" data-status="${esc(r.status)}">
        <p><strong>${esc(r.email || 'Someone')}</strong> <span class="hint muted">joined ${esc(dateTime(r.joined_at))}</span></p>
        <p class="hint muted">First deposit: ${yes(r.first_deposit)} · Identity verified: ${yes(r.kyc_verified)}</p>
        <p>${esc(standing(r, ctx))}</p>
      </li>`;

    const load = async (more) => {
      const page = await ctx.api('GET', '/v1/referrals', { query: { limit: 20, cursor: more ? cursor : undefined } });
      $('#ref-card').hidden = false;
      $('#ref-code').textContent = page.referral_code;
      $('#ref-link').value = page.share_url;
      $('#ref-terms').textContent = `You earn ${ctx.money(page.reward_per_referral, 'COIN')} for each friend who makes a first deposit and verifies their identity (up to ${page.rewards_limit} friends).`;
      $('#ref-earned').textContent = ctx.money(page.rewards_earned, 'COIN');
      $('#ref-count').textContent = `(${page.rewards_count} of ${page.rewards_limit} rewards)`;
      const html = page.referees.map(row).join('');
      if (more) $('#ref-list').insertAdjacentHTML('beforeend', html);
      else $('#ref-list').innerHTML = html;
      $('#ref-none').hidden = $('#ref-list').children.length > 0;
      cursor = page.next_cursor;
      $('#ref-more').hidden = !cursor;
      clearError($('#ref-error'));
    };

    $('#ref-copy').addEventListener('click', async () => {
      const link = $('#ref-link');
      try {
        await navigator.clipboard.writeText(link.value);
        ctx.toast?.('Link copied.');
      } catch {
        link.select(); // no clipboard permission: select it for the person to copy
        ctx.toast?.('Press Ctrl+C (or long-press) to copy the selected link.');
      }
    });
    if (navigator.share) {
      $('#ref-share').hidden = false;
      $('#ref-share').addEventListener('click', () =>
        navigator.share({ title: 'Join me on Purse', url: $('#ref-link').value }).catch(() => {}),
      );
    }
    $('#ref-more').addEventListener('click', (ev) =>
      busy(ev.currentTarget, 'Loading…', () =>
        load(true).catch((err) => {
          showError(ctx, $('#ref-error'), err, { invalid_cursor: 'The list changed. Showing it again from the start.' });
          if (err.code === 'invalid_cursor') return load(false).catch(() => {});
        }),
      ),
    );
    try {
      await load(false);
    } catch (err) {
      showError(ctx, $('#ref-error'), err);
    }
  },
};
