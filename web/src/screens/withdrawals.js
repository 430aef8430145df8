// Withdrawals (POST /v1/withdrawals, POST /v1/withdrawals/{id}/cancel, and the caller's
// WITHDRAWAL movements from GET /v1/transactions): withdraw coins to one of the person's bank
// accounts, follow each withdrawal to COMPLETED or FAILED (checked every 2 s while one is under
// way), cancel one the payout worker has not taken yet. The amount is held from the moment of
// the request; a failed payout gives it back, which the available balance shows.

import { esc, showError, clearError, busy, poll, values } from '../accounts/common.js';
import { dateTime } from '../format.js';
import { newKey } from '../api.js';

/** Why a withdrawal failed (Transaction.failure_reason), as a person reads it. */
const FAILURES = {
  cancelled: 'You cancelled it. The coins are back in your available balance.',
  account_rejected: 'The bank rejected this account, so nothing was paid. The coins are back in your available balance; check the account details or choose another account.',
  account_unpaid: 'The bank could not pay into this account. The coins are back in your available balance; check the account or choose another one.',
  returned_by_bank: 'The bank returned the payment. The coins are back in your available balance.',
  payout_rejected: 'The payment service refused this payout. The coins are back in your available balance.',
  wallet_restricted: 'It was stopped because a payment into your wallet was reversed. The coins are back in your available balance; contact support.',
};

/** Where a withdrawal stands, in words. */
function state(t) {
  if (t.status === 'COMPLETED') return { label: 'Completed', text: 'Paid into your bank account.' };
  if (t.status === 'FAILED') {
    return { label: 'Failed', text: FAILURES[t.failure_reason] || 'It could not be paid. The coins are back in your available balance.' };
  }
  switch (t.payout_status) {
    case 'SUBMITTING':
      return { label: 'Sending', text: 'Being sent to the bank. The coins are held until the bank answers.' };
    case 'SUBMITTED':
      return { label: 'Sent', text: 'Sent to the bank; waiting for its answer. The coins are held until then.' };
    case 'STUCK':
      return { label: 'Delayed', text: 'Delayed: our team is looking at it. The coins stay held meanwhile.' };
    default:
      return { label: 'Pending', text: 'Waiting to be sent. You can still cancel it.' };
  }
}

const cancellable = (t) => t.status === 'PENDING' && !t.payout_status;

export default {
  route: 'withdrawals',
  title: 'Withdraw',
  nav: true,
  admin: false,
  errors: {
    kyc_required: 'Verify your identity before withdrawing: open “Verify identity”, then try again.',
    insufficient_funds: 'You do not have enough available coins for this withdrawal. Coins held for calls or other withdrawals cannot be withdrawn.',
    bank_account_not_found: 'That bank account is no longer on your list. Choose another one.',
    bank_account_cooling_off: 'This bank account was added recently. For your safety, withdrawals to it are possible a little later.',
    invalid_bank_account_id: 'Choose one of your bank accounts.',
    amount_below_minimum: 'The smallest withdrawal is 20.00 coins.',
    amount_above_maximum: 'The largest single withdrawal is 5,000.00 coins.',
    daily_limit_exceeded: 'This would go over your daily withdrawal limit (10,000.00 coins). Try a smaller amount, or tomorrow.',
    withdrawal_not_cancellable: 'This withdrawal is already on its way to the bank and can no longer be cancelled.',
    wallet_restricted: 'Withdrawals are paused because a payment into your wallet was reversed. They resume once your balance covers it.',
  },

  async mount(el, ctx) {
    el.innerHTML = `
      <section class="withdrawals" aria-labelledby="wd-h">
        <h1 id="wd-h">Withdraw coins</h1>
        <p>Available to withdraw: <strong id="wd-available" aria-live="polite">…</strong></p>
        <p id="wd-kyc" class="notice" hidden>Verify your identity before your first withdrawal. <a href="#/kyc">Verify identity</a></p>
        <p id="wd-no-accounts" class="notice" hidden>Add a bank account to withdraw to. <a href="#/bank">Add a bank account</a></p>
        <form id="wd-form" class="card" novalidate>
          <label for="wd-amount">Amount in coins</label>
          <input id="wd-amount" name="amount" required inputmode="decimal" autocomplete="off" aria-describedby="wd-amount-hint">
          <small id="wd-amount-hint">One coin is paid out as one rand. At least 20.00.</small>
          <label for="wd-account">To bank account</label>
          <select id="wd-account" name="bank_account_id" required></select>
          <p role="alert" id="wd-error" class="error" hidden></p>
          <button type="submit" class="primary" id="wd-submit">Withdraw</button>
        </form>
        <h2>Your withdrawals</h2>
        <p role="alert" id="wd-load-error" class="error" hidden></p>
        <ul id="wd-list" style="list-style:none;padding:0;margin:0" aria-live="polite"></ul>
        <p id="wd-none" hidden>No withdrawals yet.</p>
      </section>`;
    const $ = (s) => el.querySelector(s);
    const form = $('#wd-form');
    const list = $('#wd-list');
    const masked = new Map(); // bank_account_id -> masked number, for the list
    let key = null; // the Idempotency-Key of the withdrawal being asked for (kept for a retry)
    let stopPolling = () => {};
    const cleanups = [];

    const showWallet = (w) => {
      if (w) $('#wd-available').textContent = ctx.money(w.available, w.currency);
    };
    if (ctx.wallet) {
      showWallet(ctx.wallet.get?.());
      if (ctx.wallet.subscribe) cleanups.push(ctx.wallet.subscribe(showWallet));
    }
    const refreshWallet = async () => {
      try {
        if (ctx.wallet?.refresh) showWallet(await ctx.wallet.refresh());
        else showWallet(await ctx.api('GET', '/v1/wallet'));
      } catch {
        /* the balance shown stays; the list is the truth for the withdrawal */
      }
    };

    const render = (items) => {
      $('#wd-none').hidden = items.length > 0;
      list.innerHTML = items
        .map((t) => {
          const s = state(t);
          const to = masked.get(t.bank_account_id);
          return `
          <li class="card withdrawal" data-id="${esc(t.id)}" data-status="${esc(t.status)}">
            <p><strong>${esc(ctx.money(t.amount, t.currency))}</strong>${to ? ` to <span class="mono">${esc(to)}</span>` : ''}
              · <span class="badge status">${esc(s.label)}</span></p>
            <p class="detail">${esc(s.text)}</p>
            <p class="hint muted">${esc(dateTime(t.created_at))}</p>
            ${cancellable(t) ? `<button type="button" class="secondary cancel" aria-label="Cancel the withdrawal of ${esc(ctx.money(t.amount, t.currency))}">Cancel withdrawal</button>` : ''}
          </li>`;
        })
        .join('');
    };

    /** Loads the list; true when nothing is under way any more. */
    const loadList = async () => {
      const page = await ctx.api('GET', '/v1/transactions', { query: { type: 'WITHDRAWAL', limit: 20 } });
      const before = list.querySelectorAll('[data-status="PENDING"]').length;
      render(page.items);
      clearError($('#wd-load-error'));
      const pending = page.items.filter((t) => t.status === 'PENDING').length;
      if (pending < before) refreshWallet(); // one finished: its coins left or came back
      return pending === 0;
    };
    const follow = () => {
      stopPolling();
      stopPolling = poll(loadList, 2000);
    };

    const loadAccounts = async () => {
      const { items } = await ctx.api('GET', '/v1/bank-accounts');
      const select = $('#wd-account');
      const chosen = select.value;
      masked.clear();
      for (const a of items) masked.set(a.bank_account_id, a.account_number_masked);
      select.innerHTML = items
        .map((a) => `<option value="${esc(a.bank_account_id)}">${esc(a.account_number_masked)} · ${esc(a.account_holder)}</option>`)
        .join('');
      if (chosen && masked.has(chosen)) select.value = chosen;
      $('#wd-no-accounts').hidden = items.length > 0;
    };

    list.addEventListener('click', async (ev) => {
      const button = ev.target.closest('button.cancel');
      if (!button) return;
      const id = button.closest('li').dataset.id;
      await busy(button, 'Cancelling…', async () => {
        try {
          await ctx.api('POST', `/v1/withdrawals/${encodeURIComponent(id)}/cancel`);
          ctx.toast?.('Withdrawal cancelled. The coins are available again.');
          await refreshWallet();
        } catch (err) {
          showError(ctx, $('#wd-load-error'), err, { not_found: 'That withdrawal was not found.' });
        }
      });
      await loadList().catch(() => {});
      follow();
    });

    form.addEventListener('input', () => {
      key = null; // other details: another request
    });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const alertEl = $('#wd-error');
      clearError(alertEl);
      const body = values(form);
      if (!body.amount) return showError(ctx, alertEl, { code: 'invalid_amount' });
      if (!body.bank_account_id) return showError(ctx, alertEl, { code: 'invalid_bank_account_id' });
      key = key || newKey();
      await busy($('#wd-submit'), 'Sending…', async () => {
        try {
          const w = await ctx.api('POST', '/v1/withdrawals', { body, idempotencyKey: key });
          key = null;
          form.elements.amount.value = '';
          ctx.toast?.(`Withdrawal of ${ctx.money(w.amount, w.currency)} requested.`);
          await refreshWallet();
          await loadList().catch(() => {});
          follow();
        } catch (err) {
          // A refusal is final for this key (the API keeps its answer): fix and send anew. A
          // retryable failure keeps the key, so trying again cannot withdraw twice.
          if (err.status && err.status < 500 && err.code !== 'idempotency_request_in_progress') key = null;
          showError(ctx, alertEl, err, {
            not_found: 'Your account could not be found. Please sign in again.',
          });
          if (err.code === 'bank_account_not_found') loadAccounts().catch(() => {});
        }
      });
    });

    const results = await Promise.allSettled([
      loadAccounts(),
      ctx.api('GET', '/v1/kyc').then((k) => ($('#wd-kyc').hidden = k.status === 'VERIFIED')),
      refreshWallet(),
    ]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) showError(ctx, $('#wd-load-error'), failed.reason);
    try {
      if (!(await loadList())) follow();
    } catch (err) {
      showError(ctx, $('#wd-load-error'), err);
    }
    return () => {
      stopPolling();
      cleanups.forEach((fn) => typeof fn === 'function' && fn());
    };
  },
};
