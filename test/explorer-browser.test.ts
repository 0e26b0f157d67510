/**
 * The explorer in a real browser, offline: headless Chromium (host names other
 * than 127.0.0.1 do not resolve) opens GET /graphql; the sign-in tab opens with
 * its variables filled in and runs as it opens; the pre-filled History tab runs
 * and shows the signed-in user's conversations. Skipped, saying so, when no
 * Chromium is installed (`apt-get install chromium`, or set CHROMIUM_PATH),
 * unless REQUIRE_BROWSER=1 (CI); `scripts/check-explorer.sh` runs just this file.
 */
import { EXAMPLE_TABS } from '../src/graphql/explorer';
import { browserOrSkip, openPage, type Page } from './helpers/chromium';
import { createTestApp, type TestApp } from './helpers/test-app';

const chromium = browserOrSkip('explorer-browser.test.ts');
const describeBrowser = chromium ? describe : describe.skip;

/** An expression for the text of the CodeMirror editor under `selector` (null while there is none). */
const editorText = (selector: string) =>
  `(() => { const el = document.querySelector(${JSON.stringify(selector)}); const cm = el && el.querySelector('.CodeMirror'); ` +
  'return cm ? cm.CodeMirror.getValue() : null; })()';
/** The Variables pane is the first editor of the tools below the query. */
const variablesPane = editorText('.graphiql-editor-tool .graphiql-editor');
const queryPane = editorText('.graphiql-query-editor');
const resultPane = `(${editorText('.result-window')} || '')`;

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

  /** Opens the explorer as a first visit (nothing stored by an earlier test), `headers` sent with every request. */
  async function openExplorer(headers: Record<string, string>): Promise<void> {
    await page.send('Storage.clearDataForOrigin', { origin: t.url, storageTypes: 'local_storage' });
    await page.send('Network.setExtraHTTPHeaders', { headers });
    await page.send('Page.navigate', { url: `${t.url}/` }); // redirects to /graphql
    await page.waitFor(`!!document.querySelector('.graphiql-execute-button') && location.pathname === '/graphql'`);
  }

  it('opens on the sign-in tab with its variables filled in, runs it as it opens, and keeps them on a reload', async () => {
    const signIn = EXAMPLE_TABS[0]!;
    expect(signIn.query).toContain('mutation Login');
    const { email, password } = JSON.parse(signIn.variables);
    const registered = await t.gql(
      'mutation($email: String!, $password: String!) { register(email: $email, password: $password) { user { id } } }',
      { email, password },
    );
    expect(registered.errors).toBeUndefined();
    await openExplorer({});

    // First visit: the active tab is the sign-in tab, its query and its variables both shown.
    expect(await page.waitFor<string>(queryPane)).toContain('mutation Login');
    await page.waitFor(`${variablesPane} !== null`);
    expect(await page.evaluate<string>(variablesPane)).toBe(signIn.variables);

    // The first click signs in: no "Variable \"$email\" of required type" error.
    await page.evaluate(`document.querySelector('.graphiql-execute-button').click()`);
    const result = await page.waitFor<string>(`${resultPane}.includes('"login"') && ${resultPane}`).catch(async (error: Error) => {
      throw new Error(`${error.message}\nresult pane: ${await page.evaluate(resultPane)}`);
    });
    const body = JSON.parse(result);
    expect(body.errors).toBeUndefined();
    expect(body.data.login.user).toEqual({ id: registered.data.register.user.id, email });
    expect(body.data.login.token).toEqual(expect.any(String));

    // A later visit restores the tabs GraphiQL stored (it stores them 500 ms after a change), variables included.
    await page.waitFor(`!!localStorage.getItem('graphiql:tabState')`);
    await page.send('Page.reload');
    await page.waitFor(`!!document.querySelector('.graphiql-execute-button')`);
    expect(await page.waitFor<string>(queryPane)).toContain('mutation Login');
    await page.waitFor(`${variablesPane} !== null`);
    expect(await page.evaluate<string>(variablesPane)).toBe(signIn.variables);
    expect(await page.evaluate(`document.querySelectorAll('.graphiql-tab').length`)).toBe(EXAMPLE_TABS.length);
  });

  it('loads only local assets and runs the pre-filled History query', async () => {
    const user = await t.signUp('browser');
    await t.gql(`mutation { createConversation(title: "seen in the browser") { id } }`, {}, user.token);
    // The token travels as a header on every request the page makes (what the Headers pane would hold).
    await openExplorer({ authorization: `Bearer ${user.token}` });

    // Pick the History tab, then run it.
    const picked = await page.evaluate(`(() => {
      const tab = [...document.querySelectorAll('.graphiql-tab')].find((el) => el.textContent.includes('History'));
      if (!tab) return [...document.querySelectorAll('.graphiql-tab')].map((el) => el.textContent).join(' | ');
      (tab.querySelector('button') || tab).click();
      return 'ok';
    })()`);
    expect(picked).toBe('ok');
    await page.waitFor(`(${queryPane} || '').includes('query History')`);
    await page.waitFor(`[...document.querySelectorAll('.graphiql-tab-active')].some((el) => el.textContent.includes('History'))`);
    const resultText = resultPane;
    // GraphiQL updates the operation name a moment after a tab switch: a run in between sends the previous
    // tab's name ("Unknown operation named \"Login\"") and is run again, as a person would.
    for (let attempt = 1; attempt <= 3; attempt++) {
      await page.evaluate(`document.querySelector('.graphiql-execute-button').click()`);
      const shown = await page.waitFor<string>(resultText);
      if (!shown.includes('Unknown operation named')) break;
      await page.evaluate(
        `(() => { const cm = document.querySelector('.result-window .CodeMirror'); cm.CodeMirror.setValue(''); return true; })()`,
      );
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
