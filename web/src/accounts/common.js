// Small helpers shared by the accounts screens (kyc, bank, withdrawals, referrals, admin):
// error sentences with a screen's own wording for a code, a busy submit button, a poller that
// stops with the screen, and reading a form. No framework: a few lines each.

import { esc } from '../format.js';

export { esc };

/**
 * Shows `err` as a sentence in `alertEl` (a role="alert" element): `local[code]` when the
 * screen words this code its own way here (`not_found` of a withdrawal is not that of a KYC
 * check), else the app's sentence. Never raw JSON, never a stack.
 */
export function showError(ctx, alertEl, err, local = {}) {
  const code = (err && err.code) || 'internal_error';
  if (!(err && err.code)) console.error(err); // a bug of ours, not an API answer
  let text = local[code] || (ctx.sentence ? ctx.sentence(code) : '') || 'Something went wrong. Please try again.';
  const retry = err && err.details && err.details.retry_after;
  if (retry && (err.status === 503 || err.status === 429)) text += ` You can try again in ${retry} second${retry == 1 ? '' : 's'}.`;
  alertEl.textContent = text;
  alertEl.hidden = false;
  alertEl.dataset.code = code;
}

/** Empties and hides an alert element. */
export function clearError(alertEl) {
  alertEl.textContent = '';
  alertEl.hidden = true;
  delete alertEl.dataset.code;
}

/**
 * Runs `work` with `button` disabled and marked busy (its label swapped for `busyLabel`), so a
 * second click cannot send the request twice. Returns what `work` returns.
 */
export async function busy(button, busyLabel, work) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  if (busyLabel) button.textContent = busyLabel;
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    button.textContent = label;
  }
}

/**
 * Calls `tick` every `ms` until it returns true (done) or `stop()` is called (the screen was
 * left). A tick that throws is tried again next time: polling outlives a blip.
 */
export function poll(tick, ms) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    if (stopped) return;
    let done = false;
    try {
      done = await tick();
    } catch {
      /* try again next tick */
    }
    if (!stopped && !done) timer = setTimeout(run, ms);
  };
  timer = setTimeout(run, ms);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** The form's named fields as trimmed strings (checkboxes as booleans). */
export function values(form) {
  const out = {};
  for (const field of form.elements) {
    if (!field.name) continue;
    out[field.name] = field.type === 'checkbox' ? field.checked : field.value.trim();
  }
  return out;
}
