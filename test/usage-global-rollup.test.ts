/**
 * The coarser rollups (Migration20261207220000_usage_rollups_coarser: by model and day, by model, token and day, by
 * user and day) answer the groupings they cover, kept by `usage_record` as calls settle. Each is checked against the
 * per-user rollup (`usage_rollup`, what a grouping by USER and MODEL reads): equal calls, errors, tokens, latency
 * histograms, cost to the cent. Pages (read from the cursor's first key on, in the columns' order) against the export.
 */
import { COARSER } from '../migrations/Migration20261207220000_usage_rollups_coarser';
import { BUCKET_SUMS } from '../src/modules/usage/usage-analytics.service';
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestApp, type GqlResult, type TestApp } from './helpers/test-app';

const RUN = 'mutation($input: RunComparisonInput!) { runComparison(input: $input) { id conversation { id } responses { status } } }';
const SEND = 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }';
const SAVE_KEY = 'mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }';
const TOKEN = 'mutation($input: ApiTokenInput!) { createApiToken(input: $input) { token apiToken { id } } }';
const USAGE = `query($g: [UsageDimension!]!, $from: DateTime!, $to: DateTime!, $first: Int, $after: String) {
  usage(groupBy: $g, from: $from, to: $to, first: $first, after: $after) {
    nodes { key calls errors inputTokens outputTokens costUsd latencyP50Ms latencyP95Ms } pageInfo { hasNextPage endCursor } } }`;
const EXPORT = 'query($g: [UsageDimension!]!, $from: DateTime!, $to: DateTime!) { exportUsage(groupBy: $g, from: $from, to: $to) }';

interface Row {
  key: string[];
  calls: number;
  errors: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
  latencyP50Ms: number | null;
  latencyP95Ms: number | null;
}

let fake: FakeLlmServer;
let t: TestApp;
let admin: string;
const RANGE = { from: new Date(Date.now() - 86_400_000).toISOString(), to: new Date(Date.now() + 86_400_000).toISOString() };

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  t = await createTestApp({ env: { ...fake.providerEnv(), ADMIN_EMAILS: 'usage-global-boss@example.com' } });
  const boss = await t.gql(
    'mutation { register(email: "usage-global-boss@example.com", password: "correct horse battery staple") { token } }',
  );
  admin = boss.data.register.token;
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

/** Every row of a grouping, page after page of `first`. */
async function allPages(token: string, g: string[], first: number): Promise<Row[]> {
  const rows: Row[] = [];
  let after: string | null = null;
  for (let i = 0; i < 1000; i++) {
    const res: GqlResult = await t.gql(USAGE, { g, ...RANGE, first, after }, token);
    expect(res.errors).toBeUndefined();
    rows.push(...res.data.usage.nodes);
    if (!res.data.usage.pageInfo.hasNextPage) return rows;
    after = res.data.usage.pageInfo.endCursor;
  }
  throw new Error('more than 1000 pages');
}

/**
 * The rows of `rows` summed over key position `drop`, with how many rows each sum has: a histogram cannot be summed
 * here, so a sum of several rows has no percentiles (undefined), a sum of one row keeps that row's.
 */
function withoutKey(rows: Row[], drop: number): Map<string, Row & { rows: number }> {
  const out = new Map<string, Row & { rows: number }>();
  for (const r of rows) {
    const key = r.key.filter((_, i) => i !== drop);
    const s = out.get(key.join('|'));
    out.set(
      key.join('|'),
      s
        ? {
            key,
            calls: s.calls + r.calls,
            errors: s.errors + r.errors,
            inputTokens: s.inputTokens + r.inputTokens,
            outputTokens: s.outputTokens + r.outputTokens,
            costUsd: s.costUsd + r.costUsd,
            latencyP50Ms: undefined as never,
            latencyP95Ms: undefined as never,
            rows: s.rows + 1,
          }
        : { ...r, key, rows: 1 },
    );
  }
  return out;
}

const cents = (usd: number) => Math.round(usd * 100);

/** CSV rows of exportUsage as keys + calls + errors + tokens + cost cents + percentiles (the measures are never quoted). */
function csvRows(csv: string, keys: number): Row[] {
  return csv
    .trim()
    .split('\r\n')
    .slice(1)
    .map((line) => {
      const f = line.split(',');
      const n = (i: number) => (f[keys + i] === '' ? null : Number(f[keys + i]));
      return {
        key: f.slice(0, keys),
        calls: n(0)!,
        errors: n(1)!,
        inputTokens: n(2)!,
        outputTokens: n(3)!,
        costUsd: n(4)!,
        latencyP50Ms: n(5),
        latencyP95Ms: n(6),
      };
    });
}

describe("everyone's usage", () => {
  it('is kept without the user as calls settle: a grouping without USER counts each new call, errors, tokens and cost', async () => {
    const before = (await allPages(admin, ['MODEL'], 100)).find((r) => r.key[0] === 'openai:gpt-4o');
    const failBefore = (await allPages(admin, ['MODEL'], 100)).find((r) => r.key[0] === 'openai:gpt-4o-fail-500');
    const a = await userWithKeys('usage-global-a');
    const b = await userWithKeys('usage-global-b');
    const run = await t.gql(RUN, { input: { prompt: 'One', models: ['openai:gpt-4o', 'anthropic:claude-opus-4-5'] } }, a.token);
    expect(run.errors).toBeUndefined();
    const failed = await t.gql(RUN, { input: { prompt: 'Two', models: ['openai:gpt-4o', 'openai:gpt-4o-fail-500'] } }, b.token);
    expect(failed.data.runComparison.responses.map((r: { status: string }) => r.status).sort()).toEqual(['COMPLETED', 'FAILED']);
    const sent = await t.gql(
      SEND,
      { input: { conversationId: run.data.runComparison.conversation.id, content: 'More', model: 'openai:gpt-4o' } },
      a.token,
    );
    expect(sent.errors).toBeUndefined();

    const after = (await allPages(admin, ['MODEL'], 100)).find((r) => r.key[0] === 'openai:gpt-4o')!;
    const failAfter = (await allPages(admin, ['MODEL'], 100)).find((r) => r.key[0] === 'openai:gpt-4o-fail-500')!;
    expect(after.calls - (before?.calls ?? 0)).toBe(3);
    expect(after.errors - (before?.errors ?? 0)).toBe(0);
    expect(after.inputTokens).toBeGreaterThan(before?.inputTokens ?? 0);
    expect(after.costUsd).toBeGreaterThan(before?.costUsd ?? 0);
    expect(after.latencyP50Ms).not.toBeNull();
    expect(failAfter.calls - (failBefore?.calls ?? 0)).toBe(1);
    expect(failAfter.errors - (failBefore?.errors ?? 0)).toBe(1);
    // The users' own rows of gpt-4o add up to the difference.
    const own = async (token: string) =>
      ((await t.gql(USAGE, { g: ['MODEL'], ...RANGE }, token)).data.usage.nodes as Row[]).find((r) => r.key[0] === 'openai:gpt-4o')!;
    const [ownA, ownB] = [await own(a.token), await own(b.token)];
    expect(ownA.calls + ownB.calls).toBe(3);
    expect(cents(after.costUsd - (before?.costUsd ?? 0))).toBe(cents(ownA.costUsd + ownB.costUsd));
    expect(after.inputTokens - (before?.inputTokens ?? 0)).toBe(ownA.inputTokens + ownB.inputTokens);
  });

  it('equals the per-user rows summed, for the groupings each coarser rollup answers (tokens included)', async () => {
    const c = await userWithKeys('usage-global-c');
    const created = await t.gql(TOKEN, { input: { name: 'ci', scopes: ['READ', 'COMPARE'] } }, c.token);
    const { token, apiToken } = created.data.createApiToken;
    await t.gql(RUN, { input: { prompt: 'Via a token', models: ['openai:gpt-4o', 'anthropic:claude-opus-4-5'] } }, token);
    await t.gql(RUN, { input: { prompt: 'Via a JWT', models: ['openai:gpt-4o-mini', 'openai:gpt-4o-fail-500'] } }, c.token);

    // [coarser grouping, the dimension added to read it from usage_rollup (USER with MODEL: only it has both)]
    const cases: Array<[string[], string]> = [
      [['DAY', 'PROVIDER', 'MODEL', 'TOKEN'], 'USER'], // usage_rollup_model_token_day
      [['DAY', 'PROVIDER', 'MODEL'], 'USER'], // usage_rollup_model_day
      [['USER', 'DAY'], 'MODEL'], // usage_rollup_user_day
    ];
    let single = 0;
    for (const [dims, extra] of cases) {
      const perUser = withoutKey(await allPages(admin, [...dims, extra], 100), dims.length);
      const coarse = await allPages(admin, dims, 2);
      expect(coarse.map((r) => r.key)).toEqual([...perUser.values()].map((r) => r.key));
      for (const g of coarse) {
        const { rows, ...u } = perUser.get(g.key.join('|'))!;
        if (rows === 1) single++;
        const measures = (r: Row) =>
          rows === 1 ? { ...r, costUsd: cents(r.costUsd) } : { ...r, costUsd: cents(r.costUsd), latencyP50Ms: 0, latencyP95Ms: 0 };
        expect(measures(g)).toEqual(measures(u));
      }
      if (dims.includes('TOKEN')) expect(coarse.some((r) => r.key[3] === apiToken.id)).toBe(true);
    }
    expect(single).toBeGreaterThan(0);
    // The histograms themselves (several users' calls summed): each coarser table against usage_rollup, in the database.
    for (const { table, key } of COARSER) {
      const differing = await withClient(t.db.url, async (db) => {
        const found = await db.query(
          `select ${key.join(', ')}, g.calls as kept, a.calls as summed
             from (select ${key.join(', ')}, sum(calls) as calls, sum(errors) as errors,
                          sum(input_tokens) as i, sum(output_tokens) as o, sum(cost_usd) as cost, ${BUCKET_SUMS} as h
                     from usage_rollup group by ${key.join(', ')}) a
             full join ${table} g using (${key.join(', ')})
            where a.calls is distinct from g.calls or a.errors is distinct from g.errors or a.i is distinct from g.input_tokens
               or a.o is distinct from g.output_tokens or a.h is distinct from g.latency_buckets::bigint[]
               or abs(coalesce(a.cost, 0) - coalesce(g.cost_usd, 0)) >= 0.005`,
        );
        return found.rows;
      });
      expect({ table, differing }).toEqual({ table, differing: [] });
    }
  });

  it('pages every grouping from its cursor on, whatever rollup it reads: the same rows as the export', async () => {
    for (const p of ['usage-global-d', 'usage-global-e', 'usage-global-f']) {
      const u = await userWithKeys(p);
      // Each call checked: a missing row below should say which call did not happen, and why.
      const ran = await t.gql(RUN, { input: { prompt: `Hi ${p}`, models: ['openai:gpt-4o', 'anthropic:claude-opus-4-5'] } }, u.token);
      expect(ran.errors).toBeUndefined();
      const created = await t.gql(TOKEN, { input: { name: 'ci', scopes: ['READ', 'COMPARE'] } }, u.token);
      expect(created.errors).toBeUndefined();
      const models = ['openai:gpt-4o-mini', 'anthropic:claude-opus-4-5'];
      const viaToken = await t.gql(RUN, { input: { prompt: `Token ${p}`, models } }, created.data.createApiToken.token);
      expect(viaToken.errors).toBeUndefined();
    }
    const idle = await t.signUp('usage-global-idle');
    const groupings = [['USER'], ['USER', 'MODEL'], ['USER', 'DAY'], ['TOKEN', 'MODEL'], ['PROVIDER', 'MODEL'], ['MODEL', 'DAY']];
    for (const g of groupings) {
      const exported = csvRows((await t.gql(EXPORT, { g, ...RANGE }, admin)).data.exportUsage, g.length);
      for (const first of [1, 2, 100]) {
        const paged = await allPages(admin, g, first);
        expect(paged.map((r) => ({ ...r, costUsd: cents(r.costUsd) }))).toEqual(exported.map((r) => ({ ...r, costUsd: cents(r.costUsd) })));
      }
      expect({ g, rows: exported.length >= 3 ? 'at least 3' : exported }).toEqual({ g, rows: 'at least 3' });
      expect(exported.some((r) => r.key[0] === idle.userId)).toBe(false);
    }
    // A cursor whose first key is no user id, token id or day is refused as a bad cursor, not a database error.
    for (const [g, key] of [
      ['USER', 'not-a-user'],
      ['TOKEN', 'not-a-token'],
      ['DAY', '2026-02-30'],
    ]) {
      const bad = Buffer.from(JSON.stringify([key])).toString('base64url');
      const res = await t.gql(USAGE, { g: [g], ...RANGE, first: 1, after: bad }, admin);
      expect(res.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    }
  });
});
