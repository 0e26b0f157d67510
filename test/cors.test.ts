/**
 * CORS through HTTP (`src/http/cors.ts`): preflights and actual requests on
 * /graphql and /graphql/stream, from allowed and disallowed origins, in
 * development (the default origins) and in production (none by default,
 * CORS_ORIGINS when set). What a real browser makes of it is
 * `test/cors-browser.test.ts`.
 */
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { CORS_ALLOWED_HEADERS, CorsPolicy, parseOriginRule } from '../src/http/cors';
import { TimedResponse } from '../src/http/server';
import { FakeLlmServer } from './helpers/fake-llm';
import { subscribe } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';

const ROUTES = ['/graphql', '/graphql/stream'] as const;
const VITE = 'http://localhost:5173';
const SANDBOX = 'https://studio.apollographql.com';
const EVIL = 'https://evil.example';
const HISTORY = `query History { conversations(first: 20) { totalCount nodes { id title } } }`;
const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status delta content error } }`;

function preflight(base: string, path: string, origin: string, method = 'POST') {
  return fetch(`${base}${path}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': 'authorization,content-type' },
  });
}

function post(base: string, origin: string | undefined, query: string, token?: string, extra: Record<string, string> = {}) {
  return fetch(`${base}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(origin ? { origin } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...extra,
    },
    body: JSON.stringify({ query }),
  });
}

/** Every `access-control-*` header of a response. */
function corsHeaders(res: { headers: Headers }): Record<string, string> {
  return Object.fromEntries([...res.headers].filter(([name]) => name.startsWith('access-control-')));
}

function varyTokens(res: { headers: Headers }): string[] {
  return (res.headers.get('vary') ?? '')
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter(Boolean);
}

/** An answer a page on `origin` may read, with the headers it may read listed. */
function expectReadableBy(res: { headers: Headers }, origin: string): void {
  expect(res.headers.get('access-control-allow-origin')).toBe(origin);
  expect(res.headers.get('access-control-allow-credentials')).toBeNull();
  const exposed = (res.headers.get('access-control-expose-headers') ?? '').split(',').map((h) => h.trim());
  expect(exposed).toEqual(expect.arrayContaining(['x-request-id', 'x-response-time', 'x-cache', 'etag', 'retry-after']));
  expect(varyTokens(res)).toContain('origin');
}

/** An answer no other origin may read: no CORS header at all, but still `Vary: Origin`. */
function expectNoCors(res: { headers: Headers }): void {
  expect(corsHeaders(res)).toEqual({});
  expect(varyTokens(res)).toContain('origin');
}

describe('origin rules (CORS_ORIGINS entries)', () => {
  it.each([
    [
      'http://localhost:*',
      ['http://localhost', 'http://localhost:5173', 'http://localhost:4000'],
      ['https://localhost:5173', 'http://localhost.evil.example:5173', 'http://localhost:5173.evil.example', 'http://127.0.0.1:5173'],
    ],
    [
      'https://*.example.com',
      ['https://app.example.com', 'https://a.b.example.com'],
      ['https://example.com', 'https://evilexample.com', 'https://app.example.com.evil.org', 'http://app.example.com'],
    ],
    [
      'https://app.example.com',
      ['https://app.example.com'],
      ['https://app.example.com:8443', 'https://api.example.com', 'http://app.example.com', 'null'],
    ],
    ['HTTPS://App.Example.com:443/', ['https://app.example.com'], ['https://App.Example.com:443']],
    ['http://[::1]:*', ['http://[::1]:5173'], ['http://[::2]:5173']],
    ['*', ['https://anything.example', 'http://localhost:1'], ['null']],
  ])('%s allows %p and nothing like %p', (rule, allowed, refused) => {
    const policy = new CorsPolicy([rule]);
    for (const origin of allowed) expect([origin, policy.allowsOrigin(origin)]).toEqual([origin, true]);
    for (const origin of refused) expect([origin, policy.allowsOrigin(origin)]).toEqual([origin, false]);
  });

  it.each([
    'null',
    'ftp://files.example.com',
    'https://app.example.com/path',
    'https://app.example.com?x=1',
    'https://user@app.example.com',
    'https://*',
    'http://*:5173',
    'https://app.*.com',
    'https://app.example.com:99999',
    'app.example.com',
  ])('refuses %p', (entry) => {
    expect(() => parseOriginRule(entry)).toThrow();
  });
});

it('keeps Vary: Origin when a route sets Vary later, directly or through writeHead', () => {
  const res = new TimedResponse(new IncomingMessage(new Socket()));
  res.setHeader('vary', 'Origin');
  res.setHeader('Vary', 'Accept, origin');
  expect(res.getHeader('vary')).toBe('Origin, Accept');
  res.writeHead(200, { vary: 'Accept-Encoding' });
  expect(res.getHeader('vary')).toBe('Origin, Accept, Accept-Encoding');
});

describe('in development (default CORS_ORIGINS: localhost, 127.0.0.1, Apollo Sandbox)', () => {
  let fake: FakeLlmServer;
  let t: TestApp;
  let user: { token: string; userId: string };
  beforeAll(async () => {
    fake = await FakeLlmServer.start();
    t = await createTestApp({ env: { NODE_ENV: 'development', ...fake.providerEnv() } });
    user = await t.signUp('cors');
  });
  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });

  it.each(ROUTES.flatMap((path) => [VITE, 'http://127.0.0.1:8080', 'http://localhost', SANDBOX].map((origin) => [path, origin] as const)))(
    'answers a preflight to %s from %s with 204 and the allow headers, before the CSRF check',
    async (path, origin) => {
      for (const method of ['POST', 'GET']) {
        const res = await preflight(t.url, path, origin, method);
        expect(res.status).toBe(204);
        expect(await res.text()).toBe('');
        expect(res.headers.get('access-control-allow-origin')).toBe(origin);
        expect(res.headers.get('access-control-allow-methods')!.split(', ')).toEqual(expect.arrayContaining(['GET', 'POST']));
        const allowed = res.headers.get('access-control-allow-headers')!.split(', ');
        expect(allowed).toEqual(
          expect.arrayContaining(['authorization', 'content-type', 'apollo-require-preflight', 'x-apollo-operation-name', 'last-event-id']),
        );
        expect(allowed).toEqual([...CORS_ALLOWED_HEADERS]);
        expect(Number(res.headers.get('access-control-max-age'))).toBeGreaterThan(0);
        expect(res.headers.get('access-control-allow-credentials')).toBeNull();
        expect(varyTokens(res)).toContain('origin');
      }
    },
  );

  it.each(
    ROUTES.flatMap((path) =>
      [EVIL, 'http://localhost.evil.example:5173', 'https://studio.apollographql.com.evil.example', 'null'].map(
        (origin) => [path, origin] as const,
      ),
    ),
  )('refuses a preflight to %s from %s: 403 FORBIDDEN, no CORS header', async (path, origin) => {
    const res = await preflight(t.url, path, origin);
    expect(res.status).toBe(403);
    expectNoCors(res);
    expect(((await res.json()) as any).errors[0].extensions.code).toBe('FORBIDDEN');
  });

  it("answers Chromium's Private Network Access preflight (Sandbox online calling a local server) for allowed origins only", async () => {
    const ask = (origin: string) =>
      fetch(`${t.url}/graphql`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-private-network': 'true' },
      });
    const sandbox = await ask(SANDBOX);
    expect(sandbox.status).toBe(204);
    expect(sandbox.headers.get('access-control-allow-private-network')).toBe('true');
    const evil = await ask(EVIL);
    expect(evil.status).toBe(403);
    expectNoCors(evil);
    // Not asked, not said.
    expect((await preflight(t.url, '/graphql', SANDBOX)).headers.get('access-control-allow-private-network')).toBeNull();
  });

  it('leaves OPTIONS without a CORS preflight as it was (Apollo CSRF on /graphql, graphql-sse on /graphql/stream)', async () => {
    const noOrigin = await fetch(`${t.url}/graphql`, { method: 'OPTIONS' });
    expect(noOrigin.status).toBe(400);
    expect(await noOrigin.text()).toContain('Cross-Site Request Forgery');
    expectNoCors(noOrigin);
    // An Origin without Access-Control-Request-Method is no preflight either.
    const notPreflight = await fetch(`${t.url}/graphql`, { method: 'OPTIONS', headers: { origin: VITE } });
    expect(notPreflight.status).toBe(400);
    const stream = await fetch(`${t.url}/graphql/stream`, { method: 'OPTIONS' });
    expect(stream.status).toBe(405);
    expectNoCors(stream);
  });

  it('lets an allowed origin read its answers: a miss, a read-cache hit, a 304 and a GET, all with Vary: Origin', async () => {
    const user = await t.signUp('cors-reader'); // its own: no other test's writes move its cache generation
    await t.gql(`mutation { createConversation(title: "cors") { id } }`, {}, user.token);
    const miss = await post(t.url, VITE, HISTORY, user.token);
    expect(miss.status).toBe(200);
    expect(miss.headers.get('x-cache')).toBe('MISS');
    expectReadableBy(miss, VITE);
    const hit = await post(t.url, VITE, HISTORY, user.token);
    expect(hit.headers.get('x-cache')).toBe('HIT');
    expectReadableBy(hit, VITE);
    expect(await hit.text()).toBe(await miss.text());

    // The same cached bytes serve another origin with that origin's headers (the cache holds bodies only).
    const fromSandbox = await post(t.url, SANDBOX, HISTORY, user.token);
    expect(fromSandbox.headers.get('x-cache')).toBe('HIT');
    expectReadableBy(fromSandbox, SANDBOX);
    const fromElsewhere = await post(t.url, EVIL, HISTORY, user.token);
    expect(fromElsewhere.headers.get('x-cache')).toBe('HIT');
    expectNoCors(fromElsewhere);

    const url = `${t.url}/graphql?query=${encodeURIComponent(HISTORY)}`;
    const headers = { authorization: `Bearer ${user.token}`, 'apollo-require-preflight': 'true', origin: VITE };
    const get = await fetch(url, { headers });
    expect(get.status).toBe(200);
    expectReadableBy(get, VITE);
    const etag = get.headers.get('etag')!;
    expect(etag).toBeTruthy();
    const notModified = await fetch(url, { headers: { ...headers, 'if-none-match': etag } });
    expect(notModified.status).toBe(304);
    expectReadableBy(notModified, VITE);
    expect(notModified.headers.get('etag')).toBe(etag);
  });

  it('puts the CORS headers on refusals too: 401 (WWW-Authenticate readable), 413, 400 on both routes', async () => {
    const badToken = await post(t.url, VITE, HISTORY, 'not.a.jwt');
    expect(badToken.status).toBe(401);
    expectReadableBy(badToken, VITE);
    expect(badToken.headers.get('access-control-expose-headers')).toContain('www-authenticate');
    const tooLarge = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { origin: VITE, 'content-type': 'application/json' },
      body: 'x'.repeat(t.app.config.limits.maxBodyBytes + 1),
    });
    expect(tooLarge.status).toBe(413);
    expectReadableBy(tooLarge, VITE);
    expect(((await tooLarge.json()) as any).errors[0].extensions.code).toBe('BAD_USER_INPUT');
    const streamTooLarge = await fetch(`${t.url}/graphql/stream`, {
      method: 'POST',
      headers: { origin: VITE, 'content-type': 'application/json', accept: 'text/event-stream' },
      body: 'x'.repeat(t.app.config.limits.maxBodyBytes + 1),
    });
    expect(streamTooLarge.status).toBe(413);
    expectReadableBy(streamTooLarge, VITE);
    const streamBadToken = await fetch(`${t.url}/graphql/stream`, {
      method: 'POST',
      headers: { origin: VITE, 'content-type': 'application/json', accept: 'text/event-stream', authorization: 'Bearer not.a.jwt' },
      body: '{}',
    });
    expect(streamBadToken.status).toBe(401);
    expectReadableBy(streamBadToken, VITE);
    const queryOnStream = await fetch(`${t.url}/graphql/stream`, {
      method: 'POST',
      headers: { origin: VITE, 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${user.token}` },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    expect(queryOnStream.status).toBe(400);
    expectReadableBy(queryOnStream, VITE);
  });

  it('streams a comparison to an allowed origin with the CORS headers on the event stream', async () => {
    const user = await t.signUp('cors-stream');
    for (const input of [
      { provider: 'OPENAI', apiKey: 'sk-cors-openai-0001' },
      { provider: 'ANTHROPIC', apiKey: 'sk-cors-anthropic-0002' },
    ]) {
      expect(
        (await t.gql(`mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`, { input }, user.token)).errors,
      ).toBeUndefined();
    }
    const started = await t.gql(
      `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id } }`,
      { input: { prompt: 'cors?', models: ['openai:gpt-4o', 'anthropic:claude-sonnet-4-5'] } },
      user.token,
    );
    expect(started.errors).toBeUndefined();
    const sub = await subscribe(t.url, EVENTS, { id: started.data.startComparison.id }, user.token, { origin: VITE });
    expect(sub.status).toBe(200);
    expect(sub.headers.get('content-type')).toContain('text/event-stream');
    expectReadableBy(sub, VITE);
    const statuses: string[] = [];
    for await (const event of sub.events) statuses.push(event.data.comparisonEvents.status);
    expect(sub.completed).toBe(true);
    expect(statuses.filter((s) => s === 'COMPLETED')).toHaveLength(2);

    // From a disallowed origin the stream is served (a browser would not let the page read it), without CORS headers.
    const other = await subscribe(t.url, EVENTS, { id: started.data.startComparison.id }, user.token, { origin: EVIL });
    expect(other.status).toBe(200);
    expectNoCors(other);
    for await (const event of other.events) expect(event.errors).toBeUndefined();
  });

  it('keeps CSRF prevention for requests a browser sends without a preflight, whatever the origin', async () => {
    for (const origin of [VITE, EVIL]) {
      const simpleGet = await fetch(`${t.url}/graphql?query=${encodeURIComponent('{ __typename }')}`, { headers: { origin } });
      expect(simpleGet.status).toBe(400);
      const textPlain = await fetch(`${t.url}/graphql`, {
        method: 'POST',
        headers: { origin, 'content-type': 'text/plain' },
        body: JSON.stringify({ query: '{ __typename }' }),
      });
      expect(textPlain.status).toBe(400);
      expect(await textPlain.text()).toContain('Cross-Site Request Forgery');
    }
  });

  it('sends no CORS header to a disallowed origin, and none on routes other than /graphql and /graphql/stream', async () => {
    const res = await post(t.url, EVIL, '{ __typename }');
    expect(res.status).toBe(200); // served; the browser withholds it from the page
    expectNoCors(res);
    const noOrigin = await post(t.url, undefined, '{ __typename }');
    expectNoCors(noOrigin);
    for (const path of ['/health', '/metrics']) {
      const other = await fetch(`${t.url}${path}`, { headers: { origin: VITE } });
      expect(other.status).toBe(200);
      expect(corsHeaders(other)).toEqual({});
    }
  });
});

describe('in production', () => {
  let none: TestApp;
  let configured: TestApp;
  const APP = 'https://app.example.com';
  beforeAll(async () => {
    [none, configured] = await Promise.all([
      createTestApp({ env: { NODE_ENV: 'production' } }),
      createTestApp({ env: { NODE_ENV: 'production', CORS_ORIGINS: `${APP}, https://*.preview.example.com` } }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([none?.close(), configured?.close()]);
  });

  it.each(ROUTES)('allows no origin unless CORS_ORIGINS is set (%s)', async (path) => {
    for (const origin of [VITE, SANDBOX, APP]) {
      const res = await preflight(none.url, path, origin);
      expect(res.status).toBe(403);
      expectNoCors(res);
    }
    expectNoCors(await post(none.url, APP, '{ __typename }'));
  });

  it.each(ROUTES)('allows exactly the origins of CORS_ORIGINS (%s)', async (path) => {
    for (const origin of [APP, 'https://pr-12.preview.example.com']) {
      const res = await preflight(configured.url, path, origin);
      expect(res.status).toBe(204);
      expect(res.headers.get('access-control-allow-origin')).toBe(origin);
    }
    for (const origin of [VITE, SANDBOX, 'http://app.example.com', 'https://preview.example.com']) {
      const res = await preflight(configured.url, path, origin);
      expect(res.status).toBe(403);
      expectNoCors(res);
    }
  });

  it('lets the configured origin sign in and read its history; another origin gets no CORS header', async () => {
    const { token } = await configured.signUp('prod-cors');
    const res = await post(configured.url, APP, HISTORY, token);
    expect(res.status).toBe(200);
    expectReadableBy(res, APP);
    expect(((await res.json()) as any).data.conversations.totalCount).toBe(0);
    const elsewhere = await post(configured.url, VITE, HISTORY, token);
    expect(elsewhere.status).toBe(200);
    expectNoCors(elsewhere);
    const stream = await fetch(`${configured.url}/graphql/stream`, {
      method: 'POST',
      headers: { origin: APP, 'content-type': 'application/json', accept: 'text/event-stream', authorization: 'Bearer not.a.jwt' },
      body: '{}',
    });
    expect(stream.status).toBe(401);
    expectReadableBy(stream, APP);
  });
});
