/**
 * The arena leaderboard through GraphQL: filters (blind only by default,
 * category, time window, scope), excluded votes, leaderboardInfo, style
 * control, rank fields. Comparisons are seeded with SQL (blind flag,
 * category, answer text); votes are cast through the API, then back-dated or
 * excluded with SQL before the first read.
 */
import { randomUUID } from 'node:crypto';
import { withClient } from './helpers/factories';
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { createTestApp, type TestApp } from './helpers/test-app';

const A = 'openai:model-a';
const B = 'anthropic:model-b';
const C = 'google:model-c';

const BOARD =
  `query($scope: LeaderboardScope, $filter: LeaderboardFilter) {
  leaderboard(scope: $scope, filter: $filter) { model rating ratingLow ratingHigh bootstrapLow bootstrapHigh ` +
  `rank rankLow rankHigh battles wins losses ties }
  leaderboardInfo(scope: $scope, filter: $filter) { votesUsed votesExcluded models computedAt bootstrapSamples ` +
  `styleCoefficients { feature coefficient low high } }
}`;
const VOTE = `mutation($input: VoteInput!) { vote(input: $input) { id } }`;

interface Seeded {
  id: string;
  responses: string[];
}

describe('arena leaderboard filters', () => {
  let t: TestApp;
  let alice: { token: string; userId: string };
  let bob: { token: string; userId: string };
  const votes: Record<string, string> = {};

  async function seed(
    ownerId: string,
    opts: { blind: boolean; category?: string; answers?: [string, string] },
    models: [string, string],
  ): Promise<Seeded> {
    const id = randomUUID();
    const responses = [randomUUID(), randomUUID()];
    await withClient(t.db.url, async (c) => {
      await c.query(
        `insert into comparison_results (id, created_at, owner_id, prompt, blind, category) values ($1, now(), $2, 'prompt', $3, $4)`,
        [id, ownerId, opts.blind, opts.category ?? null],
      );
      for (const [i, model] of models.entries()) {
        await c.query(
          `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, status, content)
           values ($1, now(), $2, $3, $4, $5, 'COMPLETED', $6)`,
          [responses[i], id, i, model.split(':')[0]!.toUpperCase(), model, opts.answers?.[i] ?? 'answer'],
        );
      }
    });
    return { id, responses };
  }

  async function win(user: { token: string }, comparison: Seeded, winner: number, name: string): Promise<void> {
    const res = await t.gql(
      VOTE,
      { input: { comparisonId: comparison.id, outcome: 'WINNER', winnerResponseId: comparison.responses[winner] } },
      user.token,
    );
    expect(res.errors).toBeUndefined();
    votes[name] = res.data.vote.id;
  }

  const board = async (filter?: Record<string, unknown>, scope = 'GLOBAL', token = alice.token) => {
    const res = await t.gql(BOARD, { scope, filter }, token);
    expect(res.errors).toBeUndefined();
    return res.data as { leaderboard: any[]; leaderboardInfo: any };
  };
  const tally = (rows: any[]) => Object.fromEntries(rows.map((r) => [r.model, [r.wins, r.losses]]));

  beforeAll(async () => {
    // Reads wait for a refit however loaded the machine is (no stale board after the changes below).
    t = await createTestApp({ env: { LEADERBOARD_BOOTSTRAP_SAMPLES: '200', LEADERBOARD_REFRESH_WAIT_MS: '60000' } });
    alice = await t.signUp('alice');
    bob = await t.signUp('bob');
    // Blind, category code: A beats B twice (Alice), B beats C once (Bob).
    await win(alice, await seed(alice.userId, { blind: true, category: 'code' }, [A, B]), 0, 'code1');
    await win(alice, await seed(alice.userId, { blind: true, category: 'code' }, [A, B]), 0, 'code2');
    await win(bob, await seed(bob.userId, { blind: true, category: 'code' }, [B, C]), 0, 'code3');
    // Blind, category math: C beats A (Alice) — back-dated to 2020 below.
    await win(alice, await seed(alice.userId, { blind: true, category: 'math' }, [C, A]), 0, 'oldMath');
    // Not blind: B beats A (Alice).
    await win(alice, await seed(alice.userId, { blind: false }, [A, B]), 1, 'open');
    // Blind, no category: C beats B (Bob) — excluded below.
    await win(bob, await seed(bob.userId, { blind: true }, [C, B]), 0, 'excluded');
    // Blind, category style (Bob): the richer answer wins each time, once A's and once C's (a 1–1 split).
    const s1 = await seed(
      bob.userId,
      { blind: true, category: 'style', answers: ['# Title\n\n- one\n- two\n\n**bold** and a long answer with details', 'short'] },
      [A, C],
    );
    await win(bob, s1, 0, 'style1');
    const s2 = await seed(
      bob.userId,
      { blind: true, category: 'style', answers: ['plain', '## Head\n1. a\n2. b\n**x** more words here'] },
      [A, C],
    );
    await win(bob, s2, 1, 'style2');
    await withClient(t.db.url, async (c) => {
      await c.query(`update votes set created_at = '2020-01-01T00:00:00Z' where id = $1`, [votes.oldMath]);
      await c.query(`update votes set excluded_at = now() where id = $1`, [votes.excluded]);
    });
    // Changed behind the API's back: a board fitted meanwhile (a vote refits in the background) is stale.
    await t.app.services.leaderboard.invalidateGlobal();
    await t.app.services.leaderboard.refits();
  });
  afterAll(() => t.close());

  it('by default counts only blind votes, never excluded ones, and says how many it used and excluded', async () => {
    const { leaderboard, leaderboardInfo } = await board();
    expect(tally(leaderboard)).toEqual({ [A]: [3, 2], [B]: [1, 2], [C]: [2, 2] });
    expect(leaderboardInfo).toMatchObject({ votesUsed: 6, votesExcluded: 1, models: 3, bootstrapSamples: 200, styleCoefficients: [] });
    expect(Number.isNaN(Date.parse(leaderboardInfo.computedAt))).toBe(false);
    for (const r of leaderboard) {
      expect(r.bootstrapLow).toBeLessThanOrEqual(r.rating + 1e-9);
      expect(r.bootstrapHigh).toBeGreaterThanOrEqual(r.rating - 1e-9);
      expect(r.rankLow).toBe(r.rank);
      expect(r.rankHigh).toBeGreaterThanOrEqual(r.rank);
    }
    // Six votes cannot separate three models: they share rank 1.
    expect(leaderboard.map((r) => r.rank)).toEqual([1, 1, 1]);
  });

  it('blindOnly: false adds the open comparison', async () => {
    const { leaderboard, leaderboardInfo } = await board({ blindOnly: false });
    expect(tally(leaderboard)).toEqual({ [A]: [3, 3], [B]: [2, 2], [C]: [2, 2] });
    expect(leaderboardInfo).toMatchObject({ votesUsed: 7, votesExcluded: 1 });
  });

  it('category: each category has its own board', async () => {
    const code = await board({ category: 'code' });
    expect(tally(code.leaderboard)).toEqual({ [A]: [2, 0], [B]: [1, 2], [C]: [0, 1] });
    expect(code.leaderboardInfo).toMatchObject({ votesUsed: 3, votesExcluded: 0 });
    const math = await board({ category: 'math' });
    expect(tally(math.leaderboard)).toEqual({ [C]: [1, 0], [A]: [0, 1] });
    expect((await board({ category: 'poetry' })).leaderboard).toEqual([]);
  });

  it('since: only votes cast at or after the instant', async () => {
    const recent = await board({ since: '2021-01-01T00:00:00Z' });
    expect(tally(recent.leaderboard)).toEqual({ [A]: [3, 1], [B]: [1, 2], [C]: [1, 2] });
    expect(recent.leaderboardInfo.votesUsed).toBe(5);
    expect((await board({ since: '2019-01-01T00:00:00Z' })).leaderboardInfo.votesUsed).toBe(6);
  });

  it('scope MINE counts the viewer only; JUDGE is an empty board (no judge verdicts stored)', async () => {
    const mine = await board(undefined, 'MINE', bob.token);
    expect(tally(mine.leaderboard)).toEqual({ [A]: [1, 1], [B]: [1, 0], [C]: [1, 2] });
    expect(mine.leaderboardInfo).toMatchObject({ votesUsed: 3, votesExcluded: 1 });
    const judge = await board(undefined, 'JUDGE');
    expect(judge.leaderboard).toEqual([]);
    expect(judge.leaderboardInfo).toMatchObject({ votesUsed: 0, votesExcluded: 0, models: 0, bootstrapSamples: 0 });
  });

  it('the same filter twice gives the same board (seeded bootstrap), served from the cache', async () => {
    const first = await board({ category: 'code' });
    const again = await t.countStatements(() => t.gql(BOARD, { filter: { category: 'code' } }, bob.token));
    expect(again.count).toBe(0);
    expect(again.result.data.leaderboard).toEqual(first.leaderboard);
  });

  it('styleControl: fits the four style covariates and reports them', async () => {
    const { leaderboard, leaderboardInfo } = await board({ category: 'style', styleControl: true });
    expect(leaderboard.map((r) => r.model).sort()).toEqual([A, C].sort());
    expect(leaderboardInfo.styleCoefficients.map((c: any) => c.feature)).toEqual(['length', 'headers', 'lists', 'bold']);
    // The richer answer won both times: every style coefficient is positive.
    for (const c of leaderboardInfo.styleCoefficients) {
      expect(c.coefficient).toBeGreaterThan(0);
      expect(c.low).toBeLessThanOrEqual(c.coefficient);
      expect(c.high).toBeGreaterThanOrEqual(c.coefficient);
    }
    // Without style control the same votes are a 1–1 split: both at 1000.
    for (const r of (await board({ category: 'style' })).leaderboard) expect(r.rating).toBeCloseTo(1000, 6);
  });
});

describeRedis('arena leaderboard across instances', () => {
  let a: TestApp;
  let b: TestApp;
  beforeAll(async () => {
    const prefix = `t-arena-${randomUUID().slice(0, 8)}`;
    // A read after another instance's vote waits for the refit (however loaded the machine) rather than serving the previous board.
    const env = {
      CACHE_PREFIX: prefix,
      REDIS_URL: redisUrlForTests(),
      LEADERBOARD_BOOTSTRAP_SAMPLES: '100',
      LEADERBOARD_REFRESH_WAIT_MS: '60000',
    };
    a = await createTestApp({ env });
    b = await createTestApp({ db: a.db, env });
  });
  afterAll(async () => {
    await b.close(); // shares a's database: close it first
    await a.close();
  });

  it("the second instance serves the board the first computed (no SQL); a vote on one shows on the other's next read", async () => {
    const user = await a.signUp('carol');
    const id = randomUUID();
    const responses = [randomUUID(), randomUUID()];
    await withClient(a.db.url, async (c) => {
      await c.query(`insert into comparison_results (id, created_at, owner_id, prompt, blind) values ($1, now(), $2, 'p', true)`, [
        id,
        user.userId,
      ]);
      for (const [i, model] of [A, B].entries()) {
        await c.query(
          `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, status, content)
           values ($1, now(), $2, $3, $4, $5, 'COMPLETED', 'x')`,
          [responses[i], id, i, model.split(':')[0]!.toUpperCase(), model],
        );
      }
    });
    const QUERY = `{ leaderboard { model wins losses } leaderboardInfo { votesUsed computedAt } }`;
    expect((await a.gql(QUERY, {}, user.token)).data.leaderboard).toEqual([]);

    const voted = await b.gql(VOTE, { input: { comparisonId: id, outcome: 'WINNER', winnerResponseId: responses[0] } }, user.token);
    expect(voted.errors).toBeUndefined();
    const onA = await a.gql(QUERY, {}, user.token);
    expect(onA.data.leaderboard).toEqual([
      { model: A, wins: 1, losses: 0 },
      { model: B, wins: 0, losses: 1 },
    ]);

    // The vote also started B's background refit of the boards B served lately (another test may have
    // had it serve one): that is B's own work, not this read's, so it is awaited before counting.
    await b.app.services.leaderboard.refits();
    const onB = await b.countStatements(() => b.gql(QUERY, {}, user.token));
    expect(onB.count).toBe(0);
    expect(onB.result.data).toEqual(onA.data);
  });

  it('one refit at a time across instances: both instances read a board nobody has, it is fitted once (advisory lock)', async () => {
    const filter = { category: `lock-${randomUUID().slice(0, 8)}` };
    const QUERY = `query($f: LeaderboardFilter) { leaderboard(filter: $f) { model } leaderboardInfo(filter: $f) { computedAt } }`;
    const user = await a.signUp('dave');
    const fits: string[] = [];
    const watch = (t: TestApp) => t.app.queryObserver.onQuery((sql) => /from battle_counts/.test(sql) && fits.push(sql));
    const stops = [watch(a), watch(b)];
    try {
      const [onA, onB] = await Promise.all([a.gql(QUERY, { f: filter }, user.token), b.gql(QUERY, { f: filter }, user.token)]);
      expect(onA.errors).toBeUndefined();
      // One instance fitted the board; the other waited for its lock and served what it stored.
      expect(onB.data).toEqual(onA.data);
      expect(fits).toHaveLength(1);
    } finally {
      for (const stop of stops) stop();
    }
  });
});
