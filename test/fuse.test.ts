/**
 * fuseComparison through GraphQL on real PostgreSQL and Redis, every provider
 * faked: the fusing model gets the prompt and every settled answer (labels
 * only while the comparison is blind and unrevealed), its answer streams on
 * comparisonEvents and is stored as a FUSED response naming its sources;
 * fusing reveals nothing; a FUSED response is no battle (votes, leaderboard,
 * judge); bad input writes nothing.
 */
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { subscribe } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';

const MODEL_A = 'openai:gpt-4o-mini';
const MODEL_B = 'anthropic:claude-haiku-4-5';
const FUSER = 'mistral:mistral-medium-latest';
const NO_KEY_MODEL = 'google:gemini-2.5-flash';
const IDENTITY = ['gpt-4o', 'claude', 'gemini', 'mistral', 'openai', 'OPENAI', 'anthropic', 'ANTHROPIC', 'MISTRAL'];

const RESPONSE = `id label kind model provider status content costUsd sources { id label model }`;
const RUN = `mutation($input: RunComparisonInput!) { runComparison(input: $input) { id blind revealed conversation { id }
  responses { ${RESPONSE} } } }`;
const EXPORT = `query($id: ID!, $format: ExportFormat) { exportConversation(id: $id, format: $format) }`;
const FUSE = `mutation($id: ID!, $model: String!, $instruction: String) {
  fuseComparison(comparisonId: $id, model: $model, instruction: $instruction) { ${RESPONSE} } }`;
const GET = `query($id: ID!) { comparison(id: $id) { id blind revealed responses { ${RESPONSE} } } }`;
const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status delta content } }`;
const VOTE = `mutation($input: VoteInput!) { vote(input: $input) { outcome } }`;
const SAVE_KEY = `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`;
const LEADERBOARD = `query { leaderboard(scope: MINE, filter: { blindOnly: false }) { model battles } }`;
const SHARE = `mutation($input: ShareLinkInput!) { createShareLink(input: $input) { token } }`;
const SHARED = `query($token: String!) { shared(token: $token) { comparisons { revealed responses { label model kind content } } } }`;

const codeOf = (res: { errors?: Array<{ extensions?: Record<string, any> }> }) => res.errors?.[0]?.extensions?.code;

function expectNoIdentity(raw: string): void {
  for (const word of IDENTITY) expect({ word, leaked: raw.includes(word) }).toEqual({ word, leaked: false });
}

describeRedis('fuseComparison', () => {
  let fake: FakeLlmServer;
  let t: TestApp;

  beforeAll(async () => {
    fake = await FakeLlmServer.start();
    fake.setBehavior('gpt-4o-mini', { text: 'Falling leaves drift down, amber light on quiet paths, the year exhales slow.' });
    fake.setBehavior('claude-haiku-4-5', { text: 'Red leaves on the ground; cold wind carries them away; branches wait for snow.' });
    fake.setBehavior('mistral-medium-latest', { text: 'Amber leaves drift down; cold wind carries them away; the year exhales slow.' });
    t = await createTestApp({
      env: {
        CACHE_PREFIX: `t-fuse-${Date.now().toString(36)}`,
        REDIS_URL: redisUrlForTests(),
        OPENAI_BASE_URL: fake.baseUrls.openai,
        ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
        MISTRAL_BASE_URL: fake.baseUrls.mistral,
        GOOGLE_BASE_URL: fake.baseUrls.google,
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });

  async function userWithKeys(prefix: string) {
    const u = await t.signUp(prefix);
    for (const input of [
      { provider: 'OPENAI', apiKey: 'sk-openai-fuse-0001' },
      { provider: 'ANTHROPIC', apiKey: 'sk-ant-fuse-0002' },
      { provider: 'MISTRAL', apiKey: 'sk-mistral-fuse-0003' },
    ]) {
      expect((await t.gql(SAVE_KEY, { input }, u.token)).errors).toBeUndefined();
    }
    return u;
  }

  /** Follows comparisonEvents to the end; returns the events. */
  async function follow(id: string, token: string): Promise<any[]> {
    const sub = await subscribe(t.url, EVENTS, { id }, token);
    const list: any[] = [];
    for await (const message of sub.events) {
      expect(message.errors).toBeUndefined();
      list.push(message.data!.comparisonEvents);
    }
    expect(sub.completed).toBe(true);
    return list;
  }

  const lastFuserRequest = () => [...fake.requests].reverse().find((r) => r.kind === 'chat' && r.model === 'mistral-medium-latest')!;

  it('merges every answer of a revealed comparison, streams it, stores it FUSED with its sources; it is no battle', async () => {
    const u = await userWithKeys('open');
    const run = await t.gql(RUN, { input: { prompt: 'Write a haiku about autumn leaves', models: [MODEL_A, MODEL_B] } }, u.token);
    expect(run.errors).toBeUndefined();
    const comparison = run.data.runComparison;
    const fuse = await t.gql(FUSE, { id: comparison.id, model: FUSER, instruction: 'Keep it to three lines' }, u.token);
    expect(fuse.errors).toBeUndefined();
    const fused = fuse.data.fuseComparison;
    expect(fused).toMatchObject({ kind: 'FUSED', label: 'C', model: FUSER });
    expect(fused.sources.map((s: any) => s.id)).toEqual(comparison.responses.map((r: any) => r.id));

    const events = await follow(comparison.id, u.token);
    const final = events.filter((e) => e.responseId === fused.id).at(-1);
    expect(final).toMatchObject({ status: 'COMPLETED', content: expect.stringContaining('Amber leaves') });

    // What the fusing model was sent: the prompt, both answers under their labels and (revealed) model names, the instruction.
    const sent = lastFuserRequest()
      .messages.map((m) => m.text)
      .join('\n');
    expect(sent).toContain('Write a haiku about autumn leaves');
    expect(sent).toContain('Falling leaves drift down');
    expect(sent).toContain('Red leaves on the ground');
    expect(sent).toContain(`Answer A (${comparison.responses[0].model})`);
    expect(sent).toContain('Keep it to three lines');

    const read = await t.gql(GET, { id: comparison.id }, u.token);
    expect(read.data.comparison.responses.map((r: any) => [r.label, r.kind])).toEqual([
      ['A', 'MODEL'],
      ['B', 'MODEL'],
      ['C', 'FUSED'],
    ]);
    const stored = read.data.comparison.responses[2];
    expect(stored).toMatchObject({ status: 'COMPLETED', model: FUSER, provider: 'MISTRAL' });
    expect(stored.sources.map((s: any) => s.label)).toEqual(['A', 'B']);

    // A FUSED response cannot win a vote, and the vote's battles hold only the models' own answers.
    const badVote = await t.gql(VOTE, { input: { comparisonId: comparison.id, outcome: 'WINNER', winnerResponseId: fused.id } }, u.token);
    expect(codeOf(badVote)).toBe('BAD_USER_INPUT');
    const vote = await t.gql(
      VOTE,
      { input: { comparisonId: comparison.id, outcome: 'WINNER', winnerResponseId: comparison.responses[0].id } },
      u.token,
    );
    expect(vote.errors).toBeUndefined();
    const battles = await withClient(t.db.url, (c) => c.query(`select battles from votes where comparison_id = $1`, [comparison.id]));
    expect(JSON.stringify(battles.rows[0].battles)).not.toContain('mistral');
    expect(battles.rows[0].battles.cells).toHaveLength(1);
    const board = await t.gql(LEADERBOARD, {}, u.token);
    expect(board.errors).toBeUndefined();
    expect(board.data.leaderboard.map((r: any) => r.model).sort()).toEqual([MODEL_B, MODEL_A].sort());
    expect(board.data.leaderboard.every((r: any) => r.battles === 1)).toBe(true);
  });

  it('fusing a blind comparison sends labels only and reveals nothing, on every path', async () => {
    const u = await userWithKeys('blind');
    const run = await t.gql(
      RUN,
      { input: { prompt: 'Write a haiku about autumn leaves', models: [MODEL_A, MODEL_B], blind: true } },
      u.token,
    );
    const comparison = run.data.runComparison;
    const fuse = await t.gql(FUSE, { id: comparison.id, model: FUSER }, u.token);
    expect(fuse.errors).toBeUndefined();
    expectNoIdentity(fuse.raw);
    expect(fuse.data.fuseComparison).toMatchObject({ kind: 'FUSED', model: null, provider: null, costUsd: null });
    const events = await follow(comparison.id, u.token);
    expectNoIdentity(JSON.stringify(events));

    const sent = lastFuserRequest()
      .messages.map((m) => m.text)
      .join('\n');
    expect(sent).toContain('Answer A:');
    expect(sent).toContain('Answer B:');
    for (const word of ['gpt-4o', 'claude', 'openai', 'anthropic']) expect([word, sent.includes(word)]).toEqual([word, false]);

    const read = await t.gql(GET, { id: comparison.id }, u.token);
    expect(read.data.comparison).toMatchObject({ blind: true, revealed: false });
    expectNoIdentity(read.raw);
    // The owner's export: the fused answer as blind as the others, naming what it merged by label.
    const json = await t.gql(EXPORT, { id: comparison.conversation.id, format: 'JSON' }, u.token);
    const markdown = await t.gql(EXPORT, { id: comparison.conversation.id, format: 'MARKDOWN' }, u.token);
    for (const res of [json, markdown]) expectNoIdentity(res.raw);
    const exported = JSON.parse(json.data.exportConversation).comparisons[0];
    expect(exported.responses.map((r: any) => [r.label, r.kind, r.model, r.sources])).toEqual([
      ['A', 'MODEL', null, []],
      ['B', 'MODEL', null, []],
      ['C', 'FUSED', null, ['A', 'B']],
    ]);
    expect(markdown.data.exportConversation).toContain('fused from A, B');
    const votes = await withClient(t.db.url, (c) =>
      c.query(`select count(*)::int as n from votes where comparison_id = $1`, [comparison.id]),
    );
    expect(votes.rows[0].n).toBe(0);

    // Shared after the fuse: the fused answer is in the snapshot, as blind as the others.
    const share = await t.gql(SHARE, { input: { comparisonId: comparison.id } }, u.token);
    const shared = await t.gql(SHARED, { token: share.data.createShareLink.token });
    expectNoIdentity(shared.raw);
    expect(shared.data.shared.comparisons[0].responses.map((r: any) => [r.label, r.kind, r.model])).toEqual([
      ['A', 'MODEL', null],
      ['B', 'MODEL', null],
      ['C', 'FUSED', null],
    ]);
  });

  it('two fuses at once get two labels; the rate limit and the budget apply, and a refused fuse writes nothing', async () => {
    const u = await userWithKeys('twice');
    const run = await t.gql(RUN, { input: { prompt: 'Write a haiku about the sea', models: [MODEL_A, MODEL_B] } }, u.token);
    const id = run.data.runComparison.id;
    const [x, y] = await Promise.all([t.gql(FUSE, { id, model: FUSER }, u.token), t.gql(FUSE, { id, model: MODEL_A }, u.token)]);
    expect([x.errors, y.errors]).toEqual([undefined, undefined]);
    expect([x.data.fuseComparison.label, y.data.fuseComparison.label].sort()).toEqual(['C', 'D']);
    await follow(id, u.token);

    // Provider calls limited to 2 a minute: the comparison spends both, the fuse is refused before anything is written.
    const limited = await createTestApp({
      db: t.db,
      env: {
        CACHE_PREFIX: `t-fuse-rl-${Date.now().toString(36)}`,
        REDIS_URL: redisUrlForTests(),
        RATE_LIMIT_PROVIDER_CALLS: '2',
        OPENAI_BASE_URL: fake.baseUrls.openai,
        ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
        MISTRAL_BASE_URL: fake.baseUrls.mistral,
      },
    });
    try {
      const again = await limited.gql(RUN, { input: { prompt: 'Write a haiku about hills', models: [MODEL_A, MODEL_B] } }, u.token);
      expect(again.errors).toBeUndefined();
      const refused = await limited.gql(FUSE, { id: again.data.runComparison.id, model: FUSER }, u.token);
      expect(codeOf(refused)).toBe('RATE_LIMITED');
      const rows = await withClient(t.db.url, (c) =>
        c.query(`select count(*)::int as n from comparison_responses where comparison_id = $1`, [again.data.runComparison.id]),
      );
      expect(rows.rows[0].n).toBe(2);
    } finally {
      await limited.close();
    }

    // A budget the fuse's worst case does not fit: BUDGET_EXCEEDED, nothing written.
    await withClient(t.db.url, (c) => c.query(`update users set daily_budget_usd = 0.0000001 where id = $1`, [u.userId]));
    const before = await withClient(t.db.url, (c) =>
      c.query(`select count(*)::int as n from comparison_responses where comparison_id = $1`, [id]),
    );
    expect(codeOf(await t.gql(FUSE, { id, model: FUSER }, u.token))).toBe('BUDGET_EXCEEDED');
    const after = await withClient(t.db.url, (c) =>
      c.query(`select count(*)::int as n from comparison_responses where comparison_id = $1`, [id]),
    );
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it('refuses fewer than two settled answers, more than 256 KB, bad models and foreign comparisons, writing nothing', async () => {
    const u = await userWithKeys('bad');
    const other = await t.signUp('other');
    const responsesOf = async (id: string) =>
      (await withClient(t.db.url, (c) => c.query(`select count(*)::int as n from comparison_responses where comparison_id = $1`, [id])))
        .rows[0].n;

    // One COMPLETED answer (the other model has no key: FAILED).
    const one = await t.gql(RUN, { input: { prompt: 'Write a haiku about rain', models: [MODEL_A, NO_KEY_MODEL] } }, u.token);
    const oneId = one.data.runComparison.id;
    const calls = fake.count('mistral', 'chat');
    expect(codeOf(await t.gql(FUSE, { id: oneId, model: FUSER }, u.token))).toBe('BAD_USER_INPUT');
    expect(await responsesOf(oneId)).toBe(2);

    const two = await t.gql(RUN, { input: { prompt: 'Write a haiku about snow', models: [MODEL_A, MODEL_B] } }, u.token);
    const twoId = two.data.runComparison.id;
    expect(codeOf(await t.gql(FUSE, { id: twoId, model: 'nonsense' }, u.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await t.gql(FUSE, { id: twoId, model: FUSER, instruction: '   ' }, u.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await t.gql(FUSE, { id: twoId, model: FUSER }, other.token))).toBe('NOT_FOUND');
    expect(codeOf(await t.gql(FUSE, { id: 'not-an-id', model: FUSER }, u.token))).toBe('NOT_FOUND');
    expect(codeOf(await t.gql(FUSE, { id: twoId, model: FUSER }))).toBe('UNAUTHENTICATED');

    // Answers not settled yet (one still being written): fewer than two settled answers, refused; once settled, it fuses.
    const pending = await t.gql(
      `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id responses { status } } }`,
      { input: { prompt: 'Write a haiku about mist', models: [MODEL_A, 'openai:gpt-4o-mini-slow-1500'] } },
      u.token,
    );
    expect(pending.errors).toBeUndefined();
    const pendingId = pending.data.startComparison.id;
    const early = await t.gql(FUSE, { id: pendingId, model: FUSER }, u.token);
    expect(codeOf(early)).toBe('BAD_USER_INPUT');
    expect(early.errors![0]!.message).toMatch(/at least two COMPLETED answers/);
    expect(await responsesOf(pendingId)).toBe(2);
    expect(fake.count('mistral', 'chat')).toBe(calls);
    await follow(pendingId, u.token);
    const settled = await t.gql(FUSE, { id: pendingId, model: FUSER }, u.token);
    expect(settled.errors).toBeUndefined();
    await follow(pendingId, u.token);
    expect(fake.count('mistral', 'chat')).toBe(calls + 1);

    // The input bound is 256 KB: just under it fuses, just over it is refused before anything is written or sent.
    const under = Math.floor((256 * 1024 - 1024) / 2);
    await withClient(t.db.url, (c) =>
      c.query(`update comparison_responses set content = repeat('x', $2) where comparison_id = $1`, [twoId, under]),
    );
    const fits = await t.gql(FUSE, { id: twoId, model: FUSER }, u.token);
    expect(fits.errors).toBeUndefined();
    await follow(twoId, u.token);
    expect(await responsesOf(twoId)).toBe(3);
    expect(fake.count('mistral', 'chat')).toBe(calls + 2);
    await withClient(t.db.url, (c) =>
      c.query(`update comparison_responses set content = repeat('x', $2) where comparison_id = $1 and kind = 'MODEL'`, [
        twoId,
        128 * 1024 + 1,
      ]),
    );
    const over = await t.gql(FUSE, { id: twoId, model: FUSER }, u.token);
    expect(codeOf(over)).toBe('BAD_USER_INPUT');
    expect(over.errors![0]!.message).toMatch(/at most 262144 can be fused/);
    expect(await responsesOf(twoId)).toBe(3);
    // The fusing model was never called for a refused fuse.
    expect(fake.count('mistral', 'chat')).toBe(calls + 2);
  });
});
