/**
 * Personal API tokens through GraphQL, on two instances sharing PostgreSQL
 * and Redis: shown once and stored hashed, a bearer token that authenticates
 * as its user within its scopes (on /graphql, its read cache and
 * /graphql/stream), management only with a JWT, revocation heard by the
 * other instance within a second, expiry, the per-token daily cap refused
 * before any provider call, and no token value in any log line or error.
 */
import { Kind, parse, type OperationDefinitionNode, OperationTypeNode } from 'graphql';
import { randomBytes } from 'node:crypto';
import { operationAccess } from '../src/auth/token-scopes';
import { getSchema } from '../src/graphql/schema';
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { subscribe } from './helpers/sse';
import { createTestApp, type GqlResult, type TestApp } from './helpers/test-app';

const CREATE = `mutation($input: ApiTokenInput!) {
  createApiToken(input: $input) { token apiToken { id name scopes prefix createdAt expiresAt lastUsedAt dailyBudgetUsd revokedAt } }
}`;
const LIST = `{ apiTokens { id name scopes prefix expiresAt lastUsedAt dailyBudgetUsd revokedAt } }`;
const REVOKE = `mutation($id: ID!) { revokeApiToken(id: $id) { id revokedAt } }`;
const ME = `query Me { me { id } }`;
const START = `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id } }`;
const RUN = `mutation($input: RunComparisonInput!) { runComparison(input: $input) { id responses { status costUsd } } }`;
const SEND = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id costUsd } }`;
const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status } }`;
const SAVE_KEY = `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`;
const COMPARISON = `query($id: ID!) { comparison(id: $id) { id } }`;
const PRICED = ['openai:gpt-4o', 'openai:gpt-4o-mini'];

const codes = (r: GqlResult) => (r.errors ?? []).map((e) => e.extensions?.code);

describeRedis('personal API tokens (two instances, shared PostgreSQL and Redis)', () => {
  let fake: FakeLlmServer;
  let a: TestApp;
  let b: TestApp;
  /** Every token value this file was shown: none may appear in a log line. */
  const shown: string[] = [];

  beforeAll(async () => {
    fake = await FakeLlmServer.start();
    const env = {
      REDIS_URL: redisUrlForTests(),
      CACHE_PREFIX: `t-${randomBytes(5).toString('hex')}`,
      OPENAI_BASE_URL: fake.baseUrls.openai,
      ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
    };
    a = await createTestApp({ env });
    b = await createTestApp({ env, db: a.db });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    await fake?.close();
  });

  /** A user with an OpenAI key saved (on the fake). */
  async function user(prefix: string) {
    const u = await a.signUp(prefix);
    const saved = await a.gql(SAVE_KEY, { input: { provider: 'OPENAI', apiKey: 'sk-test-1234' } }, u.token);
    expect(saved.errors).toBeUndefined();
    return u;
  }

  async function createToken(jwt: string, input: Record<string, unknown>) {
    const res = await a.gql(CREATE, { input }, jwt);
    expect(res.errors).toBeUndefined();
    const created = res.data.createApiToken as { token: string; apiToken: { id: string; prefix: string; [k: string]: unknown } };
    shown.push(created.token);
    return created;
  }

  it('holds at most 50 active tokens per user, even when created in parallel', async () => {
    const u = await user('limit');
    for (let i = 0; i < 48; i++) await createToken(u.token, { name: `t${i}`, scopes: ['READ'] });
    const create = (i: number) => a.gql(CREATE, { input: { name: `p${i}`, scopes: ['READ'] } }, u.token);
    const parallel = await Promise.all(Array.from({ length: 5 }, (_, i) => create(i)));
    expect(parallel.filter((r) => !r.errors).length).toBe(2);
    expect(parallel.flatMap((r) => codes(r))).toEqual(['BAD_USER_INPUT', 'BAD_USER_INPUT', 'BAD_USER_INPUT']);
    const listed = await a.gql(LIST, {}, u.token);
    expect(listed.data.apiTokens).toHaveLength(50);
  });

  it('shows the token once, stores only its hash, and lists it without the value', async () => {
    const u = await user('once');
    const input = { name: 'nightly CI', scopes: ['READ', 'EVAL'], expiresInDays: 30, dailyBudgetUsd: 2.5 };
    const { token, apiToken } = await createToken(u.token, input);
    expect(token).toMatch(/^llms_pat_[A-Za-z0-9_-]{55}$/);
    expect(token.startsWith(apiToken.prefix)).toBe(true);
    expect(apiToken.prefix.length).toBeLessThan(20);
    expect(apiToken).toMatchObject({ name: 'nightly CI', scopes: ['READ', 'EVAL'], dailyBudgetUsd: 2.5, lastUsedAt: null });
    expect(apiToken.revokedAt).toBeNull();
    expect(Date.parse(apiToken.expiresAt as string) - Date.now()).toBeGreaterThan(29 * 86_400_000);

    const list = await b.gql(LIST, {}, u.token);
    const listed = ['id', 'name', 'scopes', 'prefix', 'expiresAt', 'lastUsedAt', 'dailyBudgetUsd', 'revokedAt'];
    expect(list.data.apiTokens).toEqual([pick(apiToken, listed)]);
    expect(list.raw).not.toContain(token);
    expect(list.raw).not.toContain(token.slice(apiToken.prefix.length));

    const rows = await withClient(a.db.url, (c) => c.query(`select * from api_tokens where id = $1`, [apiToken.id]));
    const stored = JSON.stringify(rows.rows[0]);
    expect(stored).not.toContain(token.slice(apiToken.prefix.length));
    expect(rows.rows[0].token_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('authenticates as its user, records its use at most once a minute, and refuses a mangled token', async () => {
    const u = await user('auth');
    const { token } = await createToken(u.token, { name: 'reader', scopes: ['READ'] });
    const me = await b.gql(ME, {}, token);
    expect(me.data).toEqual({ me: { id: u.userId } });
    const listed = await a.gql(LIST, {}, u.token);
    expect(listed.data.apiTokens[0].lastUsedAt).not.toBeNull();
    // Verified and remembered: the next use reads no token row and writes nothing.
    const again = await b.countStatements(() => b.gql(`{ me { email } }`, {}, token));
    expect(again.result.data.me.email).toBe(u.email);
    expect(again.statements.filter((s) => s.includes('api_tokens'))).toEqual([]);

    const mangled = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
    const refused = await b.gql(ME, {}, mangled);
    expect(refused.status).toBe(401);
    expect(codes(refused)).toEqual(['UNAUTHENTICATED']);
  });

  it("refuses a made-up token of the right shape without a database read (its tag is not this server's)", async () => {
    const madeUp = () => `llms_pat_${randomBytes(41).toString('base64url')}`;
    expect(madeUp()).toMatch(/^llms_pat_[A-Za-z0-9_-]{55}$/);
    const { count, result } = await b.countStatements(() => Promise.all(Array.from({ length: 10 }, () => b.gql(ME, {}, madeUp()))));
    expect(result.map((r) => r.status)).toEqual(Array(10).fill(401));
    expect(count).toBe(0);
  });

  it('limits a token to its scopes: READ cannot start a comparison, COMPARE can (and cannot read)', async () => {
    const u = await user('scopes');
    const reader = (await createToken(u.token, { name: 'reader', scopes: ['READ'] })).token;
    const comparer = (await createToken(u.token, { name: 'comparer', scopes: ['COMPARE'] })).token;
    const input = { prompt: 'scoped', models: ['openai:scoped-a', 'openai:scoped-b'] };

    const before = fake.count(undefined, 'chat');
    const refused = await a.gql(START, { input }, reader);
    expect(codes(refused)).toEqual(['FORBIDDEN']);
    expect(refused.status).toBe(403);
    expect(refused.errors![0]!.extensions!.requiredScope).toBe('COMPARE');
    expect(fake.count(undefined, 'chat')).toBe(before);

    const started = await a.gql(RUN, { input }, comparer);
    expect(started.errors).toBeUndefined();
    expect(started.data.runComparison.responses.map((r: any) => r.status)).toEqual(['COMPLETED', 'COMPLETED']);
    expect(fake.count(undefined, 'chat')).toBe(before + 2);

    const id = started.data.runComparison.id;
    expect(codes(await a.gql(COMPARISON, { id }, comparer))).toEqual(['FORBIDDEN']);
    expect((await a.gql(COMPARISON, { id }, reader)).data.comparison.id).toBe(id);
    // A mutation without a declared scope (renaming) needs a JWT whatever the token's scopes.
    const rename = await a.gql(`mutation { createConversation(title: "t") { id } }`, {}, comparer);
    expect(rename.errors).toBeUndefined();
    const conversationId = rename.data.createConversation.id;
    const renamed = await a.gql(`mutation($id: ID!) { renameConversation(id: $id, title: "u") { id } }`, { id: conversationId }, comparer);
    expect(codes(renamed)).toEqual(['FORBIDDEN']);
  });

  it("needs a JWT to manage tokens, keys and budgets, whatever the token's scopes", async () => {
    const u = await user('manage');
    const all = await createToken(u.token, { name: 'everything', scopes: ['READ', 'COMPARE', 'EVAL'] });
    const attempts = [
      a.gql(LIST, {}, all.token),
      a.gql(CREATE, { input: { name: 'child', scopes: ['READ'] } }, all.token),
      a.gql(REVOKE, { id: all.apiToken.id }, all.token),
      a.gql(SAVE_KEY, { input: { provider: 'OPENAI', apiKey: 'sk-other-9999' } }, all.token),
      a.gql(`mutation($id: ID!) { setUserBudget(userId: $id, dailyUsd: 1) { id } }`, { id: u.userId }, all.token),
      // One forbidden root field refuses the whole operation, before anything runs.
      a.gql(`query { me { id } apiTokens { id } }`, {}, all.token),
    ];
    for (const res of await Promise.all(attempts)) {
      expect(codes(res)).toEqual(['FORBIDDEN']);
      expect(res.data ?? null).toBeNull();
    }
    const list = await a.gql(LIST, {}, u.token);
    expect(list.data.apiTokens).toHaveLength(1);
    expect(list.data.apiTokens[0].revokedAt).toBeNull();
  });

  it('never answers a token outside its scopes from the read cache or a compiled read', async () => {
    const u = await user('cache');
    const comparer = (await createToken(u.token, { name: 'comparer', scopes: ['COMPARE'] })).token;
    const reader = (await createToken(u.token, { name: 'reader', scopes: ['READ'] })).token;
    const conversations = `query Mine { conversations(first: 5) { nodes { id title } } }`;
    // The session warms the user's cache entries for both documents.
    for (const query of [ME, conversations]) {
      expect((await a.gql(query, {}, u.token)).errors).toBeUndefined();
      expect((await a.gql(query, {}, u.token)).headers.get('x-cache')).toBe('HIT');
    }
    for (const query of [ME, conversations]) {
      // Twice (the second time the document's needs are known), and past the cache (`no-cache`: a compiled read's turn).
      for (const headers of [{}, {}, { 'cache-control': 'no-cache' }] as Array<Record<string, string>>) {
        const res = await a.gql(query, {}, comparer, headers);
        expect(codes(res)).toEqual(['FORBIDDEN']);
        expect(res.headers.get('x-cache')).toBeNull();
      }
      // A token that may read is answered from the same entries once its document was checked.
      expect((await a.gql(query, {}, reader)).errors).toBeUndefined();
      expect((await a.gql(query, {}, reader)).headers.get('x-cache')).toBe('HIT');
    }
  });

  it('checks scopes on /graphql/stream before a stream opens', async () => {
    const u = await user('stream');
    const comparer = (await createToken(u.token, { name: 'comparer', scopes: ['COMPARE'] })).token;
    const reader = (await createToken(u.token, { name: 'reader', scopes: ['READ'] })).token;
    const started = await a.gql(RUN, { input: { prompt: 'streamed', models: ['openai:s-a', 'openai:s-b'] } }, comparer);
    const id = started.data.runComparison.id;

    const refused = await subscribe(b.url, EVENTS, { id }, comparer);
    expect(refused.status).toBe(403);
    const body = [];
    for await (const e of refused.events) body.push(e);
    expect(body).toEqual([]);

    const allowed = await subscribe(b.url, EVENTS, { id }, reader);
    expect(allowed.status).toBe(200);
    const statuses: string[] = [];
    for await (const e of allowed.events) statuses.push(e.data.comparisonEvents.status);
    expect(statuses).toEqual(['COMPLETED', 'COMPLETED']);
  });

  it('ends the open streams of a revoked token, on every instance, with UNAUTHENTICATED', async () => {
    const u = await user('stream-revoke');
    const { token, apiToken } = await createToken(u.token, { name: 'watcher', scopes: ['READ'] });
    const started = await a.gql(START, { input: { prompt: 'never ends', models: ['openai:hang-x', 'openai:hang-y'] } }, u.token);
    const id = started.data.startComparison.id;
    const stream = await subscribe(b.url, EVENTS, { id }, token);
    expect(stream.status).toBe(200);
    const seen: any[] = [];
    const reading = (async () => {
      for await (const e of stream.events) {
        seen.push(e);
        // The replay has arrived: the stream is open and following the comparison.
        if (seen.length === 2) void a.gql(REVOKE, { id: apiToken.id }, u.token);
      }
    })();
    await reading;
    expect(stream.completed).toBe(true);
    expect(seen.at(-1)).toMatchObject({ errors: [{ extensions: { code: 'UNAUTHENTICATED' } }] });
    await a.gql(`mutation($id: ID!) { cancelComparison(id: $id) { id } }`, { id }, u.token);
  });

  it('revoked on instance A, refused on instance B within 1 s', async () => {
    const u = await user('revoke');
    const { token, apiToken } = await createToken(u.token, { name: 'to revoke', scopes: ['READ'] });
    // B has verified (and remembered) the token.
    expect((await b.gql(ME, {}, token)).data.me.id).toBe(u.userId);
    expect((await b.gql(ME, {}, token)).data.me.id).toBe(u.userId);

    // B applies the revocation when A's broadcast arrives: that is the event awaited (a deadline, not a sleep, bounds it).
    let heard!: () => void;
    const arrived = new Promise<void>((resolve) => (heard = resolve));
    const stop = b.app.personalTokens.onRevoked((id) => id === apiToken.id && heard());
    let deadline: NodeJS.Timeout | undefined;
    try {
      const revokedAt = Date.now();
      const revoked = await a.gql(REVOKE, { id: apiToken.id }, u.token);
      expect(revoked.data.revokeApiToken.revokedAt).not.toBeNull();
      await Promise.race([
        arrived,
        new Promise((_, reject) => {
          deadline = setTimeout(() => reject(new Error('instance B did not hear the revocation within 1 s')), 1_000);
        }),
      ]);
      const onB = await b.gql(ME, {}, token);
      expect(Date.now() - revokedAt).toBeLessThan(1_000);
      expect(onB.status).toBe(401);
      expect(codes(onB)).toEqual(['UNAUTHENTICATED']);
      expect(codes(await a.gql(ME, {}, token))).toEqual(['UNAUTHENTICATED']);
    } finally {
      clearTimeout(deadline);
      stop();
    }
    // Revoking again is harmless; the list keeps it, revoked.
    expect((await a.gql(REVOKE, { id: apiToken.id }, u.token)).errors).toBeUndefined();
    expect((await b.gql(LIST, {}, u.token)).data.apiTokens[0].revokedAt).not.toBeNull();
    // Another user's token is NOT_FOUND.
    const other = await a.signUp('other');
    expect(codes(await a.gql(REVOKE, { id: apiToken.id }, other.token))).toEqual(['NOT_FOUND']);
  });

  it('refuses an expired token (UNAUTHENTICATED)', async () => {
    const u = await user('expiry');
    const { token, apiToken } = await createToken(u.token, { name: 'short', scopes: ['READ'], expiresInDays: 1 });
    // A day passes: the row's expiry moves into the past (the token was never used, so no instance remembers it).
    const expire = `update api_tokens set expires_at = now() - interval '1 second' where id = $1`;
    await withClient(a.db.url, (c) => c.query(expire, [apiToken.id]));
    const res = await b.gql(ME, {}, token);
    expect(res.status).toBe(401);
    expect(codes(res)).toEqual(['UNAUTHENTICATED']);
    expect(res.errors![0]!.message).toBe('Token expired');
    const bad = await a.gql(CREATE, { input: { name: 'x', scopes: ['READ'], expiresInDays: 0 } }, u.token);
    expect(codes(bad)).toEqual(['BAD_USER_INPUT']);
  });

  it("refuses spend past the token's daily cap with BUDGET_EXCEEDED before any provider call", async () => {
    const u = await user('cap');
    const capped = await createToken(u.token, { name: 'capped', scopes: ['READ', 'COMPARE'], dailyBudgetUsd: 0.000001 });
    const input = { prompt: 'spend something', models: PRICED };
    // Nothing spent, nothing running: the first comparison is admitted (the one allowed overspend) and records its cost.
    const first = await a.gql(RUN, { input }, capped.token);
    expect(first.errors).toBeUndefined();
    expect(first.data.runComparison.responses.every((r: any) => r.costUsd > 0)).toBe(true);

    const before = fake.count(undefined, 'chat');
    const refused = await b.gql(RUN, { input }, capped.token);
    expect(codes(refused)).toEqual(['BUDGET_EXCEEDED']);
    expect(refused.errors![0]!.extensions).toMatchObject({ budgetUsd: 0.000001, apiTokenId: capped.apiToken.id });
    expect(refused.errors![0]!.extensions!.spentUsd).toBeGreaterThan(0.000001);
    const conversationId = (await a.gql(`mutation { createConversation(title: "c") { id } }`, {}, capped.token)).data.createConversation.id;
    const sent = await a.gql(SEND, { input: { conversationId, content: 'x', model: 'openai:gpt-4o' } }, capped.token);
    expect(codes(sent)).toEqual(['BUDGET_EXCEEDED']);
    expect(fake.count(undefined, 'chat')).toBe(before);

    // The cap is the token's: the user's session and another token of theirs still run.
    const other = await createToken(u.token, { name: 'uncapped', scopes: ['COMPARE'] });
    expect((await a.gql(RUN, { input }, other.token)).errors).toBeUndefined();
    expect((await a.gql(RUN, { input }, u.token)).errors).toBeUndefined();
    expect(fake.count(undefined, 'chat')).toBe(before + 4);
  });

  it('puts no token value in any log line or error', async () => {
    const u = await user('logs');
    const { token, apiToken } = await createToken(u.token, { name: 'logged', scopes: ['READ'] });
    const answers = [
      await a.gql(ME, {}, token),
      await a.gql(START, { input: { prompt: 'no', models: ['openai:x'] } }, token),
      await a.gql(ME, {}, token.slice(0, -2) + '__'),
      await a.gql(ME, {}, `${token} extra`),
      await a.gql(`{ nope }`, {}, token),
    ];
    await a.gql(REVOKE, { id: apiToken.id }, u.token);
    answers.push(await a.gql(ME, {}, token));
    for (const res of answers) expect(res.raw).not.toContain(token.slice(apiToken.prefix.length, -2));
    const logs = [...a.logs, ...b.logs].join('\n');
    expect(logs.length).toBeGreaterThan(0);
    for (const value of [...shown, token]) expect(logs).not.toContain(value.slice(12));
  });
});

/**
 * The scope map as the schema declares it (`auth/token-scopes.ts`): a new root
 * field shows up here, so what a personal token may do with it is decided,
 * not inherited unnoticed. Eval mutations declare `EVAL` when they land.
 */
it('declares what a personal token needs for every root field', async () => {
  const schema = await getSchema();
  const map: Record<string, Record<string, string[]>> = {};
  for (const type of [OperationTypeNode.QUERY, OperationTypeNode.MUTATION, OperationTypeNode.SUBSCRIPTION]) {
    for (const name of Object.keys(schema.getRootType(type)!.getFields())) {
      const document = parse(`${type} { ${name} }`, { noLocation: true });
      const access = operationAccess(schema, document, document.definitions[0] as OperationDefinitionNode).get(name)!;
      ((map[type] ??= {})[access] ??= []).push(name);
    }
  }
  for (const byAccess of Object.values(map)) for (const names of Object.values(byAccess)) names.sort();
  expect(map).toEqual({
    query: {
      READ: [
        'comparison',
        'comparisons',
        'conversation',
        'conversations',
        'estimateEvalRun',
        'evalRun',
        'exportConversation',
        'exportEvalRun',
        'exportShared',
        'exportUsage',
        'leaderboard',
        'leaderboardInfo',
        'me',
        'models',
        'promptSet',
        'promptSets',
        'search',
        'shareLinks',
        'shared',
        'usage',
        'voteExclusions',
      ],
      JWT_ONLY: ['apiTokens'],
    },
    mutation: {
      COMPARE: [
        'cancelComparison',
        'continueWith',
        'createConversation',
        'createShareLink',
        'forkConversation',
        'fuseComparison',
        'judgeComparison',
        'regenerateMessage',
        'retryComparisonResponse',
        'revokeShareLink',
        'runComparison',
        'sendMessage',
        'startArenaBattle',
        'startComparison',
        'vote',
      ],
      EVAL: [
        'cancelEvalRun',
        'createPromptSet',
        'deletePromptItem',
        'deletePromptSet',
        'importPromptItems',
        'startEvalRun',
        'updatePromptItem',
      ],
      JWT_ONLY: [
        'createApiToken',
        'deleteApiKey',
        'deleteConversation',
        'flushCaches',
        'login',
        'register',
        'renameConversation',
        'reverseVoteExclusion',
        'revokeApiToken',
        'saveApiKey',
        'setUserBudget',
      ],
    },
    subscription: { READ: ['comparisonEvents', 'evalRunEvents'] },
  });
  // Fragments do not hide a root field.
  const hidden = parse(`query { ...F } fragment F on Query { me { id } ... on Query { apiTokens { id } } }`);
  const operation = hidden.definitions.find((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION)!;
  expect([...operationAccess(schema, hidden, operation)]).toEqual([
    ['me', 'READ'],
    ['apiTokens', 'JWT_ONLY'],
  ]);
});

function pick<T extends Record<string, unknown>>(row: T, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, row[k]]));
}
