/**
 * Usage analytics (`usage`, `exportUsage`) read from the trigger-kept rollup: grouped measures, to the cent what
 * the budgets count, errors, paging, scopes (own rows; an admin everyone's), the token dimension, bad input.
 */
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestApp, type TestApp } from './helpers/test-app';

const RUN = 'mutation($input: RunComparisonInput!) { runComparison(input: $input) { id conversation { id } responses { status } } }';
const SEND = 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }';
const SAVE_KEY = 'mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }';
const USAGE = `query($g: [UsageDimension!]!, $from: DateTime!, $to: DateTime!, $first: Int, $after: String) {
  usage(groupBy: $g, from: $from, to: $to, first: $first, after: $after) {
    nodes { key calls errors inputTokens outputTokens costUsd latencyP50Ms latencyP95Ms } pageInfo { hasNextPage endCursor } } }`;
const EXPORT = 'query($g: [UsageDimension!]!, $from: DateTime!, $to: DateTime!) { exportUsage(groupBy: $g, from: $from, to: $to) }';
const SPENT = 'query { me { spentTodayUsd } }';
const TOKEN = 'mutation($input: ApiTokenInput!) { createApiToken(input: $input) { token apiToken { id } } }';

type Row = { key: string[]; calls: number; errors: number; inputTokens: number; outputTokens: number; costUsd: number };

let fake: FakeLlmServer;
let t: TestApp;
const RANGE = { from: new Date(Date.now() - 86_400_000).toISOString(), to: new Date(Date.now() + 86_400_000).toISOString() };

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  t = await createTestApp({ env: { ...fake.providerEnv(), ADMIN_EMAILS: 'usage-boss@example.com' } });
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

async function userWithKeys(prefix: string) {
  const u = await t.signUp(prefix);
  for (const provider of ['OPENAI', 'ANTHROPIC']) await t.gql(SAVE_KEY, { input: { provider, apiKey: `sk-${prefix}-000000001` } }, u.token);
  return u;
}

async function usage(token: string, g: string[], extra: Record<string, unknown> = {}) {
  const res = await t.gql(USAGE, { g, ...RANGE, ...extra }, token);
  return res;
}

describe('usage analytics', () => {
  it('groups calls, errors, tokens and cost by model, and its cost equals what the budget counts, to the cent', async () => {
    const u = await userWithKeys('usage-a');
    const run = await t.gql(RUN, { input: { prompt: 'Hello there', models: ['openai:gpt-4o', 'anthropic:claude-opus-4-5'] } }, u.token);
    expect(run.errors).toBeUndefined();
    const failed = await t.gql(RUN, { input: { prompt: 'Again', models: ['openai:gpt-4o', 'openai:gpt-4o-fail-500'] } }, u.token);
    expect(failed.data.runComparison.responses.map((r: { status: string }) => r.status).sort()).toEqual(['COMPLETED', 'FAILED']);
    const sent = await t.gql(
      SEND,
      { input: { conversationId: run.data.runComparison.conversation.id, content: 'More', model: 'openai:gpt-4o' } },
      u.token,
    );
    expect(sent.errors).toBeUndefined();

    const res = await usage(u.token, ['MODEL']);
    expect(res.errors).toBeUndefined();
    const rows = res.data.usage.nodes as Row[];
    const by = Object.fromEntries(rows.map((r) => [r.key[0], r]));
    expect(Object.keys(by).sort()).toEqual(['anthropic:claude-opus-4-5', 'openai:gpt-4o', 'openai:gpt-4o-fail-500']);
    expect(by['openai:gpt-4o']).toMatchObject({ calls: 3, errors: 0 });
    expect(by['openai:gpt-4o-fail-500']).toMatchObject({ calls: 1, errors: 1 });
    expect(by['anthropic:claude-opus-4-5']).toMatchObject({ calls: 1, errors: 0 });
    expect(by['openai:gpt-4o']!.inputTokens).toBeGreaterThan(0);
    expect(by['openai:gpt-4o']!.costUsd).toBeGreaterThan(0);
    for (const r of res.data.usage.nodes) expect(r.latencyP50Ms).not.toBeNull();

    const spent = (await t.gql(SPENT, {}, u.token)).data.me.spentTodayUsd as number;
    const total = rows.reduce((s, r) => s + r.costUsd, 0);
    expect(total).toBeCloseTo(spent, 9);
    expect(spent).toBeGreaterThan(0);
  });

  it('pages by key with first/after, every group once, and exports the same rows as CSV', async () => {
    const u = await userWithKeys('usage-b');
    for (const m of ['openai:gpt-4o', 'openai:gpt-4o-mini']) {
      await t.gql(RUN, { input: { prompt: `Hi ${m}`, models: [m, 'anthropic:claude-opus-4-5'] } }, u.token);
    }
    const seen: string[][] = [];
    let after: string | null = null;
    for (let i = 0; i < 10; i++) {
      const res = await usage(u.token, ['PROVIDER', 'MODEL'], { first: 1, after });
      expect(res.errors).toBeUndefined();
      seen.push(...res.data.usage.nodes.map((r: Row) => r.key));
      if (!res.data.usage.pageInfo.hasNextPage) break;
      after = res.data.usage.pageInfo.endCursor;
    }
    expect(seen).toEqual([
      ['ANTHROPIC', 'anthropic:claude-opus-4-5'],
      ['OPENAI', 'openai:gpt-4o'],
      ['OPENAI', 'openai:gpt-4o-mini'],
    ]);
    const csv = (await t.gql(EXPORT, { g: ['PROVIDER', 'MODEL'], ...RANGE }, u.token)).data.exportUsage as string;
    const lines = csv.trim().split('\r\n');
    expect(lines[0]).toBe('provider,model,calls,errors,input_tokens,output_tokens,cost_usd,latency_p50_ms,latency_p95_ms');
    expect(lines.slice(1).map((l) => l.split(',').slice(0, 3))).toEqual([
      ['ANTHROPIC', 'anthropic:claude-opus-4-5', '2'],
      ['OPENAI', 'openai:gpt-4o', '1'],
      ['OPENAI', 'openai:gpt-4o-mini', '1'],
    ]);
  });

  it("shows a user their own calls only, an admin everyone's (by USER), and calls made with a token under its id", async () => {
    const a = await userWithKeys('usage-c');
    const b = await userWithKeys('usage-d');
    await t.gql(RUN, { input: { prompt: 'A', models: ['openai:gpt-4o', 'anthropic:claude-opus-4-5'] } }, a.token);
    const created = await t.gql(TOKEN, { input: { name: 'ci', scopes: ['READ', 'COMPARE'] } }, b.token);
    const { token, apiToken } = created.data.createApiToken;
    await t.gql(RUN, { input: { prompt: 'B', models: ['openai:gpt-4o', 'anthropic:claude-opus-4-5'] } }, token);

    const mine = (await usage(b.token, ['USER', 'TOKEN'])).data.usage.nodes as Row[];
    expect(mine).toEqual([expect.objectContaining({ key: [b.userId, apiToken.id], calls: 2 })]);
    // A READ token reads usage too.
    expect((await usage(token, ['USER'])).data.usage.nodes).toEqual([expect.objectContaining({ key: [b.userId], calls: 2 })]);

    const boss = await t.gql('mutation { register(email: "usage-boss@example.com", password: "correct horse battery staple") { token } }');
    const everyone = (await usage(boss.data.register.token, ['USER'], { first: 100 })).data.usage.nodes as Row[];
    const users = everyone.map((r) => r.key[0]);
    expect(users).toEqual(expect.arrayContaining([a.userId, b.userId]));
  });

  it('refuses bad input (BAD_USER_INPUT): no dimension, one twice, an empty range, a bad cursor; anonymous: UNAUTHENTICATED', async () => {
    const u = await t.signUp('usage-e');
    const code = async (vars: Record<string, unknown>, token: string | null = u.token) =>
      (await t.gql(USAGE, { g: ['MODEL'], ...RANGE, ...vars }, token ?? undefined)).errors?.[0]?.extensions?.code;
    expect(await code({ g: [] })).toBe('BAD_USER_INPUT');
    expect(await code({ g: ['MODEL', 'MODEL'] })).toBe('BAD_USER_INPUT');
    expect(await code({ from: RANGE.to, to: RANGE.from })).toBe('BAD_USER_INPUT');
    expect(await code({ after: 'bm9wZQ' })).toBe('BAD_USER_INPUT');
    expect(await code({}, null)).toBe('UNAUTHENTICATED');
  });
});
