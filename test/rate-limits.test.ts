/**
 * Rate limits and spend budgets (issue 8, item 7) through GraphQL over HTTP,
 * against real PostgreSQL and Redis, with providers faked by a real HTTP server.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { clientIp } from '../src/http/client-ip';
import { FakeLlmServer } from './helpers/fake-llm';
import { describeRedis, describeRedisServer, redisUrlForTests, startRedisServer, type PrivateRedis } from './helpers/redis';
import { createTestApp, type TestApp } from './helpers/test-app';

const RUN = `mutation($input: RunComparisonInput!) { runComparison(input: $input) { id responses { id model status costUsd } } }`;
const START = `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id } }`;
const CANCEL = `mutation($id: ID!) { cancelComparison(id: $id) { id } }`;
const SEND = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id costUsd } }`;
const SAVE_KEY = `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`;
const LOGIN = `mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }`;
const REGISTER = `mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token user { id } } }`;
const ME = `{ me { id spentTodayUsd budgetUsd dailyBudgetUsd remainingBudgetUsd } }`;
const SET_BUDGET =
  'mutation($id: ID!, $usd: Float) { setUserBudget(userId: $id, dailyUsd: $usd) { id dailyBudgetUsd spentTodayUsd remainingBudgetUsd } }';
const PASSWORD = 'correct horse battery';

let fake: FakeLlmServer;
const apps: TestApp[] = [];

beforeAll(async () => {
  fake = await FakeLlmServer.start();
});
afterEach(async () => {
  fake.reset();
  await Promise.all(apps.splice(0).map((a) => a.close()));
});
afterAll(async () => {
  await fake?.close();
});

async function app(env: Record<string, string>, db?: TestApp['db']): Promise<TestApp> {
  const t = await createTestApp({ env: { OPENAI_BASE_URL: fake.baseUrls.openai, LLM_TIMEOUT_MS: '20000', ...env }, db });
  apps.push(t);
  return t;
}

/** Two instances on one database and one Redis prefix (as behind a load balancer). */
async function twoInstances(env: Record<string, string>): Promise<[TestApp, TestApp]> {
  const shared = { REDIS_URL: redisUrlForTests(), CACHE_PREFIX: `t-${randomBytes(5).toString('hex')}`, ...env };
  const a = await app(shared);
  const b = await app(shared, a.db);
  return [a, b];
}

async function userWithKey(t: TestApp, prefix = 'rl') {
  const u = await t.signUp(prefix);
  const saved = await t.gql(SAVE_KEY, { input: { provider: 'OPENAI', apiKey: 'sk-test-rate-limits' } }, u.token);
  expect(saved.errors).toBeUndefined();
  return u;
}

async function register(t: TestApp, email: string, headers?: Record<string, string>) {
  return t.gql(REGISTER, { e: email, p: PASSWORD }, undefined, headers);
}

const email = (what: string) => `${what}-${randomBytes(4).toString('hex')}@example.com`;
const codes = (res: { errors?: Array<{ extensions?: Record<string, any> }> }) => (res.errors ?? []).map((e) => e.extensions?.code);

describeRedis('rate limits on provider calls', () => {
  it('counts each model call: over the limit answers 429 RATE_LIMITED with retryAfterSeconds, and no provider is called', async () => {
    const t = await app({ REDIS_URL: redisUrlForTests(), RATE_LIMIT_PROVIDER_CALLS: '5', RATE_LIMIT_PROVIDER_WINDOW_SECONDS: '60' });
    const u = await userWithKey(t);
    const three = { prompt: 'hi', models: ['openai:m1', 'openai:m2', 'openai:m3'] };

    const first = await t.gql(RUN, { input: { prompt: 'hi', models: ['openai:m1', 'openai:m2', 'openai:fail-500'] } }, u.token);
    expect(first.errors).toBeUndefined();
    const failed = first.data.runComparison.responses.find((r: any) => r.status === 'FAILED');
    expect(fake.count('openai', 'chat')).toBe(3);

    // 3 + 3 > 5: refused before anything is stored or sent.
    const second = await t.gql(RUN, { input: three }, u.token);
    expect(second.status).toBe(429);
    expect(codes(second)).toEqual(['RATE_LIMITED']);
    const wait = second.errors![0]!.extensions!.retryAfterSeconds;
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(wait).toBeLessThanOrEqual(60);
    expect(Number(second.headers.get('retry-after'))).toBe(wait);
    expect(fake.count('openai', 'chat')).toBe(3);

    // The refused call spent nothing: 3 + 2 = 5 fits exactly.
    const two = await t.gql(RUN, { input: { prompt: 'hi', models: ['openai:m1', 'openai:m2'] } }, u.token);
    expect(two.errors).toBeUndefined();
    expect(fake.count('openai', 'chat')).toBe(5);

    // sendMessage is a model call too.
    const conversationId = (await t.gql(`{ conversations(first: 1) { nodes { id } } }`, {}, u.token)).data.conversations.nodes[0].id;
    const send = await t.gql(SEND, { input: { conversationId, content: 'more', model: 'openai:m1' } }, u.token);
    expect(codes(send)).toEqual(['RATE_LIMITED']);
    // So is a retry; the refused one stays FAILED (retryable later).
    const retry = await t.gql(`mutation($id: ID!) { retryComparisonResponse(id: $id) { status } }`, { id: failed.id }, u.token);
    expect(codes(retry)).toEqual(['RATE_LIMITED']);
    const stored = await t.gql(
      `query($id: ID!) { comparison(id: $id) { responses { id status } } }`,
      { id: first.data.runComparison.id },
      u.token,
    );
    expect(stored.data.comparison.responses.find((r: any) => r.id === failed.id).status).toBe('FAILED');
    expect(fake.count('openai', 'chat')).toBe(5);

    // Another user has their own allowance.
    const other = await userWithKey(t, 'other');
    expect((await t.gql(RUN, { input: three }, other.token)).errors).toBeUndefined();
    expect(await t.app.metrics.registry.getSingleMetricAsString('llmselect_usage_refusals_total')).toMatch(/limit="provider_calls"\} 3/);
  });
});

describeRedis('brute force on login and register', () => {
  it('per account: failures are limited (429 even with the right password), a success clears them, other accounts unaffected', async () => {
    const t = await app({ REDIS_URL: redisUrlForTests(), RATE_LIMIT_LOGIN_FAILURES: '3', RATE_LIMIT_AUTH_PER_IP: '1000' });
    const victim = email('victim');
    const bystander = email('bystander');
    expect((await register(t, victim)).errors).toBeUndefined();
    expect((await register(t, bystander)).errors).toBeUndefined();

    // Two failures, a success (clears them), then three failures in parallel.
    for (let i = 0; i < 2; i++) expect(codes(await t.gql(LOGIN, { e: victim, p: 'wrong password' }))).toEqual(['UNAUTHENTICATED']);
    expect((await t.gql(LOGIN, { e: victim, p: PASSWORD })).errors).toBeUndefined();
    const parallel = await Promise.all([1, 2, 3, 4, 5].map(() => t.gql(LOGIN, { e: victim.toUpperCase(), p: 'wrong password' })));
    expect(parallel.map((r) => codes(r)[0]).sort()).toEqual([
      'RATE_LIMITED',
      'RATE_LIMITED',
      'UNAUTHENTICATED',
      'UNAUTHENTICATED',
      'UNAUTHENTICATED',
    ]);

    const locked = await t.gql(LOGIN, { e: victim, p: PASSWORD });
    expect(locked.status).toBe(429);
    expect(codes(locked)).toEqual(['RATE_LIMITED']);
    expect(locked.errors![0]!.extensions!.retryAfterSeconds).toBeGreaterThan(0);
    expect(locked.headers.get('retry-after')).toMatch(/^\d+$/);

    expect((await t.gql(LOGIN, { e: bystander, p: PASSWORD })).errors).toBeUndefined();
  });

  it('per IP: failed logins and registrations are limited across accounts; X-Forwarded-For only counts with TRUST_PROXY', async () => {
    const env = { REDIS_URL: redisUrlForTests(), RATE_LIMIT_LOGIN_FAILURES: '1000', RATE_LIMIT_AUTH_PER_IP: '4' };
    const direct = await app(env);
    expect((await register(direct, email('ip'))).errors).toBeUndefined();
    for (let i = 0; i < 3; i++) expect(codes(await direct.gql(LOGIN, { e: email('guess'), p: 'x' }))).toEqual(['UNAUTHENTICATED']);
    const refused = await direct.gql(LOGIN, { e: email('guess'), p: 'x' });
    expect(refused.status).toBe(429);
    expect(codes(refused)).toEqual(['RATE_LIMITED']);
    expect(codes(await register(direct, email('more')))).toEqual(['RATE_LIMITED']);
    // Without TRUST_PROXY a forged header changes nothing.
    expect(codes(await direct.gql(LOGIN, { e: email('guess'), p: 'x' }, undefined, { 'x-forwarded-for': '203.0.113.9' }))).toEqual([
      'RATE_LIMITED',
    ]);

    const proxied = await app({ ...env, TRUST_PROXY: 'true' });
    const from = (ip: string) => ({ 'x-forwarded-for': `198.51.100.1, ${ip}` });
    for (let i = 0; i < 4; i++)
      expect(codes(await proxied.gql(LOGIN, { e: email('guess'), p: 'x' }, undefined, from('203.0.113.7')))).toEqual(['UNAUTHENTICATED']);
    expect(codes(await proxied.gql(LOGIN, { e: email('guess'), p: 'x' }, undefined, from('203.0.113.7')))).toEqual(['RATE_LIMITED']);
    expect(codes(await proxied.gql(LOGIN, { e: email('guess'), p: 'x' }, undefined, from('203.0.113.8')))).toEqual(['UNAUTHENTICATED']);
  });

  it('limits are shared by two instances on one Redis', async () => {
    const [a, b] = await twoInstances({ RATE_LIMIT_LOGIN_FAILURES: '2', RATE_LIMIT_AUTH_PER_IP: '1000' });
    const target = email('shared');
    expect((await register(a, target)).errors).toBeUndefined();
    expect(codes(await a.gql(LOGIN, { e: target, p: 'wrong' }))).toEqual(['UNAUTHENTICATED']);
    expect(codes(await b.gql(LOGIN, { e: target, p: 'wrong' }))).toEqual(['UNAUTHENTICATED']);
    expect(codes(await a.gql(LOGIN, { e: target, p: PASSWORD }))).toEqual(['RATE_LIMITED']);
    expect(codes(await b.gql(LOGIN, { e: target, p: PASSWORD }))).toEqual(['RATE_LIMITED']);
  });
});

describe('the client address rate limits key', () => {
  const req = (remoteAddress: string, xff?: string) =>
    ({ socket: { remoteAddress }, headers: xff ? { 'x-forwarded-for': xff } : {} }) as unknown as IncomingMessage;
  it('is the socket address unless TRUST_PROXY says how many proxies append to X-Forwarded-For; IPv6 by /64', () => {
    expect(clientIp(req('::ffff:10.0.0.5', '1.2.3.4'), 0)).toBe('10.0.0.5');
    expect(clientIp(req('10.0.0.5', '6.6.6.6, 1.2.3.4'), 1)).toBe('1.2.3.4');
    expect(clientIp(req('10.0.0.5', '6.6.6.6, 1.2.3.4, 10.0.0.9'), 2)).toBe('1.2.3.4');
    expect(clientIp(req('10.0.0.5', 'garbage'), 1)).toBe('10.0.0.5');
    expect(clientIp(req('2001:db8:1:2:aaaa::1'), 0)).toBe(clientIp(req('2001:db8:1:2:bbbb::7'), 0));
    expect(clientIp(req('2001:db8:1:2:aaaa::1'), 0)).not.toBe(clientIp(req('2001:db8:1:3::1'), 0));
  });
});

describe('rate limits without Redis', () => {
  it('are counted in memory (per instance) when REDIS_URL is unset', async () => {
    const t = await app({ RATE_LIMIT_LOGIN_FAILURES: '2', RATE_LIMIT_AUTH_PER_IP: '1000' });
    expect(t.app.config.redisUrl).toBeUndefined();
    const target = email('memory');
    expect((await register(t, target)).errors).toBeUndefined();
    for (let i = 0; i < 2; i++) expect(codes(await t.gql(LOGIN, { e: target, p: 'wrong' }))).toEqual(['UNAUTHENTICATED']);
    expect(codes(await t.gql(LOGIN, { e: target, p: PASSWORD }))).toEqual(['RATE_LIMITED']);
    // A second in-memory instance keeps its own counts.
    const other = await app({ RATE_LIMIT_LOGIN_FAILURES: '2', RATE_LIMIT_AUTH_PER_IP: '1000' }, t.db);
    expect((await other.gql(LOGIN, { e: target, p: PASSWORD })).errors).toBeUndefined();
  });
});

describeRedisServer('rate limits when Redis fails', () => {
  let redis: PrivateRedis | undefined;
  afterEach(async () => {
    await redis?.stop();
    redis = undefined;
  });

  it('count in memory (per instance) while Redis is down, logged once, counted, in Redis once back; no hang on a hung Redis', async () => {
    redis = await startRedisServer();
    // A generous timeout: with 200 ms, a Redis call slowed by a loaded machine before the kill (or after
    // the restart) failed over to memory and was counted twice (seed 1902371407, another process busy).
    // A killed Redis fails at once whatever the timeout; only the hung one below waits for it.
    const t = await app({ REDIS_URL: redis.url, RATE_LIMIT_LOGIN_FAILURES: '2', RATE_LIMIT_AUTH_PER_IP: '1000', CACHE_TIMEOUT_MS: '5000' });
    const target = email('open');
    const later = email('later');
    expect((await register(t, target)).errors).toBeUndefined();
    expect((await register(t, later)).errors).toBeUndefined();

    await redis.kill();
    for (let i = 0; i < 2; i++) expect(codes(await t.gql(LOGIN, { e: target, p: 'wrong' }))).toEqual(['UNAUTHENTICATED']);
    // The limit still holds, counted in this instance's memory.
    expect(codes(await t.gql(LOGIN, { e: target, p: 'wrong' }))).toEqual(['RATE_LIMITED']);
    expect(await t.app.metrics.registry.getSingleMetricAsString('llmselect_rate_limit_fail_open_total')).toMatch(
      /limit="login_account"\} [1-9]/,
    );
    expect(t.logs.filter((l) => l.includes('rate limit store unavailable')).length).toBe(1);

    // Back: once a call reaches Redis again (it logs so), limits are counted there.
    await redis.restart();
    for (let i = 0; !t.logs.some((l) => l.includes('rate limits are enforced again')); i++) {
      if (i > 500) throw new Error('rate limits never reached Redis again');
      await t.gql(LOGIN, { e: email(`probe${i}`), p: 'wrong' });
    }
    for (let i = 0; i < 2; i++) expect(codes(await t.gql(LOGIN, { e: later, p: 'wrong' }))).toEqual(['UNAUTHENTICATED']);
    expect(codes(await t.gql(LOGIN, { e: later, p: 'wrong' }))).toEqual(['RATE_LIMITED']);

    // A hung Redis (SIGSTOP) answers within the timeout instead of hanging the login.
    redis.pause();
    const hung = await t.gql(LOGIN, { e: email('nobody'), p: 'wrong' });
    expect(codes(hung)).toEqual(['UNAUTHENTICATED']);
    redis.resume();
  });
});

describeRedis('spend budgets', () => {
  const PRICED = ['openai:gpt-4o', 'openai:gpt-4o-mini'];

  it('refuses BUDGET_EXCEEDED (spent, budget, resetsAt; 429) before any provider call, and me shows the spend', async () => {
    const t = await app({ REDIS_URL: redisUrlForTests(), USER_DAILY_BUDGET_USD: '0.000001' });
    const u = await userWithKey(t);
    // Under budget (nothing spent): admitted — the one comparison that may overspend.
    const first = await t.gql(RUN, { input: { prompt: 'spend something', models: PRICED } }, u.token);
    expect(first.errors).toBeUndefined();
    const cost = first.data.runComparison.responses.reduce((n: number, r: any) => n + r.costUsd, 0);
    expect(cost).toBeGreaterThan(0.000001);
    const requests = fake.count('openai', 'chat');

    const refused = await t.gql(RUN, { input: { prompt: 'more', models: PRICED } }, u.token);
    expect(refused.status).toBe(429);
    expect(codes(refused)).toEqual(['BUDGET_EXCEEDED']);
    const ext = refused.errors![0]!.extensions!;
    expect(ext.spentUsd).toBeCloseTo(cost, 6);
    expect(ext.budgetUsd).toBe(0.000001);
    const resetsAt = Date.parse(ext.resetsAt);
    expect(resetsAt).toBeGreaterThan(Date.now() + 23 * 3600_000);
    expect(resetsAt).toBeLessThanOrEqual(Date.now() + 24 * 3600_000);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(23 * 3600);
    const conversationId = (await t.gql(`{ conversations(first: 1) { nodes { id } } }`, {}, u.token)).data.conversations.nodes[0].id;
    expect(codes(await t.gql(SEND, { input: { conversationId, content: 'x', model: 'openai:gpt-4o' } }, u.token))).toEqual([
      'BUDGET_EXCEEDED',
    ]);
    expect(fake.count('openai', 'chat')).toBe(requests);

    const me = (await t.gql(ME, {}, u.token)).data.me;
    expect(me.spentTodayUsd).toBeCloseTo(cost, 9);
    expect(me).toMatchObject({ budgetUsd: 0.000001, dailyBudgetUsd: 0.000001, remainingBudgetUsd: 0 });
  });

  it("deleting what was spent on gives no budget back: a deleted conversation's costs still count for 24 hours", async () => {
    const t = await app({ REDIS_URL: redisUrlForTests(), USER_DAILY_BUDGET_USD: '0.000001' });
    const u = await userWithKey(t);
    const created = await t.gql(`mutation { createConversation(title: "to delete") { id } }`, {}, u.token);
    const conversationId = created.data.createConversation.id;
    const sent = await t.gql(SEND, { input: { conversationId, content: 'spend', model: 'openai:gpt-4o' } }, u.token);
    expect(sent.errors).toBeUndefined();
    const cost = sent.data.sendMessage.costUsd;
    expect(cost).toBeGreaterThan(0.000001);
    expect((await t.gql(ME, {}, u.token)).data.me.spentTodayUsd).toBeCloseTo(cost, 9);

    const deleted = await t.gql(`mutation($id: ID!) { deleteConversation(id: $id) }`, { id: conversationId }, u.token);
    expect(deleted.data.deleteConversation).toBe(true);
    expect((await t.gql(ME, {}, u.token)).data.me).toMatchObject({ remainingBudgetUsd: 0 });
    expect((await t.gql(ME, {}, u.token)).data.me.spentTodayUsd).toBeCloseTo(cost, 9);
    const requests = fake.count('openai', 'chat');
    const refused = await t.gql(RUN, { input: { prompt: 'now free again?', models: PRICED } }, u.token);
    expect(codes(refused)).toEqual(['BUDGET_EXCEEDED']);
    expect(refused.errors![0]!.extensions!.spentUsd).toBeCloseTo(cost, 6);
    expect(fake.count('openai', 'chat')).toBe(requests);
  });

  it('me stays fresh through the per-user edge cache when responses settle after the mutation', async () => {
    const t = await app({ REDIS_URL: redisUrlForTests(), USER_DAILY_BUDGET_USD: '10' });
    const u = await userWithKey(t);
    expect((await t.gql(ME, {}, u.token)).data.me).toMatchObject({ spentTodayUsd: 0, dailyBudgetUsd: 10, remainingBudgetUsd: 10 });
    for (const model of ['gpt-4o', 'gpt-4o-mini']) fake.setBehavior(model, { delayMs: 1500 });
    const started = await t.gql(START, { input: { prompt: 'slow', models: PRICED } }, u.token);
    expect(started.errors).toBeUndefined();
    // While the models run, `me` is answered from the edge cache.
    const before = await t.gql(ME, {}, u.token);
    const cached = await t.gql(ME, {}, u.token);
    expect(before.data.me.spentTodayUsd).toBe(0);
    expect(cached.headers.get('x-cache')).toBe('HIT');
    expect(cached.data.me.spentTodayUsd).toBe(0);

    await t.app.services.runner.settled(started.data.startComparison.id);
    const costs = (
      await t.gql(`query($id: ID!) { comparison(id: $id) { responses { costUsd } } }`, { id: started.data.startComparison.id }, u.token)
    ).data.comparison.responses;
    const spent = costs.reduce((n: number, r: any) => n + r.costUsd, 0);
    expect(spent).toBeGreaterThan(0);
    const after = await t.gql(ME, {}, u.token);
    expect(after.headers.get('x-cache')).not.toBe('HIT');
    expect(after.data.me.spentTodayUsd).toBeCloseTo(spent, 9);
    expect(after.data.me.remainingBudgetUsd).toBeCloseTo(10 - spent, 9);
  });

  it("an admin sets a user's budget (the user's cached me follows); a non-admin is FORBIDDEN", async () => {
    const adminEmail = email('admin');
    const t = await app({ REDIS_URL: redisUrlForTests(), ADMIN_EMAILS: adminEmail, USER_DAILY_BUDGET_USD: '5' });
    const admin = (await register(t, adminEmail)).data.register;
    const u = await t.signUp('budgeted');
    expect((await t.gql(ME, {}, u.token)).data.me).toMatchObject({ dailyBudgetUsd: 5, remainingBudgetUsd: 5 });

    const set = await t.gql(SET_BUDGET, { id: u.userId, usd: 0.5 }, admin.token);
    expect(set.errors).toBeUndefined();
    expect(set.data.setUserBudget).toEqual({ id: u.userId, dailyBudgetUsd: 0.5, spentTodayUsd: 0, remainingBudgetUsd: 0.5 });
    expect((await t.gql(ME, {}, u.token)).data.me).toMatchObject({ dailyBudgetUsd: 0.5, remainingBudgetUsd: 0.5 });

    // 0 is unlimited; null returns to the default.
    expect((await t.gql(SET_BUDGET, { id: u.userId, usd: 0 }, admin.token)).data.setUserBudget).toMatchObject({
      dailyBudgetUsd: null,
      remainingBudgetUsd: null,
    });
    expect((await t.gql(SET_BUDGET, { id: u.userId, usd: null }, admin.token)).data.setUserBudget).toMatchObject({ dailyBudgetUsd: 5 });
    expect(codes(await t.gql(SET_BUDGET, { id: u.userId, usd: -1 }, admin.token))).toEqual(['BAD_USER_INPUT']);
    expect(codes(await t.gql(SET_BUDGET, { id: 'not-a-uuid', usd: 1 }, admin.token))).toEqual(['NOT_FOUND']);

    const forbidden = await t.gql(SET_BUDGET, { id: u.userId, usd: 1000 }, u.token);
    expect(forbidden.status).toBe(403);
    expect(codes(forbidden)).toEqual(['FORBIDDEN']);
    expect((await t.gql(ME, {}, u.token)).data.me.dailyBudgetUsd).toBe(5);
  });

  it('two instances racing past the budget admit at most one in-flight comparison of overspend', async () => {
    const [a, b] = await twoInstances({ USER_DAILY_BUDGET_USD: '1' });
    const u = await userWithKey(a);
    // gpt-4o's worst case (LLM_MAX_OUTPUT_BYTES at list price) is over $1: no two of them fit together.
    fake.setBehavior('gpt-4o', { hang: true });
    fake.setBehavior('gpt-4o-mini', { hang: true });
    const attempts = await Promise.all([a, b, a, b, a, b].map((t) => t.gql(START, { input: { prompt: 'race', models: PRICED } }, u.token)));
    const admitted = attempts.filter((r) => !r.errors);
    expect(admitted).toHaveLength(1);
    for (const refused of attempts.filter((r) => r.errors)) {
      expect(codes(refused)).toEqual(['BUDGET_EXCEEDED']);
      expect(refused.errors![0]!.extensions).toMatchObject({ spentUsd: 0, budgetUsd: 1, resetsAt: null, runningCalls: 1 });
    }
    await fake.waitForRequests(2, 'openai', 'chat');
    expect(fake.count('openai', 'chat')).toBe(2);

    // When it has settled, its reservation is given back and the next one is admitted (on either instance).
    fake.reset();
    const id = admitted[0]!.data.startComparison.id;
    expect((await a.gql(CANCEL, { id }, u.token)).errors).toBeUndefined();
    const next = await b.gql(RUN, { input: { prompt: 'after', models: PRICED } }, u.token);
    expect(next.errors).toBeUndefined();

    // A budget that holds both worst cases runs them side by side.
    const rich = await userWithKey(b, 'rich');
    const adminless = await a.app.services.usage.setBudget(a.app.orm.em.fork(), rich.userId, 100);
    expect(adminless.dailyBudgetUsd).toBe(100);
    fake.setBehavior('gpt-4o', { hang: true });
    fake.setBehavior('gpt-4o-mini', { hang: true });
    const both = await Promise.all([a, b].map((t) => t.gql(START, { input: { prompt: 'side by side', models: PRICED } }, rich.token)));
    expect(both.map((r) => r.errors)).toEqual([undefined, undefined]);
    for (const r of both) await a.gql(CANCEL, { id: r.data.startComparison.id }, rich.token);
  });
});
