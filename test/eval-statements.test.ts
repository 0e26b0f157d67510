/**
 * What an eval cell costs PostgreSQL: the worker claims the cells of a fetch
 * in one transaction, reads each user's keys once per batch, and writes the
 * settles (and acknowledges the jobs) of one turn of the event loop in one
 * statement each. One statement sent hands the CPU to a backend: at a cell
 * every 6 ms of CPU, four statements for a claim, one for a key and one for a
 * settle per cell made a run of short answers CPU-bound (`npm run bench:eval`).
 * And a user at EVAL_CONCURRENCY_PER_USER with every slot on this instance
 * costs nothing while its cells run (the worker fetched, claimed and released
 * that user's waiting jobs every 50 ms).
 */
import { currentRequestSeq } from '../src/observability/request-log';
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestApp, type TestApp } from './helpers/test-app';
import { createSet, evalUser, startRun, waitForRun } from './helpers/evals';

let fake: FakeLlmServer;
let t: TestApp;

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  t = await createTestApp({
    env: { ...fake.providerEnv(), EVAL_CONCURRENCY_PER_USER: '16', EVAL_CONCURRENCY: '16', EVAL_LEASE_MS: '10000', EVAL_POLL_MS: '50' },
  });
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

it('sends at most 2.5 SQL statements per cell for 16 cells answered together (105 before batching)', async () => {
  const u = await evalUser((p) => t.signUp(p), t.gql, 'statements');
  const setId = await createSet(
    t.gql,
    u.token,
    Array.from({ length: 8 }, (_, i) => ({ prompt: `s${i}` })),
  );
  // Every call is held until all 16 have arrived, then all are answered at once.
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  for (const model of ['held-a', 'held-b']) fake.setBehavior(model, { beforeAnswer: () => gate });
  // The worker's statements run outside any request: the test's GraphQL requests are left out, and so are what
  // the worker sends on its own schedule, not per cell: pg-boss's polls and maintenance, lease renewals and sweeps.
  // (The comparison runner's lease sweep and pg-boss's maintenance lock too.) Answers released together settle and are
  // acknowledged in as few turns as the machine allows, at worst one turn each: 2 per cell plus the claim transaction,
  // the key read and the run's completion stay under 2.5 per cell; the old per-cell claims and settles made it 105.
  const perPoll = new RegExp(
    [
      'WITH next as',
      'heartbeat_at = now\\(\\) from eval_runs',
      'select exists \\(select 1 from eval_',
      'maintain',
      'monitor',
      'update comparison_responses',
      'SET LOCAL lock_timeout',
    ].join('|'),
    'i',
  );
  const statements: string[] = [];
  const stop = t.app.queryObserver.onQuery((sql) => {
    if (currentRequestSeq() === undefined && !perPoll.test(sql)) statements.push(sql);
  });
  try {
    const run = await startRun(t.gql, u.token, { promptSetId: setId, models: ['openai:held-a', 'anthropic:held-b'] });
    await fake.waitForRequests(16, undefined, 'chat');
    open();
    expect((await waitForRun(t.gql, u.token, run.id)).status).toBe('COMPLETED');
  } finally {
    stop();
  }
  // Before batching: four statements per claim (BEGIN, read and lock, claim, COMMIT), a key read and a settle per cell.
  if (statements.length > 40) console.log(statements.map((s) => s.replace(/\s+/g, ' ').slice(0, 120)).join('\n'));
  expect(statements.length).toBeLessThanOrEqual(40);
});

it('does not fetch, claim and release every 50 ms while a user is at its limit with every slot here', async () => {
  // Four cells of a user at once (EVAL_CONCURRENCY_PER_USER), sixteen slots: the other jobs wait in the queue.
  const limited = await createTestApp({
    env: { ...fake.providerEnv(), EVAL_CONCURRENCY_PER_USER: '4', EVAL_CONCURRENCY: '16', EVAL_LEASE_MS: '10000', EVAL_POLL_MS: '2000' },
  });
  try {
    const u = await evalUser((p) => limited.signUp(p), limited.gql, 'limited');
    const setId = await createSet(
      limited.gql,
      u.token,
      Array.from({ length: 8 }, (_, i) => ({ prompt: `l${i}` })),
    );
    // Every call takes 300 ms: a worker that asks again every 50 ms while the user is at its limit would fetch,
    // claim and release about six times per wave of four.
    for (const model of ['limit-a', 'limit-b']) fake.setBehavior(model, { delayMs: 300 });
    const upkeep = /heartbeat_at = now\(\) from eval_runs|select exists \(select 1 from eval_|maintain|monitor/i;
    const statements: string[] = [];
    const stop = limited.app.queryObserver.onQuery((sql) => {
      if (currentRequestSeq() === undefined && !upkeep.test(sql)) statements.push(sql);
    });
    try {
      const run = await startRun(limited.gql, u.token, { promptSetId: setId, models: ['openai:limit-a', 'anthropic:limit-b'] });
      expect((await waitForRun(limited.gql, u.token, run.id)).status).toBe('COMPLETED');
    } finally {
      stop();
    }
    expect(fake.maxConcurrent(u.apiKey)).toBe(4);
    // Measured for these 16 cells: 44 statements; 154 when the worker asked again every 50 ms (505 before the claims
    // were batched).
    if (statements.length > 5 * 16) console.log(statements.map((s) => s.replace(/\s+/g, ' ').slice(0, 100)).join('\n'));
    expect(statements.length).toBeLessThanOrEqual(5 * 16);
  } finally {
    await limited.close();
  }
});
