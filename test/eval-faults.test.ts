/**
 * Eval runs through real faults: the PostgreSQL server restarted mid-run (a private cluster stopped and started
 * again on its port) and Redis gone mid-run (a private redis-server killed, then back): the run completes, every
 * cell once, and `evalRun` tells the truth throughout.
 */
import { FakeLlmServer } from './helpers/fake-llm';
import { allCells, createSet, evalUser, startRun, waitForRun } from './helpers/evals';
import { type PrivatePostgres, startPrivatePostgres } from './helpers/private-postgres';
import { describeRedisServer, type PrivateRedis, startRedisServer } from './helpers/redis';
import { createTestApp, type TestApp } from './helpers/test-app';

const EVAL_ENV = { EVAL_LEASE_MS: '2000', EVAL_POLL_MS: '50', EVAL_CONCURRENCY_PER_USER: '2' };

let fake: FakeLlmServer;
beforeAll(async () => {
  fake = await FakeLlmServer.start();
});
afterAll(() => fake?.close());

async function runThrough(t: TestApp, prefix: string, fault: () => Promise<void>) {
  const u = await evalUser((p) => t.signUp(p), t.gql, prefix);
  fake.setBehavior(`${prefix}-model`, { delayMs: 60 });
  const setId = await createSet(
    t.gql,
    u.token,
    Array.from({ length: 12 }, (_, i) => ({ prompt: `${prefix} ${i}` })),
  );
  const run = await startRun(t.gql, u.token, { promptSetId: setId, models: [`openai:${prefix}-model`] });
  await waitForRun(t.gql, u.token, run.id, (r) => r.progress.cellsDone >= 2);
  await fault();
  const done = await waitForRun(t.gql, u.token, run.id, undefined, 60_000, 100);
  expect(done.status).toBe('COMPLETED');
  expect(done.progress).toMatchObject({ cellsTotal: 12, cellsDone: 12, cellsFailed: 0 });
  const cells = await allCells(t.gql, u.token, run.id);
  expect(cells.every((c) => c.status === 'COMPLETED' && c.content.startsWith(`Reply from ${prefix}-model`))).toBe(true);
  // Every cell was answered in full exactly once.
  const counts = fake.countsByIdempotencyKey('completed', u.apiKey);
  const mine = [...counts.entries()].filter(([k]) => k.startsWith('evc_') && !k.includes('.'));
  expect(mine.filter(([, n]) => n > 1)).toEqual([]);
}

describe('eval runs through faults', () => {
  let pg: PrivatePostgres | undefined;
  afterAll(async () => {
    await pg?.stop();
  });

  it('completes when the PostgreSQL server restarts mid-run', async () => {
    pg = await startPrivatePostgres();
    const t = await createTestApp({
      db: { name: 'llmselect', url: pg.url, drop: async () => undefined },
      // A private PostgreSQL, not a copy of the migrated template: the app migrates it at start.
      env: { ...fake.providerEnv(), ...EVAL_ENV, MIGRATE_ON_START: 'true' },
    });
    try {
      await runThrough(t, 'pgrestart', () => pg!.restart());
    } finally {
      await t.close();
    }
  }, 120_000);
});

describeRedisServer('eval runs with Redis gone', () => {
  let redis: PrivateRedis;
  let t: TestApp;
  beforeAll(async () => {
    redis = await startRedisServer();
    t = await createTestApp({ env: { ...fake.providerEnv(), ...EVAL_ENV, REDIS_URL: redis.url } });
  });
  afterAll(async () => {
    await t?.close();
    await redis?.stop();
  });

  it('completes while Redis is down (killed mid-run), and runs again once it is back', async () => {
    await runThrough(t, 'redisdown', () => redis.kill());
    await redis.restart();
    await runThrough(t, 'redisback', async () => undefined);
  }, 120_000);
});
