/**
 * Errors as a client needs them: the HTTP status says what the body's
 * `extensions.code` says when the whole request failed (401 with a Bearer
 * challenge, 403, 503 with Retry-After), on /graphql and /graphql/stream;
 * database outages are SERVICE_UNAVAILABLE (a TCP fault proxy between the app
 * and PostgreSQL cuts and stalls connections); malformed ids are NOT_FOUND;
 * a subscription sent to /graphql is a clear 400; a DATABASE_URL naming a
 * missing database stops startup.
 *
 * An unhandled rejection or uncaught exception anywhere in this file fails
 * the running test (jest-circus installs process-wide handlers for the run).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { buildApp } from '../src/app';
import { loadConfig } from '../src/config';
import { adminUrl, createTestDatabase, databaseUrl, type TestDatabase } from './helpers/database';
import { withClient } from './helpers/factories';
import { FaultProxy } from './helpers/fault-proxy';
import { createTestApp, type TestApp } from './helpers/test-app';

const ME = `{ me { id } }`;
const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { status } }`;

async function postStream(url: string, token: string | undefined, body: object): Promise<Response> {
  return fetch(`${url}/graphql/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...(token !== undefined ? { authorization: token } : {}) },
    body: JSON.stringify(body),
  });
}

describe('authentication and authorisation statuses', () => {
  let t: TestApp;
  let user: { token: string; userId: string };
  beforeAll(async () => {
    t = await createTestApp();
    user = await t.signUp('status');
  });
  afterAll(() => t.close());

  const secret = () => new TextEncoder().encode(t.app.config.jwtSecret);
  const badTokens: Array<[string, () => Promise<string>, string]> = [
    ['garbage', async () => 'Bearer not.a.jwt', 'Invalid token'],
    [
      'forged (another secret)',
      async () =>
        `Bearer ${await new SignJWT({ role: 'ADMIN' })
          .setProtectedHeader({ alg: 'HS256' })
          .setSubject(user.userId)
          .setIssuer('llmselect')
          .setExpirationTime('1h')
          .sign(new TextEncoder().encode('x'.repeat(40)))}`,
      'Invalid token',
    ],
    [
      'expired',
      async () =>
        `Bearer ${await new SignJWT({ role: 'USER' })
          .setProtectedHeader({ alg: 'HS256' })
          .setSubject(user.userId)
          .setIssuer('llmselect')
          .setIssuedAt(1_000)
          .setExpirationTime(2_000)
          .sign(secret())}`,
      'Token expired',
    ],
    ['not a Bearer header', async () => `Basic ${Buffer.from('a:b').toString('base64')}`, 'Authorization header must be "Bearer <token>"'],
  ];

  it.each(badTokens)(
    'a %s token answers 401 with WWW-Authenticate: Bearer and UNAUTHENTICATED on /graphql (not 500)',
    async (_name, header, message) => {
      const res = await fetch(`${t.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: await header() },
        body: JSON.stringify({ query: ME }),
      });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="llmselect", error="invalid_token"$/);
      const body = await res.json();
      expect(body).toEqual({ errors: [{ message, extensions: { code: 'UNAUTHENTICATED' } }] });
    },
  );

  it.each(badTokens)(
    'a %s token answers 401 with WWW-Authenticate: Bearer and UNAUTHENTICATED on /graphql/stream',
    async (_name, header, message) => {
      const res = await postStream(t.url, await header(), { query: EVENTS, variables: { id: randomBytes(16).toString('hex') } });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer /);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await res.json()).toEqual({ errors: [{ message, extensions: { code: 'UNAUTHENTICATED' } }] });
    },
  );

  it('a request that fails as a whole for want of a token answers 401 with a Bearer challenge; a partial result stays 200', async () => {
    const whole = await t.gql(ME);
    expect(whole.status).toBe(401);
    expect(whole.headers.get('www-authenticate')).toBe('Bearer realm="llmselect"');
    expect(whole.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');

    const partial = await t.gql(`{ me { id } models { id } }`);
    expect(partial.status).toBe(200);
    expect(partial.data.models.length).toBeGreaterThan(0);
    expect(partial.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('FORBIDDEN answers 403 when the whole request failed with it', async () => {
    const res = await t.gql(`mutation { flushCaches(scope: ALL) { scope } }`, {}, user.token);
    expect(res.status).toBe(403);
    expect(res.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('a valid token still answers 200', async () => {
    const res = await t.gql(ME, {}, user.token);
    expect(res.status).toBe(200);
    expect(res.data.me.id).toBe(user.userId);
  });
});

describe('malformed requests', () => {
  let t: TestApp;
  let token: string;
  beforeAll(async () => {
    t = await createTestApp();
    ({ token } = await t.signUp('malformed'));
  });
  afterAll(() => t.close());

  it('a subscription sent to /graphql answers 400 pointing at /graphql/stream', async () => {
    const res = await t.gql(EVENTS, { id: '00000000-0000-4000-8000-000000000000' }, token);
    expect(res.status).toBe(400);
    expect(res.errors).toEqual([{ message: expect.stringContaining('/graphql/stream'), extensions: { code: 'BAD_USER_INPUT' } }]);
  });

  it.each([
    ['cancelComparison', 'not-a-uuid'],
    ['cancelComparison', '12345'],
    ['retryComparisonResponse', 'not-a-uuid'],
    ['retryComparisonResponse', "'; drop table users; --"],
  ])('%s with the non-UUID id %j answers NOT_FOUND (not INTERNAL_SERVER_ERROR), without touching SQL', async (mutation, id) => {
    const { count, result } = await t.countStatements(() => t.gql(`mutation($id: ID!) { ${mutation}(id: $id) { id } }`, { id }, token));
    expect(result.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect(count).toBe(0);
    expect(t.logs.some((l) => l.includes('internal error'))).toBe(false);
  });
});

describe('database outages', () => {
  let db: TestDatabase;
  let proxy: FaultProxy;
  let t: TestApp;
  let token: string;
  beforeAll(async () => {
    db = await createTestDatabase('outage');
    const proxied = await FaultProxy.forUrl(db.url);
    proxy = proxied.proxy;
    t = await createTestApp({
      db: { ...db, url: proxied.url },
      env: { NODE_ENV: 'production', DB_POOL_MIN: '0', DB_POOL_MAX: '2', DB_POOL_ACQUIRE_TIMEOUT_MS: '300' },
    });
    ({ token } = await t.signUp('outage'));
  });
  afterAll(async () => {
    proxy?.heal();
    await t?.close();
    await proxy?.close();
    await db?.drop();
  });
  afterEach(() => proxy.heal());

  // A fresh id per request misses the read cache: every request needs PostgreSQL.
  const CONVERSATION = `query($id: ID!) { conversation(id: $id) { id } }`;
  const read = () => t.gql(CONVERSATION, { id: randomUUID() }, token);

  it('connection loss answers SERVICE_UNAVAILABLE with HTTP 503 and Retry-After (no SQL or driver detail), then recovers', async () => {
    expect((await read()).status).toBe(200);
    proxy.cut({ refuseNew: true });
    const down = await read();
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toBe('2');
    expect(down.errors).toEqual([
      expect.objectContaining({ message: 'The database is unavailable, retry later', extensions: { code: 'SERVICE_UNAVAILABLE' } }),
    ]);
    expect(down.raw).not.toMatch(/select|terminated|ECONN|knex/i);

    const mutation = await t.gql(`mutation { createConversation(title: "while down") { id } }`, {}, token);
    expect(mutation.status).toBe(503);
    expect(mutation.errors?.[0]?.extensions?.code).toBe('SERVICE_UNAVAILABLE');

    proxy.heal();
    const up = await read();
    expect(up.status).toBe(200);
    expect(up.errors).toBeUndefined();
  });

  it('a pool acquire timeout (the database hangs) answers SERVICE_UNAVAILABLE with HTTP 503 and Retry-After, then recovers', async () => {
    proxy.cut(); // pooled connections go away …
    proxy.stall(); // … and new ones hang: every acquire waits DB_POOL_ACQUIRE_TIMEOUT_MS
    const hung = await read();
    expect(hung.status).toBe(503);
    expect(hung.headers.get('retry-after')).toBe('2');
    expect(hung.errors?.[0]?.extensions?.code).toBe('SERVICE_UNAVAILABLE');
    expect(hung.raw).not.toMatch(/Timeout acquiring|pool/i);

    proxy.heal();
    const up = await read();
    expect(up.status).toBe(200);
  });
});

describe('startup', () => {
  it('a DATABASE_URL naming a missing database stops startup with one line, and MikroORM does not create it', async () => {
    const missing = `llmselect_absent_${randomBytes(3).toString('hex')}`;
    const config = loadConfig({
      NODE_ENV: 'test',
      DATABASE_URL: databaseUrl(missing),
      JWT_SECRET: 'test-secret-that-is-long-enough-for-hs256-0123456789',
      ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
      LOG_LEVEL: 'silent',
    });
    const failure = await buildApp(config).then(
      () => null,
      (error: Error) => error,
    );
    expect(failure?.message).toMatch(new RegExp(`^cannot use the database .*/${missing}: database "${missing}" does not exist$`));
    const created = await withClient(
      adminUrl(),
      async (c) => (await c.query('select 1 from pg_database where datname = $1', [missing])).rowCount,
    );
    expect(created).toBe(0);
  });
});
