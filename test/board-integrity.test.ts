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
import { createTestApp, type TestApp } from './helpers/test-app';

interface User {
  token: string;
  userId: string;
}

const VOTE = `mutation($input: VoteInput!) { vote(input: $input) { id outcome createdAt winner { id } } }`;
const BOARD = `query($scope: LeaderboardScope, $filter: LeaderboardFilter) { leaderboard(scope: $scope, filter: $filter) { model battles wins losses ties } }`;
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
    await c.query(`insert into comparison_results (id, created_at, owner_id, prompt, blind) values ($1, now(), $2, 'prompt', $3)`, [id, ownerId, blind]);
    for (const [i, r] of responses.entries()) {
      await c.query(
        `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, key_label, status, content, latency_ms, cost_usd)
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
  return Object.fromEntries((res.data.leaderboard as Array<{ model: string }>).filter((r) => r.model.endsWith(`@${label}`)).map((r) => [r.model, r]));
}

describe('a board no one can game', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  describe('case 6: a blind vote is final once it reveals the comparison', () => {
    it('changing a vote on a blind comparison answers VOTE_CHANGE_WINDOW_CLOSED (closed at the reveal) and the stored vote stays', async () => {
      const u = await t.signUp('blind-final');
      const label = uniqueLabel();
      const c = await seedComparison(t, u.userId, [{ model: 'openai:x', label }, { model: 'anthropic:y', label }], true);
      const tie = await t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'TIE' } }, u.token);
      expect(tie.errors).toBeUndefined();

      const change = await t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'WINNER', winnerResponseId: c.responses[0] } }, u.token);
      expect(codeOf(change)).toBe('VOTE_CHANGE_WINDOW_CLOSED');
      expect(change.errors![0]!.extensions).toMatchObject({ votedAt: tie.data.vote.createdAt, closedAt: tie.data.vote.createdAt, revealed: true });
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
      const c = await seedComparison(t, u.userId, [{ model: 'openai:x', label }, { model: 'anthropic:y', label }], false);
      expect((await t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'TIE' } }, u.token)).errors).toBeUndefined();
      const change = await t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'WINNER', winnerResponseId: c.responses[0] } }, u.token);
      expect(change.errors).toBeUndefined();
      expect(change.data.vote.outcome).toBe('WINNER');
    });

    it('the blind-only board counts only votes cast while blind: a vote changed after the reveal (any path) leaves it', async () => {
      const u = await t.signUp('blind-board');
      const label = uniqueLabel();
      const c = await seedComparison(t, u.userId, [{ model: 'openai:x', label }, { model: 'anthropic:y', label }], true);
      expect((await t.gql(VOTE, { input: { comparisonId: c.id, outcome: 'TIE' } }, u.token)).errors).toBeUndefined();
      expect(await board(t, u, 'GLOBAL', true, label)).toMatchObject({ [`openai:x@${label}`]: { battles: 1, ties: 1 } });

      // A change that bypasses the service (an operator's UPDATE, a future code path): no longer cast blind.
      await withClient(t.db.url, (db) => db.query(`update votes set outcome = 'WINNER', winner_id = $1 where comparison_id = $2`, [c.responses[0], c.id]));
      await t.app.services.leaderboard.invalidateGlobal();
      expect(await board(t, u, 'GLOBAL', true, label)).toEqual({});
      expect(await board(t, u, 'MINE', true, label)).toEqual({});
      // Still a vote: it counts where non-blind votes count.
      expect(await board(t, u, 'GLOBAL', false, label)).toMatchObject({ [`openai:x@${label}`]: { battles: 1, wins: 1 } });
      expect(await board(t, u, 'MINE', false, label)).toMatchObject({ [`openai:x@${label}`]: { battles: 1, wins: 1 } });
    });
  });
});
