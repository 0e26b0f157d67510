/**
 * The app on a real Redis Cluster (3 masters, 3 replicas on loopback: helpers/redis-cluster.ts), two instances
 * sharing it and one PostgreSQL: the read cache's scopes spread over the masters and an admin flush reaches every
 * one of them; a comparison started on A streams to a subscriber on B (PUBLISH crosses the cluster's nodes); and
 * a master killed (SIGKILL) mid-traffic: every request keeps answering (the cache misses at worst), every
 * acknowledged write is in PostgreSQL, and once its replica is promoted the cache hits again on both instances,
 * the streams still cross, and a write is seen at once by the other instance.
 *
 * The other suites run against the cluster too: `.ci/run`, TEST_VIA_REDIS_CLUSTER=1 (helpers/test-app.ts).
 */
import { randomBytes } from 'node:crypto';
import { readCacheKeys } from '../src/read-cache/keys';
import { FakeLlmServer } from './helpers/fake-llm';
import { describeRedisCluster, type RedisClusterForTests, startRedisCluster } from './helpers/redis-cluster';
import { subscribe } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';
import { createTestDatabase, type TestDatabase } from './helpers/database';
import { withClient } from './helpers/factories';

const SIDEBAR = `query Sidebar { conversations(first: 20) { nodes { id title } totalCount } }`;
const CREATE = `mutation($t: String!) { createConversation(title: $t) { id } }`;
const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status delta content } }`;
const START = `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id } }`;
const ADMIN = `cluster-admin-${randomBytes(3).toString('hex')}@example.com`;

describeRedisCluster('the app on a Redis Cluster (two instances)', () => {
  let cluster: RedisClusterForTests;
  let db: TestDatabase;
  let fake: FakeLlmServer;
  let a: TestApp;
  let b: TestApp;
  let prefix: string;

  beforeAll(async () => {
    // The cluster starts while the database is made (the two slow steps of this file's setup).
    [cluster, db, fake] = await Promise.all([startRedisCluster(), createTestDatabase('cluster'), FakeLlmServer.start()]);
    prefix = `t-cl-${randomBytes(4).toString('hex')}`;
    const env = {
      ...cluster.env,
      CACHE_PREFIX: prefix,
      CACHE_BREAKER_COOLDOWN_MS: '200',
      ADMIN_EMAILS: ADMIN,
      OPENAI_BASE_URL: fake.baseUrls.openai,
      ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
    };
    a = await createTestApp({ env, db });
    b = await createTestApp({ env, db });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    await db?.drop();
    await fake?.close();
    await cluster?.stop();
  });

  /** A user with the two provider keys the comparisons use. */
  async function userWithKeys(name: string) {
    const user = await a.signUp(name);
    for (const input of [
      { provider: 'OPENAI', apiKey: 'sk-a-1111' },
      { provider: 'ANTHROPIC', apiKey: 'sk-b-2222' },
    ]) {
      await a.gql(`mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`, { input }, user.token);
    }
    return user;
  }

  /** Starts a comparison on A, follows it from B, and checks B saw every response's text as stored. */
  async function streamAcross(token: string, model: string) {
    fake.setBehavior(model, { chunkDelayMs: 10 });
    const started = await a.gql(
      START,
      { input: { prompt: 'across the cluster', models: [`openai:${model}`, `anthropic:${model}`] } },
      token,
    );
    expect(started.errors).toBeUndefined();
    const id = started.data.startComparison.id;
    const sub = await subscribe(b.url, EVENTS, { id }, token);
    const texts = new Map<string, string>();
    let deltas = 0;
    for await (const message of sub.events) {
      const e = message.data.comparisonEvents;
      if (!texts.has(e.responseId)) texts.set(e.responseId, e.content ?? '');
      else if (e.delta) {
        texts.set(e.responseId, texts.get(e.responseId)! + e.delta);
        deltas++;
      }
    }
    // Live deltas, not only the text at settle: A heard B's `sync` on the control channel (subscribed at start).
    expect(deltas).toBeGreaterThan(0);
    const stored = await b.gql(`query($id: ID!) { comparison(id: $id) { responses { id status content } } }`, { id }, token);
    for (const r of stored.data.comparison.responses) {
      expect(r.status).toBe('COMPLETED');
      expect(texts.get(r.id)).toBe(r.content);
    }
  }

  it('spreads the scopes over the masters; an admin flush reaches every master', async () => {
    const users = await Promise.all(Array.from({ length: 6 }, (_, i) => a.signUp(`spread${i}`)));
    for (const user of users) {
      await a.gql(CREATE, { t: 'one' }, user.token);
      expect((await a.gql(SIDEBAR, {}, user.token)).headers.get('x-cache')).toBe('MISS');
      expect((await b.gql(SIDEBAR, {}, user.token)).headers.get('x-cache')).toBe('HIT');
    }
    const masters = new Set(
      await Promise.all(users.map(async (u) => (await cluster.masterOf(`${prefix}:${readCacheKeys.generation(u.userId)}`)).port)),
    );
    expect(masters.size).toBeGreaterThan(1);

    await a.gql(`mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token } }`, {
      e: ADMIN,
      p: 'correct horse battery',
    });
    const admin = await a.gql(`mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }`, {
      e: ADMIN,
      p: 'correct horse battery',
    });
    const flushed = await b.gql(`mutation { flushCaches(scope: RESPONSES) { scope } }`, {}, admin.data.login.token);
    expect(flushed.errors).toBeUndefined();
    for (const user of users) expect((await a.gql(SIDEBAR, {}, user.token)).headers.get('x-cache')).toBe('MISS');
  });

  it('streams a comparison running on A to a subscriber on B', async () => {
    const { token } = await userWithKeys('stream');
    await streamAcross(token, 'cluster-stream');
  });

  // The runner's control channel is subscribed while the cluster is still connecting: a cancel from B must reach A.
  it('cancels from B a comparison running on A', async () => {
    const { token } = await userWithKeys('cancel');
    const before = fake.count(undefined, 'chat');
    const started = await a.gql(START, { input: { prompt: 'stop me', models: ['openai:hang', 'anthropic:hang'] } }, token);
    const id = started.data.startComparison.id;
    await fake.waitForRequests(before + 2, undefined, 'chat'); // both calls are hanging on A
    const cancelled = await b.gql(`mutation($id: ID!) { cancelComparison(id: $id) { id } }`, { id }, token);
    expect(cancelled.errors).toBeUndefined();
    await a.app.services.runner.settled(id); // never, if A did not hear the cancel (the test times out)
    const after = await a.gql(`query($id: ID!) { comparison(id: $id) { responses { status error } } }`, { id }, token);
    expect(after.data.comparison.responses).toEqual([
      { status: 'FAILED', error: 'Cancelled' },
      { status: 'FAILED', error: 'Cancelled' },
    ]);
  }, 20_000);

  it('a master killed mid-traffic: every request answers, no acknowledged write is lost, the cache comes back', async () => {
    const user = await userWithKeys('failover');
    const hotKey = `${prefix}:${readCacheKeys.generation(user.userId)}`;
    await a.gql(CREATE, { t: 'before' }, user.token);
    await a.gql(SIDEBAR, {}, user.token);
    expect((await b.gql(SIDEBAR, {}, user.token)).headers.get('x-cache')).toBe('HIT');
    const victim = await cluster.masterOf(hotKey);

    // Traffic on both instances (a write and a read each turn) until told to stop.
    const acknowledged: string[] = [];
    const failures: string[] = [];
    const cacheHeaders: Array<string | null> = [];
    let stop = false;
    let turns = 0;
    const traffic = (async () => {
      for (let i = 0; !stop; i++) {
        const app = i % 2 ? b : a;
        const created = await app.gql(CREATE, { t: `during ${i}` }, user.token);
        if (created.status !== 200 || created.errors) failures.push(`write ${i}: ${created.status} ${created.raw.slice(0, 200)}`);
        else acknowledged.push(created.data.createConversation.id);
        const read = await app.gql(SIDEBAR, {}, user.token);
        if (read.status !== 200 || read.errors) failures.push(`read ${i}: ${read.status} ${read.raw.slice(0, 200)}`);
        // Read-your-writes through the failover: the list holds the write just acknowledged.
        else if (created.data && !read.data.conversations.nodes.some((n: { id: string }) => n.id === created.data.createConversation.id)) {
          failures.push(`read ${i} on ${i % 2 ? 'B' : 'A'} misses write ${created.data.createConversation.id}`);
        }
        cacheHeaders.push(read.headers.get('x-cache'));
        turns++;
      }
    })();

    const turnsBefore = turns;
    await cluster.kill(victim);
    const promoted = await cluster.healed(hotKey);
    expect(promoted.port).not.toBe(victim.port);
    const turnsDuring = turns - turnsBefore;

    // The cache hits again on both instances (a bounded wait: each instance re-reads the topology on its own).
    const deadline = Date.now() + 20_000;
    const hits = { a: false, b: false };
    while (!(hits.a && hits.b) && Date.now() < deadline) {
      for (const [name, app] of [
        ['a', a],
        ['b', b],
      ] as const) {
        await app.gql(SIDEBAR, {}, user.token);
        if ((await app.gql(SIDEBAR, {}, user.token)).headers.get('x-cache') === 'HIT') hits[name] = true;
      }
    }
    stop = true;
    await traffic;
    expect(failures).toEqual([]);
    expect(turnsDuring).toBeGreaterThan(0);
    expect(hits).toEqual({ a: true, b: true });
    expect(a.app.cache.health().connected).toBe(true);

    // Every acknowledged write is in PostgreSQL.
    const rows = await withClient(a.db.url, (c) =>
      c.query<{ id: string }>('select id from conversations where id = any($1)', [acknowledged]),
    );
    expect(rows.rows.map((r) => r.id).sort()).toEqual([...acknowledged].sort());

    // After the promotion: a write on B is seen by A's next (cached) read, and streams still cross.
    await a.gql(SIDEBAR, {}, user.token);
    const after = await b.gql(CREATE, { t: 'after the failover' }, user.token);
    const read = await a.gql(SIDEBAR, {}, user.token);
    expect(read.data.conversations.nodes[0].id).toBe(after.data.createConversation.id);
    await streamAcross(user.token, 'cluster-after');
  });
});
