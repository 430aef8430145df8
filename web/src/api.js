// The one way the app talks to the API: api(method, path, {body, idempotencyKey, query, token}).
// Answers the parsed JSON (or null for 204). Every failure becomes an ApiError with a stable `code`:
// the API's own `error.code`, or `network_error` / `bad_response` for what never reached it.

/** A failed API call, in the API's error shape. `code` picks the sentence shown to the person. */
export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message || code);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details; // {request_id, retry_after}
  }
}

/**
 * Where the API is: `<meta name="purse-api">` of index.html (set by the build for a deployed app,
 * PURSE_API_URL), empty for the same origin as the app (`make dev`).
 */
let apiBase = null;
export function base() {
  if (apiBase === null) {
    const meta = typeof document !== 'undefined' && document.querySelector('meta[name="purse-api"]');
    apiBase = ((meta && meta.content) || '').replace(/\/$/, '');
  }
  return apiBase;
}

function url(path, query) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return base() + path + (s ? '?' + s : '');
}

/**
 * Calls the API once. `token` is the access token (ctx.api adds it and refreshes it).
 * @throws {ApiError}
 */
export async function api(method, path, { body, idempotencyKey, query, token } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  if (token) headers.Authorization = 'Bearer ' + token;
  let resp;
  try {
    resp = await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network_error', 'the server could not be reached');
  }
  if (resp.status === 204) return null;
  let data = null;
  try {
    data = await resp.json();
  } catch {
    if (resp.ok) return null;
  }
  if (resp.ok) return data;
  const e = (data && data.error) || {};
  const retry = Number(resp.headers.get('Retry-After')) || undefined;
  // API Gateway's own answers ({"message": ...}) have no code: name them by status.
  const code = e.code || { 404: 'route_not_found', 429: 'too_many_requests', 503: 'temporarily_unavailable' }[resp.status] || (resp.status >= 500 ? 'internal_error' : 'bad_response');
  throw new ApiError(resp.status, code, e.message || (data && data.message) || '', { request_id: e.request_id, retry_after: retry });
}

/** A fresh Idempotency-Key. */
export function newKey() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
