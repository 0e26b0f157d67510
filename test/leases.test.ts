/**
 * Nothing stays running: leases on running comparison responses, the sweep
 * that settles expired ones on any instance, and the final write retried
 * across connection drops (a TCP fault proxy between one instance and
 * PostgreSQL cuts, stalls or slows its connections). Two in-process
 * instances share one database and Redis (so either may sweep and announce);
 * subscribers and votes go through GraphQL.
 *
 * An unhandled rejection or uncaught exception anywhere in this file fails
 * the running test (jest-circus installs process-wide handlers for the run).
 */
import { BACKGROUND_SQL_TAG, LEASE_EXPIRED, UNSTORABLE } from '../src/modules/comparison/comparison-runner';
import { createTestDatabase, type TestDatabase } from './helpers/database';
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { FaultProxy } from './helpers/fault-proxy';
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { subscribe } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';

/** Long enough that a loaded machine's event-loop lag does not expire a live lease; short enough for quick tests. */
const LEASE_MS = '1000';
const RUN = `mutation($input: RunComparisonInput!) { runComparison(input: $input) { id responses { id model status content error } } }`;
const START = `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id responses { id model status } } }`;
const GET = `query($id: ID!) { comparison(id: $id) { responses { id model status content error } } }`;
const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status content error } }`;
/** The runner's final write (the lease sweep and heartbeats are unquoted `update comparison_responses`). */
const FINAL_WRITE = /update comparison_responses r\s+set status = v\.status[\s\S]*settled_at = now\(\)/;

describeRedis('leases and final writes (two instances, one database, one Redis)', () => {
  let fake: FakeLlmServer;
  let db: TestDatabase;
  let proxy: FaultProxy;
  /** Instance A reaches PostgreSQL through the fault proxy; B directly. */
  let a: TestApp;
  let b: TestApp;
  let user: { token: string; userId: string };

  beforeAll(async () => {
    fake = await FakeLlmServer.start();
    db = await createTestDatabase('lease');
    const proxied = await FaultProxy.forUrl(db.url);
    proxy = proxied.proxy;
    const env = {
      REDIS_URL: redisUrlForTests(),
      CACHE_PREFIX: `t-lease-${Date.now().toString(36)}`,
      OPENAI_BASE_URL: fake.baseUrls.openai,
      ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
      COMPARISON_LEASE_MS: LEASE_MS,
      SHUTDOWN_GRACE_MS: '0',
    };
    a = await createTestApp({ db: { ...db, url: proxied.url }, env });
    b = await createTestApp({ db, env });
    user = await a.signUp('lease');
    for (const provider of ['OPENAI', 'ANTHROPIC']) {
      await a.gql(
        `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`,
        { input: { provider, apiKey: `sk-${provider}-lease` } },
        user.token,
      );
    }
  });

  afterAll(async () => {
    proxy?.heal();
    await b?.close();
    await a?.close();
    await proxy?.close();
    await db?.drop();
    await fake?.close();
  });

  afterEach(() => proxy.heal());

  /** Resolves once `app` has sent `n` more background statements matching `pattern`. */
  function background(app: TestApp, pattern: RegExp, n: number): Promise<void> {
    let seen = 0;
    return new Promise((resolve) => {
      const stop = app.app.queryObserver.onQuery((sql, _took, failed) => {
        if (!failed && sql.startsWith(BACKGROUND_SQL_TAG) && pattern.test(sql) && ++seen >= n) {
          stop();
          resolve();
        }
      });
    });
  }
  const HEARTBEAT = /set heartbeat_at = now\(\)/;
  const SWEEP = /from comparison_results c/;

  async function collect(sub: Awaited<ReturnType<typeof subscribe>>): Promise<any[]> {
    const events = [];
    for await (const message of sub.events) {
      expect(message.errors).toBeUndefined();
      events.push((message.data as any).comparisonEvents);
    }
    return events;
  }

  async function start(models: string[]): Promise<{ id: string; responses: Array<{ id: string; model: string }> }> {
    const before = fake.count(undefined, 'chat');
    const res = await a.gql(START, { input: { prompt: 'lease me', models } }, user.token);
    expect(res.errors).toBeUndefined();
    await fake.waitForRequests(before + models.length, undefined, 'chat');
    return res.data.startComparison;
  }

  describe('leases', () => {
    it('every response row records the instance that runs it', async () => {
      fake.setBehavior('owned-model', { hang: true });
      const comparison = await start(['openai:owned-model', 'anthropic:owned-model']);
      const rows = await withClient(
        db.url,
        async (c) => (await c.query('select lease_owner from comparison_responses where comparison_id = $1', [comparison.id])).rows,
      );
      expect(rows).toEqual([{ lease_owner: a.app.services.runner.instanceId }, { lease_owner: a.app.services.runner.instanceId }]);
      await a.gql(`mutation($id: ID!) { cancelComparison(id: $id) { id } }`, { id: comparison.id }, user.token);
    });

    it('a running response keeps its lease through a slow database link: no instance settles it while it runs', async () => {
      fake.setBehavior('long-model', { hang: true });
      const comparison = await start(['openai:long-model', 'anthropic:long-model']);
      proxy.slow(60);
      // Well past one lease (1 s) of heartbeats from A (every 250 ms), then a sweep on B.
      await background(a, HEARTBEAT, 6);
      await background(b, SWEEP, 1);
      const res = await b.gql(GET, { id: comparison.id }, user.token);
      expect(res.data.comparison.responses.map((r: any) => r.status)).toEqual(['PENDING', 'PENDING']);
      proxy.heal();
      await a.gql(`mutation($id: ID!) { cancelComparison(id: $id) { id } }`, { id: comparison.id }, user.token);
    });

    it('an expired lease is settled FAILED elsewhere: subscribers complete, reads see it, voting works, no late overwrite', async () => {
      fake.setBehavior('abandoned-model', { hang: true });
      const comparison = await start(['openai:abandoned-model', 'anthropic:quick-model']);
      const [abandoned] = comparison.responses;
      const sub = await subscribe(b.url, EVENTS, { id: comparison.id }, user.token);
      const collecting = collect(sub);
      const cachedBefore = await a.gql(GET, { id: comparison.id }, user.token); // now in the read cache
      expect(cachedBefore.data.comparison.responses[0].status).toBe('PENDING');

      // As if A had died an hour ago: its lease is someone else's and stale, so its heartbeats no longer renew it.
      await withClient(db.url, (c) =>
        c.query(
          `update comparison_responses set lease_owner = 'crashed-instance', heartbeat_at = now() - interval '1 hour' where id = $1`,
          [abandoned!.id],
        ),
      );

      const events = await collecting;
      expect(sub.completed).toBe(true);
      expect(events.filter((e) => e.responseId === abandoned!.id).at(-1)).toMatchObject({ status: 'FAILED', error: LEASE_EXPIRED });
      const after = await a.gql(GET, { id: comparison.id }, user.token);
      expect(after.data.comparison.responses[0]).toMatchObject({ status: 'FAILED', error: LEASE_EXPIRED });
      const vote = await b.gql(
        `mutation($input: VoteInput!) { vote(input: $input) { outcome } }`,
        { input: { comparisonId: comparison.id, outcome: 'WINNER', winnerResponseId: comparison.responses[1]!.id } },
        user.token,
      );
      expect(vote.errors).toBeUndefined();

      // A still runs the model; when it stops, its own settle finds the row settled and leaves it.
      await a.gql(`mutation($id: ID!) { cancelComparison(id: $id) { id } }`, { id: comparison.id }, user.token);
      const final = await b.gql(GET, { id: comparison.id }, user.token);
      expect(final.data.comparison.responses[0]).toMatchObject({ status: 'FAILED', error: LEASE_EXPIRED });
    });
  });

  describe('the final write across connection drops', () => {
    it('is retried when the connection drops before the statement reaches PostgreSQL', async () => {
      const cut = proxy.cutWhenSent(FINAL_WRITE, { at: 'request' });
      const res = await a.gql(RUN, { input: { prompt: 'cut me', models: ['openai:drop-a', 'anthropic:drop-b'] } }, user.token);
      await cut;
      expect(res.errors).toBeUndefined();
      expect(res.data.runComparison.responses.map((r: any) => r.status)).toEqual(['COMPLETED', 'COMPLETED']);
      const stored = await b.gql(GET, { id: res.data.runComparison.id }, user.token);
      expect(stored.data.comparison.responses.map((r: any) => r.content)).toEqual([
        'Reply from drop-a: cut me',
        'Reply from drop-b: cut me',
      ]);
      expect(a.logs.some((l) => l.includes('failed on a connection error: retrying'))).toBe(true);
    });

    it('announces the stored state when the connection drops after PostgreSQL committed the write (the reply was lost)', async () => {
      fake.setBehavior('commit-model', { chunkDelayMs: 20 });
      const comparison = await start(['openai:commit-model', 'anthropic:quick-model']);
      const sub = await subscribe(b.url, EVENTS, { id: comparison.id }, user.token);
      const collecting = collect(sub);
      const cut = proxy.cutWhenSent(FINAL_WRITE, { at: 'reply' });
      await cut;
      const events = await collecting;
      expect(sub.completed).toBe(true);
      const last = events.filter((e) => e.responseId === comparison.responses[0]!.id).at(-1);
      expect(last).toMatchObject({ status: 'COMPLETED', content: 'Reply from commit-model: lease me' });
    });

    it('an answer PostgreSQL refuses to store settles FAILED at once (not left for the lease)', async () => {
      await withClient(db.url, (c) =>
        c.query(`alter table comparison_responses add constraint refuse_poison check (content not like '%poison%')`),
      );
      try {
        fake.setBehavior('poison-model', { text: 'a poison answer' });
        const res = await a.gql(RUN, { input: { prompt: 'x', models: ['openai:poison-model', 'anthropic:fine-model'] } }, user.token);
        expect(res.data.runComparison.responses.map((r: any) => [r.status, r.error])).toEqual([
          ['FAILED', UNSTORABLE],
          ['COMPLETED', null],
        ]);
        expect(a.logs.some((l) => l.includes('the statement was refused'))).toBe(true);
        expect(a.logs.join('\n')).not.toContain('poison answer'); // the refused statement is logged without its values
      } finally {
        await withClient(db.url, (c) => c.query('alter table comparison_responses drop constraint refuse_poison'));
      }
    });

    it('when an instance cannot reach the database for its final write, another settles the response once the lease expires', async () => {
      fake.setBehavior('unreachable-model', { chunkDelayMs: 20 });
      const comparison = await start(['openai:unreachable-model', 'anthropic:unreachable-model']);
      const sub = await subscribe(b.url, EVENTS, { id: comparison.id }, user.token);
      const collecting = collect(sub);
      await proxy.cutWhenSent(FINAL_WRITE, { at: 'request' });
      proxy.cut({ refuseNew: true }); // A's retries fail until they give up (one lease)
      const events = await collecting; // B's sweep settles what A could not store
      expect(sub.completed).toBe(true);
      const settled = events.filter((e) => ['COMPLETED', 'FAILED'].includes(e.status));
      expect(settled.length).toBe(2);
      expect(settled.some((e) => e.status === 'FAILED' && e.error === LEASE_EXPIRED)).toBe(true);
      await a.app.services.runner.settled(comparison.id); // A gave up retrying (after one lease) without throwing
      expect(a.logs.some((l) => l.includes('could not store a comparison response'))).toBe(true);
    });
  });
});
