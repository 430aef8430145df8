// Debian's chromium as this project launches it (the browser tests in web/tests and the Mermaid
// check in tools/lint/mermaid): headless, as root, on a closed network. Without the
// background-networking flags chromium keeps trying Google's hosts, which this network refuses.

/** Where chromium is: `PURSE_CHROMIUM`, else Debian's. */
export const CHROMIUM_PATH = process.env.PURSE_CHROMIUM || '/usr/bin/chromium';

/** The flags every launch here needs. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];
