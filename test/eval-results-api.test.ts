/**
 * What people decide with, through GraphQL on a finished run: per-model results (Wilson intervals, assertion
 * counts, latency, cost per pass, the pairwise judge rating), the diff against a baseline run of the same set
 * (pass → fail per cell, significance), the JSON and CSV exports, and the usage rollup reconciling with the
 * budget once evals are in it.
 */
import { FakeLlmServer } from './helpers/fake-llm';
import { createSet, evalUser, startRun, waitForRun } from './helpers/evals';
import { createTestApp, type TestApp } from './helpers/test-app';

const RESULTS = `query($id: ID!) { evalRun(id: $id) { id status
  results { model cells errors passRate passRateLow passRateHigh assertions { kind passed total }
            rating ratingLow ratingHigh rank rankLow rankHigh latencyP50Ms latencyP95Ms inputTokens outputTokens
            costUsd costPerPassUsd reusedCells }
  diff { regressions improvements promptChanged baseline { id } regressed { model position }
         perModel { model passRateDelta passRateDeltaLow passRateDeltaHigh passRateSignificant ratingDelta ratingSignificant
                    matched } } } }`;
const EXPORT = 'query($id: ID!, $format: ExportFormat) { exportEvalRun(id: $id, format: $format) }';
const USAGE = `query($from: DateTime!, $to: DateTime!) { usage(groupBy: [USER], from: $from, to: $to) { nodes { costUsd calls } } }`;

let fake: FakeLlmServer;
let t: TestApp;

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  t = await createTestApp({ env: { ...fake.providerEnv(), EVAL_LEASE_MS: '2000', EVAL_POLL_MS: '50' } });
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

const MODELS = ['openai:gpt-4o-mini', 'anthropic:claude-haiku-4-5'];

/** Wilson 95% interval, written out here (the test's own reference). */
function wilson(x: number, n: number): [number, number] {
  const z = 1.959963984540054;
  const p = x / n;
  const centre = (p + (z * z) / (2 * n)) / (1 + (z * z) / n);
  const half = (z / (1 + (z * z) / n)) * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n));
  return [centre - half, centre + half];
}

describe('eval results, diff and export', () => {
  it('scores, rates, diffs against a baseline and exports a run', async () => {
    const u = await evalUser((p) => t.signUp(p), t.gql, 'results');
    // The judge prefers the longer answer: claude-haiku-4-5's "Reply from …" is longer than gpt-4o-mini's.
    fake.setBehavior('judge-len', { judge: ({ answerA, answerB }) => (answerA.length >= answerB.length ? '[[A]]' : '[[B]]') });
    const items = [
      { prompt: 'One' },
      { prompt: 'Two' },
      { prompt: 'Three' },
      { prompt: 'Four', assertions: [{ kind: 'CONTAINS', value: 'zzz' }] },
    ];
    const setId = await createSet(t.gql, u.token, items, [{ kind: 'CONTAINS', value: 'Reply from' }]);
    const base = await startRun(t.gql, u.token, { promptSetId: setId, models: MODELS, judgeModel: 'openai:judge-len' });
    expect((await waitForRun(t.gql, u.token, base.id)).status).toBe('COMPLETED');

    const res = await t.gql(RESULTS, { id: base.id }, u.token);
    expect(res.errors).toBeUndefined();
    const results = res.data.evalRun.results as any[];
    expect(results.map((r) => r.model)).toEqual(MODELS);
    const [low, high] = wilson(3, 4);
    for (const r of results) {
      expect(r).toMatchObject({ cells: 4, errors: 0, passRate: 0.75, reusedCells: 0 });
      expect(r.passRateLow).toBeCloseTo(low, 6);
      expect(r.passRateHigh).toBeCloseTo(high, 6);
      expect(r.assertions).toEqual([{ kind: 'CONTAINS', passed: 4, total: 5 }]);
      expect(r.latencyP50Ms).not.toBeNull();
      expect(r.costUsd).toBeGreaterThan(0);
      expect(r.costPerPassUsd).toBeCloseTo(r.costUsd / 3, 9);
    }
    const [gpt, claude] = results;
    expect(claude.rating).toBeGreaterThan(gpt.rating);
    expect(claude).toMatchObject({ rank: 1 });
    expect(res.data.evalRun.diff).toBeNull();

    // The same set again, gpt-4o-mini now answering without "Reply from": three of its cells go from pass to fail.
    fake.setBehavior('gpt-4o-mini', { text: 'Something else entirely' });
    const next = await startRun(t.gql, u.token, {
      promptSetId: setId,
      models: MODELS,
      judgeModel: 'openai:judge-len',
      baselineRunId: base.id,
    });
    expect((await waitForRun(t.gql, u.token, next.id)).status).toBe('COMPLETED');
    const diff = (await t.gql(RESULTS, { id: next.id }, u.token)).data.evalRun.diff;
    expect(diff).toMatchObject({ regressions: 3, improvements: 0, promptChanged: 0, baseline: { id: base.id } });
    expect(diff.regressed.map((c: any) => [c.model, c.position]).sort()).toEqual([
      ['openai:gpt-4o-mini', 1],
      ['openai:gpt-4o-mini', 2],
      ['openai:gpt-4o-mini', 3],
    ]);
    const byModel = Object.fromEntries(diff.perModel.map((d: any) => [d.model, d]));
    expect(byModel['openai:gpt-4o-mini']).toMatchObject({ passRateDelta: -0.75, passRateSignificant: true, matched: 4 });
    expect(byModel['anthropic:claude-haiku-4-5']).toMatchObject({ passRateDelta: 0, passRateSignificant: false, matched: 4 });

    // Exports: CSV one row per cell, JSON with the results and the diff.
    const csv = (await t.gql(EXPORT, { id: next.id, format: 'CSV' }, u.token)).data.exportEvalRun as string;
    const lines = csv.trim().split(/\r?\n/);
    expect(lines).toHaveLength(1 + 8);
    const json = JSON.parse((await t.gql(EXPORT, { id: next.id, format: 'JSON' }, u.token)).data.exportEvalRun);
    expect(JSON.stringify(json)).toContain('"regressions":3');
    expect(json.cells ?? json.run?.cells).toBeDefined();

    // Another user: null; MARKDOWN: refused; a conversation export as CSV: refused.
    const other = await t.signUp('results-other');
    expect((await t.gql(EXPORT, { id: next.id }, other.token)).data.exportEvalRun).toBeNull();
    expect((await t.gql(EXPORT, { id: next.id, format: 'MARKDOWN' }, u.token)).errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const conv = await t.gql('query { exportConversation(id: "00000000-0000-4000-8000-000000000000", format: CSV) }', {}, u.token);
    expect(conv.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');

    // The usage rollup holds the runs' calls, and its cost is what the budget counts.
    const range = { from: new Date(Date.now() - 86_400_000).toISOString(), to: new Date(Date.now() + 86_400_000).toISOString() };
    const [row] = (await t.gql(USAGE, range, u.token)).data.usage.nodes;
    const spent = (await t.gql('query { me { spentTodayUsd } }', {}, u.token)).data.me.spentTodayUsd;
    expect(row.calls).toBeGreaterThanOrEqual(16);
    expect(row.costUsd).toBeCloseTo(spent, 9);

    // Deleting the prompt set (its runs, cells and verdicts go with it) gives no budget back.
    expect(spent).toBeGreaterThan(0);
    const deleted = await t.gql('mutation($id: ID!) { deletePromptSet(id: $id) }', { id: setId }, u.token);
    expect(deleted.data.deletePromptSet).toBe(true);
    expect((await t.gql('query { me { spentTodayUsd } }', {}, u.token)).data.me.spentTodayUsd).toBeCloseTo(spent, 9);
  }, 60_000);
});
