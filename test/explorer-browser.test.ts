/**
 * The explorer in a real browser, offline: headless Chromium (host names other
 * than 127.0.0.1 do not resolve) opens GET /graphql, picks the pre-filled
 * History tab, runs it, and sees the signed-in user's conversations. Skipped,
 * saying so, when no Chromium is installed (`apt-get install chromium`, or set
 * CHROMIUM_PATH); `scripts/check-explorer.sh` runs just this file.
 */
import { findChromium, openPage, type Page } from './helpers/chromium';
import { createTestApp, type TestApp } from './helpers/test-app';

const chromium = findChromium();
if (!chromium && process.env.REQUIRE_CHROMIUM === '1') throw new Error('REQUIRE_CHROMIUM=1 but no Chromium was found (install chromium or set CHROMIUM_PATH)');
if (!chromium) console.warn('explorer-browser.test.ts: no Chromium found (set CHROMIUM_PATH): skipped');
const describeBrowser = chromium ? describe : describe.skip;

describeBrowser('the explorer in headless Chromium, offline', () => {
  let t: TestApp;
  let page: Page;
  beforeAll(async () => {
    t = await createTestApp();
    page = await openPage(chromium!);
  });
  afterAll(async () => {
    await page?.close();
    await t?.close();
  });

  it('loads only local assets and runs the pre-filled History query', async () => {
    const user = await t.signUp('browser');
    await t.gql(`mutation { createConversation(title: "seen in the browser") { id } }`, {}, user.token);
    // The token travels as a header on every request the page makes (what the Headers pane would hold).
    await page.send('Network.setExtraHTTPHeaders', { headers: { authorization: `Bearer ${user.token}` } });
    await page.send('Page.navigate', { url: `${t.url}/` }); // redirects to /graphql
    await page.waitFor(`!!document.querySelector('.graphiql-execute-button')`);
    expect(await page.evaluate('location.pathname')).toBe('/graphql');

    // Pick the History tab, then run it.
    const picked = await page.evaluate(`(() => {
      const tab = [...document.querySelectorAll('.graphiql-tab')].find((el) => el.textContent.includes('History'));
      if (!tab) return [...document.querySelectorAll('.graphiql-tab')].map((el) => el.textContent).join(' | ');
      (tab.querySelector('button') || tab).click();
      return 'ok';
    })()`);
    expect(picked).toBe('ok');
    await page.waitFor(`(() => { const cm = document.querySelector('.graphiql-query-editor .CodeMirror'); return cm && cm.CodeMirror.getValue().includes('query History'); })()`);
    await page.waitFor(`[...document.querySelectorAll('.graphiql-tab-active')].some((el) => el.textContent.includes('History'))`);
    const resultText = `(() => { const cm = document.querySelector('.result-window .CodeMirror'); return (cm && cm.CodeMirror.getValue()) || ''; })()`;
    // GraphiQL updates the operation name a moment after a tab switch: a run in between sends the previous
    // tab's name ("Unknown operation named \"Login\"") and is run again, as a person would.
    for (let attempt = 1; attempt <= 3; attempt++) {
      await page.evaluate(`document.querySelector('.graphiql-execute-button').click()`);
      const shown = await page.waitFor<string>(resultText);
      if (!shown.includes('Unknown operation named')) break;
      await page.evaluate(`(() => { const cm = document.querySelector('.result-window .CodeMirror'); cm.CodeMirror.setValue(''); return true; })()`);
    }
    const result = await page.waitFor<string>(`${resultText}.includes('"conversations"') && ${resultText}`).catch(async (error: Error) => {
      // Say what the page showed and fetched, so a failure can be understood.
      throw new Error(`${error.message}\nresult pane: ${await page.evaluate(resultText)}\nrequests: ${page.requests.join(', ')}`);
    });
    const body = JSON.parse(result);
    expect(body.errors).toBeUndefined();
    expect(body.data.conversations.nodes.map((c: { title: string }) => c.title)).toEqual(['seen in the browser']);

    // Nothing was fetched from anywhere but this server.
    expect(page.requests.length).toBeGreaterThan(3);
    expect(page.requests.filter((url) => !url.startsWith(t.url) && !url.startsWith('data:') && url !== 'about:blank')).toEqual([]);
  });
});
