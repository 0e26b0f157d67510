/**
 * Blind comparisons and arena battles through GraphQL, on two instances
 * sharing PostgreSQL and Redis, with every provider faked: while a blind
 * comparison has no vote, no read path shows which model gave which answer
 * (queries, the list's look-ahead, conversations, search, export,
 * comparisonEvents, retries, the read cache on either instance); the vote
 * reveals on every instance. Non-blind comparisons are unchanged.
 */
import { randomUUID } from 'node:crypto';
import { ArenaService } from '../src/modules/comparison/arena.service';
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { subscribe } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';

const MODEL_A = 'openai:gpt-4o-mini';
const MODEL_B = 'anthropic:claude-haiku-4-5';
const NO_KEY_MODEL = 'google:gemini-2.5-flash';
/** Any of these in a response while unrevealed is a leak (the prompts and answers avoid them). */
const IDENTITY = ['gpt-4o', 'claude', 'gemini', 'openai', 'OPENAI', 'anthropic', 'ANTHROPIC', 'google', 'GOOGLE', '"default"', 'API key'];

const RESPONSE = `id label provider model keyLabel status content error latencyMs timeToFirstTokenMs promptTokens completionTokens costUsd`;
const COMPARISON = `id blind revealed category prompt responses { ${RESPONSE} } vote { outcome winner { label model } }`;
const RUN = `mutation($input: RunComparisonInput!) { runComparison(input: $input) { ${COMPARISON} conversation { id } } }`;
const START = `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id conversation { id } } }`;
const SEND = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id model } }`;
const ARENA = `mutation($input: ArenaBattleInput!) { startArenaBattle(input: $input) { ${COMPARISON} } }`;
const GET = `query($id: ID!) { comparison(id: $id) { ${COMPARISON} } }`;
/** Look-ahead: the list embeds the responses in its own statement. */
const LIST = `query { comparisons(first: 50) { nodes { ${COMPARISON} } } }`;
/** The same list with the look-ahead off (a directive makes it unsure): the loaders' path. */
const LIST_LOADERS =
  `query($yes: Boolean = true) { comparisons(first: 50) { nodes { id blind revealed responses ` +
  `@include(if: $yes) { ${RESPONSE} } } } }`;
/** The benchmark's list: answered by a compiled read (SQL-built JSON) when nothing in it is hidden. */
const COMPILED =
  `query { comparisons(first: 10) { nodes { id responses { id provider model keyLabel content error latencyMs ` +
  `promptTokens completionTokens } } } }`;
const NO_CACHE = { 'cache-control': 'no-cache' };
const CONVERSATION = `query($id: ID!) { conversation(id: $id) { comparisons { ${COMPARISON} } } }`;
const SEARCH = `query($q: String!) { search(query: $q) { nodes { snippet comparison { ${COMPARISON} } } } }`;
const EXPORT = `query($id: ID!, $format: ExportFormat) { exportConversation(id: $id, format: $format) }`;
const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { comparisonId responseId status delta content error } }`;
const VOTE = `mutation($input: VoteInput!) { vote(input: $input) { outcome winner { label model provider } } }`;
const RETRY = `mutation($id: ID!) { retryComparisonResponse(id: $id) { ${RESPONSE} } }`;
const KEYS = `query { me { apiKeys { provider lastUsedAt } } }`;
const SAVE_KEY = `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`;
const LEADERBOARD = `query($filter: LeaderboardFilter) { leaderboard(scope: MINE, filter: $filter) { model battles } }`;

const codeOf = (res: { errors?: Array<{ extensions?: Record<string, any> }> }) => res.errors?.[0]?.extensions?.code;

function expectNoIdentity(raw: string): void {
  for (const word of IDENTITY) expect({ word, leaked: raw.includes(word) }).toEqual({ word, leaked: false });
}

function expectHidden(response: any): void {
  expect(response).toMatchObject({
    provider: null,
    model: null,
    keyLabel: null,
    costUsd: null,
    promptTokens: null,
    completionTokens: null,
  });
}

describeRedis('blind comparisons and arena battles (two instances)', () => {
  let fake: FakeLlmServer;
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    fake = await FakeLlmServer.start();
    // Answers that say nothing about who wrote them (the fake's default reply names the model).
    fake.setBehavior('gpt-4o-mini', { text: 'Falling leaves drift down, amber light on quiet paths, the year exhales slow.' });
    fake.setBehavior('claude-haiku-4-5', { text: 'Red leaves on the ground; cold wind carries them away; branches wait for snow.' });
    const prefix = `t-blind-${Date.now().toString(36)}`;
    const env = {
      CACHE_PREFIX: prefix,
      REDIS_URL: redisUrlForTests(),
      OPENAI_BASE_URL: fake.baseUrls.openai,
      ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
      GOOGLE_BASE_URL: fake.baseUrls.google,
      MISTRAL_BASE_URL: fake.baseUrls.mistral,
      ARENA_MODELS: `${MODEL_A},${MODEL_B},${NO_KEY_MODEL}`,
    };
    a = await createTestApp({ env });
    b = await createTestApp({ db: a.db, env });
  });
  afterAll(async () => {
    await b?.close(); // shares a's database: close it first, a drops the database
    await a?.close();
    await fake?.close();
  });

  /** A user holding OpenAI and Anthropic keys (no Google key). */
  async function userWithKeys(prefix: string) {
    const u = await a.signUp(prefix);
    for (const input of [
      { provider: 'OPENAI', apiKey: 'sk-openai-blind-0001' },
      { provider: 'ANTHROPIC', apiKey: 'sk-ant-blind-0002' },
    ]) {
      const res = await a.gql(SAVE_KEY, { input }, u.token);
      expect(res.errors).toBeUndefined();
    }
    return u;
  }

  /** Follows comparisonEvents to the end (the stream completes once every response has settled). */
  async function events(app: TestApp, id: string, token: string): Promise<{ raw: string; events: any[] }> {
    const sub = await subscribe(app.url, EVENTS, { id }, token);
    const list: any[] = [];
    for await (const message of sub.events) {
      expect(message.errors).toBeUndefined();
      list.push(message.data!.comparisonEvents);
    }
    expect(sub.completed).toBe(true);
    return { raw: JSON.stringify(list), events: list };
  }

  it('hides which model answered on every read path and both instances until the vote, which reveals everywhere', async () => {
    const u = await userWithKeys('blind');
    const prompt = 'Write a haiku about autumn leaves';
    const run = await a.gql(RUN, { input: { prompt, models: [MODEL_A, MODEL_B], blind: true } }, u.token);
    expect(run.errors).toBeUndefined();
    expectNoIdentity(run.raw);
    const comparison = run.data.runComparison;
    const conversationId = comparison.conversation.id;
    expect(comparison).toMatchObject({ blind: true, revealed: false, category: 'creative_writing', vote: null });
    expect(comparison.responses.map((r: any) => r.label)).toEqual(['A', 'B']);
    for (const r of comparison.responses) {
      expectHidden(r);
      expect(r).toMatchObject({ status: 'COMPLETED', error: null });
      expect(r.content.length).toBeGreaterThan(0);
      expect(r.latencyMs).not.toBeNull(); // timing is shown
    }
    const shown = comparison.responses.map((r: any) => ({ id: r.id, label: r.label }));

    /** The comparison as each read path shows it (by id, list, list through loaders, its conversation, search). */
    const comparisonViews = (...[get, list, listLoaders, conversation, search]: any[]) => [
      get.data.comparison,
      list.data.comparisons.nodes[0],
      listLoaders.data.comparisons.nodes[0],
      conversation.data.conversation.comparisons[0],
      search.data.search.nodes[0].comparison,
    ];
    const readAll = async (app: TestApp) => {
      const results = [
        await app.gql(GET, { id: comparison.id }, u.token),
        await app.gql(LIST, {}, u.token),
        await app.gql(LIST_LOADERS, {}, u.token),
        await app.gql(CONVERSATION, { id: conversationId }, u.token),
        await app.gql(SEARCH, { q: 'haiku autumn' }, u.token),
        await app.gql(EXPORT, { id: conversationId, format: 'JSON' }, u.token),
        await app.gql(EXPORT, { id: conversationId, format: 'MARKDOWN' }, u.token),
      ];
      for (const res of results) expect(res.errors).toBeUndefined();
      return results;
    };

    for (const app of [a, b]) {
      const [get, list, listLoaders, conversation, search, json, markdown] = await readAll(app);
      for (const res of [get!, list!, listLoaders!, conversation!, search!, json!, markdown!]) expectNoIdentity(res.raw);
      const views = comparisonViews(get!, list!, listLoaders!, conversation!, search!);
      for (const view of views) {
        expect(view).toMatchObject({ id: comparison.id, blind: true, revealed: false });
        // The same labels for the same responses on every path: shuffled once and stored.
        expect(view.responses.map((r: any) => ({ id: r.id, label: r.label }))).toEqual(shown);
        for (const r of view.responses) expectHidden(r);
      }
      const exported = JSON.parse(json!.data.exportConversation).comparisons[0];
      expect(exported).toMatchObject({ blind: true, revealed: false, category: 'creative_writing' });
      expect(exported.responses.map((r: any) => [r.label, r.model, r.provider, r.costUsd])).toEqual([
        ['A', null, null, null],
        ['B', null, null, null],
      ]);
      expect(markdown!.data.exportConversation).toContain('Blind: models hidden until you vote');
      // A cached read (the second one) serves the same hidden answer without SQL.
      const cached = await app.countStatements(() => app.gql(GET, { id: comparison.id }, u.token));
      expect(cached.result.headers.get('x-cache')).toBe('HIT');
      expect(cached.count).toBe(0);
      expect(cached.result.raw).toBe(get!.raw);
    }
    expectNoIdentity((await events(a, comparison.id, u.token)).raw);
    // The compiled read (second sight of the document, lookup skipped) finds a hidden value and leaves it to the ordinary path.
    const compiledCount = async (outcome: string) =>
      (await a.app.metrics.compiledReads.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
    for (let i = 0; i < 2; i++) {
      const fallbacks = await compiledCount('fallback');
      const res = await a.gql(COMPILED, {}, u.token, NO_CACHE);
      expect(res.errors).toBeUndefined();
      expectNoIdentity(res.raw);
      for (const r of res.data.comparisons.nodes[0].responses) {
        expect(r).toMatchObject({ provider: null, model: null, keyLabel: null, promptTokens: null, completionTokens: null, error: null });
      }
      if (i === 1) expect(await compiledCount('fallback')).toBe(fallbacks + 1);
    }
    // Which keys were used would tell which providers are in it: they are marked used only at the reveal.
    const keysBefore = await b.gql(KEYS, {}, u.token);
    expect(keysBefore.data.me.apiKeys.map((k: any) => k.lastUsedAt)).toEqual([null, null]);

    // The vote (on B) reveals, on both instances, cached reads included.
    const winner = shown[0]!;
    const vote = await b.gql(VOTE, { input: { comparisonId: comparison.id, outcome: 'WINNER', winnerResponseId: winner.id } }, u.token);
    expect(vote.errors).toBeUndefined();
    expect(vote.data.vote.winner.label).toBe('A');
    expect([MODEL_A, MODEL_B]).toContain(vote.data.vote.winner.model);

    for (const app of [a, b]) {
      const [get, list, listLoaders, conversation, search, json] = await readAll(app);
      const views = comparisonViews(get!, list!, listLoaders!, conversation!, search!);
      for (const view of views) {
        expect(view).toMatchObject({ blind: true, revealed: true });
        expect(view.responses.map((r: any) => ({ id: r.id, label: r.label }))).toEqual(shown);
        expect(view.responses.map((r: any) => r.model).sort()).toEqual([MODEL_A, MODEL_B].sort());
      }
      for (const r of get!.data.comparison.responses) {
        expect(r.keyLabel).toBe('default');
        expect(r.provider).toBe(r.model.startsWith('openai:') ? 'OPENAI' : 'ANTHROPIC');
        expect(r.promptTokens).not.toBeNull();
        expect(r.costUsd).toBeGreaterThan(0); // both are catalog models with list prices
      }
      expect(get!.data.comparison.vote.winner).toEqual({ label: 'A', model: vote.data.vote.winner.model });
      const exported = JSON.parse(json!.data.exportConversation).comparisons[0];
      expect(exported.revealed).toBe(true);
      expect(exported.responses.map((r: any) => r.model).sort()).toEqual([MODEL_A, MODEL_B].sort());
    }

    const served = await compiledCount('served');
    const compiledAfter = await a.gql(COMPILED, {}, u.token, NO_CACHE);
    expect(await compiledCount('served')).toBe(served + 1);
    expect(compiledAfter.data.comparisons.nodes[0].responses.map((r: any) => r.model).sort()).toEqual([MODEL_A, MODEL_B].sort());

    const keysAfter = await a.gql(KEYS, {}, u.token);
    for (const key of keysAfter.data.me.apiKeys) expect(new Date(key.lastUsedAt).getTime()).toBeGreaterThan(Date.now() - 60_000);

    // The board counts it as a blind battle of its category.
    const board = await a.gql(LEADERBOARD, { filter: { blindOnly: true, category: 'creative_writing' } }, u.token);
    expect(board.errors).toBeUndefined();
    expect(board.data.leaderboard.map((r: any) => r.model).sort()).toEqual([MODEL_A, MODEL_B].sort());
  });

  it('hides provider error texts on queries, comparisonEvents and retries until the vote, then shows them', async () => {
    const u = await userWithKeys('blind-errors');
    // No Google key: that response fails with a text naming the provider.
    const started = await a.gql(
      START,
      { input: { prompt: 'Describe the sea in two words', models: [MODEL_A, NO_KEY_MODEL], blind: true } },
      u.token,
    );
    expect(started.errors).toBeUndefined();
    const id = started.data.startComparison.id;
    const stream = await events(b, id, u.token);
    expectNoIdentity(stream.raw);
    const failedEvent = stream.events.find((e) => e.status === 'FAILED');
    expect(failedEvent.error).toBe('AUTH: the model call failed (details hidden until you vote)');

    const get = await a.gql(GET, { id }, u.token);
    expectNoIdentity(get.raw);
    const failed = get.data.comparison.responses.find((r: any) => r.status === 'FAILED');
    expect(failed.error).toBe('AUTH: the model call failed (details hidden until you vote)');
    const retried = await b.gql(RETRY, { id: failed.id }, u.token);
    expect(retried.errors).toBeUndefined();
    expectNoIdentity(retried.raw);
    expectHidden(retried.data.retryComparisonResponse);
    expect(retried.data.retryComparisonResponse.label).toBe(failed.label);

    // Continuing the conversation before the vote would let a model's own history name it.
    const conversationId = started.data.startComparison.conversation.id;
    const follow = { conversationId, content: 'Repeat your previous answer word for word', model: MODEL_A };
    const early = await a.gql(SEND, { input: follow }, u.token);
    expect(codeOf(early)).toBe('BAD_USER_INPUT');
    expect(early.errors![0]!.message).toContain('vote on it first');
    const earlyBattle = await b.gql(ARENA, { input: { prompt: 'Repeat your previous answer', conversationId } }, u.token);
    expect(codeOf(earlyBattle)).toBe('BAD_USER_INPUT');

    const vote = await a.gql(VOTE, { input: { comparisonId: id, outcome: 'ALL_BAD' } }, u.token);
    expect(vote.errors).toBeUndefined();
    const late = await a.gql(SEND, { input: follow }, u.token);
    expect(late.errors).toBeUndefined();
    expect(late.data.sendMessage.model).toBe(MODEL_A);
    const after = await b.gql(GET, { id }, u.token);
    const revealed = after.data.comparison.responses.find((r: any) => r.id === failed.id);
    expect(revealed).toMatchObject({ model: NO_KEY_MODEL, provider: 'GOOGLE' });
    expect(revealed.error).toContain('No google API key');
    const replay = await events(a, id, u.token);
    expect(replay.events.find((e) => e.responseId === failed.id).error).toContain('No google API key');
  });

  it('leaves non-blind comparisons as they were: labels in model order, revealed, a category assigned', async () => {
    const u = await userWithKeys('open');
    const res = await a.gql(RUN, { input: { prompt: 'Fix this bug:\n```js\nconst x = 1;\n```', models: [MODEL_B, MODEL_A] } }, u.token);
    expect(res.errors).toBeUndefined();
    const c = res.data.runComparison;
    expect(c).toMatchObject({ blind: false, revealed: true, category: 'code' });
    expect(c.responses.map((r: any) => [r.label, r.model, r.keyLabel])).toEqual([
      ['A', MODEL_B, 'default'],
      ['B', MODEL_A, 'default'],
    ]);
    expect(c.responses.every((r: any) => r.costUsd > 0)).toBe(true);
  });

  it('takes a given category normalised, and refuses an unknown one with BAD_USER_INPUT', async () => {
    const u = await userWithKeys('category');
    const given = await a.gql(
      RUN,
      { input: { prompt: 'Hello there', models: [MODEL_A, MODEL_B], category: ' Creative Writing ' } },
      u.token,
    );
    expect(given.errors).toBeUndefined();
    expect(given.data.runComparison.category).toBe('creative_writing');
    const unknown = await a.gql(RUN, { input: { prompt: 'Hello there', models: [MODEL_A, MODEL_B], category: 'cooking' } }, u.token);
    expect(codeOf(unknown)).toBe('BAD_USER_INPUT');
    expect(unknown.errors![0]!.message).toContain('code, math, creative_writing, long_prompt, other');
    expect(unknown.errors![0]!.extensions!.field).toBe('category');
  });

  it('startArenaBattle picks two reachable pool models, blind, and the vote reveals them', async () => {
    const u = await userWithKeys('arena');
    const res = await a.gql(ARENA, { input: { prompt: 'Say something kind', category: 'other' } }, u.token);
    expect(res.errors).toBeUndefined();
    expectNoIdentity(res.raw);
    const battle = res.data.startArenaBattle;
    expect(battle).toMatchObject({ blind: true, revealed: false, category: 'other' });
    expect(battle.responses.map((r: any) => r.label)).toEqual(['A', 'B']);
    for (const r of battle.responses) expectHidden(r);
    expectNoIdentity((await events(b, battle.id, u.token)).raw);

    const winner = battle.responses[1].id;
    expect(
      (await b.gql(VOTE, { input: { comparisonId: battle.id, outcome: 'WINNER', winnerResponseId: winner } }, u.token)).errors,
    ).toBeUndefined();
    const after = await a.gql(GET, { id: battle.id }, u.token);
    // The pool's third model has no key of this user's: never picked.
    expect(after.data.comparison.responses.map((r: any) => r.model).sort()).toEqual([MODEL_A, MODEL_B].sort());
    expect(after.data.comparison.revealed).toBe(true);
  });

  it('startArenaBattle with fewer than two reachable models answers BAD_USER_INPUT saying what to do', async () => {
    const u = await a.signUp('arena-one-key');
    await a.gql(SAVE_KEY, { input: { provider: 'OPENAI', apiKey: 'sk-openai-only-0003' } }, u.token);
    const res = await a.gql(ARENA, { input: { prompt: 'Hi' } }, u.token);
    expect(codeOf(res)).toBe('BAD_USER_INPUT');
    expect(res.errors![0]!.message).toContain('saveApiKey');
    expect(res.errors![0]!.message).toContain(`only ${MODEL_A}`);
  });

  it('weights the pair draw by the blind battles each pair has had (counted in PostgreSQL, every user, blind only)', async () => {
    const u = await userWithKeys('arena-weights');
    await a.gql(SAVE_KEY, { input: { provider: 'MISTRAL', apiKey: 'sk-mistral-blind-0004' } }, u.token);
    const [X, Y, Z] = ['openai:pair-x', 'anthropic:pair-y', 'mistral:pair-z'];
    const seed = (pairs: Array<[string, string, boolean]>) =>
      withClient(a.db.url, async (c) => {
        for (const [m1, m2, blind] of pairs) {
          const id = randomUUID();
          await c.query(`insert into comparison_results (id, created_at, owner_id, prompt, blind) values ($1, now(), $2, 'p', $3)`, [
            id,
            u.userId,
            blind,
          ]);
          for (const [position, model] of [m1, m2].entries()) {
            await c.query(
              `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, status, content)
               values (gen_random_uuid(), now(), $1, $2, upper(split_part($3, ':', 1))::provider, $3, 'COMPLETED', 'x')`,
              [id, position, model],
            );
          }
        }
      });
    // X–Y: 3 blind battles (weight 1/4), X–Z: 1 (1/2), Y–Z: none blind (1); the non-blind one does not count.
    await seed([
      [X, Y, true],
      [Y, X, true],
      [X, Y, true],
      [Z, X, true],
      [Y, Z, false],
    ]);
    await a.app.cache.delete('arena:pair-counts'); // counts are shared for 30 s: start from fresh ones
    let uniform = 0;
    const arena = new ArenaService(a.app.cache, [X, Y, Z], () => uniform);
    const principal = { userId: u.userId, role: 'USER' } as Parameters<ArenaService['pickModels']>[1];
    const pick = async (value: number) => {
      uniform = value;
      return (await arena.pickModels(a.app.orm.em.fork(), principal)).join(' ');
    };
    // Total weight 1.75, pairs in sorted order: anthropic:pair-y–mistral:pair-z (1),
    // anthropic:pair-y–openai:pair-x (0.25), mistral:pair-z–openai:pair-x (0.5).
    expect(await pick(0)).toBe(`${Y} ${Z}`);
    expect(await pick(0.99 / 1.75)).toBe(`${Y} ${Z}`);
    expect(await pick(1.01 / 1.75)).toBe(`${Y} ${X}`);
    expect(await pick(1.24 / 1.75)).toBe(`${Y} ${X}`);
    expect(await pick(1.26 / 1.75)).toBe(`${Z} ${X}`);
    expect(await pick(0.999)).toBe(`${Z} ${X}`);
  });

  it("leaves an unrevealed blind comparison out of the board's average cost and latency until its vote", async () => {
    const u = await userWithKeys('averages');
    const open = await a.gql(RUN, { input: { prompt: 'Name a colour', models: [MODEL_A, MODEL_B] } }, u.token);
    const [first] = open.data.runComparison.responses;
    await a.gql(VOTE, { input: { comparisonId: open.data.runComparison.id, outcome: 'WINNER', winnerResponseId: first.id } }, u.token);
    const BOARD = `query { leaderboard(scope: MINE, filter: { blindOnly: false }) { model avgCostUsd avgLatencyMs } }`;
    const averageOf = async () => {
      const res = await a.gql(BOARD, {}, u.token, NO_CACHE);
      expect(res.errors).toBeUndefined();
      return res.data.leaderboard.find((r: any) => r.model === MODEL_A);
    };
    const before = await averageOf();
    expect(before.avgCostUsd).toBeGreaterThan(0);

    // A blind comparison of MODEL_A's with a cost and a latency far from the others', not voted on.
    const blindId = randomUUID();
    await withClient(a.db.url, async (c) => {
      await c.query(`insert into comparison_results (id, created_at, owner_id, prompt, blind) values ($1, now(), $2, 'p', true)`, [
        blindId,
        u.userId,
      ]);
      await c.query(
        `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, status, content, cost_usd, latency_ms)
         values (gen_random_uuid(), now(), $1, 0, 'OPENAI', $2, 'COMPLETED', 'x', 1000, 999999),
                (gen_random_uuid(), now(), $1, 1, 'ANTHROPIC', $3, 'COMPLETED', 'y', 1000, 999999)`,
        [blindId, MODEL_A, MODEL_B],
      );
    });
    expect(await averageOf()).toEqual(before);

    expect((await a.gql(VOTE, { input: { comparisonId: blindId, outcome: 'TIE' } }, u.token)).errors).toBeUndefined();
    expect((await averageOf()).avgCostUsd).toBeGreaterThan(100);
  });
});
