import { randomUUID } from 'node:crypto';
import { poolStats } from '../src/db/orm';
import { seedUserData } from './helpers/factories';
import { createTestApp, type TestApp } from './helpers/test-app';

describe('a pool of 5 under 200 concurrent requests', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ env: { DB_POOL_MAX: '5', DB_POOL_MIN: '0' } });
  });
  afterAll(() => t.close());

  it('answers every request without an error and never opens more than 5 connections', async () => {
    const users = await Promise.all(Array.from({ length: 4 }, (_, i) => t.signUp(`pool${i}`)));
    for (const u of users) {
      await seedUserData(t.db.url, u.userId, { conversations: 10, messagesPerConversation: 3, comparisons: 5, responsesPerComparison: 2 });
    }
    let maxSize = 0;
    let maxPending = 0;
    const stop = t.app.queryObserver.onQuery(() => {
      const s = poolStats(t.app.orm);
      maxSize = Math.max(maxSize, s.size);
      maxPending = Math.max(maxPending, s.pending);
    });
    // A distinct id per request defeats the read cache: every request goes to PostgreSQL.
    const query =
      'query($id: ID!) { conversation(id: $id) { id } conversations(first: 10) { nodes { id messageCount lastMessage { id } } } ' +
      'comparisons(first: 5) { nodes { responses { id } } } }';
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => t.gql(query, { id: randomUUID() }, users[i % users.length]!.token)),
    ).finally(stop);
    const failures = results.filter((r) => r.status !== 200 || r.errors);
    expect(failures).toEqual([]);
    for (const r of results) expect(r.data.conversations.nodes).toHaveLength(10);
    expect(t.app.config.pool.max).toBe(5);
    expect(maxSize).toBeLessThanOrEqual(5);
    expect(maxPending).toBeGreaterThan(0); // the pool really was contended

    const health = (await (await fetch(`${t.url}/health`)).json()) as { database: { size: number } };
    expect(health.database).toMatchObject({ connected: true, max: 5 });
    expect(health.database.size).toBeLessThanOrEqual(5);
  });
});

describe('an exhausted pool', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ env: { DB_POOL_MAX: '1', DB_POOL_ACQUIRE_TIMEOUT_MS: '300' } });
  });
  afterAll(() => t.close());

  it('answers SERVICE_UNAVAILABLE after the acquire timeout instead of hanging, then recovers', async () => {
    const { token } = await t.signUp('exhaust');
    let release!: () => void;
    let held!: () => void;
    const holding = new Promise<void>((resolve) => (held = resolve));
    const blocker = t.app.orm.em.fork().transactional(async (em) => {
      await em.getConnection().execute('select 1', [], 'all', em.getTransactionContext());
      held();
      await new Promise<void>((resolve) => (release = resolve));
    });
    await holding;
    expect(poolStats(t.app.orm)).toMatchObject({ used: 1, max: 1 });

    const res = await t.gql(`query($id: ID!) { conversation(id: $id) { id } }`, { id: randomUUID() }, token);
    expect(res.errors?.[0]?.extensions?.code).toBe('SERVICE_UNAVAILABLE');
    expect(res.raw).not.toMatch(/knex|Timeout acquiring|select /i);

    release();
    await blocker;
    const ok = await t.gql(`query($id: ID!) { conversation(id: $id) { id } }`, { id: randomUUID() }, token);
    expect(ok.errors).toBeUndefined();
  });
});
