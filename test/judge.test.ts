/**
 * Judge models through GraphQL against the fake provider: the MT-Bench
 * pairwise prompt on text only (no model names, even for a blind
 * comparison), both orders per pair (position-swap disagreement → TIE),
 * parsing and failure modes (refusal, unparseable output, provider error,
 * missing key), ownership, the rate limit, the JUDGE board (apart from the
 * human board) and judge–human agreement on a hand-made case.
 */
import { parseJudgeVerdict, combineSwapped, JUDGE_SYSTEM_PROMPT } from '../src/modules/judge/judge.service';
import { seedComparison, type SeedAnswer } from './helpers/arena';
import { FakeLlmServer, parseJudgePrompt } from './helpers/fake-llm';
import { createTestApp, type TestApp } from './helpers/test-app';

const A = 'openai:model-a';
const B = 'anthropic:model-b';
const C = 'google:model-c';

const JUDGE =
  `mutation($id: ID!, $judge: String!) {
  judgeComparison(comparisonId: $id, judgeModel: $judge) { id judgeModel outcome createdAt comparison { id } ` +
  `first { id } second { id } winner { id } }
}`;
const BOARD = `query($scope: LeaderboardScope, $filter: LeaderboardFilter) {
  leaderboard(scope: $scope, filter: $filter) { model wins losses ties battles }
  leaderboardInfo(scope: $scope, filter: $filter) { votesUsed votesExcluded judgeHumanAgreement judgeHumanPairs }
}`;
const VOTE = `mutation($input: VoteInput!) { vote(input: $input) { id } }`;

const ADMIN_EMAIL = `judge-admin-${process.pid}@example.com`;
let fake: FakeLlmServer;
let t: TestApp;

async function userWithKeys(prefix: string) {
  const u = await t.signUp(prefix);
  for (const provider of ['OPENAI', 'ANTHROPIC']) {
    const res = await t.gql(
      `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`,
      { input: { provider, apiKey: `sk-${prefix}-judge-key` } },
      u.token,
    );
    expect(res.errors).toBeUndefined();
  }
  return u;
}

const tally = (rows: any[]) => Object.fromEntries(rows.map((r) => [r.model, [r.wins, r.losses, r.ties]]));
const judgeRequests = (judge: string) => fake.requests.filter((r) => r.kind === 'chat' && r.model === judge);

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  t = await createTestApp({
    env: {
      ...fake.providerEnv(),
      LEADERBOARD_BOOTSTRAP_SAMPLES: '0',
      LEADERBOARD_REFRESH_WAIT_MS: '60000',
      RATE_LIMIT_PROVIDER_CALLS: '12',
      RATE_LIMIT_PROVIDER_WINDOW_SECONDS: '3600',
      ADMIN_EMAILS: ADMIN_EMAIL,
    },
  });
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

describe('verdict parsing (unit)', () => {
  it.each([
    ['Explanation… [[A]]', { verdict: 'A' }],
    ['[[B]]', { verdict: 'B' }],
    ['Equally good. [[C]]', { verdict: 'TIE' }],
    ['[[A]] and again [[A]]', { verdict: 'A' }],
    ['First [[A]], then [[B]]', { failure: 'UNPARSEABLE' }],
    ['Assistant A is better.', { failure: 'UNPARSEABLE' }],
    ['', { failure: 'UNPARSEABLE' }],
    ["I'm sorry, but I can't help with that.", { failure: 'REFUSED' }],
    ['I cannot evaluate these responses.', { failure: 'REFUSED' }],
    ['[A]', { failure: 'UNPARSEABLE' }],
  ])('%j → %j', (text, expected) => expect(parseJudgeVerdict(text)).toEqual(expected));

  it('position swap: agreement keeps the verdict, any disagreement is a tie', () => {
    expect(combineSwapped('A', 'B')).toBe('FIRST'); // first shown as A won, then as B won
    expect(combineSwapped('B', 'A')).toBe('SECOND');
    expect(combineSwapped('A', 'A')).toBe('TIE'); // always the first position
    expect(combineSwapped('B', 'B')).toBe('TIE');
    expect(combineSwapped('A', 'TIE')).toBe('TIE');
    expect(combineSwapped('TIE', 'TIE')).toBe('TIE');
  });
});

describe('judgeComparison', () => {
  it('asks for each pair in both orders on text only, stores verdicts, serves the JUDGE board, keeps the human board apart', async () => {
    const user = await userWithKeys('judge-ok');
    const answers: SeedAnswer[] = [
      { model: A, content: 'A medium answer here' },
      { model: B, content: 'short' },
      { model: C, content: 'The longest answer of the three, with details' },
    ];
    const category = `judge-ok-${Date.now()}`;
    const c = await seedComparison(t, user.userId, answers, { blind: true, prompt: 'Explain tides', category });
    const before = judgeRequests('judge-longer').length;
    const res = await t.gql(JUDGE, { id: c.id, judge: 'openai:judge-longer' }, user.token);
    expect(res.errors).toBeUndefined();
    const verdicts = res.data.judgeComparison;
    // Pairs in position order: (A, B), (A, C), (B, C); the longer answer wins each, in both orders.
    expect(verdicts.map((v: any) => [v.first.id, v.second.id, v.outcome, v.winner?.id])).toEqual([
      [c.responses[0], c.responses[1], 'WINNER', c.responses[0]],
      [c.responses[0], c.responses[2], 'WINNER', c.responses[2]],
      [c.responses[1], c.responses[2], 'WINNER', c.responses[2]],
    ]);
    expect(verdicts.every((v: any) => v.judgeModel === 'openai:judge-longer' && v.comparison.id === c.id)).toBe(true);

    // Six calls: each pair shown as (first, second) and as (second, first), with the MT-Bench prompt, text only.
    const calls = judgeRequests('judge-longer').slice(before);
    expect(calls).toHaveLength(6);
    const shown = calls.map((r) => {
      expect(r.messages[0]).toEqual({ role: 'system', text: JUDGE_SYSTEM_PROMPT });
      const prompt = parseJudgePrompt(r.messages[1]!.text)!;
      expect(prompt.question).toBe('Explain tides');
      return `${prompt.answerA} | ${prompt.answerB}`;
    });
    expect(shown.sort()).toEqual(
      [
        [0, 1],
        [1, 0],
        [0, 2],
        [2, 0],
        [1, 2],
        [2, 1],
      ]
        .map(([x, y]) => `${answers[x!]!.content} | ${answers[y!]!.content}`)
        .sort(),
    );
    for (const r of calls) expect(JSON.stringify(r.body)).not.toMatch(/model-a|model-b|model-c|openai|anthropic|google/);

    // Blind and not yet voted on: judging does not reveal it, so the JUDGE board does not name its models yet.
    const hidden = await t.gql(BOARD, { scope: 'JUDGE', filter: { category } }, user.token);
    expect(hidden.data.leaderboard).toEqual([]);
    expect(hidden.data.leaderboardInfo.votesUsed).toBe(0);
    expect(res.raw).not.toMatch(/model-a|model-b|model-c/);
    // The owner's vote reveals it (a TIE: it decides none of the judge's pairs).
    expect((await t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'TIE' } }, user.token)).errors).toBeUndefined();
    await t.app.services.leaderboard.refits(); // the refit the vote started (no sleep)
    const judgeBoard = await t.gql(BOARD, { scope: 'JUDGE', filter: { category } }, user.token);
    expect(judgeBoard.errors).toBeUndefined();
    expect(tally(judgeBoard.data.leaderboard)).toEqual({ [C]: [2, 0, 0], [A]: [1, 1, 0], [B]: [0, 2, 0] });
    // The TIE vote agrees with no verdict here (each pair has a winner): 0 of 3.
    expect(judgeBoard.data.leaderboardInfo).toEqual({ votesUsed: 3, votesExcluded: 0, judgeHumanAgreement: 0, judgeHumanPairs: 3 });
    // The human boards hold the human vote only (ties), never the verdicts.
    for (const scope of ['GLOBAL', 'MINE']) {
      const human = await t.gql(BOARD, { scope, filter: { category } }, user.token);
      expect(tally(human.data.leaderboard)).toEqual({ [A]: [0, 0, 2], [B]: [0, 0, 2], [C]: [0, 0, 2] });
      expect(human.data.leaderboardInfo).toEqual({ votesUsed: 1, votesExcluded: 0, judgeHumanAgreement: null, judgeHumanPairs: 0 });
    }

    // Judging again replaces the verdicts (same ids, no duplicates).
    const again = await t.gql(JUDGE, { id: c.id, judge: 'openai:judge-longer' }, user.token);
    expect(again.data.judgeComparison.map((v: any) => v.id)).toEqual(verdicts.map((v: any) => v.id));
  });

  it('position swap: a judge that always answers [[A]] disagrees with itself across the two orders → TIE for every pair', async () => {
    const user = await userWithKeys('judge-biased');
    const c = await seedComparison(t, user.userId, [
      { model: A, content: 'one' },
      { model: B, content: 'a much longer second answer' },
    ]);
    const res = await t.gql(JUDGE, { id: c.id, judge: 'anthropic:judge-first' }, user.token);
    expect(res.errors).toBeUndefined();
    expect(res.data.judgeComparison).toEqual([
      expect.objectContaining({ outcome: 'TIE', winner: null, first: { id: c.responses[0] }, second: { id: c.responses[1] } }),
    ]);
  });

  it.each([
    ['openai:judge-refuse', 'REFUSED'],
    ['openai:judge-garbled', 'UNPARSEABLE'],
    ['openai:judge-both', 'UNPARSEABLE'],
  ])('%s answers JUDGE_FAILED (%s) and stores no verdict', async (judge, reason) => {
    const user = await userWithKeys('judge-fail');
    const c = await seedComparison(t, user.userId, [
      { model: A, content: 'x' },
      { model: B, content: 'yy' },
    ]);
    const res = await t.gql(JUDGE, { id: c.id, judge }, user.token);
    expect(res.data).toBeNull();
    expect(res.errors?.[0]?.extensions).toMatchObject({ code: 'JUDGE_FAILED', reason, pairsJudged: 0, pairsFailed: 1 });
    // The model's own text never reaches the client.
    expect(res.raw).not.toMatch(/sorry|merits|reflection/);
  });

  it('provider errors answer PROVIDER_ERROR with the judge provider and reason: an HTTP 500, and a missing key', async () => {
    const user = await userWithKeys('judge-provider');
    const c = await seedComparison(t, user.userId, [{ model: A }, { model: B }]);
    const failing = await t.gql(JUDGE, { id: c.id, judge: 'openai:judge-longer-fail-500' }, user.token);
    expect(failing.errors?.[0]?.extensions).toMatchObject({ code: 'PROVIDER_ERROR', provider: 'openai', reason: 'UNAVAILABLE' });
    const noKey = await t.gql(JUDGE, { id: c.id, judge: 'mistral:judge-longer' }, user.token);
    expect(noKey.errors?.[0]?.extensions).toMatchObject({ code: 'PROVIDER_ERROR', provider: 'mistral', reason: 'AUTH' });
    expect(noKey.errors?.[0]?.message).toMatch(/No mistral API key/);
  });

  it('only the owner may judge; a running comparison answers COMPARISON_NOT_SETTLED; one completed answer is not enough', async () => {
    const owner = await userWithKeys('judge-owner');
    const other = await userWithKeys('judge-other');
    const c = await seedComparison(t, owner.userId, [{ model: A }, { model: B }]);
    const before = fake.requests.length;
    const foreign = await t.gql(JUDGE, { id: c.id, judge: 'openai:judge-longer' }, other.token);
    expect(foreign.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const running = await seedComparison(t, owner.userId, [{ model: A }, { model: B, status: 'STREAMING' }]);
    expect((await t.gql(JUDGE, { id: running.id, judge: 'openai:judge-longer' }, owner.token)).errors?.[0]?.extensions?.code).toBe(
      'COMPARISON_NOT_SETTLED',
    );
    const lonely = await seedComparison(t, owner.userId, [{ model: A }, { model: B, status: 'FAILED' }]);
    expect((await t.gql(JUDGE, { id: lonely.id, judge: 'openai:judge-longer' }, owner.token)).errors?.[0]?.extensions?.code).toBe(
      'BAD_USER_INPUT',
    );
    expect((await t.gql(JUDGE, { id: c.id, judge: 'not a model' }, owner.token)).errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(fake.requests.length).toBe(before); // nothing was sent
  });

  it('the model-call rate limit applies: two points per pair', async () => {
    const user = await userWithKeys('judge-rate');
    const c = await seedComparison(t, user.userId, [
      { model: A, content: 'a' },
      { model: B, content: 'bb' },
      { model: C, content: 'ccc' },
    ]);
    expect((await t.gql(JUDGE, { id: c.id, judge: 'openai:judge-longer' }, user.token)).errors).toBeUndefined(); // 6 of 12
    expect((await t.gql(JUDGE, { id: c.id, judge: 'openai:judge-longer' }, user.token)).errors).toBeUndefined(); // 12 of 12
    const limited = await t.gql(JUDGE, { id: c.id, judge: 'openai:judge-longer' }, user.token);
    expect(limited.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    expect(limited.errors?.[0]?.extensions?.retryAfterSeconds).toBeGreaterThan(0);
  });

  it('judge–human agreement on a hand-made case: 2 of 4 pairs agree', async () => {
    const user = await userWithKeys('judge-agree');
    const X = 'openai:agree-x';
    const Y = 'anthropic:agree-y';
    const category = `agree-${Date.now()}`;
    const seed = (x: string, y: string) =>
      seedComparison(
        t,
        user.userId,
        [
          { model: X, content: x },
          { model: Y, content: y },
        ],
        { category },
      );
    const c1 = await seed('long answer', 'short'); // judge: X; human: X → agree
    const c2 = await seed('long answer', 'short'); // judge: X; human: Y → disagree
    const c3 = await seed('short', 'long answer'); // judge: Y; human: TIE → disagree
    const c4 = await seed('same', 'same'); // judge: tie; human: ALL_BAD (a tie) → agree
    const c5 = await seed('long answer', 'short'); // judged, never voted on: blind and unrevealed, counted nowhere
    for (const c of [c1, c2, c3, c4, c5])
      expect((await t.gql(JUDGE, { id: c.id, judge: 'openai:judge-longer' }, user.token)).errors).toBeUndefined();
    const votes = [
      { comparisonId: c1.id, outcome: 'WINNER', winnerResponseId: c1.responses[0] },
      { comparisonId: c2.id, outcome: 'WINNER', winnerResponseId: c2.responses[1] },
      { comparisonId: c3.id, outcome: 'TIE' },
      { comparisonId: c4.id, outcome: 'ALL_BAD' },
    ];
    for (const input of votes) expect((await t.gql(VOTE, { input }, user.token)).errors).toBeUndefined();

    const res = await t.gql(BOARD, { scope: 'JUDGE', filter: { category } }, user.token);
    expect(res.errors).toBeUndefined();
    expect(res.data.leaderboardInfo).toMatchObject({ judgeHumanAgreement: 0.5, judgeHumanPairs: 4, votesUsed: 4, votesExcluded: 0 });
    expect(tally(res.data.leaderboard)).toEqual({ [X]: [2, 1, 1], [Y]: [1, 2, 1] });
  });

  it('judge calls cost like comparisons: the cost is recorded (spentTodayUsd) and the budget refuses the next judging', async () => {
    const admin = await t.gql(`mutation($e: String!) { register(email: $e, password: "correct horse battery") { token } }`, {
      e: ADMIN_EMAIL,
    });
    const user = await userWithKeys('judge-budget');
    // A priced model (gpt-4o in the catalog) answering judge prompts.
    fake.setBehavior('gpt-4o', {
      judge: ({ answerA, answerB }) => (answerA.length >= answerB.length ? 'A is better [[A]]' : 'B is better [[B]]'),
    });
    const c = await seedComparison(t, user.userId, [
      { model: A, content: 'one two three' },
      { model: B, content: 'four' },
    ]);
    const spent = async () => (await t.gql(`{ me { spentTodayUsd } }`, {}, user.token)).data.me.spentTodayUsd as number;
    expect(await spent()).toBe(0);
    const first = await t.gql(JUDGE, { id: c.id, judge: 'openai:gpt-4o' }, user.token);
    expect(first.errors).toBeUndefined();
    expect(first.data.judgeComparison).toEqual([expect.objectContaining({ outcome: 'WINNER', winner: { id: c.responses[0] } })]);
    const cost = await spent();
    expect(cost).toBeGreaterThan(0);

    // A budget just under what was spent: the next judge call is refused before any request.
    const set = await t.gql(
      `mutation($u: ID!, $d: Float) { setUserBudget(userId: $u, dailyUsd: $d) { id } }`,
      { u: user.userId, d: cost / 2 },
      admin.data.register.token,
    );
    expect(set.errors).toBeUndefined();
    const before = fake.requests.length;
    const refused = await t.gql(JUDGE, { id: c.id, judge: 'openai:gpt-4o' }, user.token);
    expect(refused.errors?.[0]?.extensions?.code).toBe('BUDGET_EXCEEDED');
    expect(fake.requests.length).toBe(before);
  });
});
