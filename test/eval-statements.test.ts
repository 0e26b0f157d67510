/**
 * What an eval cell costs PostgreSQL: the worker claims the cells of a fetch
 * in one transaction, reads each user's keys once per batch, and writes the
 * settles (and acknowledges the jobs) of one turn of the event loop in one
 * statement each. One statement sent hands the CPU to a backend: at a cell
 * every 6 ms of CPU, four statements for a claim, one for a key and one for a
 * settle per cell made a run of short answers CPU-bound (`npm run bench:eval`).
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

it('sends at most 1.5 SQL statements per cell for 16 cells answered together', async () => {
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
  const perPoll = /WITH next as|heartbeat_at = now\(\) from eval_runs|select exists \(select 1 from eval_|maintain|monitor/i;
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
  if (statements.length > 24) console.log(statements.map((s) => s.replace(/\s+/g, ' ').slice(0, 120)).join('\n'));
  expect(statements.length).toBeLessThanOrEqual(24);
});
