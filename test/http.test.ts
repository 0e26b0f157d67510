import { withClient } from './helpers/factories';
import { createTestApp, type TestApp } from './helpers/test-app';

let t: TestApp;
let token: string;
beforeAll(async () => {
  t = await createTestApp();
  ({ token } = await t.signUp('http'));
});
afterAll(() => t.close());

describe('HTTP surface', () => {
  it('stamps every response with X-Response-Time and X-Request-Id (echoing a safe caller id)', async () => {
    for (const path of ['/health', '/graphql?query=%7B__typename%7D', '/nope']) {
      const res = await fetch(`${t.url}${path}`, { headers: { 'apollo-require-preflight': 'true' } });
      expect(res.headers.get('x-response-time')).toMatch(/^\d+\.\d+ms$/);
      expect(res.headers.get('x-request-id')).toMatch(/^[\w-]{8,}$/);
    }
    const echoed = await fetch(`${t.url}/health`, { headers: { 'x-request-id': 'trace-123' } });
    expect(echoed.headers.get('x-request-id')).toBe('trace-123');
    const unsafe = await fetch(`${t.url}/health`, { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(unsafe.headers.get('x-request-id')).not.toBe('bad id with spaces');
  });

  it('stamps X-Response-Time on every kind of answer: a read-cache hit, a 413 refusal, an event-stream refusal', async () => {
    const stamped = (res: Response) => expect(res.headers.get('x-response-time')).toMatch(/^\d+\.\d+ms$/);
    const me = () =>
      fetch(`${t.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query: '{ me { id } }' }),
      });
    stamped(await me());
    const hit = await me();
    expect(hit.headers.get('x-cache')).toBe('HIT');
    stamped(hit);
    const tooLarge = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: 'x'.repeat(t.app.config.limits.maxBodyBytes + 1),
    });
    expect(tooLarge.status).toBe(413);
    stamped(tooLarge);
    const stream = await fetch(`${t.url}/graphql/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: 'Bearer not.a.jwt' },
      body: '{}',
    });
    expect(stream.status).toBe(401);
    stamped(stream);
  });

  it('reports health with live pool statistics and the cache state', async () => {
    const res = await fetch(`${t.url}/health`);
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body).toMatchObject({
      status: 'ok',
      database: {
        connected: true,
        size: expect.any(Number),
        used: expect.any(Number),
        free: expect.any(Number),
        pending: 0,
        max: t.app.config.pool.max,
      },
      cache: { store: expect.stringMatching(/^(redis|memory)$/), connected: true },
      uptimeSeconds: expect.any(Number),
      version: expect.any(String),
    });
  });

  it('exposes Prometheus metrics', async () => {
    await t.gql(`{ me { id } }`, {}, token);
    const text = await (await fetch(`${t.url}/metrics`)).text();
    expect(text).toContain('llmselect_http_request_duration_seconds_bucket');
    expect(text).toMatch(/llmselect_graphql_operations_total\{[^}]*type="query"/);
    expect(text).toMatch(/llmselect_db_pool_connections\{state="max"\} \d+/);
    expect(text).toContain('llmselect_db_query_duration_seconds');
  });

  it('serves the local explorer (GraphiQL, see explorer.test.ts) to browsers outside production', async () => {
    const res = await fetch(`${t.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('LLMSelect API explorer');
  });

  it('answers queries over GET with private caching, an ETag, and 304 on revalidation', async () => {
    const url = `${t.url}/graphql?query=${encodeURIComponent('{ me { email } }')}`;
    const headers = { authorization: `Bearer ${token}`, 'apollo-require-preflight': 'true' };
    const first = await fetch(url, { headers });
    expect(first.status).toBe(200);
    expect(first.headers.get('cache-control')).toBe('private, no-cache');
    const etag = first.headers.get('etag');
    expect(etag).toMatch(/^W\/".+"$/);
    const again = await fetch(url, { headers: { ...headers, 'if-none-match': etag! } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
  });

  it('refuses mutations over GET and keeps CSRF prevention on', async () => {
    const mutation = await fetch(`${t.url}/graphql?query=${encodeURIComponent('mutation { createConversation { id } }')}`, {
      headers: { authorization: `Bearer ${token}`, 'apollo-require-preflight': 'true' },
    });
    expect(mutation.status).toBe(405);
    const simpleGet = await fetch(`${t.url}/graphql?query=${encodeURIComponent('{ __typename }')}`);
    expect(simpleGet.status).toBe(400);
  });

  it('answers 404 for unknown routes and 400 for a malformed JSON body', async () => {
    expect((await fetch(`${t.url}/nope`)).status).toBe(404);
    const bad = await fetch(`${t.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":' });
    expect(bad.status).toBe(400);
  });

  it('rejects queries nested deeper than the limit with QUERY_TOO_COMPLEX', async () => {
    const deep =
      `{ conversations { nodes { messages { nodes { conversation { messages { nodes { conversation { messages { ` +
      `nodes { conversation { id } } } } } } } } } } } }`;
    const res = await t.gql(deep, {}, token);
    expect(res.errors?.[0]?.extensions?.code).toBe('QUERY_TOO_COMPLEX');
  });

  it('answers GRAPHQL_VALIDATION_FAILED for an unknown field', async () => {
    const res = await t.gql(`{ nope }`, {}, token);
    expect(res.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
  });
});

describe('in production', () => {
  let prod: TestApp;
  beforeAll(async () => {
    prod = await createTestApp({ env: { NODE_ENV: 'production' } });
  });
  afterAll(() => prod.close());

  it('masks internal errors (no message, stack or SQL) and logs them with the request id', async () => {
    const { token: prodToken } = await prod.signUp('prod');
    await prod.gql(`mutation { createConversation(title: "x") { id } }`, {}, prodToken);
    await withClient(prod.db.url, (c) => c.query('alter table messages rename to messages_gone'));
    const res = await prod.gql(`{ conversations { nodes { id messageCount } } }`, {}, prodToken, { 'x-request-id': 'req-prod-1' });
    expect(res.errors?.[0]).toMatchObject({ message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } });
    expect(res.raw).not.toMatch(/messages|select|relation|stack|at .*\.ts/i);
    const logged = prod.logs.map((l) => JSON.parse(l)).find((l) => l.msg === 'internal error');
    expect(logged).toMatchObject({ requestId: 'req-prod-1' });
    expect(JSON.stringify(logged)).toContain('messages');
  });

  it('disables introspection and the Sandbox', async () => {
    const res = await prod.gql(`{ __schema { types { name } } }`);
    expect(res.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    const page = await (await fetch(`${prod.url}/graphql`, { headers: { accept: 'text/html' } })).text();
    expect(page).toContain('%22isProd%22%3Atrue'); // Apollo's production page: no Sandbox
  });
});

describe('slow logs', () => {
  let slow: TestApp;
  beforeAll(async () => {
    slow = await createTestApp({ env: { SLOW_QUERY_MS: '0', SLOW_REQUEST_MS: '0' } });
  });
  afterAll(() => slow.close());

  it('logs slow statements without their values and slow requests with the operation and request id', async () => {
    const res = await slow.gql(
      `mutation Reg($e: String!, $p: String!) { register(email: $e, password: $p) { token } }`,
      { e: 'slowpoke@example.com', p: 'a very secret password' },
      undefined,
      { 'x-request-id': 'slow-1' },
    );
    const lines = slow.logs.map((l) => JSON.parse(l));
    const queries = lines.filter((l) => l.msg === 'slow query');
    expect(queries.length).toBeGreaterThan(0);
    expect(queries.some((l) => /insert into "users"/.test(l.sql))).toBe(true);
    expect(lines.find((l) => l.msg === 'slow request')).toMatchObject({ operation: 'Reg', type: 'mutation', requestId: 'slow-1' });
    const everything = slow.logs.join('\n');
    for (const secret of ['slowpoke@example.com', 'a very secret password', res.data.register.token])
      expect(everything).not.toContain(secret);
  });
});
