/**
 * The caches through the whole app: a cached read runs no SQL; a write is
 * visible to its author's next read and leaves other users' entries alone;
 * admin flushes; metrics and health; and failing open when Redis is absent or
 * dies mid-session (a private redis-server that the test kills and restarts).
 */
import { createHash } from 'node:crypto';
import { describeRedis, describeRedisServer, freePort, redisUrlForTests, startRedisServer, type PrivateRedis } from './helpers/redis';
import { appsClosedAfterAll, createTestApp, type TestApp } from './helpers/test-app';
import { readCacheKeys } from '../src/read-cache/keys';

const SIDEBAR = `query Sidebar { conversations(first: 20) { nodes { id title } totalCount } }`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` (bounded); only for waiting on an external process. */
async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(100);
  }
}

const health = async (t: TestApp) => (await fetch(`${t.url}/health`)).json() as Promise<any>;
const titles = (res: { data?: any }) => (res.data.conversations.nodes as Array<{ title: string }>).map((n) => n.title);

const app = appsClosedAfterAll();

function readCacheSuite(storeEnv: () => Record<string, string>) {
  let t: TestApp;
  beforeAll(async () => {
    t = await app(storeEnv());
  });

  it('a cached `conversations` read executes zero SQL statements and says x-cache: HIT', async () => {
    const { token } = await t.signUp('zero');
    await t.gql(`mutation { createConversation(title: "first") { id } }`, {}, token);
    const miss = await t.countStatements(() => t.gql(SIDEBAR, {}, token));
    expect(miss.result.headers.get('x-cache')).toBe('MISS');
    expect(miss.count).toBeGreaterThan(0);
    const hit = await t.countStatements(() => t.gql(SIDEBAR, {}, token));
    expect(hit.result.headers.get('x-cache')).toBe('HIT');
    expect(hit.statements).toEqual([]);
    expect(hit.result.data).toEqual(miss.result.data);
  });

  it("shows the author's write on the very next read (create, rename, delete)", async () => {
    const { token } = await t.signUp('writer');
    expect(titles(await t.gql(SIDEBAR, {}, token))).toEqual([]);
    const created = await t.gql(`mutation { createConversation(title: "one") { id } }`, {}, token);
    const id = created.data.createConversation.id;
    expect(titles(await t.gql(SIDEBAR, {}, token))).toEqual(['one']);
    expect((await t.gql(SIDEBAR, {}, token)).headers.get('x-cache')).toBe('HIT');

    await t.gql(`mutation($id: ID!) { renameConversation(id: $id, title: "renamed") { id } }`, { id }, token);
    expect(titles(await t.gql(SIDEBAR, {}, token))).toEqual(['renamed']);
    const single = `query($id: ID!) { conversation(id: $id) { title } }`;
    expect((await t.gql(single, { id }, token)).data.conversation.title).toBe('renamed');

    await t.gql(`mutation($id: ID!) { deleteConversation(id: $id) }`, { id }, token);
    const after = await t.gql(SIDEBAR, {}, token);
    expect(after.headers.get('x-cache')).toBe('MISS');
    expect(after.data.conversations).toEqual({ nodes: [], totalCount: 0 });
    expect((await t.gql(single, { id }, token)).data.conversation).toBeNull();
  });

  it("another user's write leaves my cached entries untouched (still a hit, zero SQL)", async () => {
    const alice = await t.signUp('alice');
    const bob = await t.signUp('bob');
    await t.gql(`mutation { createConversation(title: "bob's") { id } }`, {}, bob.token);
    await t.gql(SIDEBAR, {}, alice.token);
    await t.gql(SIDEBAR, {}, bob.token);

    await t.gql(`mutation { createConversation(title: "alice's") { id } }`, {}, alice.token);
    const bobs = await t.countStatements(() => t.gql(SIDEBAR, {}, bob.token));
    expect(bobs.result.headers.get('x-cache')).toBe('HIT');
    expect(bobs.count).toBe(0);
    expect(titles(bobs.result)).toEqual(["bob's"]);
    expect(titles(await t.gql(SIDEBAR, {}, alice.token))).toEqual(["alice's"]);
  });
}

describe('resolver cache (in-memory store)', () => {
  readCacheSuite(() => ({}));
});

describeRedis('resolver cache (Redis)', () => {
  readCacheSuite(() => ({ REDIS_URL: redisUrlForTests() }));
});

function flushSuite(storeEnv: () => Record<string, string>) {
  let t: TestApp;
  let admin: { token: string; userId: string };
  beforeAll(async () => {
    t = await app({ ADMIN_EMAILS: 'cache-admin@example.com', ...storeEnv() });
    const res = await t.gql(
      `mutation { register(email: "cache-admin@example.com", password: "correct horse battery") { token user { id role } } }`,
    );
    expect(res.data.register.user.role).toBe('ADMIN');
    admin = { token: res.data.register.token, userId: res.data.register.user.id };
  });

  it('is ADMIN only: FORBIDDEN for a user, UNAUTHENTICATED anonymously', async () => {
    const { token } = await t.signUp('nonadmin');
    const forbidden = await t.gql(`mutation { flushCaches { scope } }`, {}, token);
    expect(forbidden.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const anonymous = await t.gql(`mutation { flushCaches { scope } }`);
    expect(anonymous.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('flushes responses (reads stay correct: a miss, then a hit) and logs who flushed what', async () => {
    const logsBefore = t.logs.length; // only this test's flush line counts
    const user = await t.signUp('flushed');
    await t.gql(`mutation { createConversation(title: "kept") { id } }`, {}, user.token);
    await t.gql(SIDEBAR, {}, user.token);
    expect((await t.gql(SIDEBAR, {}, user.token)).headers.get('x-cache')).toBe('HIT');

    const res = await t.gql(`mutation { flushCaches(scope: RESPONSES) { scope flushedAt } }`, {}, admin.token);
    expect(res.errors).toBeUndefined();
    expect(res.data.flushCaches.scope).toBe('RESPONSES');
    expect(Date.parse(res.data.flushCaches.flushedAt)).toBeGreaterThan(Date.now() - 60_000);

    const miss = await t.gql(SIDEBAR, {}, user.token);
    expect(miss.headers.get('x-cache')).toBe('MISS');
    expect(titles(miss)).toEqual(['kept']);
    const hit = await t.gql(SIDEBAR, {}, user.token);
    expect(hit.headers.get('x-cache')).toBe('HIT');
    expect(titles(hit)).toEqual(['kept']);

    const line = t.logs
      .slice(logsBefore)
      .map((l) => JSON.parse(l))
      .find((l) => l.msg === 'caches flushed');
    expect(line).toMatchObject({ level: 30, adminId: admin.userId, scope: 'RESPONSES', namespaces: ['resp'] });
  });

  it('ALL clears responses, model registry and persisted queries, but not the generation counters', async () => {
    const user = await t.signUp('all');
    await t.gql(`mutation { createConversation(title: "x") { id } }`, {}, user.token);
    await t.gql(SIDEBAR, {}, user.token);
    const generation = await t.app.cache.get<number>(readCacheKeys.generation(user.userId));
    expect(generation).toBeGreaterThan(0);
    await t.app.cache.set('models:openai:0123456789abcdef', { value: ['m'], storedAt: Date.now() });
    await t.app.cache.set('apq:deadbeef', { value: '{ __typename }' });

    const res = await t.gql(`mutation { flushCaches { scope } }`, {}, admin.token);
    expect(res.data.flushCaches.scope).toBe('ALL');
    expect(await t.app.cache.get('models:openai:0123456789abcdef')).toBeUndefined();
    expect(await t.app.cache.get('apq:deadbeef')).toBeUndefined();
    expect(await t.app.cache.get(readCacheKeys.generation(user.userId))).toBe(generation);
    expect((await t.gql(SIDEBAR, {}, user.token)).headers.get('x-cache')).toBe('MISS');
    expect((await t.gql(SIDEBAR, {}, user.token)).headers.get('x-cache')).toBe('HIT');
    const anon = await t.gql(`{ models(provider: GOOGLE) { id } }`);
    expect(anon.data.models.length).toBeGreaterThan(0);
  });
}

describe('flushCaches (in-memory store)', () => {
  flushSuite(() => ({}));
});

describeRedis('flushCaches (Redis)', () => {
  flushSuite(() => ({ REDIS_URL: redisUrlForTests() }));
});

describe('metrics and health', () => {
  it('export hits and misses per cache (resp, models, apq), never the gen bookkeeping', async () => {
    const t = await app();
    const { token } = await t.signUp('metrics');
    await t.gql(SIDEBAR, {}, token);
    await t.gql(SIDEBAR, {}, token);
    await t.gql(
      `mutation($i: SaveApiKeyInput!) { saveApiKey(input: $i) { id } }`,
      { i: { provider: 'OPENAI', apiKey: 'sk-metrics-1234', baseUrl: 'http://127.0.0.1:9/v1' } },
      token,
    );
    await t.gql(`{ models(provider: OPENAI) { id } }`, {}, token); // a models miss (the provider is unreachable: catalog answers)
    const apqGet = (hash: string) =>
      fetch(`${t.url}/graphql?extensions=${encodeURIComponent(JSON.stringify({ persistedQuery: { version: 1, sha256Hash: hash } }))}`, {
        headers: { 'apollo-require-preflight': 'true' },
      });
    await apqGet('0'.repeat(64));
    const catalog = '{ models(provider: MISTRAL) { id } }';
    const hash = createHash('sha256').update(catalog).digest('hex');
    await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: catalog, extensions: { persistedQuery: { version: 1, sha256Hash: hash } } }),
    });
    expect((await apqGet(hash)).status).toBe(200);

    const text = await (await fetch(`${t.url}/metrics`)).text();
    expect(text).toMatch(/llmselect_cache_hits_total\{cache="resp"\} 1/);
    expect(text).toMatch(/llmselect_cache_misses_total\{cache="resp"\} [1-9]/);
    expect(text).toMatch(/llmselect_cache_misses_total\{cache="models"\} [1-9]/);
    expect(text).toMatch(/llmselect_cache_misses_total\{cache="apq"\} [1-9]/);
    expect(text).toMatch(/llmselect_cache_hits_total\{cache="apq"\} 1/);
    expect(text).not.toContain('cache="gen"');

    const report = await health(t);
    expect(report.cache.byCache).toEqual(
      expect.objectContaining({ resp: expect.any(Object), models: expect.any(Object), apq: expect.any(Object) }),
    );
    expect(report.cache.byCache).not.toHaveProperty('gen');
    expect(report.cache.byCache.resp).toEqual({ hits: 1, misses: expect.any(Number), hitRate: expect.any(Number) });
    expect(report.cache.hits).toBe(2); // one resp hit, one apq hit
    expect(report.cache.hitRate).toBeCloseTo(report.cache.hits / (report.cache.hits + report.cache.misses), 3);
  });
});

describeRedisServer('failing open (private redis-server)', () => {
  let redis: PrivateRedis;
  let t: TestApp;
  beforeAll(async () => {
    redis = await startRedisServer();
    t = await createTestApp({
      env: { REDIS_URL: redis.url, CACHE_BREAKER_COOLDOWN_MS: '1000', CACHE_TIMEOUT_MS: '300', ADMIN_EMAILS: 'outage-admin@example.com' },
    });
  });
  afterAll(async () => {
    await t.close();
    await redis.stop();
    // @redis/client sleeps out its reconnect back-off (<= 2 s here) with a ref'd timer even after
    // destroy(); wait it out so the worker exits cleanly instead of being force-exited.
    await sleep(2_100);
  });

  it('answers from PostgreSQL while Redis is dead, without paying timeouts, and resumes caching by itself', async () => {
    const { token } = await t.signUp('outage');
    const adminRes = await t.gql(`mutation { register(email: "outage-admin@example.com", password: "correct horse battery") { token } }`);
    const adminToken = adminRes.data.register.token as string;
    await t.gql(`mutation { createConversation(title: "before") { id } }`, {}, token);
    await t.gql(SIDEBAR, {}, token);
    expect((await t.gql(SIDEBAR, {}, token)).headers.get('x-cache')).toBe('HIT');
    expect((await health(t)).status).toBe('ok');

    await redis.kill(); // SIGKILL of this test's own redis-server only

    const started = Date.now();
    for (let i = 0; i < 20; i++) {
      const res = await t.gql(SIDEBAR, {}, token);
      expect(res.errors).toBeUndefined();
      expect(titles(res)).toEqual(['before']);
      expect(res.headers.get('x-cache')).toBeNull();
    }
    expect(Date.now() - started).toBeLessThan(5_000);

    // Writes work and are visible at once (the generation bump is journaled for when Redis is back).
    await t.gql(`mutation { createConversation(title: "during") { id } }`, {}, token);
    expect(titles(await t.gql(SIDEBAR, {}, token))).toEqual(['during', 'before']);

    const degraded = await health(t);
    expect(degraded).toMatchObject({ status: 'degraded', database: { connected: true }, cache: { store: 'redis', connected: false } });

    const flush = await t.gql(`mutation { flushCaches(scope: RESPONSES) { scope } }`, {}, adminToken);
    expect(flush.errors?.[0]?.extensions?.code).toBe('CACHE_UNAVAILABLE');

    await redis.restart();
    await eventually(async () => (await health(t)).status === 'ok', 20_000, 'health ok after Redis restart');
    await eventually(async () => (await t.gql(SIDEBAR, {}, token)).headers.get('x-cache') === 'HIT', 10_000, 'a cache hit');
    expect(titles(await t.gql(SIDEBAR, {}, token))).toEqual(['during', 'before']);
    expect((await t.gql(`mutation { flushCaches(scope: RESPONSES) { scope } }`, {}, adminToken)).data.flushCaches.scope).toBe('RESPONSES');
  });

  it('starts and answers with Redis down from the start (health degraded)', async () => {
    const closed = await createTestApp({
      db: t.db,
      env: { REDIS_URL: `redis://127.0.0.1:${await freePort()}`, CACHE_BREAKER_COOLDOWN_MS: '1000' },
    });
    try {
      const { token } = await closed.signUp('nocache');
      await closed.gql(`mutation { createConversation(title: "no redis") { id } }`, {}, token);
      const started = Date.now();
      for (let i = 0; i < 10; i++) expect(titles(await closed.gql(SIDEBAR, {}, token))).toEqual(['no redis']);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(await health(closed)).toMatchObject({ status: 'degraded', cache: { store: 'redis', connected: false } });
    } finally {
      await closed.close();
    }
  });
});
