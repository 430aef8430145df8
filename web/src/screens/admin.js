// For administrators: what needs a person. Dead-letter queue depths (GET /v1/admin/queues),
// deposits that need a decision (GET /v1/admin/cases, POST …/{case_id}/resolve), KYC checks
// automation gave up on (GET /v1/admin/kyc/reviews, POST /v1/admin/kyc/{kyc_id}/resolve), and
// manual adjustments of a wallet with a reason (POST/GET /v1/admin/adjustments, the user looked
// up by id or e-mail with GET /v1/admin/users/{id}). Every decision carries a reason: the
// audit trail.

import { esc, showError, clearError, busy, values } from '../accounts/common.js';
import { dateTime, label } from '../format.js';
import { newKey } from '../api.js';

const KINDS = {
  PAID_AFTER_FAILED: 'Paid after the deposit had failed',
  AMOUNT_MISMATCH: 'Paid amount differs from the deposit',
  UNKNOWN_PURCHASE_PAID: 'Paid purchase with no deposit of ours',
};

export default {
  route: 'admin',
  title: 'Admin',
  nav: true,
  admin: true,
  errors: {
    reason_required: 'Write a reason (up to 500 characters); it is kept in the audit trail.',
    case_already_resolved: 'This case was already resolved, by you or someone else. Nothing changed.',
    case_not_creditable: 'This case has no user to credit. Refund it instead.',
    refund_not_confirmed: 'The payment service has not confirmed the refund; check its dashboard. The case stays open.',
    provider_rejected: 'The payment service refused this request. Nothing changed.',
    invalid_case_id: 'That case id is not valid.',
    kyc_not_pending: 'This identity check was already decided, by the provider or another administrator. Nothing changed.',
    invalid_decision: 'Choose approve or reject.',
    invalid_direction: 'Choose credit or debit.',
    user_not_found: 'No user has this id or e-mail.',
    invalid_month: 'Choose a real month.',
  },

  async mount(el, ctx) {
    el.innerHTML = `
      <section class="admin" aria-labelledby="adm-h">
        <h1 id="adm-h">Admin</h1>
        <p><button type="button" id="adm-refresh">Refresh everything</button></p>

        <section aria-labelledby="adm-q-h" class="card">
          <h2 id="adm-q-h">Dead-letter queues</h2>
          <p class="hint muted">Messages a consumer gave up on; deal with them with <code>purse-admin dlq</code>.</p>
          <p role="alert" class="error" id="adm-q-error" hidden></p>
          <table id="adm-queues"><caption class="visually-hidden">Messages waiting in each dead-letter queue</caption>
            <thead><tr><th scope="col">Queue</th><th scope="col">Waiting</th><th scope="col">In flight</th></tr></thead>
            <tbody></tbody></table>
          <p id="adm-q-total" aria-live="polite"></p>
        </section>

        <section aria-labelledby="adm-c-h">
          <h2 id="adm-c-h">Deposits that need a decision</h2>
          <p role="alert" class="error" id="adm-c-error" hidden></p>
          <ul style="list-style:none;padding:0;margin:0" id="adm-cases"></ul>
          <p id="adm-c-none" hidden>No open cases.</p>
        </section>

        <section aria-labelledby="adm-k-h">
          <h2 id="adm-k-h">Identity checks that need a decision</h2>
          <p role="alert" class="error" id="adm-k-error" hidden></p>
          <ul style="list-style:none;padding:0;margin:0" id="adm-reviews"></ul>
          <p id="adm-k-none" hidden>No identity checks waiting.</p>
        </section>

        <section aria-labelledby="adm-a-h">
          <h2 id="adm-a-h">Adjust a wallet</h2>
          <form id="adm-adjust" class="card" novalidate>
            <label for="adm-user">User id or e-mail</label>
            <input id="adm-user" name="user" required autocomplete="off" spellcheck="false">
            <p id="adm-user-found" class="hint muted" aria-live="polite"></p>
            <fieldset>
              <legend>Direction</legend>
              <p class="check" style="margin:.3rem 0"><input type="radio" id="adm-credit" name="direction" value="credit" checked><label for="adm-credit" style="display:inline;font-weight:400">Credit (add coins)</label></p>
              <p class="check" style="margin:.3rem 0"><input type="radio" id="adm-debit" name="direction" value="debit"><label for="adm-debit" style="display:inline;font-weight:400">Debit (take coins)</label></p>
            </fieldset>
            <label for="adm-amount">Amount in coins</label>
            <input id="adm-amount" name="amount" required inputmode="decimal" autocomplete="off">
            <label for="adm-reason">Reason (kept in the audit trail)</label>
            <textarea id="adm-reason" name="reason" required maxlength="500" rows="2"></textarea>
            <p role="alert" class="error" id="adm-a-error" hidden></p>
            <button type="submit" class="primary" id="adm-a-submit">Make adjustment</button>
          </form>
          <h3>This month’s adjustments</h3>
          <p role="alert" class="error" id="adm-l-error" hidden></p>
          <ul style="list-style:none;padding:0;margin:0" id="adm-adjustments"></ul>
          <p id="adm-l-none" hidden>None this month.</p>
        </section>
      </section>`;
    const $ = (s) => el.querySelector(s);

    // ---- dead-letter queues
    const loadQueues = async () => {
      try {
        const { queues, total } = await ctx.api('GET', '/v1/admin/queues');
        $('#adm-queues tbody').innerHTML = queues
          .map((q) => `<tr data-queue="${esc(q.name)}" class="${q.messages ? 'warn' : ''}"><th scope="row">${esc(q.name)}</th><td>${esc(q.messages)}</td><td>${esc(q.in_flight)}</td></tr>`)
          .join('');
        $('#adm-q-total').textContent = total ? `${total} message${total === 1 ? '' : 's'} parked.` : 'Nothing is parked.';
        clearError($('#adm-q-error'));
      } catch (err) {
        showError(ctx, $('#adm-q-error'), err);
      }
    };

    // ---- cases and KYC reviews: each waits for a choice and a reason
    const loadCases = decisionList(ctx, el, {
      list: '#adm-cases', none: '#adm-c-none', error: '#adm-c-error',
      fetch: async () => (await ctx.api('GET', '/v1/admin/cases')).items,
      id: (c) => c.case_id,
      summary: (c) => `
        <p><strong>${esc(KINDS[c.kind] || label(c.kind))}</strong> · ${esc(ctx.money(c.paid_amount, c.paid_currency))}</p>
        <p>${esc(c.detail)}</p>
        <p class="hint muted">Opened ${esc(dateTime(c.opened_at))} · purchase <span class="mono">${esc(c.purchase_id)}</span>${c.user_id ? ` · user <span class="mono">${esc(c.user_id)}</span>` : ''}</p>`,
      field: 'action', legend: 'Resolve by', button: 'Resolve case',
      // A case without a user can only be refunded.
      choices: (c) => [
        { value: 'credit', text: 'Crediting the user’s wallet', checked: !!c.user_id, disabled: !c.user_id },
        { value: 'refund', text: 'Refunding the payer', checked: !c.user_id },
      ],
      path: (id) => `/v1/admin/cases/${encodeURIComponent(id)}/resolve`,
      done: () => 'Case resolved.',
      gone: 'This case no longer exists.',
      missing: 'invalid_request',
    });
    const loadReviews = decisionList(ctx, el, {
      list: '#adm-reviews', none: '#adm-k-none', error: '#adm-k-error',
      fetch: async () => (await ctx.api('GET', '/v1/admin/kyc/reviews')).reviews,
      id: (r) => r.kyc_id,
      summary: (r) => `
        <p><strong class="mono">${esc(r.pan_masked)}</strong> · user <span class="mono">${esc(r.user_id)}</span></p>
        <p class="hint muted">Submitted ${esc(dateTime(r.submitted_at))} · ${esc(r.provider)} check <span class="mono">${esc(r.provider_reference)}</span></p>`,
      field: 'decision', legend: 'Decision', button: 'Decide',
      choices: () => [
        { value: 'approve', text: 'Approve (verified)' },
        { value: 'reject', text: 'Reject' },
      ],
      path: (id) => `/v1/admin/kyc/${encodeURIComponent(id)}/resolve`,
      done: (body) => (body.decision === 'approve' ? 'Identity check approved.' : 'Identity check rejected.'),
      gone: 'This identity check no longer exists.',
      missing: 'invalid_decision',
    });

    // ---- adjustments
    const loadAdjustments = async () => {
      try {
        const { items } = await ctx.api('GET', '/v1/admin/adjustments');
        $('#adm-adjustments').innerHTML = items
          .map(
            (a) => `
            <li class="card adjustment" data-id="${esc(a.transaction_id)}">
              <p><strong>${a.direction === 'debit' ? '−' : '+'}${esc(ctx.money(a.amount, a.currency))}</strong> · user <span class="mono">${esc(a.user_id)}</span></p>
              <p>${esc(a.reason)}</p>
              <p class="hint muted">${esc(dateTime(a.created_at))} by <span class="mono">${esc(a.adjusted_by)}</span></p>
            </li>`,
          )
          .join('');
        $('#adm-l-none').hidden = items.length > 0;
        clearError($('#adm-l-error'));
      } catch (err) {
        showError(ctx, $('#adm-l-error'), err);
      }
    };
    const adjust = $('#adm-adjust');
    let key = null; // kept while the same adjustment is retried, so it applies once
    adjust.addEventListener('input', () => {
      key = null;
    });
    adjust.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const alertEl = $('#adm-a-error');
      clearError(alertEl);
      const v = values(adjust);
      const direction = adjust.querySelector('input[name=direction]:checked')?.value;
      if (!v.user) return showError(ctx, alertEl, { code: 'user_not_found' });
      if (!v.amount) return showError(ctx, alertEl, { code: 'invalid_amount' });
      if (!v.reason) return showError(ctx, alertEl, { code: 'reason_required' });
      await busy($('#adm-a-submit'), 'Saving…', async () => {
        try {
          // An e-mail (or an id) is looked up first: the operator sees whose wallet moves.
          const found = await ctx.api('GET', `/v1/admin/users/${encodeURIComponent(v.user)}`);
          const who = found.profile;
          key = key || newKey();
          const made = await ctx.api('POST', '/v1/admin/adjustments', {
            body: { user_id: who.id, direction, amount: v.amount, reason: v.reason },
            idempotencyKey: key,
          });
          key = null;
          adjust.elements.amount.value = '';
          adjust.elements.reason.value = '';
          const after = await ctx.api('GET', `/v1/admin/users/${encodeURIComponent(who.id)}`).catch(() => null);
          $('#adm-user-found').textContent =
            `${made.direction === 'debit' ? 'Debited' : 'Credited'} ${ctx.money(made.amount, made.currency)} for ${who.email}` +
            (after ? `; available now ${ctx.money(after.wallet.available, after.wallet.currency)}.` : '.');
          ctx.toast?.('Adjustment made.');
          await loadAdjustments();
        } catch (err) {
          if (err.status && err.status < 500 && err.code !== 'idempotency_request_in_progress') key = null;
          showError(ctx, alertEl, err, {
            insufficient_funds: 'The user’s available balance does not cover this debit. Nothing was taken.',
            wallet_restricted: 'This wallet is restricted after a reversed payment and cannot be debited; a credit is still possible.',
          });
        }
      });
    });

    const loadAll = () => Promise.all([loadQueues(), loadCases(), loadReviews(), loadAdjustments()]);
    $('#adm-refresh').addEventListener('click', (ev) => busy(ev.currentTarget, 'Refreshing…', loadAll));
    await loadAll();
  },
};

/**
 * A list of items awaiting an operator's decision (open cases, KYC reviews): each shows its
 * summary and a form with the choices and a reason; a decision is POSTed as
 * `{[field]: choice, reason}` and the list loaded again. Answers the list's load function.
 */
function decisionList(ctx, el, o) {
  const $ = (s) => el.querySelector(s);
  const radio = (id, c) =>
    `<p class="check" style="margin:.3rem 0"><input type="radio" id="${id}-${c.value}" name="${o.field}" value="${c.value}"${c.checked ? ' checked' : ''}${c.disabled ? ' disabled' : ''}><label for="${id}-${c.value}" style="display:inline;font-weight:400">${esc(c.text)}</label></p>`;
  const load = async () => {
    try {
      const items = await o.fetch();
      $(o.list).innerHTML = items
        .map((item) => {
          const id = esc(o.id(item));
          return `
          <li class="card" data-id="${id}">${o.summary(item)}
            <form novalidate>
              <fieldset><legend>${esc(o.legend)}</legend>${o.choices(item).map((c) => radio(id, c)).join('')}</fieldset>
              <label for="${id}-reason">Reason</label>
              <textarea id="${id}-reason" name="reason" maxlength="500" rows="2" required></textarea>
              <p role="alert" class="error" hidden></p>
              <button type="submit" class="primary">${esc(o.button)}</button>
            </form>
          </li>`;
        })
        .join('');
      $(o.none).hidden = items.length > 0;
      clearError($(o.error));
    } catch (err) {
      showError(ctx, $(o.error), err);
    }
  };
  $(o.list).addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const id = form.closest('li').dataset.id;
    const alertEl = form.querySelector('[role=alert]');
    clearError(alertEl);
    const body = { [o.field]: form.querySelector(`input[name=${o.field}]:checked`)?.value, reason: values(form).reason };
    if (!body[o.field]) return showError(ctx, alertEl, { code: o.missing });
    if (!body.reason) return showError(ctx, alertEl, { code: 'reason_required' });
    await busy(form.querySelector('button'), 'Saving…', async () => {
      try {
        await ctx.api('POST', o.path(id), { body });
        ctx.toast?.(o.done(body));
        await load();
      } catch (err) {
        showError(ctx, alertEl, err, { not_found: o.gone });
      }
    });
  });
  return load;
}
