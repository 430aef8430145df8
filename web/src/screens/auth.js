// Sign in (#/signin) and sign up (#/signup, #/signup?ref=CODE from a referral link). Public
// screens: the shell shows them only to people who are not signed in.
import { api, ApiError } from "../api.js";

function field(id, labelText, attrs, hint = '') {
  return `<div><label for="${id}">${labelText}</label><input id="${id}" name="${id}" ${attrs}>${hint ? `<p class="hint" id="${id}-hint">${hint}</p>` : ''}</div>`;
}

function form(el, { title, submit, fields, foot }) {
  el.innerHTML = `<h1>${title}</h1>
  <form class="card stack" novalidate>
    ${fields}
    <p class="error" role="alert"></p>
    <button class="primary" type="submit">${submit}</button>
  </form>
  <p>${foot}</p>`;
  return el.querySelector('form');
}

/** Runs `work` for a form: button disabled while it runs, the error as a sentence, input kept. */
async function busy(f, ctx, work) {
  const btn = f.querySelector('button[type=submit]');
  const err = f.querySelector('.error');
  err.textContent = '';
  btn.disabled = true;
  try {
    await work();
  } catch (e) {
    ctx.showError(err, e instanceof ApiError ? e : { code: 'bad_response' });
    const first = f.querySelector('input');
    if (e && e.code === 'invalid_credentials' && first) f.querySelector('#password').select();
  } finally {
    btn.disabled = false;
  }
}

export default {
  route: 'signin',
  title: 'Sign in',
  nav: false,
  public: true,
  mount(el, ctx) {
    const f = form(el, {
      title: 'Sign in',
      submit: 'Sign in',
      fields:
        field('email', 'E-mail', 'type="email" autocomplete="username" required inputmode="email"') +
        field('password', 'Password', 'type="password" autocomplete="current-password" required'),
      foot: 'New to Purse? <a href="#/signup">Create an account</a>',
    });
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      busy(f, ctx, () => ctx.signIn(f.email.value.trim(), f.password.value));
    });
  },
};

export const signup = {
  route: 'signup',
  title: 'Create an account',
  nav: false,
  public: true,
  mount(el, ctx, _param, query) {
    const ref = (query && query.get('ref')) || '';
    const f = form(el, {
      title: 'Create an account',
      submit: 'Create account',
      fields:
        field('email', 'E-mail', 'type="email" autocomplete="username" required inputmode="email"') +
        field('password', 'Password', 'type="password" autocomplete="new-password" required minlength="10" aria-describedby="password-hint"', '10 characters or more; not a common password.') +
        field('referral', 'Referral code (optional)', 'autocomplete="off" autocapitalize="characters" aria-describedby="referral-hint"', 'From a friend who invited you, like K7M2-QX9D.'),
      foot: 'Already have an account? <a href="#/signin">Sign in</a>',
    });
    f.referral.value = ref;
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      busy(f, ctx, async () => {
        const email = f.email.value.trim();
        const password = f.password.value;
        const referral = f.referral.value.trim();
        await api('POST', '/v1/auth/register', { body: { email, password, referral_code: referral || null } });
        await ctx.signIn(email, password);
        ctx.toast('Welcome to Purse! Your account is ready.');
      });
    });
  },
};
