/**
 * Eval runs through GraphQL on real PostgreSQL against the fake provider:
 * a run scored and judged to the end, the estimate against what it cost,
 * BUDGET_EXCEEDED before any call (and two runs that cannot overspend
 * together), reuse at $0, cancel (queued at once, in flight within seconds),
 * per-user concurrency, a 429 retried after its Retry-After, validation,
 * ownership, scopes, paging and the event stream.
 */
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { subscribe } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';
import { allCells, CANCEL, CELLS, createSet, ESTIMATE, evalUser, RUN, START, startRun, waitForRun } from './helpers/evals';

let fake: FakeLlmServer;
let t: TestApp;

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  t = await createTestApp({
    env: { ...fake.providerEnv(), EVAL_CONCURRENCY_PER_USER: '4', EVAL_CONCURRENCY: '16', EVAL_LEASE_MS: '2000', EVAL_POLL_MS: '50' },
  });
});
afterAll(async () => {
  if (process.env.EVAL_DEBUG)
    console.log(
      t.logs
        .filter((l) => !l.includes('"level":30'))
        .join('')
        .slice(0, 20000),
    );
  await t?.close();
  await fake?.close();
});

const user = (prefix: string) => evalUser((p) => t.signUp(p), t.gql, prefix);
const chatsWith = (apiKey: string) => fake.requests.filter((r) => r.kind === 'chat' && r.apiKey === apiKey);

async function createToken(jwt: string, input: Record<string, unknown>): Promise<string> {
  const res = await t.gql(`mutation($input: ApiTokenInput!) { createApiToken(input: $input) { token } }`, { input }, jwt);
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return res.data.createApiToken.token;
}

describe('a run, end to end', () => {
  it('answers every cell, scores it (RUBRIC through the judge), judges each pair in both orders and completes once', async () => {
    const u = await user('e2e');
    fake.setBehavior('judge-e2e', {
      text: 'Fine answer. VERDICT: PASS',
      judge: ({ answerA, answerB }) => (answerA.length >= answerB.length ? '[[A]]' : '[[B]]'),
    });
    const setId = await createSet(
      t.gql,
      u.token,
      [{ prompt: 'Say hello' }, { prompt: 'Say goodbye', assertions: [{ kind: 'CONTAINS', value: 'nothing-like-this' }] }],
      [
        { kind: 'CONTAINS', value: 'Reply from' },
        { kind: 'RUBRIC', value: 'Is polite' },
      ],
    );
    const input = { promptSetId: setId, models: ['openai:gpt-4o-mini', 'anthropic:claude-haiku-4-5'], judgeModel: 'openai:judge-e2e' };
    const started = await startRun(t.gql, u.token, input);
    expect(started).toMatchObject({ status: 'QUEUED', models: input.models, judgeModel: 'openai:judge-e2e', repeats: 1 });
    expect(started.progress).toMatchObject({ cellsTotal: 4, cellsDone: 0, judgeCallsTotal: 4 });

    const run = await waitForRun(t.gql, u.token, started.id);
    expect(run.status).toBe('COMPLETED');
    expect(run.progress).toMatchObject({
      cellsTotal: 4,
      cellsDone: 4,
      cellsFailed: 0,
      judgeCallsDone: 4,
      judgeCallsTotal: 4,
      etaSeconds: 0,
    });
    expect(run.startedAt).not.toBeNull();
    expect(run.finishedAt).not.toBeNull();

    const cells = await allCells(t.gql, u.token, run.id);
    expect(cells).toHaveLength(4);
    for (const cell of cells) {
      expect(cell).toMatchObject({ status: 'COMPLETED', reused: false, attempts: 1 });
      expect(cell.content).toContain(`Reply from ${cell.model.split(':')[1]}`);
      expect(cell.latencyMs).toBeGreaterThanOrEqual(0);
      expect(cell.ttftMs).toBeGreaterThanOrEqual(0);
      expect(cell.assertions.map((a: any) => [a.kind, a.outcome])).toEqual(
        cell.item.position === 1
          ? [
              ['CONTAINS', 'pass'],
              ['RUBRIC', 'pass'],
            ]
          : [
              ['CONTAINS', 'pass'],
              ['RUBRIC', 'pass'],
              ['CONTAINS', 'fail'],
            ],
      );
      expect(cell.passed).toBe(cell.item.position === 1);
    }
    // One provider call per cell, each with its own idempotency key; RUBRIC and pair calls carry derived keys.
    // This user's calls only: the fake serves the whole file, whose tests run in any order.
    const counts = fake.countsByIdempotencyKey('completed', u.apiKey);
    const cellKeys = [...counts.keys()].filter((k) => k.startsWith('evc_') && !k.includes('.'));
    expect(cellKeys).toHaveLength(4);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    const pairCalls = chatsWith(u.apiKey).filter((r) => r.idempotencyKey?.startsWith('evp_'));
    expect(pairCalls).toHaveLength(4);
    // Both orders of each pair: the same two answers shown as A/B and as B/A.
    const verdicts = await withClient(
      t.db.url,
      async (c) => (await c.query(`select outcome, verdict_ab, verdict_ba from eval_pair_verdicts where run_id = $1`, [run.id])).rows,
    );
    expect(verdicts).toHaveLength(2);
    for (const v of verdicts)
      expect(v.outcome).toEqual(
        v.verdict_ab === 'A' && v.verdict_ba === 'B' ? 'A' : v.verdict_ab === 'B' && v.verdict_ba === 'A' ? 'B' : 'TIE',
      );
  });

  it('estimates within ±15% of what the run cost, and counts it as spend', async () => {
    const u = await user('estimate');
    const words = Array.from({ length: 400 }, (_, i) => `w${i}`).join(' ');
    fake.setBehavior('gpt-4o-mini', { text: words, chunkDelayMs: 0 });
    fake.setBehavior('gpt-4.1-mini', { text: words, chunkDelayMs: 0 });
    try {
      const setId = await createSet(t.gql, u.token, [{ prompt: 'Write' }, { prompt: 'Write more' }, { prompt: 'Write again' }]);
      const input = { promptSetId: setId, models: ['openai:gpt-4o-mini', 'openai:gpt-4.1-mini'], maxOutputTokens: 400, repeats: 2 };
      const est = (await t.gql(ESTIMATE, { input }, u.token)).data.estimateEvalRun;
      expect(est.calls).toBe(12);
      expect(est.perModel.map((m: any) => [m.model, m.calls, m.outputTokensHigh, m.priced])).toEqual([
        ['openai:gpt-4o-mini', 6, 2400, true],
        ['openai:gpt-4.1-mini', 6, 2400, true],
      ]);
      expect(est.budgetLeftUsd).toBeNull();
      const run = await waitForRun(t.gql, u.token, (await startRun(t.gql, u.token, input)).id);
      expect(run.status).toBe('COMPLETED');
      const spent = run.progress.spentUsd;
      expect(spent).toBeGreaterThan(0);
      expect(spent).toBeGreaterThanOrEqual(est.costUsdLow);
      expect(spent).toBeLessThanOrEqual(est.costUsdHigh);
      expect(Math.abs(spent - est.costUsdHigh) / spent).toBeLessThan(0.15);
      const me = await t.gql(`{ me { spentTodayUsd } }`, {}, u.token);
      expect(me.data.me.spentTodayUsd).toBeCloseTo(spent, 5);
    } finally {
      fake.setBehavior('gpt-4o-mini', {});
      fake.setBehavior('gpt-4.1-mini', {});
    }
  });
});

describe('money before the first call', () => {
  it('refuses BUDGET_EXCEEDED, with what is left and needed, before any call or job', async () => {
    const u = await user('budget');
    const setId = await createSet(t.gql, u.token, [{ prompt: 'One' }, { prompt: 'Two' }]);
    const capped = await createToken(u.token, { name: 'capped', scopes: ['READ', 'EVAL'], dailyBudgetUsd: 0.001 });
    const input = { promptSetId: setId, models: ['openai:gpt-4o', 'anthropic:claude-sonnet-4-5'] };
    const est = (await t.gql(ESTIMATE, { input }, capped)).data.estimateEvalRun;
    expect(est.budgetLeftUsd).toBe(0.001);
    expect(est.costUsdHigh).toBeGreaterThan(0.001);
    const res = await t.gql(START, { input }, capped);
    expect(res.errors?.[0]?.extensions).toMatchObject({ code: 'BUDGET_EXCEEDED', leftUsd: 0.001, budgetUsd: 0.001 });
    expect(res.errors![0]!.extensions!.neededUsd).toBeCloseTo(est.costUsdHigh, 6);
    expect(chatsWith(u.apiKey)).toHaveLength(0);
    const rows = await withClient(t.db.url, async (c) => {
      const runs = (await c.query(`select count(*)::int as n from eval_runs where owner_id = $1`, [u.userId])).rows[0].n;
      const jobs = (
        await c.query(
          `select count(*)::int as n from pgboss.job where data->>'runId' in (select id::text from eval_runs where owner_id = $1)`,
          [u.userId],
        )
      ).rows[0].n;
      return { runs, jobs };
    });
    expect(rows).toEqual({ runs: 0, jobs: 0 });
  });

  it('reserves as it starts: of two concurrent runs that each fit but not together, one is refused', async () => {
    const u = await user('together');
    fake.setBehavior('gpt-4o-hold', { hang: true });
    const setId = await createSet(t.gql, u.token, [{ prompt: 'Only' }]);
    const input = { promptSetId: setId, models: ['openai:gpt-4o'], maxOutputTokens: 1000 };
    const high = (await t.gql(ESTIMATE, { input }, u.token)).data.estimateEvalRun.costUsdHigh;
    const token = await createToken(u.token, { name: 'pair', scopes: ['READ', 'EVAL'], dailyBudgetUsd: Number((high * 1.5).toFixed(6)) });
    const results = await Promise.all([t.gql(START, { input }, token), t.gql(START, { input }, token)]);
    const codes = results.map((r) => r.errors?.[0]?.extensions?.code ?? 'OK').sort();
    expect(codes).toEqual(['BUDGET_EXCEEDED', 'OK']);
    const ok = results.find((r) => !r.errors)!.data.startEvalRun;
    expect((await waitForRun(t.gql, u.token, ok.id)).status).toBe('COMPLETED');
    // Once it settled, its reservation is released: what it did not spend is available again.
    const left = (await t.gql(ESTIMATE, { input }, token)).data.estimateEvalRun.budgetLeftUsd;
    expect(left).toBeGreaterThan(high * 1.5 - high);
  });

  it('reuses identical earlier answers at $0 with no provider call', async () => {
    const u = await user('reuse');
    const setId = await createSet(
      t.gql,
      u.token,
      [{ prompt: 'Reuse me', system: 'Be brief' }, { prompt: 'And me' }],
      [{ kind: 'CONTAINS', value: 'Reply' }],
    );
    const input = { promptSetId: setId, models: ['openai:gpt-4o-mini', 'anthropic:claude-haiku-4-5'], maxOutputTokens: 100 };
    const first = await waitForRun(t.gql, u.token, (await startRun(t.gql, u.token, input)).id);
    expect(first.progress.spentUsd).toBeGreaterThan(0);
    const calls = chatsWith(u.apiKey).length;
    expect(calls).toBe(4);
    const again = await waitForRun(t.gql, u.token, (await startRun(t.gql, u.token, { ...input, reuseAnswers: true })).id);
    expect(again.status).toBe('COMPLETED');
    expect(again.progress.spentUsd).toBe(0);
    expect(chatsWith(u.apiKey)).toHaveLength(calls);
    const cells = await allCells(t.gql, u.token, again.id);
    expect(cells.every((c) => c.reused && c.costUsd === 0 && c.passed === true && c.content.startsWith('Reply'))).toBe(true);
    // A different max-token setting is another question: called again.
    const other = await waitForRun(
      t.gql,
      u.token,
      (await startRun(t.gql, u.token, { ...input, maxOutputTokens: 101, reuseAnswers: true })).id,
    );
    expect(other.progress.spentUsd).toBeGreaterThan(0);
    expect(chatsWith(u.apiKey)).toHaveLength(calls + 4);
  });
});

describe('concurrency, retries and cancel', () => {
  it('never runs more than EVAL_CONCURRENCY_PER_USER cells of one user at once', async () => {
    const u = await user('limit');
    const setId = await createSet(
      t.gql,
      u.token,
      Array.from({ length: 10 }, (_, i) => ({ prompt: `q${i}` })),
    );
    const run = await startRun(t.gql, u.token, { promptSetId: setId, models: ['openai:slow-60', 'anthropic:slow-60'] });
    expect((await waitForRun(t.gql, u.token, run.id)).status).toBe('COMPLETED');
    expect(chatsWith(u.apiKey)).toHaveLength(20);
    expect(fake.maxConcurrent(u.apiKey)).toBe(4);
  });

  it('retries a provider 429 after its Retry-After and keeps the answer', async () => {
    const u = await user('retry');
    fake.setBehavior('limited-model', { status: 429 });
    const setId = await createSet(t.gql, u.token, [{ prompt: 'Rate me' }]);
    const run = await startRun(t.gql, u.token, { promptSetId: setId, models: ['openai:limited-model'] });
    await waitForRun(t.gql, u.token, run.id, () => chatsWith(u.apiKey).length >= 1);
    const firstAt = chatsWith(u.apiKey)[0]!.receivedAt;
    fake.setBehavior('limited-model', {});
    const done = await waitForRun(t.gql, u.token, run.id);
    expect(done.status).toBe('COMPLETED');
    const [cell] = await allCells(t.gql, u.token, run.id);
    expect(cell).toMatchObject({ status: 'COMPLETED', attempts: 2, error: null });
    const calls = chatsWith(u.apiKey);
    expect(calls).toHaveLength(2);
    // The fake answers Retry-After: 1.
    expect(calls[1]!.receivedAt - firstAt).toBeGreaterThanOrEqual(950);
  });

  it('cancels queued cells at once and in-flight calls within seconds, and releases the reservation', async () => {
    const u = await user('cancel');
    fake.setBehavior('hang-forever', { hang: true });
    const setId = await createSet(
      t.gql,
      u.token,
      Array.from({ length: 6 }, (_, i) => ({ prompt: `c${i}` })),
    );
    const run = await startRun(t.gql, u.token, { promptSetId: setId, models: ['openai:hang-forever'] });
    const before = fake.requests.length;
    await waitForRun(t.gql, u.token, run.id, () => chatsWith(u.apiKey).length === 4);
    const cancelledAt = performance.now();
    const res = await t.gql(CANCEL, { id: run.id }, u.token);
    expect(res.data.cancelEvalRun.status).toBe('CANCELLED');
    // Queued ones at once.
    const queued = await allCells(t.gql, u.token, run.id);
    expect(queued.filter((c) => c.status === 'CANCELLED').length).toBeGreaterThanOrEqual(2);
    expect(queued.some((c) => c.status === 'QUEUED')).toBe(false);
    // In flight: aborted (the fake sees the connections close) and settled CANCELLED within seconds.
    await waitForRun(t.gql, u.token, run.id, () => chatsWith(u.apiKey).every((r) => r.finishedAt !== undefined), 5_000);
    const settled = await allCells(t.gql, u.token, run.id);
    await waitForRun(t.gql, u.token, run.id, () => true);
    expect(Math.max(...chatsWith(u.apiKey).map((r) => r.finishedAt!)) - cancelledAt).toBeLessThan(3_000);
    expect(chatsWith(u.apiKey)).toHaveLength(4);
    expect(fake.requests.length - before).toBe(4);
    expect(settled.every((c) => c.status === 'CANCELLED' || c.status === 'RUNNING')).toBe(true);
    const reservations = await withClient(
      t.db.url,
      async (c) => (await c.query(`select count(*)::int as n from spend_reservations where eval_run_id = $1`, [run.id])).rows[0].n,
    );
    expect(reservations).toBe(0);
  });
});

describe('bad input: a clear error and nothing queued', () => {
  let u: Awaited<ReturnType<typeof user>>;
  let setId: string;
  beforeAll(async () => {
    u = await user('invalid');
    setId = await createSet(t.gql, u.token, [{ prompt: 'Grade me', assertions: [{ kind: 'RUBRIC', value: 'Is correct' }] }]);
  });

  it.each([
    ['no models', { models: [] }, 'BAD_USER_INPUT', /1 to 8 models/],
    [
      'nine models',
      { models: Array.from({ length: 9 }, (_, i) => `openai:m${i}`), judgeModel: 'openai:j' },
      'BAD_USER_INPUT',
      /1 to 8 models/,
    ],
    ['a duplicate', { models: ['openai:a', 'openai:a'], judgeModel: 'openai:j' }, 'BAD_USER_INPUT', /listed twice/],
    ['an unknown provider', { models: ['nope:a'], judgeModel: 'openai:j' }, 'BAD_USER_INPUT', /unknown provider/],
    ['a model without a key', { models: ['mistral:mistral-small-latest'], judgeModel: 'openai:j' }, 'BAD_USER_INPUT', /no mistral API key/],
    ['a judge without a key', { models: ['openai:a'], judgeModel: 'google:gemini-2.5-pro' }, 'BAD_USER_INPUT', /no google API key/],
    ['a RUBRIC without a judge', { models: ['openai:a'] }, 'BAD_USER_INPUT', /give the run a judgeModel/],
    ['repeats 0', { models: ['openai:a'], judgeModel: 'openai:j', repeats: 0 }, 'BAD_USER_INPUT', /repeats/],
    ['repeats 11', { models: ['openai:a'], judgeModel: 'openai:j', repeats: 11 }, 'BAD_USER_INPUT', /repeats/],
    ['a bad temperature', { models: ['openai:a'], judgeModel: 'openai:j', temperature: 3 }, 'BAD_USER_INPUT', /temperature/],
  ])('%s', async (_, extra, code, message) => {
    const res = await t.gql(START, { input: { promptSetId: setId, ...extra } }, u.token);
    expect(res.errors?.[0]?.extensions?.code).toBe(code);
    expect(res.errors![0]!.message).toMatch(message);
    const est = await t.gql(ESTIMATE, { input: { promptSetId: setId, ...extra } }, u.token);
    expect(est.errors?.[0]?.extensions?.code).toBe(code);
  });

  it("answers NOT_FOUND for another user's set or baseline, BAD_USER_INPUT for a baseline of another set", async () => {
    const other = await user('other');
    const otherSet = await createSet(t.gql, other.token, [{ prompt: 'Theirs' }]);
    const theirs = await t.gql(START, { input: { promptSetId: otherSet, models: ['openai:a'] } }, u.token);
    expect(theirs.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const otherRun = await waitForRun(
      t.gql,
      other.token,
      (await startRun(t.gql, other.token, { promptSetId: otherSet, models: ['openai:a'] })).id,
    );
    const foreignBaseline = await t.gql(
      START,
      { input: { promptSetId: setId, models: ['openai:a'], judgeModel: 'openai:j', baselineRunId: otherRun.id } },
      u.token,
    );
    expect(foreignBaseline.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const mine = await createSet(t.gql, u.token, [{ prompt: 'Plain' }]);
    const mineRun = await waitForRun(t.gql, u.token, (await startRun(t.gql, u.token, { promptSetId: mine, models: ['openai:a'] })).id);
    const wrongSet = await t.gql(
      START,
      { input: { promptSetId: setId, models: ['openai:a'], judgeModel: 'openai:j', baselineRunId: mineRun.id } },
      u.token,
    );
    expect(wrongSet.errors?.[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT', field: 'baselineRunId' } });
    const sameSet = await startRun(t.gql, u.token, { promptSetId: mine, models: ['openai:a'], baselineRunId: mineRun.id });
    expect(sameSet.status).toBe('QUEUED');
    // Another user's run reads as a missing one; cancelling it is NOT_FOUND.
    expect((await t.gql(RUN, { id: otherRun.id }, u.token)).data.evalRun).toBeNull();
    expect((await t.gql(CANCEL, { id: otherRun.id }, u.token)).errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect((await t.gql(RUN, { id: 'not-a-uuid' }, u.token)).data.evalRun).toBeNull();
  });
});

describe('reads, scopes and events', () => {
  it('pages cells by model and failed-only, and PromptSet.runs newest first', async () => {
    const u = await user('pages');
    const setId = await createSet(
      t.gql,
      u.token,
      Array.from({ length: 3 }, (_, i) => ({ prompt: `p${i}` })),
    );
    const run = await waitForRun(
      t.gql,
      u.token,
      (await startRun(t.gql, u.token, { promptSetId: setId, models: ['openai:ok-model', 'openai:fail-400'] })).id,
    );
    expect(run.progress).toMatchObject({ cellsDone: 6, cellsFailed: 3 });
    const failed = await allCells(t.gql, u.token, run.id, { failedOnly: true });
    expect(failed.map((c) => c.model)).toEqual(['openai:fail-400', 'openai:fail-400', 'openai:fail-400']);
    expect(failed[0].error).toMatch(/^BAD_REQUEST/);
    const page1 = await t.gql(CELLS, { id: run.id, first: 2 }, u.token);
    const page2 = await t.gql(CELLS, { id: run.id, first: 10, after: page1.data.evalRun.cells.pageInfo.endCursor }, u.token);
    const order = [...page1.data.evalRun.cells.nodes, ...page2.data.evalRun.cells.nodes].map((c: any) => `${c.model}#${c.item.position}`);
    expect(order).toEqual([
      'openai:fail-400#1',
      'openai:fail-400#2',
      'openai:fail-400#3',
      'openai:ok-model#1',
      'openai:ok-model#2',
      'openai:ok-model#3',
    ]);
    const bad = await t.gql(CELLS, { id: run.id, after: 'garbage' }, u.token);
    expect(bad.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');

    const second = await startRun(t.gql, u.token, { promptSetId: setId, models: ['openai:ok-model'] });
    const runs = `query($id: ID!, $after: String) { promptSet(id: $id) {
      runs(first: 1, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } } }`;
    const r1 = await t.gql(runs, { id: setId }, u.token);
    expect(r1.data.promptSet.runs.nodes.map((n: any) => n.id)).toEqual([second.id]);
    const r2 = await t.gql(runs, { id: setId, after: r1.data.promptSet.runs.pageInfo.endCursor }, u.token);
    expect(r2.data.promptSet.runs).toMatchObject({ nodes: [{ id: run.id }], pageInfo: { hasNextPage: false } });
  });

  it('lets an EVAL token start a run and a READ token only read it', async () => {
    const u = await user('scopes');
    const setId = await createSet(t.gql, u.token, [{ prompt: 'Scoped' }]);
    const evalToken = await createToken(u.token, { name: 'ci', scopes: ['EVAL', 'READ'] });
    const reader = await createToken(u.token, { name: 'reader', scopes: ['READ'] });
    const input = { promptSetId: setId, models: ['openai:scoped'] };
    const refused = await t.gql(START, { input }, reader);
    expect(refused.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const run = await startRun(t.gql, evalToken, input);
    expect((await waitForRun(t.gql, reader, run.id)).status).toBe('COMPLETED');
    expect((await t.gql(CANCEL, { id: run.id }, reader)).errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const cells = await allCells(t.gql, reader, run.id);
    expect(cells).toHaveLength(1);
    const tokenRow = await withClient(
      t.db.url,
      async (c) => (await c.query(`select api_token_id from eval_runs where id = $1`, [run.id])).rows[0],
    );
    expect(tokenRow.api_token_id).not.toBeNull();
  });

  it('streams a progress event per settled cell, then the final one, to the owner only', async () => {
    const u = await user('events');
    const setId = await createSet(
      t.gql,
      u.token,
      Array.from({ length: 3 }, (_, i) => ({ prompt: `e${i}` })),
    );
    fake.setBehavior('gated-model', { beforeAnswer: () => gate });
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const run = await startRun(t.gql, u.token, { promptSetId: setId, models: ['openai:gated-model'] });
    const query = `subscription($id: ID!) {
      evalRunEvents(runId: $id) { runId status cell { id status model } progress { cellsDone cellsTotal } } }`;
    const stranger = await user('stranger');
    const refused = await subscribe(t.url, query, { id: run.id }, stranger.token);
    const first = await refused.events.next();
    expect(first.value?.errors?.[0]?.extensions?.code ?? first.value?.errors?.[0]?.message).toMatch(/NOT_FOUND|not found/);
    refused.close();
    const sub = await subscribe(t.url, query, { id: run.id }, u.token);
    const events: any[] = [];
    const reading = (async () => {
      for await (const e of sub.events) events.push(e.data.evalRunEvents);
    })();
    open();
    await reading;
    expect(sub.completed).toBe(true);
    expect(events[0]).toMatchObject({ runId: run.id, cell: null });
    const cellEvents = events.filter((e) => e.cell);
    expect(cellEvents).toHaveLength(3);
    expect(cellEvents.every((e) => e.cell.status === 'COMPLETED')).toBe(true);
    expect(events[events.length - 1]).toMatchObject({ status: 'COMPLETED', progress: { cellsDone: 3, cellsTotal: 3 } });
  });
});

describe('faults', () => {
  it('keeps going when PostgreSQL drops every connection mid-run (a restart as the app sees it), losing nothing', async () => {
    const u = await user('pgdrop');
    fake.setBehavior('drop-model', { delayMs: 80 });
    const setId = await createSet(
      t.gql,
      u.token,
      Array.from({ length: 12 }, (_, i) => ({ prompt: `d${i}` })),
    );
    const run = await startRun(t.gql, u.token, { promptSetId: setId, models: ['openai:drop-model'] });
    await waitForRun(t.gql, u.token, run.id, (r) => r.progress.cellsDone >= 3);
    const terminated = await withClient(
      t.db.url.replace(/\/[^/]+$/, '/postgres'),
      async (c) =>
        (
          await c.query(
            `select count(pg_terminate_backend(pid))::int as n from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()`,
            [new URL(t.db.url).pathname.slice(1)],
          )
        ).rows[0].n,
    );
    expect(terminated).toBeGreaterThan(0);
    const done = await waitForRun(t.gql, u.token, run.id, undefined, 30_000, 100);
    expect(done.status).toBe('COMPLETED');
    expect(done.progress).toMatchObject({ cellsTotal: 12, cellsDone: 12, cellsFailed: 0 });
    const cells = await allCells(t.gql, u.token, run.id);
    expect(cells.every((c) => c.status === 'COMPLETED' && c.content.startsWith('Reply from drop-model'))).toBe(true);
  });
});
