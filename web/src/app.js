// The shell: the session (sign-in, silent refresh, sign-out), the hash router, the navigation,
// the live wallet, and the `ctx` every screen gets (web/README.md describes the contract).

import { api as rawApi, ApiError } from './api.js';
import { money, esc } from './format.js';
import { sentence, addSentences } from './errors.js';
import screens from './screens/index.js';

const REFRESH_KEY = 'purse.refresh'; // the refresh token, kept for this tab only (sessionStorage)
const $ = (sel) => document.querySelector(sel);

for (const s of screens) addSentences(s.errors);

// ---- the session -------------------------------------------------------------------------
// The access token lives in memory only; the single-use refresh token in sessionStorage, so a
// reload or the trip to the payment page and back keeps the person signed in, and closing the
// tab ends it. The access token is renewed a minute before it expires (silent refresh), and once
// more if the API answers `token_expired` anyway (a sleeping laptop).
const session = { access: null, expiresAt: 0, timer: 0, refreshing: null };

function storeTokens(pair) {
  session.access = pair.access_token;
  const life = Math.max(5, Number(pair.expires_in) || 900);
  session.expiresAt = Date.now() + life * 1000;
  try {
    sessionStorage.setItem(REFRESH_KEY, pair.refresh_token);
  } catch {
    /* storage off: the session lasts until reload */
  }
  clearTimeout(session.timer);
  // A minute early, or at 80 % of a short life.
  const lead = Math.min(60, life * 0.2);
  session.timer = setTimeout(() => refresh().catch(() => {}), (life - lead) * 1000);
}

/** The refresh token kept for this tab, or null (none, or storage off). */
function storedRefresh() {
  try {
    return sessionStorage.getItem(REFRESH_KEY);
  } catch {
    return null;
  }
}

function clearTokens() {
  clearTimeout(session.timer);
  session.access = null;
  session.expiresAt = 0;
  try {
    sessionStorage.removeItem(REFRESH_KEY);
  } catch {
    /* nothing stored */
  }
}

/** Spends the refresh token for a new pair. One refresh at a time: the token is single use. */
function refresh() {
  if (session.refreshing) return session.refreshing;
  const token = storedRefresh();
  if (!token) return Promise.reject(new ApiError(401, 'unauthorized', ''));
  session.refreshing = rawApi('POST', '/v1/auth/refresh', { body: { refresh_token: token } })
    .then((pair) => {
      storeTokens(pair);
      return pair;
    })
    .catch((err) => {
      if (err.status === 401) ended(err.code);
      throw err;
    })
    .finally(() => {
      session.refreshing = null;
    });
  return session.refreshing;
}

/** ctx.api: the API with the session's access token, refreshed silently when needed. */
async function authedApi(method, path, opts = {}) {
  if (!session.access || Date.now() > session.expiresAt - 5000) await refresh();
  try {
    return await rawApi(method, path, { ...opts, token: session.access });
  } catch (err) {
    if (err.status === 401 && err.code === 'token_expired') {
      await refresh();
      return rawApi(method, path, { ...opts, token: session.access });
    }
    if (err.status === 401 && path !== '/v1/auth/logout') ended(err.code);
    throw err;
  }
}

// ---- the live wallet ---------------------------------------------------------------------
const walletSubs = new Set();
let walletValue = null;
const wallet = {
  get: () => walletValue,
  set(w) {
    walletValue = w ? { ...walletValue, ...w } : null;
    for (const fn of walletSubs) {
      try {
        fn(walletValue);
      } catch (e) {
        console.error(e);
      }
    }
  },
  async refresh() {
    const w = await authedApi('GET', '/v1/wallet');
    wallet.set(w);
    return walletValue;
  },
  subscribe(fn) {
    walletSubs.add(fn);
    if (walletValue) fn(walletValue);
    return () => walletSubs.delete(fn);
  },
};

// ---- ctx -----------------------------------------------------------------------------------
function showError(el, err, table) {
  if (!el) return;
  el.setAttribute('role', 'alert');
  el.hidden = false;
  const code = err && err.code;
  el.textContent = sentence(code, undefined, table);
  if (!code) console.error(err);
}

/** The ctx a screen gets: its own `errors` table comes first in sentence() and showError(). */
function ctxFor(screen) {
  const table = screen.errors || {};
  return Object.assign(Object.create(ctx), {
    sentence: (code, fallback) => sentence(code, fallback, table),
    showError: (el, err) => showError(el, err, table),
  });
}

let toastTimer = 0;
function toast(text) {
  const t = $('#toast');
  t.textContent = text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    t.textContent = '';
  }, 6000);
}

const ctx = {
  api: authedApi,
  money,
  sentence,
  showError,
  user: null,
  wallet,
  navigate: (route) => {
    location.hash = '#/' + String(route).replace(/^#?\/?/, '');
  },
  toast,
  signIn,
  signOut,
  isAdmin: () => !!(ctx.user && (ctx.user.roles || []).includes('admin')),
};

// ---- signing in and out ------------------------------------------------------------------
let wanted = ''; // where to go after signing in

/** Signs in with e-mail and password, loads the profile and the wallet, starts screens' onSignIn. */
async function signIn(email, password) {
  const pair = await rawApi('POST', '/v1/auth/login', { body: { email, password } });
  storeTokens(pair);
  await started();
  const to = wanted && !isPublic(wanted) ? wanted : 'wallet';
  wanted = '';
  ctx.navigate(to);
}

async function started() {
  ctx.user = await authedApi('GET', '/v1/me');
  renderChrome();
  wallet.refresh().catch(() => {});
  for (const s of visibleScreens()) {
    try {
      s.onSignIn && s.onSignIn(ctxFor(s));
    } catch (e) {
      console.error(e);
    }
  }
}

/** Signs out: revokes the session (best effort), forgets the tokens, back to sign-in. */
async function signOut() {
  const token = storedRefresh();
  const wasIn = !!ctx.user;
  finish();
  if (token) rawApi('POST', '/v1/auth/logout', { body: { refresh_token: token } }).catch(() => {});
  ctx.navigate('signin');
  if (wasIn) toast('You are signed out.');
}

function finish() {
  const was = ctx.user;
  clearTokens();
  if (was) {
    for (const s of screens) {
      try {
        s.onSignOut && s.onSignOut();
      } catch (e) {
        console.error(e);
      }
    }
  }
  ctx.user = null;
  wallet.set(null);
  renderChrome();
}

/** The session ended under us (revoked, refresh reused, expired): to sign-in with the reason. */
function ended(code) {
  if (!ctx.user && !session.access) return;
  const route = current().route;
  finish();
  if (!isPublic(route)) wanted = location.hash.slice(2);
  ctx.navigate('signin');
  setTimeout(() => toast(sentence(code || 'unauthorized')), 0);
}

// ---- routing -------------------------------------------------------------------------------
const isPublic = (route) => !!(screens.find((s) => s.route === String(route).split(/[/?]/)[0]) || {}).public;
const visibleScreens = () => screens.filter((s) => !s.admin || ctx.isAdmin());

function current() {
  const h = location.hash.replace(/^#\/?/, '');
  const [pathPart, q = ''] = h.split('?');
  const [route, ...rest] = pathPart.split('/');
  return { route: decodeURIComponent(route || ''), param: rest.length ? rest.map(decodeURIComponent).join('/') : undefined, query: new URLSearchParams(q) };
}

let cleanup = null;
let mountSeq = 0;

async function route() {
  const { route: r, param, query } = current();
  const screen = screens.find((s) => s.route === r);
  if (!ctx.user) {
    if (!screen || !screen.public) {
      if (r && r !== 'signin') wanted = location.hash.slice(2);
      return ctx.navigate('signin');
    }
  } else if (!screen || screen.public || (screen.admin && !ctx.isAdmin())) {
    return ctx.navigate('wallet');
  }
  const seq = ++mountSeq;
  if (typeof cleanup === 'function') {
    try {
      cleanup();
    } catch (e) {
      console.error(e);
    }
  }
  cleanup = null;
  const main = $('#main');
  const el = document.createElement('section');
  el.className = 'screen';
  el.dataset.screen = screen.route;
  main.replaceChildren(el);
  document.title = screen.title + ' · Purse';
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.route === screen.route) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  try {
    const c = await screen.mount(el, ctxFor(screen), param, query);
    if (seq === mountSeq) cleanup = c;
    else if (typeof c === 'function') c();
  } catch (err) {
    console.error(err);
    if (seq === mountSeq) {
      const p = document.createElement('p');
      el.append(p);
      showError(p, err instanceof ApiError ? err : null);
    }
  }
  // Move focus to the new screen's heading for keyboard and screen-reader users.
  if (seq === mountSeq && focusOnRoute) {
    const h = el.querySelector('h1') || main;
    h.setAttribute('tabindex', '-1');
    h.focus({ preventScroll: false });
  }
  focusOnRoute = true;
}
let focusOnRoute = false; // not on the first screen of a page load

// ---- chrome: header, navigation ----------------------------------------------------------
function renderChrome() {
  const signedIn = !!ctx.user;
  $('#account').hidden = !signedIn;
  $('#nav').hidden = !signedIn;
  if (!signedIn) return;
  $('#nav ul').innerHTML = visibleScreens()
    .filter((s) => s.nav)
    .map((s) => `<li><a href="#/${esc(s.route)}" data-route="${esc(s.route)}">${esc(s.title)}</a></li>`)
    .join('');
  $('#who').textContent = ctx.user.email;
}

wallet.subscribe((w) => {
  const b = $('#hdr-balance');
  if (b) b.textContent = w ? money(w.available, w.currency) : '';
});

// ---- start ---------------------------------------------------------------------------------
// A deep link from outside (the payment page's return, a referral link) arrives as a path under
// the app, e.g. /app/wallet/deposits/<id>?result=paid or /app/signup?ref=CODE; turn it into the
// hash route and put the URL back to the app's own.
function fromPath() {
  const baseEl = document.querySelector('base');
  const basePath = baseEl ? new URL(baseEl.href).pathname : '/';
  const p = location.pathname;
  if (!p.startsWith(basePath) || p === basePath) return;
  const rest = p.slice(basePath.length).replace(/\/+$/, '');
  const q = location.search.slice(1);
  let hash = '';
  let m;
  if ((m = /^wallet\/deposits\/([^/]+)$/.exec(rest))) hash = 'deposit/' + m[1];
  else if (rest === 'signup') hash = 'signup';
  else hash = rest;
  history.replaceState(null, '', basePath + '#/' + hash + (q ? '?' + q : ''));
}

async function boot() {
  fromPath();
  $('#signout').addEventListener('click', () => signOut());
  $('#skip').addEventListener('click', (ev) => {
    ev.preventDefault(); // not a hash change: the router owns the hash
    const h = $('#main h1') || $('#main');
    h.setAttribute('tabindex', '-1');
    h.focus();
  });
  window.addEventListener('hashchange', route);
  if (storedRefresh()) {
    try {
      await refresh();
      await started();
    } catch (err) {
      finish();
      if (err.status !== 401) toast(sentence(err.code));
    }
  }
  renderChrome();
  await route();
  document.documentElement.dataset.ready = '1'; // for tests: the first screen is mounted
}

boot();
