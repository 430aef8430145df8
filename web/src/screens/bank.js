// Bank accounts to withdraw to (GET/POST /v1/bank-accounts, DELETE /v1/bank-accounts/{id}).
// Numbers are only ever shown masked, as the API answers them; a new account receives
// withdrawals from its `usable_from` on (a cooling-off period against account takeover).

import { esc, showError, clearError, busy, values } from '../accounts/common.js';
import { dateTime } from '../format.js';

const TYPES = { cheque: 'Cheque (current)', savings: 'Savings', transmission: 'Transmission' };

/** One account as a list item. */
function item(a) {
  const ready = !a.usable_from || new Date(a.usable_from) <= new Date();
  const when = dateTime(a.usable_from);
  return `
    <li class="card bank-account" data-id="${esc(a.bank_account_id)}" data-masked="${esc(a.account_number_masked)}">
      <p><strong>${esc(a.account_holder)}</strong> · <span class="mono">${esc(a.account_number_masked)}</span></p>
      <p class="hint muted">${esc(TYPES[a.account_type] || a.account_type)} · branch ${esc(a.branch_code)}</p>
      <p class="hint muted">${ready ? 'Ready for withdrawals.' : `For your safety, withdrawals to it are possible from ${esc(when)}.`}</p>
      <button type="button" class="secondary remove" aria-label="Remove account ${esc(a.account_number_masked)}">Remove</button>
    </li>`;
}

export default {
  route: 'bank',
  title: 'Bank accounts',
  nav: true,
  admin: false,
  errors: {
    invalid_account_holder: 'Enter the account holder’s name as the bank has it (2 to 100 letters, spaces, dots, apostrophes or hyphens).',
    invalid_account_number: 'Enter the account number: 7 to 11 digits.',
    invalid_branch_code: 'Enter the 6-digit branch code.',
    invalid_account_type: 'Choose the account type: cheque, savings or transmission.',
    bank_account_exists: 'This bank account is already on your list.',
    too_many_bank_accounts: 'You have 10 bank accounts, the most allowed. Remove one before adding another.',
  },

  async mount(el, ctx) {
    el.innerHTML = `
      <section class="bank" aria-labelledby="bank-h">
        <h1 id="bank-h">Bank accounts</h1>
        <p class="hint muted">Withdrawals are paid into one of these South African bank accounts.</p>
        <p role="alert" id="bank-load-error" class="error" hidden></p>
        <ul id="bank-list" style="list-style:none;padding:0;margin:0" aria-live="polite"></ul>
        <p id="bank-empty" hidden>You have no bank account yet. Add one below.</p>
        <form id="bank-form" class="card" novalidate>
          <h2>Add a bank account</h2>
          <label for="bank-holder">Account holder</label>
          <input id="bank-holder" name="account_holder" required maxlength="100" autocomplete="name">
          <label for="bank-number">Account number</label>
          <input id="bank-number" name="account_number" required inputmode="numeric" autocomplete="off" maxlength="20">
          <label for="bank-branch">Branch code</label>
          <input id="bank-branch" name="branch_code" required inputmode="numeric" maxlength="6" autocomplete="off" aria-describedby="bank-branch-hint">
          <small id="bank-branch-hint">6 digits, e.g. 250655</small>
          <label for="bank-type">Account type</label>
          <select id="bank-type" name="account_type">
            <option value="cheque">Cheque (current)</option>
            <option value="savings">Savings</option>
            <option value="transmission">Transmission</option>
          </select>
          <p role="alert" id="bank-error" class="error" hidden></p>
          <button type="submit" class="primary" id="bank-add">Add account</button>
        </form>
      </section>`;
    const $ = (s) => el.querySelector(s);
    const list = $('#bank-list');
    const form = $('#bank-form');

    const load = async () => {
      try {
        const { items } = await ctx.api('GET', '/v1/bank-accounts');
        list.innerHTML = items.map(item).join('');
        $('#bank-empty').hidden = items.length > 0;
        clearError($('#bank-load-error'));
      } catch (err) {
        showError(ctx, $('#bank-load-error'), err);
      }
    };

    list.addEventListener('click', async (ev) => {
      const button = ev.target.closest('button.remove');
      if (!button) return;
      const li = button.closest('li');
      // Two steps, so a stray tap does not remove an account.
      if (button.dataset.confirm !== 'yes') {
        button.dataset.confirm = 'yes';
        button.textContent = 'Confirm removal';
        button.setAttribute('aria-label', `Confirm removal of account ${li.dataset.masked}`);
        return;
      }
      await busy(button, 'Removing…', async () => {
        try {
          await ctx.api('DELETE', `/v1/bank-accounts/${encodeURIComponent(li.dataset.id)}`);
          ctx.toast?.(`Account ${li.dataset.masked} removed.`);
          await load();
          $('#bank-h').focus();
        } catch (err) {
          showError(ctx, $('#bank-load-error'), err, { not_found: 'This account was already removed.' });
          if (err.code === 'not_found') load();
        }
      });
    });

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const alertEl = $('#bank-error');
      clearError(alertEl);
      const body = values(form);
      const missing = !body.account_holder ? 'invalid_account_holder' : !body.account_number ? 'invalid_account_number' : !body.branch_code ? 'invalid_branch_code' : null;
      if (missing) return showError(ctx, alertEl, { code: missing });
      await busy($('#bank-add'), 'Adding…', async () => {
        try {
          const a = await ctx.api('POST', '/v1/bank-accounts', { body });
          form.reset(); // only after success: a refused form keeps what was typed
          ctx.toast?.(`Account ${a.account_number_masked} added.`);
          await load();
        } catch (err) {
          showError(ctx, alertEl, err);
        }
      });
    });
    $('#bank-h').tabIndex = -1;
    await load();
  },
};
