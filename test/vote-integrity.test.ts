/**
 * Vote integrity through GraphQL: the daily cap (VOTE_LIMIT_REACHED with
 * retry info), the change window (VOTE_CHANGE_WINDOW_CLOSED), implausible
 * patterns excluded from the board (FIRST_POSITION, RANDOM_AGAINST_CONSENSUS)
 * with the exclusions listed for admins and reversible by them, the board's
 * votesUsed / votesExcluded, and the pre-aggregated counts staying equal to
 * a recount from the votes through changes, exclusions, reversals and
 * cascade deletes.
 */
import { randomBytes } from 'node:crypto';
import { seedComparison, type SeededComparison } from './helpers/arena';
import { withClient } from './helpers/factories';
import { createTestApp, type TestApp } from './helpers/test-app';

const A = 'openai:model-a';
const B = 'anthropic:model-b';
const C = 'google:model-c';

const VOTE = `mutation($input: VoteInput!) { vote(input: $input) { id outcome createdAt winner { id } } }`;
const INFO = `query($scope: LeaderboardScope, $filter: LeaderboardFilter) {
  leaderboard(scope: $scope, filter: $filter) { model wins losses ties }
  leaderboardInfo(scope: $scope, filter: $filter) { votesUsed votesExcluded }
}`;
const EXCLUSIONS =
  `query($all: Boolean) { voteExclusions(includeReversed: $all) { userId email reason detail ` +
  `votesConsidered votesExcluded reversedAt active } }`;
const REVERSE = `mutation($userId: ID!) { reverseVoteExclusion(userId: $userId) { userId reason votesExcluded reversedAt active } }`;

interface User {
  token: string;
  userId: string;
}

async function signUpAdmin(t: TestApp, email: string): Promise<User> {
  const res = await t.gql(`mutation($e: String!) { register(email: $e, password: "correct horse battery") { token user { id role } } }`, {
    e: email,
  });
  expect(res.data.register.user.role).toBe('ADMIN');
  return { token: res.data.register.token, userId: res.data.register.user.id };
}

const win = (t: TestApp, user: User, c: SeededComparison, index: number) =>
  t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'WINNER', winnerResponseId: c.responses[index] } }, user.token);

/** The counts the triggers maintain, against a recount from the votes' own battle snapshots. */
async function countsMatchRecount(t: TestApp): Promise<{ kept: unknown[]; recount: unknown[] }> {
  return withClient(t.db.url, async (c) => {
    const kept = await c.query(
      `select blind, category, day, model_a, model_b, outcome, n from battle_counts where n <> 0 order by 1, 2, 3, 4, 5, 6`,
    );
    const recount = await c.query(
      `select v.cast_blind as blind, coalesce(r.category, '') as category,
              (v.created_at at time zone 'UTC')::date as day, x->>'a' as model_a, x->>'b' as model_b, x->>'o' as outcome, count(*)::int as n
         from votes v join comparison_results r on r.id = v.comparison_id
              cross join jsonb_array_elements(vote_battles(v.comparison_id, v.outcome::text, v.winner_id)->'cells') x
        where v.excluded_at is null
        group by 1, 2, 3, 4, 5, 6 order by 1, 2, 3, 4, 5, 6`,
    );
    return { kept: kept.rows, recount: recount.rows };
  });
}

describe('daily vote cap and change window', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ env: { VOTE_DAILY_CAP: '3', VOTE_CHANGE_WINDOW_SECONDS: '600' } });
  });
  afterAll(() => t.close());

  it('the 4th new vote in 24 h answers VOTE_LIMIT_REACHED with limit and retryAfterSeconds; changing a vote still works', async () => {
    const user = await t.signUp('capped');
    const seeded: SeededComparison[] = [];
    // Not blind: one vote is changed below (a vote on a blind comparison is final).
    for (let i = 0; i < 4; i++) seeded.push(await seedComparison(t, user.userId, [{ model: A }, { model: B }], { blind: false }));
    for (let i = 0; i < 3; i++) expect((await win(t, user, seeded[i]!, 0)).errors).toBeUndefined();

    const refused = await win(t, user, seeded[3]!, 0);
    expect(refused.data).toBeNull();
    expect(refused.errors?.[0]?.extensions).toMatchObject({ code: 'VOTE_LIMIT_REACHED', limit: 3 });
    const retry = refused.errors![0]!.extensions!.retryAfterSeconds;
    expect(retry).toBeGreaterThan(24 * 3600 - 120);
    expect(retry).toBeLessThanOrEqual(24 * 3600);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBe(retry);

    // A change is not a new vote.
    const changed = await win(t, user, seeded[0]!, 1);
    expect(changed.errors).toBeUndefined();
    expect(changed.data.vote.winner.id).toBe(seeded[0]!.responses[1]);

    // Once the oldest vote is more than 24 h old, one more fits.
    await withClient(t.db.url, (c) =>
      c.query(`update votes set created_at = now() - interval '25 hours' where comparison_id = $1`, [seeded[1]!.id]),
    );
    expect((await win(t, user, seeded[3]!, 0)).errors).toBeUndefined();
  });

  it('a vote can be changed inside the window; after it VOTE_CHANGE_WINDOW_CLOSED says when it closed, and the vote stays', async () => {
    const user = await t.signUp('late');
    const c = await seedComparison(t, user.userId, [{ model: A }, { model: B }], { blind: false });
    const first = await win(t, user, c, 0);
    expect(first.errors).toBeUndefined();
    expect((await win(t, user, c, 1)).data.vote).toMatchObject({ id: first.data.vote.id, winner: { id: c.responses[1] } });

    // Cast 11 minutes ago (the window is 10).
    await withClient(t.db.url, (db) =>
      db.query(`update votes set created_at = now() - interval '11 minutes' where comparison_id = $1`, [c.id]),
    );
    const late = await win(t, user, c, 0);
    expect(late.data).toBeNull();
    const ext = late.errors?.[0]?.extensions;
    expect(ext?.code).toBe('VOTE_CHANGE_WINDOW_CLOSED');
    expect(Date.parse(ext!.closedAt) - Date.parse(ext!.votedAt)).toBe(600_000);
    const stored = await t.gql(`query($id: ID!) { comparison(id: $id) { vote { winner { id } } } }`, { id: c.id }, user.token);
    expect(stored.data.comparison.vote.winner.id).toBe(c.responses[1]);
  });

  it('no vote before every response settled: COMPARISON_NOT_SETTLED', async () => {
    const user = await t.signUp('early');
    const c = await seedComparison(t, user.userId, [{ model: A }, { model: B, status: 'STREAMING' }]);
    const res = await t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'TIE' } }, user.token);
    expect(res.errors?.[0]?.extensions?.code).toBe('COMPARISON_NOT_SETTLED');
  });
});

describe('implausible voting patterns', () => {
  let t: TestApp;
  let admin: User;
  const adminEmail = `arena-admin-${randomBytes(3).toString('hex')}@example.com`;

  beforeAll(async () => {
    t = await createTestApp({
      env: {
        ADMIN_EMAILS: adminEmail,
        VOTE_INTEGRITY_MIN_VOTES: '6',
        LEADERBOARD_BOOTSTRAP_SAMPLES: '0',
        LEADERBOARD_REFRESH_WAIT_MS: '60000',
      },
    });
    admin = await signUpAdmin(t, adminEmail);
  });
  afterAll(() => t.close());

  const board = async (token: string, scope = 'GLOBAL') => {
    const res = await t.gql(INFO, { scope, filter: { blindOnly: false } }, token);
    expect(res.errors).toBeUndefined();
    return res.data as { leaderboard: any[]; leaderboardInfo: { votesUsed: number; votesExcluded: number } };
  };

  it('always-first voter: excluded after enough votes (board counts move), listed for admins only, reversible', async () => {
    // Models of this test only (the other tests of the file vote too, in any order).
    const B = 'anthropic:clicked-b';
    const C = 'google:clicked-c';
    const honest = await t.signUp('honest');
    const clicker = await t.signUp('clicker');
    // Honest: 6 votes, the winner shown first half the time, between models only they vote on (a pair the
    // file's other tests rate far apart would make a 3–3 split look random against the consensus).
    const honestA = 'openai:honest-a';
    const honestC = 'google:honest-c';
    for (let i = 0; i < 6; i++)
      expect(
        (await win(t, honest, await seedComparison(t, honest.userId, [{ model: honestA }, { model: honestC }]), i % 2)).errors,
      ).toBeUndefined();
    // Clicker: always the first position; 5 votes are not enough evidence.
    const clicks: SeededComparison[] = [];
    for (let i = 0; i < 5; i++) {
      clicks.push(await seedComparison(t, clicker.userId, i % 2 ? [{ model: B }, { model: C }] : [{ model: C }, { model: B }]));
      expect((await win(t, clicker, clicks[i]!, 0)).errors).toBeUndefined();
    }
    expect((await t.gql(EXCLUSIONS, {}, admin.token)).data.voteExclusions.filter((x: any) => x.userId === clicker.userId)).toEqual([]);
    expect((await board(clicker.token, 'MINE')).leaderboardInfo).toEqual({ votesUsed: 5, votesExcluded: 0 });

    // The 6th first-position vote: excluded, every vote of theirs.
    clicks.push(await seedComparison(t, clicker.userId, [{ model: B }, { model: C }]));
    expect((await win(t, clicker, clicks[5]!, 0)).errors).toBeUndefined();
    const listed = (await t.gql(EXCLUSIONS, {}, admin.token)).data.voteExclusions.find((x: any) => x.userId === clicker.userId);
    expect(listed).toMatchObject({
      reason: 'FIRST_POSITION',
      votesConsidered: 6,
      votesExcluded: 6,
      active: true,
      reversedAt: null,
      email: expect.stringContaining('clicker'),
    });
    expect(listed.detail).toMatch(/6 of 6/);
    const mine = await board(clicker.token, 'MINE');
    expect(mine.leaderboardInfo).toEqual({ votesUsed: 0, votesExcluded: 6 });
    expect(mine.leaderboard).toEqual([]);
    const global = await board(honest.token);
    expect(global.leaderboardInfo.votesExcluded).toBeGreaterThanOrEqual(6);
    expect(global.leaderboard.find((r) => r.model === B)).toBeUndefined(); // only the clicker's votes had B

    // Admin only.
    const forbidden = await t.gql(EXCLUSIONS, {}, clicker.token);
    expect(forbidden.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect((await t.gql(REVERSE, { userId: clicker.userId }, clicker.token)).errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect((await t.gql(REVERSE, { userId: honest.userId }, admin.token)).errors?.[0]?.extensions?.code).toBe('NOT_FOUND');

    // Reversal: the votes count again, and the user is not excluded again.
    const reversed = await t.gql(REVERSE, { userId: clicker.userId }, admin.token);
    expect(reversed.errors).toBeUndefined();
    expect(reversed.data.reverseVoteExclusion).toMatchObject({ reason: 'FIRST_POSITION', votesExcluded: 0, active: false });
    expect(reversed.data.reverseVoteExclusion.reversedAt).not.toBeNull();
    expect((await board(clicker.token, 'MINE')).leaderboardInfo).toEqual({ votesUsed: 6, votesExcluded: 0 });
    const after = await board(honest.token);
    expect(after.leaderboardInfo.votesUsed - global.leaderboardInfo.votesUsed).toBe(6);
    expect(after.leaderboard.find((r) => r.model === B)).toMatchObject({ wins: 3, losses: 3 });
    expect((await t.gql(EXCLUSIONS, {}, admin.token)).data.voteExclusions.filter((x: any) => x.userId === clicker.userId)).toEqual([]);
    expect(
      (await t.gql(EXCLUSIONS, { all: true }, admin.token)).data.voteExclusions.find((x: any) => x.userId === clicker.userId),
    ).toMatchObject({ active: false });
    const c7 = await seedComparison(t, clicker.userId, [{ model: B }, { model: C }]);
    expect((await win(t, clicker, c7, 0)).errors).toBeUndefined();
    expect((await board(clicker.token, 'MINE')).leaderboardInfo).toEqual({ votesUsed: 7, votesExcluded: 0 });

    const { kept, recount } = await countsMatchRecount(t);
    expect(kept).toEqual(recount);
  });

  it('votes against a clear consensus at coin-flip rate or worse: excluded as RANDOM_AGAINST_CONSENSUS', async () => {
    const X = 'mistral:model-x';
    const Y = 'openai:model-y';
    const crowd = await t.signUp('crowd');
    // The consensus: X beats Y 12 times (positions alternate).
    for (let i = 0; i < 12; i++) {
      const c = await seedComparison(t, crowd.userId, i % 2 ? [{ model: X }, { model: Y }] : [{ model: Y }, { model: X }]);
      expect((await win(t, crowd, c, i % 2 ? 0 : 1)).errors).toBeUndefined();
    }
    await t.app.services.leaderboard.refits(); // the consensus board, refitted after the votes
    const contrarian = await t.signUp('contrarian');
    for (let i = 0; i < 6; i++) {
      const c = await seedComparison(t, contrarian.userId, i % 2 ? [{ model: X }, { model: Y }] : [{ model: Y }, { model: X }]);
      expect((await win(t, contrarian, c, i % 2 ? 1 : 0)).errors).toBeUndefined(); // always Y, never the same position twice in a row
      await t.app.services.leaderboard.refits();
    }
    const listed = (await t.gql(EXCLUSIONS, {}, admin.token)).data.voteExclusions.find((x: any) => x.userId === contrarian.userId);
    expect(listed).toMatchObject({ reason: 'RANDOM_AGAINST_CONSENSUS', votesConsidered: 6, votesExcluded: 6, active: true });
    expect(listed.detail).toMatch(/0 of 6/);
    // The crowd agrees with itself: never excluded.
    expect(
      (await t.gql(EXCLUSIONS, { all: true }, admin.token)).data.voteExclusions.find((x: any) => x.userId === crowd.userId),
    ).toBeUndefined();
    const xy = (await board(crowd.token)).leaderboard.find((r) => r.model === X);
    expect(xy).toMatchObject({ wins: 12, losses: 0 });
  });

  it('battle_counts stay equal to a recount from the votes through changes, exclusions and cascade deletes', async () => {
    const user = await t.signUp('recount');
    const c1 = await seedComparison(t, user.userId, [{ model: A }, { model: B }, { model: C }], { category: 'code' });
    const c2 = await seedComparison(t, user.userId, [{ model: A }, { model: B }], { blind: false });
    expect((await win(t, user, c1, 2)).errors).toBeUndefined();
    expect((await t.gql(VOTE, { input: { comparisonId: c2.id, outcome: 'TIE' } }, user.token)).errors).toBeUndefined();
    expect((await win(t, user, c2, 1)).errors).toBeUndefined(); // a change (c2 is not blind: a blind vote is final)
    let counts = await countsMatchRecount(t);
    expect(counts.kept).toEqual(counts.recount);
    await withClient(t.db.url, async (db) => {
      await db.query(`update votes set excluded_at = now() where comparison_id = $1`, [c2.id]);
      await db.query(`delete from comparison_results where id = $1`, [c1.id]); // its vote goes with it
    });
    counts = await countsMatchRecount(t);
    expect(counts.kept).toEqual(counts.recount);
    await withClient(t.db.url, (db) => db.query(`update votes set excluded_at = null where comparison_id = $1`, [c2.id]));
    counts = await countsMatchRecount(t);
    expect(counts.kept).toEqual(counts.recount);
    const tallies = await withClient(t.db.url, (db) =>
      db.query(`select sum(used_votes)::int as used, sum(excluded_votes)::int as excluded from vote_tallies`),
    );
    const votes = await withClient(t.db.url, (db) =>
      db.query(
        `select count(*) filter (where excluded_at is null and jsonb_array_length(battles->'cells') > 0)::int as used,
                count(*) filter (where excluded_at is not null)::int as excluded from votes`,
      ),
    );
    expect(tallies.rows[0]).toEqual(votes.rows[0]);
  });
});
