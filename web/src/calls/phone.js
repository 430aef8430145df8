// The phone: the call WebSocket of this tab and the one call on it (docs/websocket.md).
//
// - The socket: opened on sign-in with a one-time ticket (POST /v1/ws-tickets), kept open with a
//   `ping` every few minutes (no `pong` within 10 s: closed and opened again), and opened again
//   with a fresh ticket whenever it drops, backing off from 1 s to 30 s.
// - The call: placing -> ringing (caller) or incoming (callee) -> active -> ended, driven by the
//   server's frames; every change is told to the subscribers (the dock and the Calls screen).
// - The audio: WebRTC between the two browsers. The caller sends the offer once the call has
//   started (so it reaches only the device that answered); offers, answers and ICE candidates go
//   through the socket's `signal` action verbatim. No STUN/TURN unless the page sets
//   window.PURSE_ICE_SERVERS (host candidates are enough on one network).
// - Money: `billing` frames carry the caller's balance and available coins; they go straight into
//   ctx.wallet, so the wallet and the header move during the call.
//
// For tests the current call is window.__purseCall (its `pc` is the RTCPeerConnection), and the
// socket window.__purseSocket.

const PING_EVERY = 4 * 60_000;
const PONG_WITHIN = 10_000;
const END_CHECK_AFTER = 5_000; // no `call.ended` this long after a hang-up: ask GET /v1/calls/{id}

const st = { ctx: null, ws: null, online: false, call: null, retry: 0, retryTimer: 0, pingTimer: 0, pongTimer: 0 };
const subs = new Set();
let audioEl = null;

/** Subscribes to every change of the socket or the call; returns the unsubscribe function. */
export function subscribe(fn) {
  subs.add(fn);
  fn(snapshot());
  return () => subs.delete(fn);
}
/** {online, call}: whether the socket is open, and the call (null when there is none). */
export const snapshot = () => ({ online: st.online, call: st.call });
function emit() {
  if (typeof window !== 'undefined') {
    window.__purseCall = st.call;
    window.__purseSocket = st.ws;
  }
  for (const fn of subs) {
    try {
      fn(snapshot());
    } catch (e) {
      console.error(e);
    }
  }
}

// ---- money as strings: cents as BigInt, never a float --------------------------------------
const cents = (s) => {
  const m = /^(-?)(\d+)(?:\.(\d{0,2}))?/.exec(String(s ?? ''));
  return m ? BigInt(m[1] + m[2] + ((m[3] || '') + '00').slice(0, 2)) : 0n;
};
const fromCents = (c) => {
  const neg = c < 0n;
  const s = (neg ? -c : c).toString().padStart(3, '0');
  return (neg ? '-' : '') + s.slice(0, -2) + '.' + s.slice(-2);
};
/** Whether `available` is below `price` (the next minute cannot be held). */
export const below = (available, price) => cents(available) < cents(price);

// ---- the socket -----------------------------------------------------------------------------
/** Starts the phone for a signed-in person (the Calls screen's onSignIn). */
export function start(ctx) {
  if (st.ctx === ctx && st.ws) return;
  st.ctx = ctx;
  st.retry = 0;
  if (typeof window !== 'undefined') window.addEventListener('online', onOnline);
  connect();
}

/** Stops it on sign-out: ends a live call, closes the socket, forgets everything. */
export function stop() {
  if (st.call && live(st.call) && st.call.id) send({ action: 'call.end', call_id: st.call.id });
  cleanupMedia(st.call);
  st.ctx = null;
  clearTimeout(st.retryTimer);
  stopPings();
  const ws = st.ws;
  st.ws = null;
  st.online = false;
  st.call = null;
  if (ws) ws.close(1000);
  if (typeof window !== 'undefined') window.removeEventListener('online', onOnline);
  emit();
}

function onOnline() {
  if (st.ctx && !st.ws) {
    st.retry = 0;
    connect();
  }
}

async function connect() {
  clearTimeout(st.retryTimer);
  const ctx = st.ctx;
  if (!ctx || st.ws) return;
  let ticket;
  try {
    ticket = await ctx.api('POST', '/v1/ws-tickets');
  } catch (e) {
    if (e && e.status === 401) return; // signed out: the shell goes to sign-in
    return reconnectLater();
  }
  if (st.ctx !== ctx || st.ws) return;
  let ws;
  try {
    ws = new WebSocket(ticket.url);
  } catch {
    return reconnectLater();
  }
  st.ws = ws;
  ws.onopen = () => {
    if (st.ws !== ws) return;
    st.online = true;
    st.retry = 0;
    startPings();
    emit();
    recover();
  };
  ws.onmessage = (m) => {
    if (st.ws !== ws) return;
    let frame;
    try {
      frame = JSON.parse(m.data);
    } catch {
      return;
    }
    if (frame && typeof frame === 'object') onFrame(frame);
  };
  ws.onclose = () => {
    if (st.ws !== ws) return;
    st.ws = null;
    st.online = false;
    stopPings();
    // A call does not survive its connection: the server ends it (`disconnected`); ask for the
    // result once connected again (recover()).
    if (st.call && live(st.call)) st.call.lost = true;
    emit();
    reconnectLater();
  };
}

function reconnectLater() {
  if (!st.ctx) return;
  const delay = Math.min(30_000, 1000 * 2 ** st.retry);
  st.retry = Math.min(st.retry + 1, 5);
  st.retryTimer = setTimeout(connect, delay);
}

function startPings() {
  stopPings();
  st.pingTimer = setInterval(() => {
    if (!send({ action: 'ping' })) return;
    clearTimeout(st.pongTimer);
    st.pongTimer = setTimeout(() => st.ws && st.ws.close(), PONG_WITHIN);
  }, PING_EVERY);
}
function stopPings() {
  clearInterval(st.pingTimer);
  clearTimeout(st.pongTimer);
}

function send(frame) {
  if (!st.ws || st.ws.readyState !== 1) return false;
  st.ws.send(JSON.stringify(frame));
  return true;
}

/**
 * After a reconnection: a call whose connection closed is ended by the server (`disconnected`),
 * and no frame says so on the new connection; the HTTP API knows. Asked a few times, as the
 * server may not have seen the close yet.
 */
async function recover() {
  const c = st.call;
  for (let i = 0; i < 6 && c && c.id && c.lost && st.call === c && live(c); i++) {
    if (i) await new Promise((r) => setTimeout(r, 3000));
    await checkEnded(c);
  }
}

/** Asks GET /v1/calls/{id} and ends the call here if it has ended there. */
async function checkEnded(c) {
  if (!st.ctx || st.call !== c || !live(c)) return;
  try {
    const call = await st.ctx.api('GET', '/v1/calls/' + encodeURIComponent(c.id));
    if (call.status === 'ENDED' && st.call === c && live(c)) {
      ended(c, { reason: call.end_reason, amount: call.amount, duration_seconds: call.duration_seconds, minutes_billed: call.minutes_billed });
      if (st.ctx) st.ctx.wallet.refresh().catch(() => {});
    }
  } catch {
    /* asked again on the next reconnection */
  }
}

// ---- the call -------------------------------------------------------------------------------
const live = (c) => c.state !== 'ended';

function newCall(fields) {
  return { id: null, role: 'caller', peer: '', price: '', currency: 'COIN', period: 60, state: 'placing', startedAt: 0, minutes: 0, amount: '0.00', available: null, reason: '', error: '', media: 'new', muted: false, mic: null, pc: null, chain: Promise.resolve(), queued: [], ...fields };
}

/**
 * Places a call to `user` ({id, price_per_minute, currency, billing_period_seconds} of GET
 * /v1/users/{id}). Returns an error code when it cannot be sent: `not_connected`, `busy`.
 */
export function invite(user) {
  if (st.call && live(st.call)) return 'busy';
  if (!st.online) return 'not_connected';
  const c = newCall({ role: 'caller', peer: user.id, price: user.price_per_minute, currency: user.currency || 'COIN', period: user.billing_period_seconds || 60 });
  // The microphone is asked for now, while the click still counts as the person's gesture.
  c.mic = getMic();
  cleanupMedia(st.call);
  st.call = c;
  send({ action: 'call.invite', callee_id: user.id });
  emit();
  return null;
}

/** Answers the incoming call. */
export function accept() {
  const c = st.call;
  if (!c || c.state !== 'incoming' || !st.online) return;
  c.mic = getMic();
  c.state = 'answering';
  send({ action: 'call.accept', call_id: c.id });
  emit();
}

/** Declines the incoming call. */
export function reject() {
  const c = st.call;
  if (!c || c.state !== 'incoming') return;
  c.byMe = true;
  send({ action: 'call.reject', call_id: c.id });
}

/** Hangs up (or cancels a call that is still ringing). */
export function hangUp() {
  const c = st.call;
  if (!c || !live(c)) return;
  c.byMe = true;
  if (!c.id) {
    // Not placed yet (no `call.ringing`): nothing to end on the server.
    return ended(c, { reason: 'canceled' });
  }
  if (!send({ action: 'call.end', call_id: c.id })) return checkEnded(c);
  setTimeout(() => checkEnded(c), END_CHECK_AFTER);
}

/** Mutes or unmutes the microphone. */
export function setMuted(muted) {
  const c = st.call;
  if (!c) return;
  c.muted = !!muted;
  if (c.stream) for (const t of c.stream.getAudioTracks()) t.enabled = !c.muted;
  emit();
}

/** Forgets an ended call (the dock's Close). */
export function dismiss() {
  if (st.call && !live(st.call)) {
    st.call = null;
    emit();
  }
}

function onFrame(f) {
  const c = st.call;
  const ours = c && f.call_id && c.id === f.call_id;
  switch (f.type) {
    case 'pong':
      clearTimeout(st.pongTimer);
      return;
    case 'call.ringing':
      if (c && c.state === 'placing' && c.role === 'caller') {
        Object.assign(c, { id: f.call_id, state: 'ringing', price: f.price_per_minute, currency: f.currency, period: f.billing_period_seconds || c.period });
        emit();
      }
      return;
    case 'call.incoming':
      if (c && live(c)) {
        // One call at a time: someone already in a call is busy.
        send({ action: 'call.reject', call_id: f.call_id });
        return;
      }
      cleanupMedia(c);
      st.call = newCall({ id: f.call_id, role: 'callee', peer: f.caller_id, price: f.price_per_minute, currency: f.currency, state: 'incoming' });
      if (typeof navigator !== 'undefined' && navigator.vibrate) navigator.vibrate([400, 200, 400]);
      emit();
      return;
    case 'call.started':
      if (!ours || !live(c)) return;
      if (c.state !== 'active') {
        Object.assign(c, { state: 'active', startedAt: Date.now(), period: f.billing_period_seconds || c.period, price: f.price_per_minute || c.price });
        if (c.role === 'caller') {
          queue(c, () => offer(c));
          st.ctx.wallet.refresh().catch(() => {}); // the first minute is now held
        }
        emit();
      }
      return;
    case 'signal':
      if (ours && live(c) && f.data && typeof f.data === 'object') queue(c, () => onSignal(c, f.data));
      return;
    case 'billing':
      if (!ours || !live(c)) return;
      c.minutes = f.minutes_billed;
      c.amount = f.amount;
      if (f.available !== undefined) {
        c.available = f.available;
        setWallet(f);
      }
      emit();
      return;
    case 'call.ended':
      if (!ours) return;
      if (f.reason === 'answered_elsewhere') {
        if (c.state === 'incoming') {
          st.call = null;
          emit();
        }
        return;
      }
      if (live(c) || !c.reason) ended(c, f);
      if (f.available !== undefined) setWallet(f);
      else if (st.ctx) st.ctx.wallet.refresh().catch(() => {}); // the callee was just paid
      return;
    case 'error':
      onError(f);
      return;
    default:
      return; // a frame this app does not know: ignored, as the protocol asks
  }
}

function onError(f) {
  const c = st.call;
  if (f.code === 'connection_unknown') {
    // Purse no longer knows this connection: open a new one.
    if (st.ws) st.ws.close();
    return;
  }
  const aboutCall = c && live(c) && (f.call_id ? f.call_id === c.id : c.state === 'placing');
  if (!aboutCall) return;
  if (f.code === 'temporarily_unavailable' && c.state !== 'placing') {
    // Every action but call.invite is safe to repeat; the HTTP API has the result meanwhile.
    setTimeout(() => checkEnded(c), 1000);
    return;
  }
  if (f.code === 'other_device' || f.code === 'signal_too_large') {
    c.error = f.code;
    emit();
    return;
  }
  // The action was refused: placing it failed, or the call is over (answered elsewhere, ended).
  c.error = f.code;
  ended(c, { reason: c.reason });
}

function ended(c, f) {
  Object.assign(c, {
    state: 'ended',
    reason: f.reason || c.reason || '',
    amount: f.amount ?? c.amount,
    minutes: f.minutes_billed ?? c.minutes,
    duration: f.duration_seconds ?? (c.startedAt ? Math.round((Date.now() - c.startedAt) / 1000) : 0),
  });
  cleanupMedia(c);
  emit();
}

function setWallet(f) {
  if (!st.ctx || f.balance === undefined || f.available === undefined) return;
  st.ctx.wallet.set({ balance: f.balance, available: f.available, held: fromCents(cents(f.balance) - cents(f.available)), currency: f.currency || 'COIN' });
}

// ---- WebRTC ---------------------------------------------------------------------------------
function getMic() {
  const md = typeof navigator !== 'undefined' && navigator.mediaDevices;
  if (!md || !md.getUserMedia) return Promise.resolve(null);
  return md.getUserMedia({ audio: true, video: false }).catch(() => null);
}

/** Runs signaling steps one after another, in the order their frames came. */
function queue(c, step) {
  c.chain = c.chain.then(step).catch((e) => {
    if (c.closed) return;
    console.error(e);
    if (st.call === c && live(c)) {
      c.media = 'failed';
      emit();
    }
  });
}

function signal(c, data) {
  if (st.call === c && live(c)) send({ action: 'signal', call_id: c.id, data });
}

async function peer(c) {
  if (c.pc) return c.pc;
  const pc = new RTCPeerConnection({ iceServers: (typeof window !== 'undefined' && window.PURSE_ICE_SERVERS) || [] });
  c.pc = pc;
  const stream = await c.mic;
  if (c.closed) throw new Error('the call ended');
  if (stream) {
    c.stream = stream;
    for (const t of stream.getAudioTracks()) {
      t.enabled = !c.muted;
      pc.addTrack(t, stream);
    }
  } else {
    c.noMic = true; // they will not hear us, we can still hear them
    pc.addTransceiver('audio', { direction: 'recvonly' });
  }
  pc.onicecandidate = (e) => {
    if (e.candidate) signal(c, e.candidate.toJSON());
  };
  pc.ontrack = (e) => {
    if (!audioEl) {
      audioEl = document.createElement('audio');
      audioEl.autoplay = true;
      document.body.append(audioEl);
    }
    audioEl.srcObject = e.streams[0] || new MediaStream([e.track]);
    audioEl.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    if (st.call !== c) return;
    c.media = pc.connectionState;
    emit();
  };
  return pc;
}

async function offer(c) {
  const pc = await peer(c);
  await pc.setLocalDescription(await pc.createOffer());
  signal(c, { type: pc.localDescription.type, sdp: pc.localDescription.sdp });
}

async function onSignal(c, data) {
  if (data.type === 'offer' || data.type === 'answer') {
    if (data.type === 'answer' && !c.pc) return;
    const pc = await peer(c);
    await pc.setRemoteDescription({ type: data.type, sdp: data.sdp });
    if (data.type === 'offer') {
      await pc.setLocalDescription(await pc.createAnswer());
      signal(c, { type: pc.localDescription.type, sdp: pc.localDescription.sdp });
    }
    for (const cand of c.queued.splice(0)) await pc.addIceCandidate(cand).catch(() => {});
  } else if ('candidate' in data) {
    if (c.pc && c.pc.remoteDescription) await c.pc.addIceCandidate(data).catch(() => {});
    else c.queued.push(data);
  }
}

function cleanupMedia(c) {
  if (!c) return;
  c.closed = true;
  if (c.pc) {
    try {
      c.pc.close();
    } catch {
      /* closed */
    }
  }
  if (c.stream) for (const t of c.stream.getTracks()) t.stop();
  else if (c.mic) c.mic.then((s) => s && s.getTracks().forEach((t) => t.stop()));
  if (audioEl) audioEl.srcObject = null;
}
