/**
 * The browser tests (explorer-browser, cors-browser) skip without Chromium on a
 * developer's machine, and fail instead when REQUIRE_BROWSER=1 (CI, `.ci/run`;
 * REQUIRE_CHROMIUM=1 is its older name), so CI never passes without running them.
 */
import { browserOrSkip, browserRequired } from './helpers/chromium';

/** An environment in which no Chromium can be found. */
const noBrowser = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ PATH: '/nonexistent', ...extra });

describe('REQUIRE_BROWSER', () => {
  it('turns a missing Chromium into a failure, under either name', () => {
    expect(() => browserOrSkip('some-browser.test.ts', noBrowser({ REQUIRE_BROWSER: '1' }))).toThrow(
      /some-browser\.test\.ts: REQUIRE_BROWSER=1 but no Chromium was found/,
    );
    expect(() => browserOrSkip('some-browser.test.ts', noBrowser({ REQUIRE_CHROMIUM: '1' }))).toThrow(/no Chromium was found/);
    expect(browserRequired(noBrowser({ REQUIRE_BROWSER: '0' }))).toBe(false);
  });

  it('skips, saying so, when it is not set', () => {
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      expect(browserOrSkip('some-browser.test.ts', noBrowser())).toBeUndefined();
      expect(warn).toHaveBeenCalledWith(expect.stringContaining('some-browser.test.ts: no Chromium found'));
    } finally {
      warn.mockRestore();
    }
  });

  it('finds the Chromium CHROMIUM_PATH names', () => {
    expect(browserOrSkip('some-browser.test.ts', { PATH: process.env.PATH, CHROMIUM_PATH: process.execPath, REQUIRE_BROWSER: '1' })).toBe(
      process.execPath,
    );
  });
});
