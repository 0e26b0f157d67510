/**
 * CORS in a real browser: headless Chromium loads a small frontend page from
 * one loopback HTTP server (one origin) that calls the API on another port
 * (another origin) the way an app would: `fetch` to sign in, read the history
 * (twice: the second answer is a read-cache hit) and start a comparison, and
 * the `graphql-sse` client (its browser build, from node_modules) to follow
 * the comparison's events at /graphql/stream. The API runs as in production,
 * with `CORS_ORIGINS` naming the page's origin. The same page served from
 * another port (an origin not listed) gets a CORS failure on both routes.
 *
 * Skipped, saying so, when no Chromium is installed, unless REQUIRE_BROWSER=1 (CI; REQUIRE_CHROMIUM=1 is the older name).
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { browserOrSkip, openPage, type Page } from './helpers/chromium';
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestApp, type TestApp } from './helpers/test-app';

const chromium = browserOrSkip('cors-browser.test.ts');
const describeBrowser = chromium ? describe : describe.skip;

// graphql-sse's package exports do not list its browser build: read it by path.
const GRAPHQL_SSE_UMD = readFileSync(join(__dirname, '..', 'node_modules', 'graphql-sse', 'umd', 'graphql-sse.min.js'), 'utf8');

/** The frontend: plain fetch plus graphql-sse's client, as an app on another origin would call the API. */
const PAGE =
  `<!doctype html>
<html><head><meta charset="utf-8"><title>LLMSelect CORS check</title>
<script src="/graphql-sse.js"></script>
<script>
const LOGIN = 'mutation Login($email: String!, $password: String!) { login(email: $email, password: $password) { token user { id } } }';
const HISTORY = 'query History { conversations(first: 20) { totalCount nodes { id title } } }';
const START = 'mutation Start($input: RunComparisonInput!) { startComparison(input: $input) { id } }';
const EVENTS = 'subscription Events($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status delta content error } }';

async function gql(api, query, variables, token) {
  const res = await fetch(api + '/graphql', {
    method: 'POST',
    headers: Object.assign({ 'content-type': 'application/json' }, token ? { authorization: 'Bearer ' + token } : {}),
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, body: await res.json(), requestId: res.headers.get('x-request-id'), ` +
  `responseTime: res.headers.get('x-response-time'), cache: res.headers.get('x-cache') };
}

/** Follows a comparison with graphql-sse's client (distinct connections); resolves with its events. */
function follow(api, token, comparisonId) {
  const client = graphqlSse.createClient({ url: api + '/graphql/stream', headers: { authorization: 'Bearer ' + token }, retryAttempts: 0 });
  const events = [];
  return new Promise((resolve, reject) => {
    client.subscribe({ query: EVENTS, variables: { id: comparisonId } }, {
      next: (result) => events.push(result),
      error: (error) => reject(error),
      complete: () => resolve(events),
    });
  }).finally(() => client.dispose());
}

function describeError(error) {
  return String(error && error.message ? error.name + ': ' + error.message : error);
}

/** Sign in, read the history twice, start a comparison and follow it; says how far it got. */
window.run = async (api, email, password, models) => {
  const out = { step: 'login' };
  try {
    const login = await gql(api, LOGIN, { email, password });
    out.login = { status: login.status, requestId: login.requestId, responseTime: login.responseTime, errors: login.body.errors };
    const token = login.body.data.login.token;
    out.step = 'history';
    const history = await gql(api, HISTORY, {}, token);
    const again = await gql(api, HISTORY, {}, token);
    out.history = { titles: history.body.data.conversations.nodes.map((c) => c.title), cache: [history.cache, again.cache] };
    out.step = 'start';
    const started = await gql(api, START, { input: { prompt: 'Hello from another origin', models } }, token);
    const id = started.body.data.startComparison.id;
    out.step = 'events';
    const events = await follow(api, token, id);
    out.events = events.map((e) => e.errors ? { errors: e.errors } : e.data.comparisonEvents);
    out.step = 'done';
  } catch (error) {
    out.error = describeError(error);
  }
  return out;
};

/** Only the event stream, with a token and comparison given. */
window.followOnly = (api, token, comparisonId) => follow(api, token, comparisonId).then((events) => ({ events: events.length }), ` +
  `(error) => ({ error: describeError(error) }));
</script></head><body>LLMSelect CORS check</body></html>`;

/** A loopback HTTP server serving the page and graphql-sse's browser build: one origin per port. */
async function servePage(): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    if (req.url === '/graphql-sse.js') {
      res.setHeader('content-type', 'text/javascript; charset=utf-8');
      res.end(GRAPHQL_SSE_UMD);
    } else if (req.url === '/' || req.url?.startsWith('/?')) {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(PAGE);
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describeBrowser('a browser page on another origin (headless Chromium)', () => {
  const MODELS = ['openai:gpt-4o', 'anthropic:claude-sonnet-4-5'];
  let fake: FakeLlmServer;
  let allowed: { server: Server; origin: string };
  let other: { server: Server; origin: string };
  let t: TestApp;
  let page: Page;

  /** A user of this test alone, with provider keys and one conversation. */
  async function userWithKeys(prefix: string, title: string) {
    const user = await t.signUp(prefix);
    for (const input of [
      { provider: 'OPENAI', apiKey: 'sk-browser-openai-0001' },
      { provider: 'ANTHROPIC', apiKey: 'sk-browser-anthropic-0002' },
    ]) {
      const saved = await t.gql(`mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`, { input }, user.token);
      expect(saved.errors).toBeUndefined();
    }
    expect(
      (await t.gql(`mutation($title: String!) { createConversation(title: $title) { id } }`, { title }, user.token)).errors,
    ).toBeUndefined();
    return user;
  }

  beforeAll(async () => {
    [fake, allowed, other] = await Promise.all([FakeLlmServer.start(), servePage(), servePage()]);
    // Production: nothing is allowed but what CORS_ORIGINS names (the deployed frontend's case).
    t = await createTestApp({ env: { NODE_ENV: 'production', CORS_ORIGINS: allowed.origin, ...fake.providerEnv() } });
    page = await openPage(chromium!);
  });
  afterAll(async () => {
    await page?.close();
    await t?.close();
    await Promise.all([allowed, other].filter(Boolean).map(({ server }) => new Promise((resolve) => server.close(resolve))));
    await fake?.close();
  });

  async function load(origin: string): Promise<void> {
    await page.send('Page.navigate', { url: `${origin}/` });
    await page.waitFor(
      `location.origin === ${JSON.stringify(origin)} && typeof window.run === 'function' && typeof graphqlSse === 'object'`,
    );
  }

  it('signs in, reads the history and follows a comparison over graphql-sse from the allowed origin', async () => {
    const user = await userWithKeys('browser-cors', 'read from another origin');
    await load(allowed.origin);
    const failedBefore = page.failures.length;
    const out = await page.evaluate(
      `run(${JSON.stringify(t.url)}, ${JSON.stringify(user.email)}, 'correct horse battery', ${JSON.stringify(MODELS)})`,
    );
    expect(out).toMatchObject({ step: 'done', login: { status: 200 } });
    expect(out.error).toBeUndefined();
    // Exposed headers are readable by the page.
    expect(out.login.requestId).toMatch(/^[\w-]{8,}$/);
    expect(out.login.responseTime).toMatch(/^\d+\.\d+ms$/);
    expect(out.history).toEqual({ titles: ['read from another origin'], cache: ['MISS', 'HIT'] });
    const finals = out.events.filter((e: { status: string }) => e.status === 'COMPLETED');
    expect(finals).toHaveLength(2);
    for (const e of finals) expect(e.content).toContain('Hello from another origin');
    expect(out.events.some((e: { errors?: unknown }) => e.errors)).toBe(false);
    expect(page.failures.slice(failedBefore)).toEqual([]);
  });

  it('fails with a CORS error on /graphql and /graphql/stream from an origin CORS_ORIGINS does not list', async () => {
    const user = await userWithKeys('browser-cors-refused', 'never read');
    const started = await t.gql(
      `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id } }`,
      { input: { prompt: 'not from there', models: MODELS } },
      user.token,
    );
    expect(started.errors).toBeUndefined();
    await load(other.origin);
    const failedBefore = page.failures.length;
    const loggedBefore = t.logs.length;
    const out = await page.evaluate(
      `run(${JSON.stringify(t.url)}, ${JSON.stringify(user.email)}, 'correct horse battery', ${JSON.stringify(MODELS)})`,
    );
    expect(out.step).toBe('login');
    expect(out.error).toMatch(/TypeError: Failed to fetch/);
    // Even with a valid token handed to it, the page cannot open the event stream.
    const stream = await page.evaluate(
      `followOnly(${JSON.stringify(t.url)}, ${JSON.stringify(user.token)}, ${JSON.stringify(started.data.startComparison.id)})`,
    );
    expect(stream.error).toBeDefined();

    // Chromium says why: the preflights were refused (403, no Access-Control-Allow-Origin).
    const failures = page.failures.slice(failedBefore);
    for (const path of ['/graphql', '/graphql/stream']) {
      const refused = failures.filter((f) => new URL(f.url).pathname === path && f.corsError);
      expect([path, refused.length > 0]).toEqual([path, true]);
      for (const f of refused) expect(f.corsError).toMatch(/Preflight/);
    }
    // The server answered the preflights 403 and never saw the requests they guarded.
    const lines = t.logs.slice(loggedBefore).map((l) => JSON.parse(l) as { method?: string; path?: string; status?: number });
    const requests = lines.filter((l) => l.method && l.path);
    expect([...new Set(requests.map((l) => `${l.method} ${l.path} ${l.status}`))].sort()).toEqual([
      'OPTIONS /graphql 403',
      'OPTIONS /graphql/stream 403',
    ]);
  });
});
