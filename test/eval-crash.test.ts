/**
 * An eval run survives `kill -9` of an instance running it: two real server
 * processes (`node dist/src/main.js`) share one PostgreSQL; one is killed
 * while it holds cells; the other takes them over once their leases expire
 * (EVAL_LEASE_MS: 2 s here), the run completes, and no cell's provider call
 * completed twice (the fake counts calls per `Idempotency-Key`). The calls
 * the killed instance had in flight are the only ones made again.
 *
 * Deterministic without sleeps: before the kill, new calls are held at the
 * fake (its `beforeAnswer` gate) and the test waits until every call that was
 * already answered is recorded as a COMPLETED cell, so what the killed
 * instance holds is exactly calls that never completed.
 */
import { randomBytes } from 'node:crypto';
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestDatabase, type TestDatabase } from './helpers/database';
import { gqlAt, type ServerProcess, startServer } from './helpers/server-process';
import { allCells, CANCEL, createSet, evalUser, startRun, waitForRun } from './helpers/evals';

jest.setTimeout(120_000);

let fake: FakeLlmServer;
let db: TestDatabase;
const servers: ServerProcess[] = [];

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  db = await createTestDatabase('evalcrash');
});
afterAll(async () => {
  if (process.env.EVAL_DEBUG) for (const s of servers) console.log(JSON.stringify(s.logs.slice(-20)), s.stderr().slice(-2000));
  for (const s of servers) if (s.child.exitCode === null && s.child.signalCode === null) await s.stop('SIGKILL');
  await fake?.close();
  await db?.drop();
});

const env = (extra: Record<string, string> = {}) => ({
  NODE_ENV: 'production',
  DATABASE_URL: db.url,
  JWT_SECRET: 'eval-crash-secret-that-is-long-enough-0123456789abcdef',
  ENCRYPTION_KEY: Buffer.alloc(32, 9).toString('base64'),
  CACHE_PREFIX: `evalcrash-${randomBytes(4).toString('hex')}`,
  ARGON2_MEMORY_KIB: '1024',
  ARGON2_TIME_COST: '1',
  LOG_LEVEL: 'info',
  RATE_LIMIT_PROVIDER_CALLS: '0',
  RATE_LIMIT_LOGIN_FAILURES: '0',
  RATE_LIMIT_AUTH_PER_IP: '0',
  ...fake.providerEnv(),
  EVAL_LEASE_MS: '2000',
  EVAL_POLL_MS: '50',
  EVAL_CONCURRENCY: '8',
  EVAL_CONCURRENCY_PER_USER: '8',
  ...extra,
});

async function start(extra: Record<string, string> = {}): Promise<ServerProcess> {
  const server = await startServer({ env: env(extra) });
  servers.push(server);
  return server;
}

/** Polls `check` every 25 ms until it holds (or 20 s). */
async function until(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

const gqlOn = (url: string) => async (query: string, variables?: Record<string, unknown>, token?: string) =>
  gqlAt(url, query, variables, token);

it('completes a run whose instance was kill -9ed mid-run: no completed call made twice, cells resumed within 30 s', async () => {
  // Half the user's limit per instance: once calls hang at the fake, each instance necessarily holds cells (with 8 and
  // 8, the faster one could take all of the user's slots and the one to kill hold none: a flake under load).
  const slots = 4;
  const [a, b] = await Promise.all([
    start({ EVAL_CONCURRENCY: String(slots), EVAL_PREFETCH: '4' }),
    start({ EVAL_CONCURRENCY: String(slots), EVAL_PREFETCH: '4' }),
  ]);
  const gql = gqlOn(b.url);
  const u = await evalUser(
    async (prefix) => {
      const res = await gql(`mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token user { id } } }`, {
        e: `${prefix}-${randomBytes(3).toString('hex')}@example.com`,
        p: 'correct horse battery',
      });
      return { token: res.data.register.token, userId: res.data.register.user.id };
    },
    gql,
    'crash',
  );
  const setId = await createSet(
    gql,
    u.token,
    Array.from({ length: 40 }, (_, i) => ({ prompt: `question ${i}` })),
  );
  fake.setBehavior('crash-a', { delayMs: 100 });
  fake.setBehavior('crash-b', { delayMs: 100 });
  const run = await startRun(gqlOn(a.url), u.token, { promptSetId: setId, models: ['openai:crash-a', 'anthropic:crash-b'] });

  // Both instances take cells; once a quarter is done, new calls are held at the fake.
  await waitForRun(gql, u.token, run.id, (r) => r.progress.cellsDone >= 20);
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let heldAtGate = 0;
  const hold = () => {
    heldAtGate++;
    return gate;
  };
  fake.setBehavior('crash-a', { delayMs: 100, beforeAnswer: hold });
  fake.setBehavior('crash-b', { delayMs: 100, beforeAnswer: hold });
  const cellRows = () =>
    withClient(
      db.url,
      async (c) =>
        (await c.query(`select idempotency_key, status, lease_owner, attempts from eval_cells where run_id = $1`, [run.id])).rows,
    );
  // Every call the fake answered in full is recorded, and the instance to kill holds cells (its calls are held at the fake):
  // all of its slots, so it can claim nothing more before the kill (with a slot free, a cell it claimed after `held` is
  // read would be claimed again by the other instance: one more cell with attempts 2 than `held` has, seen once in CI).
  const aPid = String(a.child.pid);
  const deadline = Date.now() + 20_000;
  for (;;) {
    const rows = await cellRows();
    const completed = new Set(rows.filter((r) => r.status === 'COMPLETED').map((r) => r.idempotency_key));
    const answered = [...fake.countsByIdempotencyKey('completed', u.apiKey).keys()];
    const heldByA = rows.filter((r) => r.status === 'RUNNING' && String(r.lease_owner).includes(`/${aPid}/`));
    // It also holds cells claimed ahead (QUEUED under its lease): they must come back when its lease expires.
    const aheadByA = rows.filter((r) => r.status === 'QUEUED' && String(r.lease_owner).includes(`/${aPid}/`));
    // Every open call is one held at the gate (none is mid-answer), and every answered one is recorded.
    const open = fake.requests.filter((r) => r.apiKey === u.apiKey && r.finishedAt === undefined).length;
    // And every cell it holds has its call at the gate (a cell claimed but not yet called would be called once, later).
    const calling = heldByA.every((r) => fake.requests.some((q) => q.idempotencyKey === r.idempotency_key && q.finishedAt === undefined));
    if (answered.every((k) => completed.has(k)) && heldByA.length === slots && aheadByA.length > 0 && open === heldAtGate && calling) break;
    if (Date.now() > deadline) throw new Error('the instance to kill never held a cell');
    await new Promise((r) => setTimeout(r, 25));
  }
  const held = (await cellRows()).filter((r) => r.status === 'RUNNING' && String(r.lease_owner).includes(`/${aPid}/`));
  const heldKeys = new Set(held.map((r) => r.idempotency_key));
  const aheadKeys = (await cellRows())
    .filter((r) => r.status === 'QUEUED' && String(r.lease_owner).includes(`/${aPid}/`))
    .map((r) => r.idempotency_key);
  expect(aheadKeys.length).toBeGreaterThan(0);

  a.child.kill('SIGKILL');
  const killedAt = performance.now();
  expect(await a.exited).toEqual({ code: null, signal: 'SIGKILL' });
  open();

  const done = await waitForRun(gql, u.token, run.id, undefined, 45_000).catch(async (e) => {
    const rows = await withClient(
      db.url,
      async (c) =>
        (
          await c.query(
            `select id, status, lease_owner, attempts, heartbeat_at, error from eval_cells where run_id = $1 and status <> 'COMPLETED'`,
            [run.id],
          )
        ).rows,
    );
    const jobs = await withClient(
      db.url,
      async (c) =>
        (
          await c.query(`select state, data, start_after, retry_count from pgboss.job where data->>'runId' = $1 and state <> 'completed'`, [
            run.id,
          ])
        ).rows,
    );
    console.log('STUCK', JSON.stringify(rows), JSON.stringify(jobs), aPid);
    throw e;
  });
  expect(done.status).toBe('COMPLETED');
  expect(done.progress).toMatchObject({ cellsTotal: 80, cellsDone: 80, cellsFailed: 0 });

  // Zero completed calls twice; every repeated key was a call the killed instance had in flight.
  const completedCounts = fake.countsByIdempotencyKey('completed', u.apiKey);
  expect(completedCounts.size).toBe(80);
  expect([...completedCounts.entries()].filter(([, n]) => n !== 1)).toEqual([]);
  const allCounts = fake.countsByIdempotencyKey('all', u.apiKey);
  const repeated = [...allCounts.entries()].filter(([, n]) => n > 1).map(([k]) => k);
  expect(repeated.every((k) => heldKeys.has(k))).toBe(true);
  expect(repeated.length).toBe(heldKeys.size);

  // Resumed within 30 s: the first new call for a held cell arrived after one lease (2 s) and a sweep.
  const resumedAt = Math.min(
    ...fake.requests.filter((r) => heldKeys.has(r.idempotencyKey ?? '') && r.receivedAt > killedAt).map((r) => r.receivedAt),
  );
  expect(resumedAt - killedAt).toBeLessThan(30_000);
  const cells = await allCells(gql, u.token, run.id);
  expect(cells.filter((c) => c.attempts === 2).length).toBe(heldKeys.size);
  // The cells it had claimed ahead were called once, by the other instance; the user's limit held throughout.
  expect(aheadKeys.map((k) => allCounts.get(k))).toEqual(aheadKeys.map(() => 1));
  expect(fake.maxConcurrent(u.apiKey)).toBeLessThanOrEqual(8);
  await b.stop('SIGTERM');
});

it('cancels a run from another instance: in-flight calls stop within seconds (heartbeats read the run, no pub/sub)', async () => {
  const [worker, api] = await Promise.all([start(), start({ EVAL_WORKERS: 'off' })]);
  const gql = gqlOn(api.url);
  const u = await evalUser(
    async (prefix) => {
      const res = await gql(`mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token user { id } } }`, {
        e: `${prefix}-${randomBytes(3).toString('hex')}@example.com`,
        p: 'correct horse battery',
      });
      return { token: res.data.register.token, userId: res.data.register.user.id };
    },
    gql,
    'xcancel',
  );
  fake.setBehavior('cancel-hang', { hang: true });
  const setId = await createSet(
    gql,
    u.token,
    Array.from({ length: 12 }, (_, i) => ({ prompt: `hang ${i}` })),
  );
  const run = await startRun(gql, u.token, { promptSetId: setId, models: ['openai:cancel-hang'] });
  const mine = () => fake.requests.filter((r) => r.apiKey === u.apiKey);
  await waitForRun(gql, u.token, run.id, () => mine().length === 8);
  const cancelledAt = performance.now();
  const res = await gql(CANCEL, { id: run.id }, u.token);
  expect(res.data.cancelEvalRun.status).toBe('CANCELLED');
  await waitForRun(gql, u.token, run.id, () => mine().every((r) => r.finishedAt !== undefined), 10_000);
  expect(Math.max(...mine().map((r) => r.finishedAt!)) - cancelledAt).toBeLessThan(5_000);
  const cells = await waitForRun(gql, u.token, run.id, () => true).then(() => allCells(gql, u.token, run.id));
  expect(cells.filter((c) => c.status === 'QUEUED')).toEqual([]);
  expect(mine()).toHaveLength(8);
  await Promise.all([worker.stop('SIGTERM'), api.stop('SIGTERM')]);
});

it('scores a recorded answer after a kill -9 during its RUBRIC judge call, without calling the model again', async () => {
  const a = await start();
  const gql = gqlOn(a.url);
  const u = await evalUser(
    async (prefix) => {
      const res = await gql(`mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token user { id } } }`, {
        e: `${prefix}-${randomBytes(3).toString('hex')}@example.com`,
        p: 'correct horse battery',
      });
      return { token: res.data.register.token, userId: res.data.register.user.id };
    },
    gql,
    'recorded',
  );
  const setId = await createSet(gql, u.token, [{ prompt: 'Say hello' }], [{ kind: 'RUBRIC', value: 'Is polite' }]);
  // The judge's call is held: the instance dies while the answer it scores has arrived.
  let judged!: () => void;
  const judging = new Promise<void>((resolve) => (judged = resolve));
  const holdJudge = () => {
    judged();
    return new Promise<void>(() => {});
  };
  fake.setBehavior('judge-held', { text: 'Polite. VERDICT: PASS', beforeAnswer: holdJudge });
  const run = await startRun(gql, u.token, { promptSetId: setId, models: ['openai:recorded-model'], judgeModel: 'openai:judge-held' });
  await judging;
  const [row] = await withClient(
    db.url,
    async (c) => (await c.query(`select status, content, idempotency_key from eval_cells where run_id = $1`, [run.id])).rows,
  );
  expect(row).toMatchObject({ status: 'RUNNING', content: expect.stringContaining('Reply from recorded-model') });

  a.child.kill('SIGKILL');
  expect(await a.exited).toEqual({ code: null, signal: 'SIGKILL' });
  fake.setBehavior('judge-held', { text: 'Polite. VERDICT: PASS' });
  const b = await start();
  const done = await waitForRun(gqlOn(b.url), u.token, run.id, undefined, 45_000);
  expect(done.status).toBe('COMPLETED');
  const [cell] = await allCells(gqlOn(b.url), u.token, run.id);
  expect(cell).toMatchObject({ status: 'COMPLETED', attempts: 2, passed: true, content: row.content });
  // The model was called once; only the judge's call (the one in flight at the kill) was made again.
  const calls = fake.countsByIdempotencyKey('all', u.apiKey);
  expect(calls.get(row.idempotency_key)).toBe(1);
  expect(calls.get(`${row.idempotency_key}.rubric0`)).toBe(2);
  await b.stop('SIGTERM');
});

it('never calls the cells a cancelled run had claimed ahead, even when answers settle before the worker hears of the cancel', async () => {
  // No pub/sub between the two (the cancel reaches the worker by its heartbeat, every second here): the answers held at
  // the fake are let through right after the cancel, so their settles would hand their slots to the cells claimed ahead.
  const [worker, api] = await Promise.all([
    start({ EVAL_CONCURRENCY: '4', EVAL_CONCURRENCY_PER_USER: '4', EVAL_PREFETCH: '4', EVAL_LEASE_MS: '4000' }),
    start({ EVAL_WORKERS: 'off' }),
  ]);
  const gql = gqlOn(api.url);
  const u = await evalUser(
    async (prefix) => {
      const res = await gql(`mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token user { id } } }`, {
        e: `${prefix}-${randomBytes(3).toString('hex')}@example.com`,
        p: 'correct horse battery',
      });
      return { token: res.data.register.token, userId: res.data.register.user.id };
    },
    gql,
    'aheadcancel',
  );
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  fake.setBehavior('ahead-gated', { beforeAnswer: () => gate });
  const setId = await createSet(
    gql,
    u.token,
    Array.from({ length: 12 }, (_, i) => ({ prompt: `ahead ${i}` })),
  );
  const run = await startRun(gql, u.token, { promptSetId: setId, models: ['openai:ahead-gated'] });
  const mine = () => fake.requests.filter((r) => r.apiKey === u.apiKey);
  const reserved = async () =>
    withClient(
      db.url,
      async (c) =>
        (
          await c.query(`select count(*)::int as n from eval_cells where run_id = $1 and status = 'QUEUED' and lease_owner is not null`, [
            run.id,
          ])
        ).rows[0].n as number,
    );
  // Four calls held at the fake, four more cells claimed ahead by the worker.
  await until(async () => mine().length === 4 && (await reserved()) === 4);
  const res = await gql(CANCEL, { id: run.id }, u.token);
  expect(res.data.cancelEvalRun.status).toBe('CANCELLED');
  open();
  // Every job of the run acknowledged: the four answered cells settled, the cells claimed ahead let go.
  const jobsLeft = () =>
    withClient(
      db.url,
      async (c) =>
        (await c.query(`select count(*)::int as n from pgboss.job where data->>'runId' = $1 and state <> 'completed'`, [run.id])).rows[0]
          .n as number,
    );
  await until(async () => (await jobsLeft()) === 0);
  expect(mine()).toHaveLength(4);
  const cells = await allCells(gql, u.token, run.id);
  expect(cells.filter((c) => c.status === 'QUEUED' || c.status === 'RUNNING')).toEqual([]);
  expect(cells.filter((c) => c.status === 'CANCELLED').length).toBeGreaterThanOrEqual(8);
  await Promise.all([worker.stop('SIGTERM'), api.stop('SIGTERM')]);
});
