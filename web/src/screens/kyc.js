// KYC: verify the signed-in person by their PAN (GET/POST /v1/kyc). The status is always on
// screen — NOT_STARTED, PENDING (checked again every 2 s until decided), VERIFIED, REJECTED with
// the reason in words — and the form is offered when the API says a submission is possible
// (before any, and after a rejection: resubmit). A failed submission keeps what was typed.

import { esc, showError, clearError, busy, poll, values } from '../accounts/common.js';

/** The provider's rejection reasons (KycView.rejection_reason), as a person reads them. */
const REASONS = {
  name_mismatch: 'the name you entered does not match the name on the PAN card',
  rejected_on_review: 'our team reviewed your details and could not verify them',
  pan_not_found: 'the PAN was not found in the tax department’s records',
  dob_mismatch: 'the date of birth does not match the PAN’s records',
};

const reason = (code) => REASONS[code] || 'the verification service could not confirm your details';

/** The status as a sentence. */
function statusText(view) {
  const pan = view.pan_masked ? ` (PAN ${view.pan_masked})` : '';
  switch (view.status) {
    case 'VERIFIED':
      return `Your identity is verified${pan}. You can withdraw coins.`;
    case 'PENDING':
      return `We are checking your PAN${pan}. This usually takes a few seconds; this page updates by itself.`;
    case 'REJECTED':
      return `Your identity check was rejected${pan}: ${reason(view.rejection_reason)}. Correct your details below and submit again.`;
    default:
      return 'You have not verified your identity yet. Verification is needed before you can withdraw coins.';
  }
}

const LABEL = { NOT_STARTED: 'Not started', PENDING: 'Checking', VERIFIED: 'Verified', REJECTED: 'Rejected' };

export default {
  route: 'kyc',
  title: 'Verify identity',
  nav: true,
  admin: false,
  errors: {
    consent_required: 'Tick the box to agree to your PAN being checked.',
    invalid_pan: 'Enter your PAN as on the card: 5 letters, 4 digits and a letter, the fourth letter P (like ABCPV1234Q).',
    invalid_full_name: 'Enter your full name as it appears on your PAN card (letters, spaces, dots, apostrophes or hyphens).',
    invalid_date_of_birth: 'Enter your date of birth as on your PAN card.',
    underage: 'You must be 18 or older to verify your identity.',
    kyc_pending: 'Your identity check is still in progress. Wait for its result before submitting again.',
    kyc_already_verified: 'Your identity is already verified; there is nothing more to do.',
    pan_already_registered: 'This PAN is already verified on another account. If it is yours, contact support.',
    kyc_provider_rejected: 'The verification service could not accept these details. Check them and try again.',
    kyc_provider_unavailable: 'The verification service is not answering. Nothing was sent; try again in a minute.',
  },

  async mount(el, ctx) {
    el.innerHTML = `
      <section class="kyc" aria-labelledby="kyc-h">
        <h1 id="kyc-h">Verify your identity</h1>
        <div class="card" id="kyc-status-card">
          <p>Status: <strong id="kyc-badge" class="badge">…</strong></p>
          <p id="kyc-status" aria-live="polite">Loading…</p>
          <p><button type="button" id="kyc-refresh" class="secondary" hidden>Check again</button></p>
        </div>
        <p role="alert" id="kyc-load-error" class="error" hidden></p>
        <form id="kyc-form" class="card" novalidate hidden>
          <h2 id="kyc-form-h">Your PAN details</h2>
          <p class="hint muted">We check your Permanent Account Number with our verification partner. It is stored encrypted and only ever shown masked.</p>
          <label for="kyc-pan">PAN</label>
          <input id="kyc-pan" name="pan" required maxlength="10" autocomplete="off" autocapitalize="characters"
                 spellcheck="false" pattern="[A-Za-z]{3}[Pp][A-Za-z][0-9]{4}[A-Za-z]" aria-describedby="kyc-pan-hint">
          <small id="kyc-pan-hint">10 characters, like ABCPV1234Q</small>
          <label for="kyc-name">Full name as on the PAN card</label>
          <input id="kyc-name" name="full_name" required maxlength="100" autocomplete="name">
          <label for="kyc-dob">Date of birth</label>
          <input id="kyc-dob" name="date_of_birth" type="date" required autocomplete="bday">
          <p class="check" style="margin:.3rem 0"><input id="kyc-consent" name="consent" type="checkbox" required>
          <label for="kyc-consent" style="display:inline;font-weight:400">I agree to my PAN being checked with the verification service.</label></p>
          <p role="alert" id="kyc-error" class="error" hidden></p>
          <button type="submit" class="primary" id="kyc-submit">Verify</button>
        </form>
      </section>`;
    const $ = (s) => el.querySelector(s);
    const form = $('#kyc-form');
    const alertEl = $('#kyc-error');
    let stopPolling = () => {};

    const show = (view) => {
      const card = $('#kyc-status-card');
      card.dataset.status = view.status;
      $('#kyc-badge').textContent = LABEL[view.status] || view.status;
      $('#kyc-status').textContent = statusText(view);
      $('#kyc-refresh').hidden = view.status !== 'PENDING';
      form.hidden = !view.can_submit;
      $('#kyc-submit').textContent = view.status === 'REJECTED' ? 'Submit again' : 'Verify';
      $('#kyc-form-h').textContent = view.status === 'REJECTED' ? 'Correct your details and submit again' : 'Your PAN details';
      stopPolling();
      if (view.status === 'PENDING') {
        stopPolling = poll(async () => {
          const next = await ctx.api('GET', '/v1/kyc');
          if (next.status !== 'PENDING') {
            show(next);
            if (next.status === 'REJECTED') $('#kyc-pan').focus();
            return true;
          }
          return false;
        }, 2000);
      }
    };

    const load = async () => {
      try {
        clearError($('#kyc-load-error'));
        show(await ctx.api('GET', '/v1/kyc'));
      } catch (err) {
        showError(ctx, $('#kyc-load-error'), err);
        $('#kyc-status').textContent = 'Your status could not be loaded.';
      }
    };

    $('#kyc-refresh').addEventListener('click', load);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearError(alertEl);
      const v = values(form);
      const body = { pan: v.pan.toUpperCase(), full_name: v.full_name, date_of_birth: v.date_of_birth, consent: v.consent === true };
      // Say what is missing before asking the API (the API checks everything again).
      const missing = !body.consent ? 'consent_required' : !body.pan ? 'invalid_pan' : !body.full_name ? 'invalid_full_name' : !body.date_of_birth ? 'invalid_date_of_birth' : null;
      if (missing) {
        showError(ctx, alertEl, { code: missing });
        return;
      }
      await busy($('#kyc-submit'), 'Sending…', async () => {
        try {
          const view = await ctx.api('POST', '/v1/kyc', { body });
          form.elements.consent.checked = false; // consent is per submission; the rest stays for a resubmit
          show(view);
          $('#kyc-status').focus?.();
          ctx.toast?.(view.status === 'VERIFIED' ? 'Identity verified.' : 'Details sent for verification.');
        } catch (err) {
          showError(ctx, alertEl, err);
          if (err.code === 'kyc_pending' || err.code === 'kyc_already_verified') load();
        }
      });
    });
    $('#kyc-status').tabIndex = -1;

    await load();
    return () => stopPolling();
  },
};
