/**
 * `vote` and `leaderboard` through GraphQL against real PostgreSQL.
 * Comparisons and responses are seeded with SQL (statuses, latency, cost);
 * votes are cast through the API. Two apps, each on its own database, so the
 * vote-rule cases do not move the leaderboard numbers.
 */
import { randomUUID } from 'node:crypto';
import { bradleyTerry, votesToBattles, type VoteRecord } from './helpers/bradley-terry';
import { withClient } from './helpers/factories';
import { createTestApp, type TestApp } from './helpers/test-app';

type Status = 'COMPLETED' | 'FAILED' | 'TIMED_OUT' | 'PENDING' | 'STREAMING';
interface SeedResponse {
  model: string;
  /** Key label ('default' when left out). */
  label?: string;
  status?: Status;
  latencyMs?: number | null;
  costUsd?: number | null;
}
interface User {
  token: string;
  userId: string;
}

const VOTE = `mutation($input: VoteInput!) { vote(input: $input) { id outcome createdAt winner { id model } } }`;
const COMPARISON_VOTE = `query($id: ID!) { comparison(id: $id) { vote { id outcome createdAt winner { id } } } }`;
const RANKING_FIELDS = `model provider rating ratingLow ratingHigh battles wins losses ties winRate avgLatencyMs avgCostUsd`;
const MINE = `{ leaderboard(scope: MINE) { ${RANKING_FIELDS} } }`;
const GLOBAL = `{ leaderboard { ${RANKING_FIELDS} } }`;

/** Inserts one comparison owned by `ownerId` with its responses (in position order); returns their ids. */
async function seedComparison(
  t: TestApp,
  ownerId: string,
  responses: SeedResponse[],
  blind = true,
): Promise<{ id: string; responses: string[] }> {
  const id = randomUUID();
  const responseIds = responses.map(() => randomUUID());
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
         values ($1, now(), $2, $3, $4, $5, $6, $7, 'answer', $8, $9)`,
        [
          responseIds[i],
          id,
          i,
          r.model.split(':')[0]!.toUpperCase(),
          r.model,
          r.label ?? 'default',
          r.status ?? 'COMPLETED',
          r.latencyMs ?? null,
          r.costUsd ?? null,
        ],
      );
    }
  });
  return { id, responses: responseIds };
}

function vote(t: TestApp, user: User, input: { comparisonId: string; outcome: string; winnerResponseId?: string | null }) {
  return t.gql(VOTE, { input }, user.token);
}

function byModel(rows: Array<{ model: string } & Record<string, any>>): Record<string, any> {
  return Object.fromEntries(rows.map((r) => [r.model, r]));
}

// ---------------------------------------------------------------------------

describe('vote', () => {
  let t: TestApp;
  let alice: User;
  let bob: User;
  /** x, y COMPLETED; z FAILED. */
  let mixed: { id: string; responses: string[] };
  let other: { id: string; responses: string[] };
  let bobs: { id: string; responses: string[] };

  const countVotes = (comparisonId: string) =>
    withClient(
      t.db.url,
      async (c) => (await c.query('select count(*)::int as n from votes where comparison_id = $1', [comparisonId])).rows[0].n as number,
    );

  beforeAll(async () => {
    t = await createTestApp();
    alice = await t.signUp('alice');
    bob = await t.signUp('bob');
    // Not blind: these votes are changed below (a vote on a blind comparison is final, see test/board-integrity.test.ts).
    mixed = await seedComparison(
      t,
      alice.userId,
      [{ model: 'openai:x' }, { model: 'anthropic:y' }, { model: 'google:z', status: 'FAILED' }],
      false,
    );
    other = await seedComparison(t, alice.userId, [{ model: 'openai:x' }, { model: 'anthropic:y' }], false);
    bobs = await seedComparison(t, bob.userId, [{ model: 'openai:x' }, { model: 'anthropic:y' }]);
  });
  afterAll(() => t.close());

  it('WINNER with a COMPLETED response of the comparison', async () => {
    const res = await vote(t, alice, { comparisonId: mixed.id, outcome: 'WINNER', winnerResponseId: mixed.responses[0] });
    expect(res.errors).toBeUndefined();
    expect(res.data.vote).toMatchObject({ outcome: 'WINNER', winner: { id: mixed.responses[0], model: 'openai:x' } });
    const read = await t.gql(COMPARISON_VOTE, { id: mixed.id }, alice.token);
    const { id, createdAt } = res.data.vote;
    expect(read.data.comparison.vote).toEqual({ id, outcome: 'WINNER', createdAt, winner: { id: mixed.responses[0] } });
  });

  it('voting again replaces the vote in place: same id, first-vote createdAt, one row; the next read shows it', async () => {
    expect(
      (await vote(t, alice, { comparisonId: mixed.id, outcome: 'WINNER', winnerResponseId: mixed.responses[0] })).errors,
    ).toBeUndefined();
    const first = (await t.gql(COMPARISON_VOTE, { id: mixed.id }, alice.token)).data.comparison.vote;
    const tie = await vote(t, alice, { comparisonId: mixed.id, outcome: 'TIE' });
    expect(tie.errors).toBeUndefined();
    expect(tie.data.vote).toEqual({ id: first.id, outcome: 'TIE', createdAt: first.createdAt, winner: null });
    expect((await t.gql(COMPARISON_VOTE, { id: mixed.id }, alice.token)).data.comparison.vote).toEqual({
      ...first,
      outcome: 'TIE',
      winner: null,
    });

    const winnerY = await vote(t, alice, { comparisonId: mixed.id, outcome: 'WINNER', winnerResponseId: mixed.responses[1] });
    expect(winnerY.data.vote).toMatchObject({ id: first.id, outcome: 'WINNER', winner: { id: mixed.responses[1] } });
    const read = await t.gql(COMPARISON_VOTE, { id: mixed.id }, alice.token);
    expect(read.data.comparison.vote).toEqual({ ...first, outcome: 'WINNER', winner: { id: mixed.responses[1] } });
    expect(await countVotes(mixed.id)).toBe(1);
  });

  describe.each([
    [
      'a FAILED response',
      () => ({ comparisonId: mixed.id, outcome: 'WINNER', winnerResponseId: mixed.responses[2] }),
      /is FAILED: only a COMPLETED response can win/,
    ],
    [
      'a response of another comparison',
      () => ({ comparisonId: mixed.id, outcome: 'WINNER', winnerResponseId: other.responses[0] }),
      /is not a response of this comparison/,
    ],
    [
      "a response of another user's comparison",
      () => ({ comparisonId: mixed.id, outcome: 'WINNER', winnerResponseId: bobs.responses[0] }),
      /is not a response of this comparison/,
    ],
    [
      'a malformed response id',
      () => ({ comparisonId: mixed.id, outcome: 'WINNER', winnerResponseId: 'nope' }),
      /is not a response of this comparison/,
    ],
    ['no winnerResponseId', () => ({ comparisonId: mixed.id, outcome: 'WINNER' }), /A WINNER vote needs winnerResponseId/],
    [
      'TIE with a winnerResponseId',
      () => ({ comparisonId: mixed.id, outcome: 'TIE', winnerResponseId: mixed.responses[0] }),
      /only allowed with outcome WINNER/,
    ],
    [
      'ALL_BAD with a winnerResponseId',
      () => ({ comparisonId: mixed.id, outcome: 'ALL_BAD', winnerResponseId: mixed.responses[0] }),
      /only allowed with outcome WINNER/,
    ],
  ])('WINNER rules: %s', (_name, input, message) => {
    it('answers BAD_USER_INPUT and leaves the vote as it was', async () => {
      const before = (await t.gql(COMPARISON_VOTE, { id: mixed.id }, alice.token)).data.comparison.vote;
      const res = await vote(t, alice, input());
      expect(res.data).toBeNull();
      expect(res.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(res.errors?.[0]?.message).toMatch(message);
      expect((await t.gql(COMPARISON_VOTE, { id: mixed.id }, alice.token)).data.comparison.vote).toEqual(before);
    });
  });

  it('refuses any vote while a response is still PENDING or STREAMING', async () => {
    const running = await seedComparison(t, alice.userId, [
      { model: 'openai:x' },
      { model: 'anthropic:y', status: 'STREAMING' },
      { model: 'google:z', status: 'PENDING' },
    ]);
    for (const input of [
      { comparisonId: running.id, outcome: 'WINNER', winnerResponseId: running.responses[0] },
      { comparisonId: running.id, outcome: 'TIE' },
      { comparisonId: running.id, outcome: 'ALL_BAD' },
    ]) {
      const res = await vote(t, alice, input);
      expect(res.errors?.[0]?.extensions?.code).toBe('COMPARISON_NOT_SETTLED');
      expect(res.errors?.[0]?.message).toMatch(/still running/);
    }
    expect(await countVotes(running.id)).toBe(0);
  });

  it("another user's comparison answers NOT_FOUND exactly like a missing or malformed id, and changes nothing", async () => {
    expect(
      (await vote(t, alice, { comparisonId: mixed.id, outcome: 'WINNER', winnerResponseId: mixed.responses[0] })).errors,
    ).toBeUndefined();
    const foreign = await vote(t, bob, { comparisonId: mixed.id, outcome: 'TIE' });
    const missing = await vote(t, bob, { comparisonId: randomUUID(), outcome: 'TIE' });
    const malformed = await vote(t, bob, { comparisonId: 'not-a-uuid', outcome: 'TIE' });
    expect(foreign.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect(foreign.raw).toBe(missing.raw);
    expect(malformed.raw).toBe(missing.raw);
    const foreignWinner = await vote(t, bob, { comparisonId: mixed.id, outcome: 'WINNER', winnerResponseId: mixed.responses[0] });
    expect(foreignWinner.raw).toBe(missing.raw);
    expect(await countVotes(mixed.id)).toBe(1);
    expect((await t.gql(COMPARISON_VOTE, { id: mixed.id }, alice.token)).data.comparison.vote.outcome).toBe('WINNER');
  });

  it('needs sign-in: vote and leaderboard answer UNAUTHENTICATED', async () => {
    const unvoted = await seedComparison(t, alice.userId, [{ model: 'openai:x' }, { model: 'anthropic:y' }]);
    const res = await t.gql(VOTE, { input: { comparisonId: unvoted.id, outcome: 'TIE' } });
    expect(res.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    for (const query of [MINE, GLOBAL]) {
      expect((await t.gql(query)).errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    }
    expect(await countVotes(unvoted.id)).toBe(0);
  });

  it('20 concurrent votes by one user on one comparison: no errors, exactly one row', async () => {
    const inputs = Array.from({ length: 20 }, (_, i) =>
      i % 3 === 0
        ? { comparisonId: other.id, outcome: 'TIE' }
        : { comparisonId: other.id, outcome: 'WINNER', winnerResponseId: other.responses[i % 2] },
    );
    const results = await Promise.all(inputs.map((input) => vote(t, alice, input)));
    for (const res of results) expect(res.errors).toBeUndefined();
    expect(new Set(results.map((r) => r.data.vote.id)).size).toBe(1);
    expect(await countVotes(other.id)).toBe(1);
    const stored = await withClient(
      t.db.url,
      async (c) => (await c.query('select id, user_id from votes where comparison_id = $1', [other.id])).rows,
    );
    expect(stored).toEqual([{ id: results[0]!.data.vote.id, user_id: alice.userId }]);
  });
});

// ---------------------------------------------------------------------------

describe('leaderboard', () => {
  const A = 'openai:model-a';
  const B = 'anthropic:model-b';
  const C = 'google:model-c';

  // Each test has its own database (GLOBAL counts every user's votes), and makes the votes it reads.
  let t: TestApp;
  let alice: User;
  let bob: User;

  beforeEach(async () => {
    t = await createTestApp();
    alice = await t.signUp('alice');
    bob = await t.signUp('bob');
  });
  afterEach(() => t.close());

  /** Alice's data (see the symmetric test): A beats B, B beats A, and an unvoted comparison. */
  async function aliceCasts(): Promise<void> {
    const a1 = await seedComparison(t, alice.userId, [
      { model: A, latencyMs: 100, costUsd: 0.001 },
      { model: B, latencyMs: 200, costUsd: 0.002 },
    ]);
    const a2 = await seedComparison(t, alice.userId, [
      { model: B, latencyMs: 600, costUsd: 0.006 },
      { model: A, latencyMs: 300, costUsd: 0.003 },
    ]);
    // Not blind: a blind one not voted on would stay out of the averages (its models are still hidden).
    await seedComparison(
      t,
      alice.userId,
      [
        { model: A, latencyMs: 500, costUsd: 0.005 },
        { model: B, status: 'FAILED', latencyMs: 50, costUsd: 9 },
      ],
      false,
    );
    await castVote(alice, a1, 'WINNER', 0);
    await castVote(alice, a2, 'WINNER', 0);
  }

  /** Bob's comparisons b1..b5 (see the asymmetric test), not yet voted on. */
  async function bobSeeds() {
    const a = (latencyMs = 1000) => ({ model: A, latencyMs, costUsd: 0.01 });
    const b = { model: B, latencyMs: 2000 };
    const c = (latencyMs: number, costUsd: number) => ({ model: C, latencyMs, costUsd });
    return [
      await seedComparison(t, bob.userId, [a(), b, { model: C, status: 'FAILED', latencyMs: 9999, costUsd: 1 }]),
      await seedComparison(t, bob.userId, [a(), b, c(3000, 0.02)]),
      await seedComparison(t, bob.userId, [a(), b, c(3000, 0.02)]),
      await seedComparison(t, bob.userId, [a(), b, { model: C, status: 'TIMED_OUT' }]),
      await seedComparison(t, bob.userId, [a(), b, c(6000, 0.05)]),
    ] as const;
  }

  async function bobCasts(seeded: Awaited<ReturnType<typeof bobSeeds>>): Promise<void> {
    const [b1, b2, b3, b4, b5] = seeded;
    await castVote(bob, b1, 'WINNER', 0);
    await castVote(bob, b2, 'WINNER', 2);
    await castVote(bob, b3, 'ALL_BAD');
    await castVote(bob, b4, 'WINNER', 1);
    await castVote(bob, b5, 'WINNER', 0);
  }

  async function castVote(user: User, comparison: { id: string; responses: string[] }, outcome: string, winnerIndex?: number) {
    const res = await vote(t, user, {
      comparisonId: comparison.id,
      outcome,
      winnerResponseId: winnerIndex === undefined ? null : comparison.responses[winnerIndex],
    });
    expect(res.errors).toBeUndefined();
  }

  /**
   * Symmetric case (Alice): A beats B once, B beats A once. With any prior the
   * fit is symmetric, so both are exactly 1000; 2 battles, 1 win, 1 loss, winRate 0.5.
   * Interval by hand (default prior 1, all θ = 0, σ(0)·σ(0) = 1/4): information
   *   I = [[2·¼ + ¼, −2·¼], [−2·¼, 2·¼ + ¼]] = [[0.75, −0.5], [−0.5, 0.75]], det 0.3125,
   *   Σ = I⁻¹ = [[2.4, 1.6], [1.6, 2.4]]; var(θ_A − θ̄) = var((θ_A − θ_B)/2) = (2.4 + 2.4 − 2·1.6)/4 = 0.4,
   *   half-width 1.96 · √0.4 · 400/ln 10 = 215.3428 → [784.6572, 1215.3428].
   * Her third comparison (not blind) is not voted on and B FAILED in it: it still
   * counts for A's averages, and the FAILED row counts for nothing.
   *   A latency (100 + 300 + 500) / 3 = 300, cost (0.001 + 0.003 + 0.005) / 3 = 0.003
   *   B latency (200 + 600) / 2 = 400,       cost (0.002 + 0.006) / 2 = 0.004
   * This also checks invalidation: MINE is stored by the operation cache (the
   * repeat read is an x-cache HIT), and each vote shows on the very next read.
   */
  it('MINE, symmetric: 1000 / 1000; every vote shows on the next read despite the operation cache', async () => {
    const a1 = await seedComparison(t, alice.userId, [
      { model: A, latencyMs: 100, costUsd: 0.001 },
      { model: B, latencyMs: 200, costUsd: 0.002 },
    ]);
    const a2 = await seedComparison(t, alice.userId, [
      { model: B, latencyMs: 600, costUsd: 0.006 },
      { model: A, latencyMs: 300, costUsd: 0.003 },
    ]);
    // Not blind: a blind one not voted on would stay out of the averages (its models are still hidden).
    await seedComparison(
      t,
      alice.userId,
      [
        { model: A, latencyMs: 500, costUsd: 0.005 },
        { model: B, status: 'FAILED', latencyMs: 50, costUsd: 9 },
      ],
      false,
    );

    expect((await t.gql(MINE, {}, alice.token)).data.leaderboard).toEqual([]);
    const cached = await t.gql(MINE, {}, alice.token);
    expect(cached.headers.get('x-cache')).toBe('HIT');
    expect(cached.data.leaderboard).toEqual([]);

    await castVote(alice, a1, 'WINNER', 0);
    const afterFirst = await t.gql(MINE, {}, alice.token);
    expect(afterFirst.headers.get('x-cache')).toBe('MISS');
    expect(afterFirst.data.leaderboard.map((r: any) => [r.model, r.wins, r.losses])).toEqual([
      [A, 1, 0],
      [B, 0, 1],
    ]);

    await castVote(alice, a2, 'WINNER', 0); // B wins
    const { leaderboard } = (await t.gql(MINE, {}, alice.token)).data;
    const { [A]: a, [B]: b } = byModel(leaderboard as any[]);
    for (const r of [a, b]) {
      expect(r.rating).toBeCloseTo(1000, 9);
      expect(r).toMatchObject({ battles: 2, wins: 1, losses: 1, ties: 0, winRate: 0.5 });
      expect(r.ratingLow).toBeLessThan(r.rating);
      expect(r.ratingHigh).toBeGreaterThan(r.rating);
      // The closed-form (sandwich) interval of 1–1 with the default prior, as the reference computes it battle by battle.
      const [reference] = bradleyTerry(
        [
          { a: A, b: B, scoreA: 1 },
          { a: B, b: A, scoreA: 1 },
        ],
        { interval: 'sandwich' },
      );
      expect(r.ratingLow).toBeCloseTo(reference!.ratingLow, 6);
      expect(r.ratingHigh).toBeCloseTo(reference!.ratingHigh, 6);
    }
    expect(a).toMatchObject({ provider: 'OPENAI', avgLatencyMs: 300 });
    expect(a.avgCostUsd).toBeCloseTo(0.003, 12);
    expect(b).toMatchObject({ provider: 'ANTHROPIC', avgLatencyMs: 400 });
    expect(b.avgCostUsd).toBeCloseTo(0.004, 12);
    expect(a.ratingHigh - a.ratingLow).toBeCloseTo(b.ratingHigh - b.ratingLow, 9);
  });

  /**
   * Asymmetric case (Bob), models A, B, C (ratings from bradleyTerry, default prior:
   * C 1047.9281 [851.5431, 1244.3131], A 1025.8581 [857.8649, 1193.8514], B 926.2138 [739.5623, 1112.8652]):
   *   b1: A, B completed, C FAILED       WINNER A  → A>B           (C takes no part)
   *   b2: A, B, C completed              WINNER C  → C>A, C>B
   *   b3: A, B, C completed              ALL_BAD   → A=B, A=C, B=C
   *   b4: A, B completed, C TIMED_OUT    WINNER B  → B>A
   *   b5: A, B, C completed              WINNER A  → A>B, A>C
   * Tallies (hand counted):
   *   A: 7 battles, 3 wins, 2 losses, 2 ties, winRate (3 + 1) / 7 = 4/7
   *   B: 6 battles, 1 win,  3 losses, 2 ties, winRate (1 + 1) / 6 = 1/3
   *   C: 5 battles, 2 wins, 1 loss,   2 ties, winRate (2 + 1) / 5 = 3/5
   * Averages over Bob's COMPLETED responses:
   *   A latency 1000 (all five), cost 0.01; B latency 2000, cost null (never priced);
   *   C latency (3000 + 3000 + 6000) / 3 = 4000, cost (0.02 + 0.02 + 0.05) / 3 = 0.03
   *   (the FAILED C in b1 with latency 9999 / cost 1 and the TIMED_OUT C in b4 count for nothing).
   */
  const bobVotes: VoteRecord[] = [
    { models: [A, B], outcome: 'WINNER', winner: A },
    { models: [A, B, C], outcome: 'WINNER', winner: C },
    { models: [A, B, C], outcome: 'ALL_BAD' },
    { models: [A, B], outcome: 'WINNER', winner: B },
    { models: [A, B, C], outcome: 'WINNER', winner: A },
  ];
  const aliceVotes: VoteRecord[] = [
    { models: [A, B], outcome: 'WINNER', winner: A },
    { models: [B, A], outcome: 'WINNER', winner: B },
  ];

  it('MINE, asymmetric: tallies, order and ratings equal bradleyTerry() on the same battles', async () => {
    await aliceCasts();
    const seeded = await bobSeeds();
    const globalBefore = (await t.gql(GLOBAL, {}, bob.token)).data.leaderboard;
    expect(globalBefore.map((r: any) => r.model).sort()).toEqual([A, B].sort());
    await bobCasts(seeded);

    const { leaderboard } = (await t.gql(MINE, {}, bob.token)).data;
    const expected = bradleyTerry(votesToBattles(bobVotes), { interval: 'sandwich' });
    expect(leaderboard.map((r: any) => r.model)).toEqual(expected.map((r) => r.model));
    for (const [i, r] of (leaderboard as any[]).entries()) {
      expect(r.rating).toBeCloseTo(expected[i]!.rating, 6);
      expect(r.ratingLow).toBeCloseTo(expected[i]!.ratingLow, 6);
      expect(r.ratingHigh).toBeCloseTo(expected[i]!.ratingHigh, 6);
      expect(r.ratingLow).toBeLessThan(r.rating);
      expect(r.rating).toBeLessThan(r.ratingHigh);
    }
    const ranking = byModel(leaderboard as any[]);
    expect(ranking[A]).toMatchObject({ provider: 'OPENAI', battles: 7, wins: 3, losses: 2, ties: 2, avgLatencyMs: 1000 });
    expect(ranking[A].winRate).toBeCloseTo(4 / 7, 12);
    expect(ranking[A].avgCostUsd).toBeCloseTo(0.01, 12);
    expect(ranking[B]).toMatchObject({
      provider: 'ANTHROPIC',
      battles: 6,
      wins: 1,
      losses: 3,
      ties: 2,
      avgLatencyMs: 2000,
      avgCostUsd: null,
    });
    expect(ranking[B].winRate).toBeCloseTo(1 / 3, 12);
    expect(ranking[C]).toMatchObject({ provider: 'GOOGLE', battles: 5, wins: 2, losses: 1, ties: 2, avgLatencyMs: 4000 });
    expect(ranking[C].winRate).toBeCloseTo(0.6, 12);
    expect(ranking[C].avgCostUsd).toBeCloseTo(0.03, 12);
    // B, with the worst record, is last; the mean rating is 1000.
    expect(leaderboard[2].model).toBe(B);
    expect(leaderboard.reduce((s: number, r: any) => s + r.rating, 0) / 3).toBeCloseTo(1000, 6);

    // Alice's MINE is untouched by Bob's votes.
    const aliceMine = byModel((await t.gql(MINE, {}, alice.token)).data.leaderboard);
    expect(Object.keys(aliceMine).sort()).toEqual([A, B].sort());
    expect(aliceMine[A]).toMatchObject({ battles: 2, wins: 1, losses: 1 });
  });

  /**
   * GLOBAL = Alice's 2 votes + Bob's 5. Tallies: A 9 battles (4 W, 3 L, 2 T),
   * B 8 (2 W, 4 L, 2 T), C 5 (2 W, 1 L, 2 T). Averages over everyone's COMPLETED responses:
   *   A latency (100 + 300 + 500 + 5·1000) / 8 = 737.5, cost (0.001 + 0.003 + 0.005 + 5·0.01) / 8 = 0.007375
   *   B latency (200 + 600 + 5·2000) / 7 = 10800 / 7, cost (0.002 + 0.006) / 2 = 0.004 (Bob's B has none)
   *   C latency 4000, cost 0.03
   * The GLOBAL read before Bob's votes is cached; the votes bump its generation.
   */
  it("GLOBAL counts every user's votes and is fresh after a vote", async () => {
    await aliceCasts();
    const seeded = await bobSeeds();
    // Read (and cache) GLOBAL before Bob votes: his votes must bump it.
    expect((await t.gql(GLOBAL, {}, bob.token)).data.leaderboard.map((r: any) => r.model).sort()).toEqual([A, B].sort());
    await bobCasts(seeded);
    const res = await t.gql(GLOBAL, {}, alice.token);
    const { leaderboard } = res.data;
    const expected = bradleyTerry(votesToBattles([...aliceVotes, ...bobVotes]), { interval: 'sandwich' });
    expect(leaderboard.map((r: any) => r.model)).toEqual(expected.map((r) => r.model));
    for (const [i, r] of (leaderboard as any[]).entries()) {
      expect(r.rating).toBeCloseTo(expected[i]!.rating, 6);
      expect(r.ratingLow).toBeCloseTo(expected[i]!.ratingLow, 6);
      expect(r.ratingHigh).toBeCloseTo(expected[i]!.ratingHigh, 6);
    }
    const ranking = byModel(leaderboard as any[]);
    expect(ranking[A]).toMatchObject({ battles: 9, wins: 4, losses: 3, ties: 2 });
    expect(ranking[B]).toMatchObject({ battles: 8, wins: 2, losses: 4, ties: 2 });
    expect(ranking[C]).toMatchObject({ battles: 5, wins: 2, losses: 1, ties: 2 });
    expect(ranking[A].winRate).toBeCloseTo(5 / 9, 12);
    expect(ranking[B].winRate).toBeCloseTo(3 / 8, 12);
    expect(ranking[A].avgLatencyMs).toBeCloseTo(737.5, 9);
    expect(ranking[A].avgCostUsd).toBeCloseTo(0.007375, 12);
    expect(ranking[B].avgLatencyMs).toBeCloseTo(10800 / 7, 9);
    expect(ranking[B].avgCostUsd).toBeCloseTo(0.004, 12);
    expect(ranking[C].avgLatencyMs).toBeCloseTo(4000, 9);
    expect(ranking[C].avgCostUsd).toBeCloseTo(0.03, 12);

    // Bob (another user) sees the same GLOBAL list.
    expect((await t.gql(GLOBAL, {}, bob.token)).data.leaderboard).toEqual(leaderboard);
  });

  it('a new vote refits GLOBAL in the background (one locked transaction on battle_counts); the next read serves it, no SQL', async () => {
    await aliceCasts();
    const seeded = await bobSeeds();
    await bobCasts(seeded);
    expect(byModel((await t.gql(GLOBAL, {}, alice.token)).data.leaderboard)[A]).toMatchObject({ battles: 9, wins: 4 });
    // A blind vote is final (it reveals the comparison): the board moves with a new vote, b6, where A beats B.
    const b6 = await seedComparison(t, bob.userId, [
      { model: A, latencyMs: 1000, costUsd: 0.01 },
      { model: B, latencyMs: 2000 },
    ]);
    const refit = await t.countStatements(async () => {
      await castVote(bob, b6, 'WINNER', 0);
      await t.app.services.leaderboard.refits(); // the refit the vote started: awaited, no sleep
    });
    // The refit reads the pre-aggregated counts under the board's advisory lock, never the votes.
    const fits = refit.statements.filter((q) => /from battle_counts/.test(q));
    expect(fits.length).toBeGreaterThanOrEqual(1);
    expect(refit.statements.some((q) => /pg_try_advisory_xact_lock/.test(q))).toBe(true);

    const added: VoteRecord[] = [...bobVotes, { models: [A, B], outcome: 'WINNER', winner: A }];
    const { count, result } = await t.countStatements(() => t.gql(GLOBAL, {}, alice.token));
    expect(count).toBe(0);
    const expected = bradleyTerry(votesToBattles([...aliceVotes, ...added]), { interval: 'sandwich' });
    const ranking = byModel(result.data.leaderboard);
    expect(ranking[A]).toMatchObject({ battles: 10, wins: 5, losses: 3, ties: 2 });
    expect(ranking[A].rating).toBeCloseTo(expected.find((r) => r.model === A)!.rating, 6);
    expect(byModel((await t.gql(MINE, {}, bob.token)).data.leaderboard)[B]).toMatchObject({ wins: 1, losses: 4 });

    // A second GLOBAL read with no vote in between comes from the cache: no SQL.
    const again = await t.countStatements(() => t.gql(GLOBAL, {}, alice.token));
    expect(again.count).toBe(0);
    expect(again.result.data).toEqual(result.data);
  });

  it('ranks one model through two labels as two endpoints (model id plus @label when the label is not default)', async () => {
    const L = 'openai_compatible:llama3.1:8b';
    const ollama = { model: L, label: 'ollama', latencyMs: 100 };
    const vllm = { model: L, label: 'vllm', latencyMs: 300 };
    const c1 = await seedComparison(t, alice.userId, [ollama, vllm]);
    const c2 = await seedComparison(t, alice.userId, [vllm, ollama, { model: L, latencyMs: 900 }]);
    await castVote(alice, c1, 'WINNER', 0); // ollama beats vllm
    await castVote(alice, c2, 'WINNER', 1); // ollama beats vllm and the default endpoint
    for (const query of [MINE, GLOBAL]) {
      const ranking = byModel((await t.gql(query, {}, alice.token)).data.leaderboard);
      expect(Object.keys(ranking).sort()).toEqual([L, `${L}@ollama`, `${L}@vllm`]);
      expect(ranking[`${L}@ollama`]).toMatchObject({ provider: 'OPENAI_COMPATIBLE', battles: 3, wins: 3, losses: 0, avgLatencyMs: 100 });
      expect(ranking[`${L}@vllm`]).toMatchObject({ battles: 2, wins: 0, losses: 2, avgLatencyMs: 300 });
      expect(ranking[L]).toMatchObject({ battles: 1, wins: 0, losses: 1, avgLatencyMs: 900 });
    }
  });
});
