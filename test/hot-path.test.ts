/**
 * The history page's hot path, structurally: a constant, small number of SQL
 * statements per miss; a hit is answered at the HTTP edge from stored bytes
 * (no SQL, no resolver, not even Apollo); and the cache's breaker does not
 * mistake our own busy event loop for a Redis fault.
 */
import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { Writable } from 'node:stream';
import { createClient } from '@redis/client';
import { createCache } from '../src/cache/create-cache';
import { readCacheKeys } from '../src/read-cache/keys';
import { createLogger } from '../src/observability/logger';
import { seedUserData } from './helpers/factories';
import { describeRedis, describeRedisServer, redisUrlForTests, startRedisServer, type PrivateRedis } from './helpers/redis';
import { createTestApp, type TestApp } from './helpers/test-app';

/** The benchmark's history page (issue 7). */
const HISTORY = `query History($n: Int!) {
  me { id email }
  conversations(first: $n) { nodes { id title createdAt updatedAt messages(first: 10) { nodes { id role content createdAt } } } }
  comparisons(first: 10) { nodes { id responses { id provider model content latencyMs completionTokens } } }
}`;

let t: TestApp;
let user: { token: string; userId: string };

beforeAll(async () => {
  t = await createTestApp();
  user = await t.signUp('hot');
  await seedUserData(t.db.url, user.userId, {
    conversations: 25,
    messagesPerConversation: 12,
    comparisons: 12,
    responsesPerComparison: 3,
    votes: true,
  });
});
afterAll(() => t?.close());

const noCache = { 'cache-control': 'no-cache' };

it.each([1, 10, 20])(
  'a %i-conversation history page runs 3 statements: me, conversations with their message pages, comparisons with their responses',
  async (n) => {
    const { count, statements, result } = await t.countStatements(() => t.gql(HISTORY, { n }, user.token, noCache));
    expect(result.errors).toBeUndefined();
    expect(result.data.conversations.nodes).toHaveLength(n);
    expect(result.data.conversations.nodes[0].messages.nodes).toHaveLength(10);
    expect(result.data.comparisons.nodes[0].responses).toHaveLength(3);
    expect({ count, statements }).toEqual({ count: 3, statements: expect.any(Array) });
  },
);

it('answers a hit at the edge: the stored bytes, no SQL, no resolver, no GraphQL operation', async () => {
  const miss = await t.gql(HISTORY, { n: 20 }, user.token, noCache);
  expect(miss.headers.get('x-cache')).toBe('MISS');
  const list = jest.spyOn(t.app.services.conversations, 'list');
  const operationsBefore = await t.app.metrics.graphqlOperations.get();
  const hit = await t.countStatements(() => t.gql(HISTORY, { n: 20 }, user.token));
  expect(hit.result.headers.get('x-cache')).toBe('HIT');
  expect(hit.count).toBe(0);
  expect(list).not.toHaveBeenCalled();
  expect(await t.app.metrics.graphqlOperations.get()).toEqual(operationsBefore);
  expect(hit.result.raw).toBe(miss.raw);
  expect(hit.result.headers.get('cache-control')).toBe('private, no-cache');
  expect(hit.result.headers.get('content-type')).toBe('application/json; charset=utf-8');
  list.mockRestore();
});

it('Cache-Control: no-cache skips the lookup but stores the fresh answer', async () => {
  await t.gql(HISTORY, { n: 3 }, user.token);
  const bypass = await t.countStatements(() => t.gql(HISTORY, { n: 3 }, user.token, noCache));
  expect(bypass.result.headers.get('x-cache')).toBe('MISS');
  expect(bypass.count).toBe(3);
  expect((await t.gql(HISTORY, { n: 3 }, user.token)).headers.get('x-cache')).toBe('HIT');
});

it('GET hits carry an ETag derived from the entry and answer 304 to If-None-Match', async () => {
  const query = `{ me { id } }`;
  const url = `${t.url}/graphql?query=${encodeURIComponent(query)}`;
  const headers = { authorization: `Bearer ${user.token}`, 'apollo-require-preflight': 'true' };
  const first = await fetch(url, { headers });
  expect(first.headers.get('x-cache')).toBe('MISS');
  const etag = first.headers.get('etag')!;
  const second = await fetch(url, { headers });
  expect(second.headers.get('x-cache')).toBe('HIT');
  expect(second.headers.get('etag')).toBe(etag);
  expect(await second.text()).toBe(await first.text());
  const revalidated = await fetch(url, { headers: { ...headers, 'if-none-match': etag } });
  expect(revalidated.status).toBe(304);
});

/**
 * A GET with node:http, as a browser revalidates: `fetch` adds `Cache-Control: no-cache`
 * to a request carrying `If-None-Match`, which skips the lookup and hides which path answered.
 */
interface RawAnswer {
  status: number;
  etag: string | undefined;
  cache: string | undefined;
  body: string;
}

function rawGet(url: string, headers: Record<string, string>): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      const cache = res.headers['x-cache'] as string | undefined;
      res.on('end', () => resolve({ status: res.statusCode!, etag: res.headers.etag, cache, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('one validator per stored entry (issue 17: the first revalidation answered 200)', () => {
  it(
    "a GET the edge steps aside for (Accept: application/graphql-response+json): the miss and the hit send the entry's ETag, " +
      'and the first revalidation answers 304',
    async () => {
      const owner = await t.signUp('etag-accept');
      const url = `${t.url}/graphql?query=${encodeURIComponent('{ me { email } }')}`;
      const accept = 'application/graphql-response+json';
      const headers = { authorization: `Bearer ${owner.token}`, 'apollo-require-preflight': 'true', accept };
      const miss = await rawGet(url, headers);
      expect(miss).toMatchObject({ status: 200, cache: 'MISS', etag: expect.stringMatching(/^W\/"0\./) });
      // Answered by Apollo's plugin from the stored entry (before: W/"<sha1 of the body>").
      const hit = await rawGet(url, headers);
      expect(hit).toMatchObject({ status: 200, cache: 'HIT', etag: miss.etag });
      expect(JSON.parse(hit.body)).toEqual(JSON.parse(miss.body));
      const revalidated = await rawGet(url, { ...headers, 'if-none-match': miss.etag! });
      expect(revalidated).toMatchObject({ status: 304, etag: miss.etag, body: '' });
    },
  );

  it("a strong If-None-Match compares weakly with the entry's validator", async () => {
    const owner = await t.signUp('etag-weak');
    const url = `${t.url}/graphql?query=${encodeURIComponent('{ me { id } }')}`;
    const headers = { authorization: `Bearer ${owner.token}`, 'apollo-require-preflight': 'true' };
    const miss = await rawGet(url, headers);
    expect((await rawGet(url, { ...headers, 'if-none-match': miss.etag!.replace(/^W\//, '') })).status).toBe(304);
  });
});

describeRedis('one validator per stored entry across instances (Redis)', () => {
  let first: TestApp;
  let second: TestApp;
  beforeAll(async () => {
    const env = { REDIS_URL: redisUrlForTests(), CACHE_PREFIX: `etag-${randomUUID()}` };
    first = await createTestApp({ db: t.db, env });
    second = await createTestApp({ db: t.db, env });
  });
  afterAll(async () => {
    await second?.close();
    await first?.close();
  });

  it(
    "an entry stored by one instance: the first GET on another (its plugin's hit) sends the same ETag, " +
      'and its revalidation answers 304',
    async () => {
      const owner = await first.signUp('etag-instances');
      const path = `/graphql?query=${encodeURIComponent('{ me { id email } }')}`;
      const headers = { authorization: `Bearer ${owner.token}`, 'apollo-require-preflight': 'true' };
      const miss = await rawGet(first.url + path, headers);
      expect(miss).toMatchObject({ status: 200, cache: 'MISS' });
      const elsewhere = await rawGet(second.url + path, headers);
      expect(elsewhere).toMatchObject({ status: 200, cache: 'HIT', etag: miss.etag });
      expect((await rawGet(second.url + path, { ...headers, 'if-none-match': miss.etag! })).status).toBe(304);
      expect((await rawGet(first.url + path, { ...headers, 'if-none-match': elsewhere.etag! })).status).toBe(304);
    },
  );
});

it('another user never gets the first user’s entry, even for the same document and variables', async () => {
  const other = await t.signUp('hot-other');
  await t.gql(HISTORY, { n: 5 }, user.token);
  const res = await t.gql(HISTORY, { n: 5 }, other.token);
  expect(res.headers.get('x-cache')).toBe('MISS');
  expect(res.data.me.id).toBe(other.userId);
  expect(res.data.conversations.nodes).toEqual([]);
});

describeRedisServer('breaker and local event-loop lag (private redis-server)', () => {
  let server: PrivateRedis;
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(() => server?.stop());

  const cacheFor = (url: string) =>
    createCache({
      redisUrl: url,
      prefix: `lag:${randomUUID()}`,
      operationTimeoutMs: 200,
      breakerCooldownMs: 5_000,
      logger: createLogger('silent'),
    });

  /** Blocks this process's event loop, as a saturated server does. */
  const busy = (ms: number) => {
    const until = performance.now() + ms;
    while (performance.now() < until);
  };

  it('a healthy Redis behind a busy event loop is a hit, and the breaker stays closed', async () => {
    const cache = cacheFor(server.url);
    try {
      await cache.set('kv:k', { v: 1 }, 60_000);
      for (let i = 0; i < 3; i++) {
        const pending = cache.get('kv:k');
        busy(800); // four times the operation timeout
        expect(await pending).toEqual({ v: 1 });
        const versioned = cache.getVersioned(readCacheKeys.response('u', 'd'));
        busy(800);
        expect(await versioned).toEqual({ version: 0, bytes: undefined });
      }
      expect(cache.health().breakerOpen).toBe(false);
    } finally {
      await cache.close();
    }
  });

  it('a call answered late (behind a backlog) is a miss for its caller, and the breaker stays closed', async () => {
    const cache = cacheFor(server.url);
    const admin = createClient({ url: server.url });
    try {
      await admin.connect();
      await cache.set('kv:k', { v: 1 }, 60_000);
      // Redis holds every command for 600 ms (three timeouts): the call's answer comes, late.
      await admin.sendCommand(['CLIENT', 'PAUSE', '600', 'ALL']);
      expect(await cache.get('kv:k')).toBeUndefined();
      expect(cache.stats().kv!.misses).toBe(1);
      // The pause ends (this PING is answered after it, like the late GET): the breaker never opened,
      // so the next read is a hit at once.
      await admin.ping();
      expect(cache.health().breakerOpen).toBe(false);
      expect(await cache.get('kv:k')).toEqual({ v: 1 });
    } finally {
      await admin.quit().catch(() => undefined);
      await cache.close();
    }
  });

  it('a Redis that really does not answer: the call is a miss at once, and its silence opens the breaker', async () => {
    let opened!: () => void;
    const breakerOpened = new Promise<void>((resolve) => (opened = resolve));
    const logs = new Writable({
      write(chunk, _enc, done) {
        if (String(chunk).includes('breaker open')) opened();
        done();
      },
    });
    const cache = createCache({
      redisUrl: server.url,
      prefix: `lag:${randomUUID()}`,
      operationTimeoutMs: 200,
      breakerCooldownMs: 5_000,
      logger: createLogger('warn', logs),
    });
    try {
      await cache.set('kv:k', { v: 1 }, 60_000);
      server.pause();
      expect(await cache.get('kv:k')).toBeUndefined();
      await breakerOpened;
      expect(cache.health().breakerOpen).toBe(true);
    } finally {
      server.resume();
      await cache.close();
    }
  });
});

describe('executors', () => {
  let reference: TestApp;
  beforeAll(async () => {
    reference = await createTestApp({ db: t.db, env: { GRAPHQL_EXECUTOR: 'graphql-js' } });
  });
  afterAll(() => reference?.close());

  it('graphql-jit (the default) and graphql-js answer the history page with the same bytes', async () => {
    const [jit, js] = await Promise.all([
      t.gql(HISTORY, { n: 20 }, user.token, noCache),
      reference.gql(HISTORY, { n: 20 }, user.token, noCache),
    ]);
    expect(jit.errors).toBeUndefined();
    expect(jit.raw).toBe(js.raw);
  });

  it('and the same errors for a bad variable and a missing row', async () => {
    const bad = `query($n: Int!) { conversations(first: $n) { nodes { id } } }`;
    const [jit, js] = await Promise.all([t.gql(bad, { n: 'x' }, user.token), reference.gql(bad, { n: 'x' }, user.token)]);
    expect(jit.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(js.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const missing = `{ conversation(id: "00000000-0000-4000-8000-000000000000") { id } }`;
    expect((await t.gql(missing, {}, user.token)).raw).toBe((await reference.gql(missing, {}, user.token)).raw);
  });
});
