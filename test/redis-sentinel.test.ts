/**
 * The app on Redis Sentinel (a master, a replica and three sentinels on loopback: helpers/redis-sentinel.ts), two
 * instances sharing it and one PostgreSQL:
 *
 * - both instances follow the master the sentinels name: the cache hits across instances, and a comparison
 *   started on A streams to a subscriber on B;
 * - the master killed (SIGKILL) mid-traffic: every request keeps answering (the cache misses at worst), every
 *   acknowledged write is in PostgreSQL, and once the replica is promoted the cache hits again on both
 *   instances, a write is seen at once by the other instance, and streams cross again (pub/sub moved);
 * - a generation bump that never reached the replica (the replica paused and cut off, then the master killed)
 *   is not lost: no replica acknowledged its WAIT, so it was journaled and is replayed after the promotion,
 *   before any cached read is served. Without that, the read after the failover is a stale HIT. That set has
 *   passwords on the sentinels and on the master and replica.
 *
 * `.ci/run` sets REQUIRE_REDIS_SENTINEL=1: never skipped there.
 */
import { randomBytes } from 'node:crypto';
import { readCacheKeys } from '../src/read-cache/keys';
import { createTestDatabase, type TestDatabase } from './helpers/database';
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { describeRedisSentinel, type RedisSentinelForTests, startRedisSentinel } from './helpers/redis-sentinel';
import { subscribe } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';

const SIDEBAR = `query Sidebar { conversations(first: 20) { nodes { id title } totalCount } }`;
const CREATE = `mutation($t: String!) { createConversation(title: $t) { id } }`;
const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status delta content } }`;
const START = `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id } }`;

describeRedisSentinel('the app on Redis Sentinel (two instances)', () => {
  /** The set the traffic test fails over, and a second one for the lost-bump test (each can fail over once). */
  let sentinel: RedisSentinelForTests;
  let spare: RedisSentinelForTests;
  let db: TestDatabase;
  let fake: FakeLlmServer;
  let a: TestApp;
  let b: TestApp;
  let prefix: string;
  const apps: TestApp[] = [];

  const envFor = (set: RedisSentinelForTests, extra: Record<string, string> = {}) => ({
    ...set.env,
    CACHE_PREFIX: prefix,
    CACHE_BREAKER_COOLDOWN_MS: '200',
    OPENAI_BASE_URL: fake.baseUrls.openai,
    ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
    ...extra,
  });

  beforeAll(async () => {
    // The slow steps of this file's setup side by side: the two sentinel sets, the database.
    [sentinel, spare, db, fake] = await Promise.all([
      startRedisSentinel(),
      // This one wants AUTH everywhere: the sentinels' password in REDIS_SENTINELS, the master's in its own setting.
      startRedisSentinel({ passwords: { master: randomBytes(8).toString('hex'), sentinel: randomBytes(8).toString('hex') } }),
      createTestDatabase('sentinel'),
      FakeLlmServer.start(),
    ]);
    prefix = `t-se-${randomBytes(4).toString('hex')}`;
    a = await createTestApp({ env: envFor(sentinel), db });
    b = await createTestApp({ env: envFor(sentinel), db });
    apps.push(a, b);
  });
  afterAll(async () => {
    for (const app of apps.reverse()) await app.close();
    await db?.drop();
    await fake?.close();
    await Promise.all([sentinel?.stop(), spare?.stop()]);
  });

  /** A user with the two provider keys the comparisons use. */
  async function userWithKeys(app: TestApp, name: string) {
    const user = await app.signUp(name);
    for (const input of [
      { provider: 'OPENAI', apiKey: 'sk-a-1111' },
      { provider: 'ANTHROPIC', apiKey: 'sk-b-2222' },
    ]) {
      await app.gql(`mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`, { input }, user.token);
    }
    return user;
  }

  /** Starts a comparison on A, follows it from B, and checks B saw every response's text as stored. */
  async function streamAcross(token: string, model: string) {
    fake.setBehavior(model, { chunkDelayMs: 10 });
    const started = await a.gql(START, { input: { prompt: 'across instances', models: [`openai:${model}`, `anthropic:${model}`] } }, token);
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
    // Live deltas, not only the text at settle: A heard B's `sync` and B heard A's deltas through the master.
    expect(deltas).toBeGreaterThan(0);
    const stored = await b.gql(`query($id: ID!) { comparison(id: $id) { responses { id status content } } }`, { id }, token);
    for (const r of stored.data.comparison.responses) {
      expect(r.status).toBe('COMPLETED');
      expect(texts.get(r.id)).toBe(r.content);
    }
  }

  /** A comparison hanging on A, cancelled from B: A hears it on the control channel it subscribed at start. */
  async function cancelAcross(token: string) {
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
  }

  /** Reads the sidebar on `app` until it is a HIT again (bounded); every read must hold `mustHold`. */
  async function untilHit(app: TestApp, token: string, mustHold: string[], failures: string[]) {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const read = await app.gql(SIDEBAR, {}, token);
      if (read.status !== 200 || read.errors) failures.push(`read: ${read.status} ${read.raw.slice(0, 200)}`);
      else {
        const ids = read.data.conversations.nodes.map((n: { id: string }) => n.id);
        for (const id of mustHold) if (!ids.includes(id)) failures.push(`${read.headers.get('x-cache')} read misses write ${id}`);
        if (read.headers.get('x-cache') === 'HIT' && app.app.cache.health().connected) return true;
      }
    }
    return false;
  }

  it('follows the master the sentinels name: the cache is shared, a comparison streams from A to B', async () => {
    const user = await userWithKeys(a, 'follow');
    await a.gql(CREATE, { t: 'one' }, user.token);
    expect((await a.gql(SIDEBAR, {}, user.token)).headers.get('x-cache')).toBe('MISS');
    expect((await b.gql(SIDEBAR, {}, user.token)).headers.get('x-cache')).toBe('HIT');
    // The keys are on the sentinels' master (not on some other Redis).
    const master = await sentinel.master();
    expect(await sentinel.command(master, ['EXISTS', `${prefix}:${readCacheKeys.generation(user.userId)}`])).toBe(1);
    await streamAcross(user.token, 'sentinel-stream');
  });

  it('the master killed mid-traffic: every request answers, no acknowledged write is lost, the cache comes back', async () => {
    const user = await userWithKeys(a, 'failover');
    await a.gql(CREATE, { t: 'before' }, user.token);
    await a.gql(SIDEBAR, {}, user.token);
    expect((await b.gql(SIDEBAR, {}, user.token)).headers.get('x-cache')).toBe('HIT');
    const victim = await sentinel.master();

    // Traffic on both instances (a write and a read each turn) until told to stop.
    const acknowledged: string[] = [];
    const failures: string[] = [];
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
        turns++;
      }
    })();

    const turnsBefore = turns;
    await sentinel.kill(victim);
    const promoted = await sentinel.promoted(victim);
    const turnsDuring = turns - turnsBefore;

    // The cache hits again on both instances (each instance asks the sentinels on its own).
    const hits = { a: await untilHit(a, user.token, [], failures), b: await untilHit(b, user.token, [], failures) };
    stop = true;
    await traffic;
    expect(failures).toEqual([]);
    expect(turnsDuring).toBeGreaterThan(0);
    expect(hits).toEqual({ a: true, b: true });
    expect(await sentinel.command(promoted, ['EXISTS', `${prefix}:${readCacheKeys.generation(user.userId)}`])).toBe(1);

    // Every acknowledged write is in PostgreSQL.
    const rows = await withClient(a.db.url, (c) =>
      c.query<{ id: string }>('select id from conversations where id = any($1)', [acknowledged]),
    );
    expect(rows.rows.map((r) => r.id).sort()).toEqual([...acknowledged].sort());

    // After the promotion: a write on B is seen by A's next (cached) read, streams cross again, and A's control
    // channel (subscribed at start, on the dead master) moved with it: a cancel from B reaches A.
    await a.gql(SIDEBAR, {}, user.token);
    const after = await b.gql(CREATE, { t: 'after the failover' }, user.token);
    const read = await a.gql(SIDEBAR, {}, user.token);
    expect(read.data.conversations.nodes[0].id).toBe(after.data.createConversation.id);
    await streamAcross(user.token, 'sentinel-after');
    await cancelAcross(user.token);
  });

  it('a generation bump the replica never got is replayed after the failover: no stale read', async () => {
    const c = await createTestApp({ env: envFor(spare), db });
    apps.push(c);
    const user = await c.signUp('lost-bump');
    await c.gql(CREATE, { t: 'before' }, user.token);
    expect((await c.gql(SIDEBAR, {}, user.token)).headers.get('x-cache')).toBe('MISS');
    expect((await c.gql(SIDEBAR, {}, user.token)).headers.get('x-cache')).toBe('HIT');
    await spare.replicated(); // the entry and its generation are on the replica

    // The replica stops reading and its link is cut: the master's next writes reach no replica.
    const old = await spare.master();
    const replica = spare.servers.find((s) => s !== old)!;
    spare.pause(replica);
    await spare.command(old, ['CLIENT', 'KILL', 'TYPE', 'replica']);
    const deadline = Date.now() + 10_000;
    while (!String(await spare.command(old, ['INFO', 'replication'])).includes('connected_slaves:0')) {
      if (Date.now() > deadline) throw new Error('the replica is still connected');
    }
    const created = await c.gql(CREATE, { t: 'bump never replicated' }, user.token);
    expect(created.errors).toBeUndefined();
    const id: string = created.data.createConversation.id;

    // The master dies with the bump; the replica, which never got it, is promoted.
    await spare.kill(old);
    spare.resume(replica);
    expect(await spare.promoted(old)).toBe(replica);

    // Every read holds the write, until and after the cache hits again.
    const failures: string[] = [];
    expect(await untilHit(c, user.token, [id], failures)).toBe(true);
    expect(failures).toEqual([]);
  });
});
