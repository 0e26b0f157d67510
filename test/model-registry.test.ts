/**
 * `models` through GraphQL against the fake provider server: anonymous
 * catalog (publicly cacheable), the signed-in merge, single flight on a cold
 * cache, per-provider timeouts, stale-while-revalidate and the last good list.
 * Runs on the in-memory store and, when it answers, on the shared Redis.
 */
import { createClient } from '@redis/client';
import { MODEL_CATALOG } from '../src/llm/catalog';
import { FakeLlmServer } from './helpers/fake-llm';
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { createTestApp, type TestApp } from './helpers/test-app';

const MODELS = `query Models($provider: Provider) {
  models(provider: $provider) { id provider name displayName contextWindow inputCostPerMTok outputCostPerMTok }
}`;
const KEYS = {
  OPENAI: 'sk-openai-test-1234',
  ANTHROPIC: 'sk-ant-test-1234',
  GOOGLE: 'goog-test-1234',
  MISTRAL: 'mistral-test-1234',
} as const;
const LISTED = ['openai', 'anthropic', 'google', 'mistral'] as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Moves this process's clock (`Date.now`, which the registry's and the cache's ages read; the apps run in this
 * process) `ms` ahead at once: the lists age past their TTL without the test waiting for it. Undone after each test.
 */
let clockAhead = 0;
const realNow = Date.now;
function advanceClock(ms: number): void {
  if (clockAhead === 0) jest.spyOn(Date, 'now').mockImplementation(() => realNow.call(Date) + clockAhead);
  clockAhead += ms;
}
afterEach(() => {
  clockAhead = 0;
  jest.restoreAllMocks();
});

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(20);
  }
}

let fake: FakeLlmServer;
beforeAll(async () => {
  fake = await FakeLlmServer.start();
});
afterAll(() => fake.close());
/** Clears the fake and gives each provider one model that the curated catalog does not know. */
function resetFake(): void {
  fake.reset();
  fake.setModels('openai', ['gpt-4o', 'ft:gpt-4o:acme']);
  fake.setModels('anthropic', ['claude-sonnet-4-5', 'claude-custom']);
  fake.setModels('google', ['gemini-2.5-pro', 'gemini-exp']);
  fake.setModels('mistral', ['mistral-small-latest', 'mistral-custom']);
}
beforeEach(resetFake);

const apps: TestApp[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

function registrySuite(extraEnv: () => Record<string, string>) {
  async function app(env: Record<string, string> = {}): Promise<TestApp> {
    const t = await createTestApp({
      env: {
        OPENAI_BASE_URL: fake.baseUrls.openai,
        ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
        GOOGLE_BASE_URL: fake.baseUrls.google,
        MISTRAL_BASE_URL: fake.baseUrls.mistral,
        // Only the test of the list timeout sets a short one: elsewhere a slow (loaded) machine must not drop a list.
        LLM_LIST_TIMEOUT_MS: '60000',
        ...extraEnv(),
        ...env,
      },
    });
    apps.push(t);
    return t;
  }

  async function userWithKeys(t: TestApp, providers: Array<keyof typeof KEYS> = ['OPENAI', 'ANTHROPIC', 'GOOGLE', 'MISTRAL']) {
    const user = await t.signUp('models');
    for (const provider of providers) {
      const res = await t.gql(
        `mutation($i: SaveApiKeyInput!) { saveApiKey(input: $i) { id } }`,
        { i: { provider, apiKey: KEYS[provider] } },
        user.token,
      );
      expect(res.errors).toBeUndefined();
    }
    return user;
  }

  const ids = (res: { data?: { models: Array<{ id: string }> } }) => res.data!.models.map((m) => m.id);

  it('anonymous: the catalog only, publicly cacheable for an hour, with no provider call', async () => {
    const t = await app();
    const res = await t.gql(MODELS);
    expect(res.errors).toBeUndefined();
    expect(ids(res)).toEqual(MODEL_CATALOG.map((e) => `${e.provider}:${e.name}`));
    expect(res.data.models[0]).toEqual({
      id: 'openai:gpt-5',
      provider: 'OPENAI',
      name: 'gpt-5',
      displayName: 'GPT-5',
      contextWindow: 400_000,
      inputCostPerMTok: 1.25,
      outputCostPerMTok: 10,
    });
    const anthropic = await t.gql(MODELS, { provider: 'ANTHROPIC' });
    expect(anthropic.data.models.every((m: { provider: string }) => m.provider === 'ANTHROPIC')).toBe(true);
    expect(anthropic.data.models.length).toBe(MODEL_CATALOG.filter((e) => e.provider === 'anthropic').length);

    const get = await fetch(`${t.url}/graphql?query=${encodeURIComponent('{ models { id } }')}`, {
      headers: { 'apollo-require-preflight': 'true' },
    });
    expect(get.status).toBe(200);
    expect(get.headers.get('cache-control')).toBe('public, max-age=3600');
    expect(fake.count(undefined, 'models')).toBe(0);
  });

  it('signed in: the catalog merged with each keyed provider list; never publicly cacheable', async () => {
    const t = await app();
    const user = await userWithKeys(t, ['OPENAI', 'MISTRAL']);
    const res = await t.gql(MODELS, {}, user.token);
    expect(res.errors).toBeUndefined();
    const list = ids(res);
    for (const e of MODEL_CATALOG) expect(list).toContain(`${e.provider}:${e.name}`);
    expect(list).toEqual(expect.arrayContaining(['openai:ft:gpt-4o:acme', 'mistral:mistral-custom']));
    expect(list).not.toContain('anthropic:claude-custom'); // no anthropic key
    expect(res.data.models.find((m: { id: string }) => m.id === 'openai:ft:gpt-4o:acme')).toEqual({
      id: 'openai:ft:gpt-4o:acme',
      provider: 'OPENAI',
      name: 'ft:gpt-4o:acme',
      displayName: 'ft:gpt-4o:acme',
      contextWindow: null,
      inputCostPerMTok: null,
      outputCostPerMTok: null,
    });
    // The catalog's curated data wins for listed names it knows.
    expect(res.data.models.filter((m: { id: string }) => m.id === 'openai:gpt-4o')).toHaveLength(1);
    expect(
      fake.requests
        .filter((r) => r.kind === 'models')
        .map((r) => r.apiKey)
        .sort(),
    ).toEqual([KEYS.MISTRAL, KEYS.OPENAI].sort());

    const mistralOnly = await t.gql(MODELS, { provider: 'MISTRAL' }, user.token);
    expect(ids(mistralOnly)).toContain('mistral:mistral-custom');
    expect(mistralOnly.data.models.every((m: { provider: string }) => m.provider === 'MISTRAL')).toBe(true);

    const get = await fetch(`${t.url}/graphql?query=${encodeURIComponent('{ models { id } }')}`, {
      headers: { 'apollo-require-preflight': 'true', authorization: `Bearer ${user.token}` },
    });
    expect(get.headers.get('cache-control')).toBe('private, no-cache');
  });

  it('50 concurrent signed-in queries on a cold cache call each provider list endpoint once', async () => {
    const t = await app({ LLM_LIST_TIMEOUT_MS: '60000' }); // 50 queries at once on a busy machine must not hit the list timeout
    // Five users holding the same keys share one registry entry per provider (same fingerprint).
    const users: Array<{ token: string }> = [];
    for (let i = 0; i < 5; i++) users.push(await userWithKeys(t));
    resetFake();
    fake.setBehavior('openai:models', { delayMs: 50 });
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => t.gql(MODELS, {}, users[i % 5]!.token)));
    for (const res of results) {
      expect(res.errors).toBeUndefined();
      expect(ids(res)).toContain('openai:ft:gpt-4o:acme');
      expect(ids(res)).toContain('google:gemini-exp');
    }
    for (const provider of LISTED) expect(fake.count(provider, 'models')).toBe(1);
    // Warm: no further calls.
    await t.gql(MODELS, {}, users[0]!.token);
    for (const provider of LISTED) expect(fake.count(provider, 'models')).toBe(1);
  });

  it('a hanging provider costs at most the list timeout once, and the others and the catalog still answer', async () => {
    // 3 s: long enough that the providers that do answer are in on a loaded machine (1.5 s was not, at load 30),
    // short enough to wait for.
    const t = await app({ LLM_LIST_TIMEOUT_MS: '3000' });
    const user = await userWithKeys(t);
    fake.setBehavior('anthropic:models', { hang: true });
    const started = Date.now();
    const res = await t.gql(MODELS, {}, user.token);
    const took = Date.now() - started;
    expect(res.errors).toBeUndefined();
    expect(took).toBeGreaterThanOrEqual(2_900);
    // The provider never answers, so an answer at all means the list timeout fired; the bound only tells
    // it from a wait on another, far longer timer (LLM_TIMEOUT_MS, 60 s), however loaded the machine.
    expect(took).toBeLessThan(30_000);
    const list = ids(res);
    expect(list).toEqual(
      expect.arrayContaining(['openai:ft:gpt-4o:acme', 'google:gemini-exp', 'mistral:mistral-custom', 'anthropic:claude-sonnet-4-5']),
    );
    expect(list).not.toContain('anthropic:claude-custom');
    // Backing off: the next request does not wait for anthropic again.
    const again = await t.gql(MODELS, {}, user.token);
    expect(ids(again)).toEqual(list);
    expect(fake.count('anthropic', 'models')).toBe(1);
    expect(t.logs.some((l) => l.includes('provider model list unavailable'))).toBe(true);
    expect(t.logs.join('\n')).not.toContain(KEYS.ANTHROPIC);
  });

  it('serves a stale list at once and refreshes it once in the background', async () => {
    // The refresh is held until the stale answers are in (they cannot race it, however busy the machine);
    // the clock moves past the TTL at once, so the TTL can be long enough that the other providers' refreshed
    // lists stay fresh until the check ends however loaded the machine (3 s real time was not, at load 30).
    const t = await app({ MODEL_REGISTRY_TTL_MS: '60000', LLM_LIST_TIMEOUT_MS: '60000' });
    const user = await userWithKeys(t);
    expect(ids(await t.gql(MODELS, {}, user.token))).toContain('openai:ft:gpt-4o:acme');
    for (const provider of LISTED) expect(fake.count(provider, 'models')).toBe(1);

    fake.setModels('openai', ['gpt-4o', 'ft:gpt-4o:acme', 'gpt-new']);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    fake.setBehavior('openai:models', { beforeAnswer: () => held });
    advanceClock(60_100); // past the TTL: the lists are stale (their age is what this test is about)
    const stale = await Promise.all(Array.from({ length: 10 }, () => t.gql(MODELS, {}, user.token)));
    for (const res of stale) expect(ids(res)).not.toContain('openai:gpt-new'); // served stale, not waiting for the held refresh
    await fake.waitForRequests(2, 'openai', 'models'); // the one background refresh is in flight
    release();
    await eventually(async () => ids(await t.gql(MODELS, {}, user.token)).includes('openai:gpt-new'), 30_000, 'background refresh');
    for (const provider of LISTED) expect(fake.count(provider, 'models')).toBe(2);
  });

  it('a failing refresh keeps serving the last good list', async () => {
    const t = await app({ MODEL_REGISTRY_TTL_MS: '300' });
    const user = await userWithKeys(t, ['OPENAI']);
    expect(ids(await t.gql(MODELS, {}, user.token))).toContain('openai:ft:gpt-4o:acme');

    fake.setBehavior('openai:models', { status: 503 });
    advanceClock(400); // past the TTL
    expect(ids(await t.gql(MODELS, {}, user.token))).toContain('openai:ft:gpt-4o:acme'); // stale; refresh fails in the background
    await fake.waitForRequests(2, 'openai', 'models'); // the refresh attempt reached the provider
    expect(ids(await t.gql(MODELS, {}, user.token))).toContain('openai:ft:gpt-4o:acme');

    // Even with the stored entry gone, the process's last good list answers while the provider fails.
    await t.app.cache.clearNamespace('models');
    const res = await t.gql(MODELS, {}, user.token);
    expect(res.errors).toBeUndefined();
    expect(ids(res)).toContain('openai:ft:gpt-4o:acme');
  });
}

describe('model registry (in-memory store)', () => {
  registrySuite(() => ({}));
});

describeRedis('model registry (Redis)', () => {
  registrySuite(() => ({ REDIS_URL: redisUrlForTests() }));

  it('keys entries by provider and key fingerprint, never by the key itself', async () => {
    const t = await createTestApp({
      env: { REDIS_URL: redisUrlForTests(), OPENAI_BASE_URL: fake.baseUrls.openai, LLM_LIST_TIMEOUT_MS: '60000' },
    });
    apps.push(t);
    const user = await t.signUp('fp');
    await t.gql(
      `mutation($i: SaveApiKeyInput!) { saveApiKey(input: $i) { id } }`,
      { i: { provider: 'OPENAI', apiKey: KEYS.OPENAI } },
      user.token,
    );
    await t.gql(MODELS, {}, user.token);
    const client = createClient({ url: redisUrlForTests() });
    await client.connect();
    try {
      const keys: string[] = [];
      for await (const batch of client.scanIterator({ MATCH: `${t.app.config.cachePrefix}:models:*` })) keys.push(...batch);
      expect(keys).toEqual([expect.stringMatching(new RegExp(`^${t.app.config.cachePrefix}:models:openai:[0-9a-f]{16}$`))]);
      const stored = await client.get(keys[0]!);
      expect(stored).toContain('ft:gpt-4o:acme');
      expect(keys[0]).not.toContain(KEYS.OPENAI);
      expect(stored).not.toContain(KEYS.OPENAI);
    } finally {
      await client.quit();
    }
  });
});
