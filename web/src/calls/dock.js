// The call dock: a panel fixed to the bottom of every screen while there is a call, so an
// incoming call is noticed wherever the person is in the app. Incoming: an alert dialog with
// Accept and Decline (focus moves to Accept). Ringing: Cancel. In a call: a live timer, the
// minutes billed and the coins paid (or earned) so far, Mute and Hang up. Ended: why, in a
// sentence, and what it cost.
import * as phone from './phone.js';
import { esc, duration } from '../format.js';

/** Why a call ended, as the person on each side reads it (`reason` of `call.ended`). */
const ENDED = {
  hangup: (c) => (c.byMe ? 'You hung up.' : 'The other person hung up.'),
  canceled: (c) => (c.role === 'caller' ? 'You cancelled the call. Nothing was charged.' : 'Missed call: the caller hung up before you answered.'),
  rejected: (c) => (c.role === 'caller' ? 'Your call was declined. Nothing was charged.' : 'You declined the call.'),
  no_answer: (c) => (c.role === 'caller' ? 'No answer. Nothing was charged.' : 'Missed call: it rang out before you answered.'),
  unavailable: () => 'They are not online right now, so the call could not ring. Nothing was charged; try again later.',
  insufficient_funds: (c) =>
    c.role === 'callee'
      ? 'The call ended because the caller ran out of coins.'
      : c.minutes
        ? 'Your coins ran out, so the call ended at the end of the last minute you could pay for. Buy coins to talk longer.'
        : 'You no longer had enough coins for the first minute, so the call ended. Nothing was charged.',
  disconnected: () => 'The call ended because a connection was lost. Only the time you talked was charged.',
  max_duration: () => 'The call reached the longest time a call may last.',
};

/** Refusals of call actions (`error` frames) and of the phone itself, as sentences. */
export const CALL_ERRORS = {
  callee_not_found: 'There is no user with that id or referral code.',
  cannot_call_self: 'You cannot call yourself.',
  insufficient_funds: 'You do not have enough coins available for the first minute of this call. Buy coins, then call again.',
  wallet_restricted: 'Your wallet is restricted because a payment was reversed, so you cannot place calls until a deposit covers it.',
  device_busy: 'You are already in a call on this device. Hang up first.',
  call_not_ringing: 'This call is no longer ringing: it was answered on another device or has ended.',
  call_not_found: 'This call is over.',
  call_ended: 'This call has ended.',
  not_callee: 'Only the person being called can answer.',
  other_device: 'This call is on another of your devices.',
  signal_too_large: 'The audio could not be set up for this call.',
  not_connected: 'Calls are still connecting. Wait a moment and try again.',
  busy: 'You are already in a call. Hang up first.',
};

/** The sentence for a call refusal `code`. */
export const callError = (ctx, code) => CALL_ERRORS[code] || ctx.sentence(code);

/** Why the call ended, in a sentence. */
export function endSentence(ctx, c) {
  if (c.error) return callError(ctx, c.error);
  const f = ENDED[c.reason];
  return f ? f(c) : 'The call ended.';
}

const CSS = `#call-dock{position:fixed;left:0;right:0;bottom:0;z-index:10;background:var(--card,#fff);border-top:3px solid var(--accent,#0b5cad);box-shadow:0 -2px 12px #0003;padding:.75rem 1rem 1rem;max-height:75vh;overflow:auto}
#call-dock>div{max-width:40rem;margin:0 auto}#call-dock h2{margin:0 0 .3rem}#call-dock p{margin:.3rem 0}#call-dock .row{margin-top:.6rem}#call-dock .big{margin:.2rem 0}
.peer{overflow-wrap:anywhere;font-family:ui-monospace,monospace;font-size:.9em}
#call-dock button.danger{background:var(--bad,#b3261e);border-color:var(--bad,#b3261e);color:#fff}
body.in-call main{padding-bottom:20rem}`;

let el = null;
let unsub = null;
let shown = ''; // what the dock shows now: `<call id or placing>:<state>`
let timer = 0;
let returnFocus = null;

/** Mounts the dock (once per sign-in). */
export function mountDock(ctx) {
  if (el) return;
  const style = document.createElement('style');
  style.textContent = CSS;
  el = document.createElement('section');
  el.id = 'call-dock';
  el.hidden = true;
  el.append(document.createElement('div'));
  document.head.append(style);
  document.body.append(el);
  el._style = style;
  el.addEventListener('click', (ev) => {
    const b = ev.target.closest('[data-act]');
    if (!b) return;
    const act = b.dataset.act;
    if (act === 'accept') phone.accept();
    else if (act === 'reject') phone.reject();
    else if (act === 'hangup') phone.hangUp();
    else if (act === 'mute') phone.setMuted(b.getAttribute('aria-pressed') !== 'true');
    else if (act === 'close') phone.dismiss();
    else if (act === 'buy') {
      phone.dismiss();
      ctx.navigate('deposit');
    }
  });
  // Escape declines a ringing call, as it closes any dialog.
  el.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && el.getAttribute('role') === 'alertdialog') phone.reject();
  });
  unsub = phone.subscribe((s) => render(ctx, s));
}

/** Removes it (sign-out). */
export function unmountDock() {
  ring(false);
  if (unsub) unsub();
  unsub = null;
  clearInterval(timer);
  if (el) {
    el._style.remove();
    el.remove();
  }
  el = null;
  shown = '';
  document.body.classList.remove('in-call');
}

function render(ctx, { call: c }) {
  if (!c) {
    if (shown) hide();
    return;
  }
  const key = (c.id || 'placing') + ':' + (c.state === 'answering' ? 'incoming' : c.state);
  const box = el.firstElementChild;
  if (key !== shown) {
    const hadFocus = el.contains(document.activeElement);
    if (!shown) returnFocus = document.activeElement;
    shown = key;
    box.innerHTML = markup(ctx, c);
    el.hidden = false;
    document.body.classList.add('in-call');
    if (c.state === 'incoming') {
      el.setAttribute('role', 'alertdialog');
      el.setAttribute('aria-labelledby', 'cd-title');
      el.setAttribute('aria-describedby', 'cd-desc');
      el.removeAttribute('aria-label');
      box.querySelector('[data-act=accept]').focus();
    } else {
      el.setAttribute('role', 'region');
      el.setAttribute('aria-label', 'Call');
      el.removeAttribute('aria-labelledby');
      el.removeAttribute('aria-describedby');
      if (hadFocus) {
        const b = box.querySelector('button');
        if (b) b.focus();
      }
    }
    clearInterval(timer);
    if (c.state === 'active') timer = setInterval(() => tick(c), 1000);
  }
  ring(c.state === 'incoming');
  update(ctx, c);
}

// The ring: a two-tone telephone ring (WebAudio, nothing downloaded) and the tab's title, so an
// incoming call is noticed in a background tab too.
let ringer = null;
function ring(on) {
  if (!on) {
    if (ringer) {
      clearInterval(ringer.timer);
      ringer.audio && ringer.audio.close().catch(() => {});
      if (document.title.startsWith(RINGING)) document.title = document.title.slice(RINGING.length);
    }
    ringer = null;
    return;
  }
  if (ringer) return;
  ringer = { timer: 0, audio: null };
  document.title = RINGING + document.title;
  try {
    const audio = new (window.AudioContext || window.webkitAudioContext)();
    ringer.audio = audio;
    const burst = () => {
      const gain = audio.createGain();
      gain.gain.value = 0.08;
      gain.connect(audio.destination);
      for (const f of [440, 480]) {
        const o = audio.createOscillator();
        o.frequency.value = f;
        o.connect(gain);
        o.start();
        o.stop(audio.currentTime + 1.2);
      }
    };
    burst();
    ringer.timer = setInterval(burst, 3000);
  } catch {
    /* no audio: the dialog and the title still show it */
  }
}
const RINGING = 'Incoming call · ';

function hide() {
  const hadFocus = el.contains(document.activeElement);
  shown = '';
  clearInterval(timer);
  ring(false);
  el.hidden = true;
  el.firstElementChild.textContent = '';
  document.body.classList.remove('in-call');
  if (hadFocus) {
    const back = returnFocus && document.contains(returnFocus) ? returnFocus : document.getElementById('main');
    if (back) back.focus();
  }
  returnFocus = null;
}

const peer = (c) => `<span class="peer">${esc(c.peer)}</span>`;

function markup(ctx, c) {
  const price = esc(ctx.money(c.price, c.currency));
  const paid = c.role === 'caller' ? 'Paid so far' : 'Earned so far';
  switch (c.state) {
    case 'incoming':
    case 'answering':
      return `<h2 id="cd-title">Incoming call</h2>
        <p id="cd-desc">${peer(c)} is calling you. They pay ${price} a minute.</p>
        <p id="cd-status" class="muted" role="status"></p>
        <div class="row"><button type="button" class="primary" data-act="accept">Accept</button><button type="button" data-act="reject">Decline</button></div>`;
    case 'placing':
    case 'ringing':
      return `<h2>Calling</h2><p>${peer(c)}, ${price} a minute.</p>
        <p id="cd-status" role="status">${c.state === 'ringing' ? 'Ringing…' : 'Placing the call…'}</p>
        <div class="row"><button type="button" class="danger" data-act="hangup">Cancel call</button></div>`;
    case 'active':
      return `<h2>In a call</h2><p>With ${peer(c)}, ${price} a minute.</p>
        <p class="big" role="timer" aria-label="Call time" id="cd-timer">0:00</p>
        <dl class="figures"><dt>Minutes billed</dt><dd id="cd-minutes">0</dd><dt>${paid}</dt><dd id="cd-amount"></dd></dl>
        <p id="cd-media" class="muted" role="status"></p>
        <p id="cd-warn" role="alert"></p>
        <div class="row"><button type="button" data-act="mute" aria-pressed="false">Mute</button><button type="button" class="danger" data-act="hangup">Hang up</button></div>`;
    default: {
      const lowFunds = c.role === 'caller' && (c.reason === 'insufficient_funds' || c.error === 'insufficient_funds' || c.error === 'wallet_restricted');
      const alert = lowFunds || (c.error && c.error !== 'other_device');
      return `<h2>${c.id ? 'Call ended' : 'Call not placed'}</h2>
        <p id="cd-reason" role="${alert ? 'alert' : 'status'}">${esc(endSentence(ctx, c))}</p>
        ${c.startedAt ? `<dl class="figures"><dt>Talk time</dt><dd id="cd-duration">${esc(duration(c.duration))}</dd><dt>${c.role === 'caller' ? 'Paid' : 'Earned'}</dt><dd id="cd-amount">${esc(ctx.money(c.amount, c.currency))}</dd></dl>` : ''}
        <div class="row">${lowFunds ? '<button type="button" class="primary" data-act="buy">Buy coins</button>' : ''}<button type="button" data-act="close">Close</button></div>`;
    }
  }
}

function update(ctx, c) {
  const $ = (id) => el.querySelector('#' + id);
  if (c.state === 'answering') {
    $('cd-status').textContent = 'Connecting…';
    for (const b of el.querySelectorAll('button')) b.disabled = true;
  }
  if (c.state !== 'active') return;
  tick(c);
  $('cd-minutes').textContent = String(c.minutes);
  $('cd-amount').textContent = ctx.money(c.amount, c.currency);
  const media = {
    new: 'Connecting the audio…',
    connecting: 'Connecting the audio…',
    connected: c.noMic ? 'Connected. Your microphone is not available: they cannot hear you.' : 'Connected.',
    disconnected: 'The audio dropped; trying to reconnect…',
    failed: 'The audio could not connect. Hang up and try again.',
    closed: '',
  }[c.media];
  $('cd-media').textContent = media ?? '';
  const mute = el.querySelector('[data-act=mute]');
  mute.setAttribute('aria-pressed', String(c.muted));
  mute.textContent = c.muted ? 'Unmute' : 'Mute';
  // The next minute is held at the end of this one: below the price, the call ends then.
  const warn = c.role === 'caller' && c.available !== null && phone.below(c.available, c.price);
  const w = $('cd-warn');
  const text = warn ? 'Your coins run out at the end of this minute. Buy coins to keep talking.' : '';
  if (w.textContent !== text) w.textContent = text;
  if (c.error === 'other_device') w.textContent = callError(ctx, c.error);
}

function tick(c) {
  const t = el && el.querySelector('#cd-timer');
  if (t && c.startedAt) t.textContent = duration((Date.now() - c.startedAt) / 1000);
}
