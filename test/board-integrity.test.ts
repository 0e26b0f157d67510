/**
 * Issue 16, cases 6 and 7: a board no one can game.
 * - Case 6: a vote on a blind comparison is the reveal, so it cannot change
 *   afterwards, and the blind-only board counts only votes cast while blind.
 * - Case 7: answers served by a user's own `baseUrl` (not an operator
 *   endpoint) are marked `customEndpoint` and count only on that user's MINE
 *   board, never on GLOBAL or JUDGE.
 * One app on its own database; each test ranks models under its own key
 * labels (`model@label` endpoints), so tests share no board rows.
 */
import { randomUUID } from 'node:crypto';
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestApp, type TestApp } from './helpers/test-app';

interface User {
  token: string;
  userId: string;
}

const VOTE = `mutation($input: VoteInput!) { vote(input: $input) { id outcome createdAt winner { id } } }`;
const BOARD =
  'query($scope: LeaderboardScope, $filter: LeaderboardFilter) { ' +
  'leaderboard(scope: $scope, filter: $filter) { model battles wins losses ties } }';
const SAVE_KEY = `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`;
const RESPONSE = `id keyLabel status customEndpoint`;
const RUN = `mutation($input: RunComparisonInput!) { runComparison(input: $input) { id revealed responses { ${RESPONSE} } } }`;
const GET = `query($id: ID!) { comparison(id: $id) { id revealed responses { ${RESPONSE} } } }`;
/** Answered by a compiled read (SQL-built JSON) when nothing in it is hidden. */
const LIST = `query { comparisons(first: 5) { nodes { id responses { keyLabel customEndpoint } } } }`;
const codeOf = (res: { errors?: Array<{ extensions?: Record<string, any> }> }) => res.errors?.[0]?.extensions?.code;

/** A unique key label per test: its endpoints (`model@label`) appear on no other test's board. */
const uniqueLabel = () => `t${randomUUID().slice(0, 8)}`;

async function seedComparison(
  t: TestApp,
  ownerId: string,
  responses: Array<{ model: string; label: string; customEndpoint?: boolean }>,
  blind: boolean,
): Promise<{ id: string; responses: string[] }> {
  const id = randomUUID();
  const ids = responses.map(() => randomUUID());
  await withClient(t.db.url, async (c) => {
    await c.query(`insert into comparison_results (id, created_at, owner_id, prompt, blind) values ($1, now(), $2, 'prompt', $3)`, [
      id,
      ownerId,
      blind,
    ]);
    for (const [i, r] of responses.entries()) {
      await c.query(
        `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, key_label, status, content,
                                           latency_ms, cost_usd)
         values ($1, now(), $2, $3, $4, $5, $6, 'COMPLETED', 'answer', 100, 0.001)`,
        [ids[i], id, i, r.model.split(':')[0]!.toUpperCase(), r.model, r.label],
      );
    }
  });
  return { id, responses: ids };
}

async function board(t: TestApp, user: User, scope: 'GLOBAL' | 'MINE' | 'JUDGE', blindOnly: boolean, label: string) {
  await t.app.services.leaderboard.refits(); // the refits the votes started: awaited, no sleep
  const res = await t.gql(BOARD, { scope, filter: { blindOnly } }, user.token);
  expect(res.errors).toBeUndefined();
  return Object.fromEntries(
    (res.data.leaderboard as Array<{ model: string }>).filter((r) => r.model.includes(`@${label}`)).map((r) => [r.model, r]),
  );
}

describe('a board no one can game', () => {
  let t: TestApp;
  /** The operator's endpoints (OPENAI_BASE_URL, …). */
  let operator: FakeLlmServer;
  /** A user's own endpoint: same API, another origin. */
  let own: FakeLlmServer;

  beforeAll(async () => {
    operator = await FakeLlmServer.start();
    own = await FakeLlmServer.start();
    t = await createTestApp({ env: operator.providerEnv() });
  });
  afterAll(async () => {
    await t?.close();
    await operator?.close();
    await own?.close();
  });

  /**
   * A user with three OpenAI keys: `<label>op` (no baseUrl: the operator's
   * endpoint), `<label>own` (their own endpoint) and `<label>al` (a baseUrl
   * spelled differently from, but equal to, the operator's: not custom).
   */
  async function userWithKeys(prefix: string, label: string) {
    const u = await t.signUp(prefix);
    for (const input of [
      { provider: 'OPENAI', apiKey: 'sk-operator-0001', label: `${label}op` },
      { provider: 'OPENAI', apiKey: 'sk-own-0002', label: `${label}own`, baseUrl: own.baseUrls.openai },
      {
        provider: 'OPENAI',
        apiKey: 'sk-allowed-0003',
        label: `${label}al`,
        baseUrl: `${operator.baseUrls.openai.replace('http://', 'HTTP://')}/`,
      },
    ]) {
      const res = await t.gql(SAVE_KEY, { input }, u.token);
      expect(res.errors).toBeUndefined();
    }
    return { ...u, models: [`openai:gpt-4o-mini@${label}op`, `openai:gpt-4o-mini@${label}own`, `openai:gpt-4o-mini@${label}al`] };
  }

  describe('case 6: a blind vote is final once it reveals the comparison', () => {
    it('changing a vote on a blind comparison answers VOTE_CHANGE_WINDOW_CLOSED (closed at reveal) and the stored vote stays', async () => {
      const u = await t.signUp('blind-final');
      const label = uniqueLabel();
      const c = await seedComparison(
        t,
        u.userId,
        [
          { model: 'openai:x', label },
          { model: 'anthropic:y', label },
        ],
        true,
      );
      const tie = await t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'TIE' } }, u.token);
      expect(tie.errors).toBeUndefined();

      const change = await t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'WINNER', winnerResponseId: c.responses[0] } }, u.token);
      expect(codeOf(change)).toBe('VOTE_CHANGE_WINDOW_CLOSED');
      expect(change.errors![0]!.extensions).toMatchObject({
        votedAt: tie.data.vote.createdAt,
        closedAt: tie.data.vote.createdAt,
        revealed: true,
      });
      expect(change.errors![0]!.message).toMatch(/blind comparison cannot be changed/);

      // The same vote again is a retry, not a change: it answers the stored vote.
      const again = await t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'TIE' } }, u.token);
      expect(again.errors).toBeUndefined();
      expect(again.data.vote).toEqual(tie.data.vote);

      const mine = await board(t, u, 'MINE', true, label);
      expect(mine[`openai:x@${label}`]).toMatchObject({ battles: 1, ties: 1, wins: 0 });
    });

    it('a vote on a comparison that is not blind can still be changed within the window', async () => {
      const u = await t.signUp('open-change');
      const label = uniqueLabel();
      const c = await seedComparison(
        t,
        u.userId,
        [
          { model: 'openai:x', label },
          { model: 'anthropic:y', label },
        ],
        false,
      );
      expect((await t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'TIE' } }, u.token)).errors).toBeUndefined();
      const change = await t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'WINNER', winnerResponseId: c.responses[0] } }, u.token);
      expect(change.errors).toBeUndefined();
      expect(change.data.vote.outcome).toBe('WINNER');
    });

    it('the blind-only board counts only votes cast while blind: a vote changed after the reveal (any path) leaves it', async () => {
      const u = await t.signUp('blind-board');
      const label = uniqueLabel();
      const c = await seedComparison(
        t,
        u.userId,
        [
          { model: 'openai:x', label },
          { model: 'anthropic:y', label },
        ],
        true,
      );
      expect((await t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'TIE' } }, u.token)).errors).toBeUndefined();
      expect(await board(t, u, 'GLOBAL', true, label)).toMatchObject({ [`openai:x@${label}`]: { battles: 1, ties: 1 } });

      // A change that bypasses the service (an operator's UPDATE, a future code path): no longer cast blind.
      await withClient(t.db.url, (db) =>
        db.query(`update votes set outcome = 'WINNER', winner_id = $1 where comparison_id = $2`, [c.responses[0], c.id]),
      );
      await t.app.services.leaderboard.invalidateGlobal();
      expect(await board(t, u, 'GLOBAL', true, label)).toEqual({});
      expect(await board(t, u, 'MINE', true, label)).toEqual({});
      // Still a vote: it counts where non-blind votes count.
      expect(await board(t, u, 'GLOBAL', false, label)).toMatchObject({ [`openai:x@${label}`]: { battles: 1, wins: 1 } });
      expect(await board(t, u, 'MINE', false, label)).toMatchObject({ [`openai:x@${label}`]: { battles: 1, wins: 1 } });
    });
  });

  describe("case 7: answers from a user's own endpoint count only on their MINE board", () => {
    it("marks an answer served by the key's own baseUrl customEndpoint; GLOBAL, JUDGE leave its battles out; MINE keeps them", async () => {
      const label = uniqueLabel();
      const u = await userWithKeys('own-endpoint', label);
      const run = await t.gql(RUN, { input: { prompt: 'Say something', models: u.models, blind: false } }, u.token);
      expect(run.errors).toBeUndefined();
      const responses = run.data.runComparison.responses as Array<{
        id: string;
        keyLabel: string;
        status: string;
        customEndpoint: boolean;
      }>;
      expect(responses.map((r) => [r.keyLabel, r.status, r.customEndpoint])).toEqual([
        [`${label}op`, 'COMPLETED', false],
        [`${label}own`, 'COMPLETED', true],
        [`${label}al`, 'COMPLETED', false],
      ]);
      // The own endpoint did serve it; the operator's served the other two.
      expect(own.requests.some((r) => r.apiKey === 'sk-own-0002')).toBe(true);
      expect(operator.requests.some((r) => r.apiKey === 'sk-own-0002')).toBe(false);
      // The compiled read serves the column as the resolvers do.
      const list = await t.gql(LIST, {}, u.token, { 'cache-control': 'no-cache' });
      expect(list.data.comparisons.nodes[0].responses.map((r: any) => r.customEndpoint)).toEqual([false, true, false]);

      const id = run.data.runComparison.id;
      expect((await t.gql(VOTE, { input: { comparisonId: id, outcome: 'TIE' } }, u.token)).errors).toBeUndefined();
      const [op, mine, al] = u.models;
      // MINE: every pair (3 ties).
      expect(await board(t, u, 'MINE', false, label)).toMatchObject({
        [op!]: { battles: 2 },
        [mine!]: { battles: 2 },
        [al!]: { battles: 2 },
      });
      // GLOBAL: only the pair served by operator endpoints.
      const global = await board(t, u, 'GLOBAL', false, label);
      expect(Object.keys(global).sort()).toEqual([al, op].sort());
      expect(global[op!]).toMatchObject({ battles: 1, ties: 1 });

      // JUDGE: a verdict involving the own endpoint's answer stays out.
      const [r0, r1, r2] = responses.map((r) => r.id);
      await withClient(t.db.url, (db) =>
        db.query(
          `insert into judge_verdicts (id, created_at, comparison_id, user_id, judge_model, first_id, second_id, outcome, winner_id)
           values (gen_random_uuid(), now(), $1, $2, 'openai:judge', $3, $4, 'WINNER', $4),
                  (gen_random_uuid(), now(), $1, $2, 'openai:judge', $3, $5, 'WINNER', $3)`,
          [id, u.userId, r0, r1, r2],
        ),
      );
      await t.app.services.leaderboard.invalidateGlobal();
      const judge = await board(t, u, 'JUDGE', false, label);
      expect(Object.keys(judge).sort()).toEqual([al, op].sort());
      expect(judge[op!]).toMatchObject({ battles: 1, wins: 1 });
    });

    it("a verdict of a judge model served by the user's own baseUrl stays off the JUDGE board; counts via operator endpoints", async () => {
      const label = uniqueLabel();
      const u = await userWithKeys('own-judge', label);
      const [op, , al] = u.models;
      const run = await t.gql(RUN, { input: { prompt: 'Say something', models: [op, al], blind: false } }, u.token);
      expect(run.errors).toBeUndefined();
      const id = run.data.runComparison.id;
      const JUDGE = `mutation($id: ID!, $judge: String!) { judgeComparison(comparisonId: $id, judgeModel: $judge) { id outcome } }`;

      const ownJudge = await t.gql(JUDGE, { id, judge: `openai:judge-longer@${label}own` }, u.token);
      expect(ownJudge.errors).toBeUndefined();
      expect(ownJudge.data.judgeComparison).toHaveLength(1);
      expect(own.requests.some((r) => r.model === 'judge-longer')).toBe(true);
      await t.app.services.leaderboard.invalidateGlobal();
      expect(await board(t, u, 'JUDGE', false, label)).toEqual({});

      expect((await t.gql(JUDGE, { id, judge: `openai:judge-longer@${label}op` }, u.token)).errors).toBeUndefined();
      await t.app.services.leaderboard.invalidateGlobal();
      expect(await board(t, u, 'JUDGE', false, label)).toMatchObject({ [op!]: { battles: 1 }, [al!]: { battles: 1 } });
    });

    it('a blind comparison shows customEndpoint false on every response until the vote, then the truth', async () => {
      const label = uniqueLabel();
      const u = await userWithKeys('own-blind', label);
      const run = await t.gql(RUN, { input: { prompt: 'Say something', models: u.models.slice(0, 2), blind: true } }, u.token);
      expect(run.errors).toBeUndefined();
      const id = run.data.runComparison.id;
      expect(run.data.runComparison.responses.map((r: any) => r.customEndpoint)).toEqual([false, false]);
      expect((await t.gql(GET, { id }, u.token)).data.comparison.responses.map((r: any) => r.customEndpoint)).toEqual([false, false]);
      const listed = (await t.gql(LIST, {}, u.token, { 'cache-control': 'no-cache' })).data.comparisons.nodes.find((n: any) => n.id === id);
      expect(listed.responses.map((r: any) => r.customEndpoint)).toEqual([false, false]);

      expect((await t.gql(VOTE, { input: { comparisonId: id, outcome: 'TIE' } }, u.token)).errors).toBeUndefined();
      const revealed = (await t.gql(GET, { id }, u.token)).data.comparison;
      expect(revealed.revealed).toBe(true);
      expect(Object.fromEntries(revealed.responses.map((r: any) => [r.keyLabel, r.customEndpoint]))).toEqual({
        [`${label}op`]: false,
        [`${label}own`]: true,
      });
      // Blind or not, the own endpoint's battle stays off GLOBAL.
      expect(await board(t, u, 'GLOBAL', true, label)).toEqual({});
      expect(Object.keys(await board(t, u, 'MINE', true, label))).toHaveLength(2);
    });
  });
});

describe('case 7: /metrics in production without METRICS_TOKEN', () => {
  let t: TestApp;
  let operator: FakeLlmServer;

  beforeAll(async () => {
    operator = await FakeLlmServer.start();
    t = await createTestApp({ env: { ...operator.providerEnv(), NODE_ENV: 'production' } });
  });
  afterAll(async () => {
    await t?.close();
    await operator?.close();
  });

  it('counts LLM calls under provider="hidden": a public scrape does not show which providers a blind battle called', async () => {
    const u = await t.signUp('metrics-blind');
    for (const input of [
      { provider: 'OPENAI', apiKey: 'sk-openai-metrics-01' },
      { provider: 'ANTHROPIC', apiKey: 'sk-ant-metrics-02' },
    ]) {
      expect((await t.gql(SAVE_KEY, { input }, u.token)).errors).toBeUndefined();
    }
    const run = await t.gql(
      RUN,
      { input: { prompt: 'Say something', models: ['openai:gpt-4o-mini', 'anthropic:claude-haiku-4-5'], blind: true } },
      u.token,
    );
    expect(run.errors).toBeUndefined();
    const res = await fetch(`${t.url}/metrics`);
    expect(res.status).toBe(200);
    const calls = (await res.text()).split('\n').filter((line) => line.startsWith('llmselect_llm_calls_total{'));
    expect(calls).toEqual(['llmselect_llm_calls_total{provider="hidden",status="COMPLETED"} 2']);
  });
});
