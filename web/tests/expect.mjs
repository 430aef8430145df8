// expect(locator) for node:test: Playwright's web-first assertions are in @playwright/test, which
// this project does not install (it would bring its own browsers); these few wait and retry the
// same way. Every assertion waits up to `timeout` ms (10 s) for the page to get there.
const DEFAULT = 10_000;

async function until(check, describe, timeout = DEFAULT) {
  const end = Date.now() + timeout;
  let last = '';
  for (;;) {
    try {
      const [ok, seen] = await check();
      if (ok) return;
      last = seen;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > end) throw new Error(`expected ${describe} within ${timeout} ms; last seen: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const matches = (text, want) => (want instanceof RegExp ? want.test(text) : text.includes(want));

export function expect(locator) {
  return {
    /** Some element of the locator contains `want` (a string or RegExp) in its text. */
    async toContainText(want, { timeout } = {}) {
      await until(async () => {
        const texts = await locator.allInnerTexts();
        return [texts.some((t) => matches(t, want)), texts.join(' | ')];
      }, `text ${want}`, timeout);
    },
    /** The (first) element's text is exactly `want` after trimming, or matches a RegExp. */
    async toHaveText(want, { timeout } = {}) {
      await until(async () => {
        const t = (await locator.first().innerText()).trim();
        return [want instanceof RegExp ? want.test(t) : t === want, t];
      }, `text "${want}"`, timeout);
    },
    async toBeVisible({ timeout } = {}) {
      await until(async () => [await locator.first().isVisible(), 'not visible'], 'to be visible', timeout);
    },
    async toBeHidden({ timeout } = {}) {
      await until(async () => [!(await locator.first().isVisible()), 'visible'], 'to be hidden', timeout);
    },
    async toHaveValue(want, { timeout } = {}) {
      await until(async () => {
        const v = await locator.first().inputValue();
        return [v === want, v];
      }, `value "${want}"`, timeout);
    },
    async toHaveCount(n, { timeout } = {}) {
      await until(async () => {
        const c = await locator.count();
        return [c === n, c];
      }, `${n} elements`, timeout);
    },
  };
}
