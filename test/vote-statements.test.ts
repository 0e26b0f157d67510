/**
 * What a vote costs in SQL (issue 20): one read of the comparison and its responses' states, then one transaction of two
 * statements (the per-user advisory lock, then ONE statement that finds the existing vote, counts the daily cap and
 * inserts or changes the vote), then one statement checking the voter's pattern; a blind comparison's first vote also
 * marks its keys used. It was 11 (existing vote, cap count and insert apart; two integrity reads; the key reveal for
 * every vote; the comparison and its responses apart). Every rule stays: test/vote-integrity.test.ts,
 * test/board-integrity.test.ts, test/blind-arena.test.ts.
 */
import { seedComparison } from './helpers/arena';
import { createTestApp, type TestApp } from './helpers/test-app';

const VOTE = `mutation($input: VoteInput!) { vote(input: $input) { id outcome } }`;

/** A statement of the vote path, named; anything else as its first words. */
function kind(sql: string): string {
  if (/^select r\.id, r\.blind,/.test(sql)) return 'comparison and responses';
  if (sql === 'begin' || sql === 'commit') return sql;
  if (/^select pg_advisory_xact_lock/.test(sql)) return 'lock';
  if (/^with existing as/.test(sql)) return 'check and write';
  if (/^select exists \(select 1 from vote_exclusions/.test(sql)) return 'integrity';
  if (/^update api_keys/.test(sql)) return 'key reveal';
  return sql.slice(0, 60);
}

const VOTE_PATH = ['comparison and responses', 'begin', 'lock', 'check and write', 'commit', 'integrity'];

describe('vote statements', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ env: { VOTE_DAILY_CAP: '5', VOTE_CHANGE_WINDOW_SECONDS: '600' } });
  });
  afterAll(() => t.close());

  /** The vote's statements: the resolver's last step (the boards' background refit) and the answer's fields come after. */
  async function vote(token: string, input: object) {
    const { result, statements } = await t.countStatements(() => t.gql(VOTE, { input }, token));
    expect(result.errors).toBeUndefined();
    const named = statements.map(kind);
    const end = named.lastIndexOf('integrity') + (named.includes('key reveal') ? 2 : 1);
    // Nothing of the vote after it (no second write, no key reveal of an open comparison).
    expect(statements.slice(end).filter((sql) => /votes|vote_exclusions|api_keys/.test(sql))).toEqual([]);
    return { result, path: named.slice(0, end) };
  }

  it('a new vote and a change: the lock and one statement in the transaction, one integrity read after', async () => {
    const user = await t.signUp('lean-voter');
    const open = await seedComparison(t, user.userId, [{ model: 'openai:model-a' }, { model: 'anthropic:model-b' }], { blind: false });
    const cast = await vote(user.token, { comparisonId: open.id, outcome: 'WINNER', winnerResponseId: open.responses[1] });
    expect(cast.path).toEqual(VOTE_PATH);
    const changed = await vote(user.token, { comparisonId: open.id, outcome: 'TIE' });
    expect(changed.path).toEqual(VOTE_PATH);
    expect(changed.result.data.vote).toEqual({ id: cast.result.data.vote.id, outcome: 'TIE' });
  });

  it("a blind comparison's first vote also marks its keys used; its retry answers the stored vote", async () => {
    const user = await t.signUp('lean-blind-voter');
    const blind = await seedComparison(t, user.userId, [{ model: 'openai:model-a' }, { model: 'anthropic:model-b' }], { blind: true });
    const input = { comparisonId: blind.id, outcome: 'WINNER', winnerResponseId: blind.responses[0] };
    const cast = await vote(user.token, input);
    expect(cast.path).toEqual([...VOTE_PATH, 'key reveal']);
    const again = await vote(user.token, input);
    expect(again.result.data.vote).toEqual(cast.result.data.vote);
  });
});
