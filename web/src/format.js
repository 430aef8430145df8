// Formatting for people: money with the currency's places (string arithmetic, never a float),
// dates, durations, masked numbers.

/** Decimal places and how each currency is written. COIN: the wallet's only currency. */
export const CURRENCIES = {
  COIN: { places: 2, before: '', after: ' coins' },
  ZAR: { places: 2, before: 'R', after: '' },
  INR: { places: 2, before: '₹', after: '' },
};

/**
 * An amount string ("12.5", "-3", "1000.00") as the currency writes it: "12.50 coins",
 * "1,000.00 coins", "−3.00 coins". Unknown input is shown as given, never as NaN.
 */
export function money(amount, currency = 'COIN') {
  const c = CURRENCIES[currency] || { places: 2, before: '', after: ' ' + currency };
  const s = String(amount ?? '').trim();
  const m = /^([+-]?)(\d+)(?:\.(\d*))?$/.exec(s);
  if (!m) return s + c.after;
  const [, sign, whole, frac = ''] = m;
  const places = c.places;
  const f = (frac + '0'.repeat(places)).slice(0, places); // the API never sends more places
  const w = whole.replace(/^0+(?=\d)/, '').replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return (sign === '-' ? '−' : '') + c.before + w + (places ? '.' + f : '') + c.after;
}

/** The plain number with the currency's places, for inputs and tests: "12.50". */
export function plain(amount, currency = 'COIN') {
  const c = CURRENCIES[currency] || { places: 2 };
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(String(amount ?? '').trim());
  if (!m) return String(amount ?? '');
  return m[1] + m[2] + (c.places ? '.' + ((m[3] || '') + '0'.repeat(c.places)).slice(0, c.places) : '');
}

const dtf = typeof Intl !== 'undefined' ? new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' }) : null;

/** An RFC 3339 time as a local date and time ("2 Dec 2026, 11:40"); '' for none. */
export function dateTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : dtf ? dtf.format(d) : d.toISOString();
}

/** Seconds as m:ss (or h:mm:ss): a call timer. */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${r}` : `${m}:${r}`;
}

/** All but the last `keep` characters hidden: "•••• 6789". */
export function mask(value, keep = 4) {
  const s = String(value ?? '');
  return s.length <= keep ? s : '•••• ' + s.slice(-keep);
}

/** A word in capitals as a label: "CALL_CHARGE" -> "Call charge". */
export function label(word) {
  const s = String(word ?? '').replace(/_/g, ' ').toLowerCase();
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Escapes text for innerHTML. Screens build markup from API data only through this. */
export function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]);
}
