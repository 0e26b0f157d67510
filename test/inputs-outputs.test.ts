/**
 * Inputs and outputs (issue 8, "What to build" 2): what clients send is
 * refused before it reaches SQL or a provider; what providers send back is
 * made storable and bounded; a saved key's baseUrl cannot turn the server
 * against its own network.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../src/config';
import { createGuardedFetch, refusal } from '../src/llm/egress';
import { parseModelId } from '../src/llm/model-id';
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestApp, type TestApp } from './helpers/test-app';

const SAVE_KEY = `mutation($i: SaveApiKeyInput!) { saveApiKey(input: $i) { id baseUrl } }`;
const RUN = `mutation($i: RunComparisonInput!) { runComparison(input: $i) { id responses { id model status content error } } }`;
const STATUS = `query($id: ID!) { comparison(id: $id) { responses { status content error } } }`;
const OUTPUT_LIMIT = 2048;

let fake: FakeLlmServer;
let t: TestApp;
let user: { token: string; userId: string };
let conversationId: string;

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  t = await createTestApp({
    env: {
      OPENAI_BASE_URL: fake.baseUrls.openai,
      ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
      GOOGLE_BASE_URL: fake.baseUrls.google,
      LLM_TIMEOUT_MS: '5000',
      LLM_MAX_OUTPUT_BYTES: String(OUTPUT_LIMIT),
      LLM_MAX_LISTED_MODELS: '50',
    },
  });
  user = await t.signUp('io');
  for (const i of [
    { provider: 'OPENAI', apiKey: 'sk-io-openai-0001' },
    { provider: 'ANTHROPIC', apiKey: 'sk-io-anthropic-0002' },
    { provider: 'GOOGLE', apiKey: 'io-google-0003' },
    { provider: 'OPENAI_COMPATIBLE', apiKey: 'io-compat-0004', baseUrl: fake.baseUrls.compatible },
  ]) {
    expect((await t.gql(SAVE_KEY, { i }, user.token)).errors).toBeUndefined();
  }
  conversationId = (await t.gql(`mutation { createConversation(title: "io") { id } }`, {}, user.token)).data.createConversation.id;
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

describe('text inputs', () => {
  const cases = (bad: string): Array<[string, string, Record<string, unknown>, boolean]> => [
    // [what, document, variables, signed in]
    ['title', `mutation($t: String) { createConversation(title: $t) { id } }`, { t: `a${bad}b` }, true],
    [
      'message',
      `mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }`,
      { i: { conversationId, content: `hi${bad}`, model: 'openai:gpt-4o' } },
      true,
    ],
    [
      'prompt',
      `mutation($i: RunComparisonInput!) { startComparison(input: $i) { id } }`,
      { i: { prompt: `p${bad}`, models: ['openai:a', 'anthropic:b'] } },
      true,
    ],
    [
      'email (register)',
      `mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token } }`,
      { e: `a${bad}b@example.com`, p: 'long enough password' },
      false,
    ],
    [
      'email (login)',
      `mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }`,
      { e: `a${bad}b@example.com`, p: 'long enough password' },
      false,
    ],
    [
      'password',
      `mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token } }`,
      { e: 'nul-pass@example.com', p: `long enough ${bad}` },
      false,
    ],
    ['API key', SAVE_KEY, { i: { provider: 'OPENAI', apiKey: `sk-${bad}-x` } }, true],
    ['label', SAVE_KEY, { i: { provider: 'OPENAI', apiKey: 'sk-fine-0001', label: `l${bad}` } }, true],
    ['baseUrl', SAVE_KEY, { i: { provider: 'OPENAI_COMPATIBLE', apiKey: 'k-0001', baseUrl: `http://x${bad}.example/v1` } }, true],
    ['search query', `query($q: String!) { search(query: $q) { nodes { snippet } } }`, { q: `find ${bad}` }, true],
  ];

  it.each(cases('\u0000'))('refuses a NUL in the %s as BAD_USER_INPUT before any SQL', async (_what, query, variables, signedIn) => {
    const { count, result } = await t.countStatements(() => t.gql(query, variables, signedIn ? user.token : undefined));
    expect(result.status).toBe(400);
    expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(result.errors?.[0]?.message).toMatch(/NUL character or an unpaired UTF-16 surrogate/);
    expect(count).toBe(0);
  });

  it.each(cases('\ud800'))(
    'refuses an unpaired surrogate in the %s (it was silently replaced)',
    async (_what, query, variables, signedIn) => {
      const res = await t.gql(query, variables, signedIn ? user.token : undefined);
      expect(res.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    },
  );

  it('refuses a NUL written as an escape in the document itself', async () => {
    const res = await t.gql(`mutation { createConversation(title: "a\\u0000b") { id } }`, {}, user.token);
    expect(res.errors?.[0]).toMatchObject({
      extensions: { code: 'BAD_USER_INPUT' },
      message: expect.stringMatching(/A string literal contains a NUL/),
    });
  });

  it('keeps well-formed astral characters, and counts lengths in code points', async () => {
    const emoji = '\u{1F600}'; // two UTF-16 units, one character
    const ok = await t.gql(`mutation($t: String) { createConversation(title: $t) { title } }`, { t: emoji.repeat(200) }, user.token);
    expect(ok.errors).toBeUndefined();
    expect(ok.data.createConversation.title).toBe(emoji.repeat(200));
    const long = await t.gql(`mutation($t: String) { createConversation(title: $t) { title } }`, { t: emoji.repeat(201) }, user.token);
    expect(long.errors?.[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT' }, message: 'title must be at most 200 characters' });
    const search = await t.gql(`query($q: String!) { search(query: $q) { nodes { snippet } } }`, { q: emoji.repeat(500) }, user.token);
    expect(search.errors).toBeUndefined();
  });

  it('titles a new comparison conversation without splitting a surrogate pair', async () => {
    const prompt = 'x'.repeat(76) + '\u{1F600}'.repeat(10);
    const res = await t.gql(
      `mutation($i: RunComparisonInput!) { runComparison(input: $i) { conversation { title } } }`,
      { i: { prompt, models: ['openai:t1', 'anthropic:t2'] } },
      user.token,
    );
    expect(res.data.runComparison.conversation.title).toBe('x'.repeat(76) + '\u{1F600}' + '...');
  });
});

describe('ids', () => {
  it.each([
    ['cancelComparison', `mutation { cancelComparison(id: "not-a-uuid") { id } }`],
    ['retryComparisonResponse', `mutation { retryComparisonResponse(id: "1 or 1=1") { id } }`],
    ['renameConversation', `mutation { renameConversation(id: "x", title: "y") { id } }`],
    ['deleteConversation', `mutation { deleteConversation(id: "x") }`],
    ['deleteApiKey', `mutation { deleteApiKey(id: "x") }`],
  ])('%s answers NOT_FOUND for a malformed id, before any SQL (it answered INTERNAL_SERVER_ERROR)', async (_name, query) => {
    const { count, result } = await t.countStatements(() => t.gql(query, {}, user.token));
    expect(result.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect(count).toBe(0);
  });

  it('answers null for a malformed id in a query, like a missing one', async () => {
    const res = await t.gql(`{ conversation(id: "x") { id } comparison(id: "y") { id } }`, {}, user.token);
    expect(res.errors).toBeUndefined();
    expect(res.data).toEqual({ conversation: null, comparison: null });
  });
});

describe('model names', () => {
  it.each([
    'openai_compatible:../../admin',
    'openai_compatible:a/../b',
    'openai_compatible:/etc/passwd',
    'openai_compatible:a//b',
    'openai_compatible:a%2F..',
    'openai_compatible:a?x=1',
    'openai_compatible:a#frag',
    'openai_compatible:a\\b',
    'google:files/abc',
    'google:../v1/files',
    'openai:gpt-4o/../../x',
    'openai:gpt-4o@../../x',
  ])('refuses %s before any provider call', async (model) => {
    const before = fake.requests.length;
    const res = await t.gql(
      `mutation($i: RunComparisonInput!) { startComparison(input: $i) { id } }`,
      { i: { prompt: 'p', models: [model, 'anthropic:ok'] } },
      user.token,
    );
    expect(res.errors?.[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT', field: 'model' } });
    expect(fake.requests.length).toBe(before);
  });

  it('accepts the names providers really use', async () => {
    const res = await t.gql(
      RUN,
      {
        i: {
          prompt: 'names',
          models: ['openai_compatible:meta-llama/llama-3.1-8b-instruct', 'openai_compatible:qwen2.5:7b@default', 'google:gemini-2.5-flash'],
        },
      },
      user.token,
    );
    expect(res.errors).toBeUndefined();
    expect(res.data.runComparison.responses.map((r: { status: string }) => r.status)).toEqual(['COMPLETED', 'COMPLETED', 'COMPLETED']);
    expect(parseModelId('google:tunedModels/my-model-1').name).toBe('tunedModels/my-model-1');
    expect(parseModelId('openai_compatible:hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M@ollama').label).toBe('ollama');
  });
});

describe('provider output', () => {
  it('strips NUL from a streamed answer, so the response settles (it stayed STREAMING forever)', async () => {
    fake.setBehavior('nul-model', { text: 'before\u0000after \u0000end', chunks: 3 });
    const res = await t.gql(RUN, { i: { prompt: 'nul please', models: ['openai:nul-model', 'anthropic:nul-model'] } }, user.token);
    const stored = await t.gql(STATUS, { id: res.data.runComparison.id }, user.token);
    for (const r of stored.data.comparison.responses)
      expect(r).toMatchObject({ status: 'COMPLETED', content: 'beforeafter end', error: null });
  });

  it('cuts an answer at the output limit and settles it FAILED with the reason, keeping the text up to the limit', async () => {
    const text = 'é'.repeat(5_000); // 10 KB of UTF-8
    fake.setBehavior('huge-model', { text, chunks: 50 });
    const res = await t.gql(RUN, { i: { prompt: 'say a lot', models: ['openai:huge-model', 'anthropic:fine'] } }, user.token);
    const stored = (await t.gql(STATUS, { id: res.data.runComparison.id }, user.token)).data.comparison.responses;
    expect(stored[0]).toMatchObject({ status: 'FAILED', error: 'UNAVAILABLE: The answer exceeded the 2 KB output limit and was cut off' });
    expect(Buffer.byteLength(stored[0].content)).toBeLessThanOrEqual(OUTPUT_LIMIT);
    expect(Buffer.byteLength(stored[0].content)).toBeGreaterThan(OUTPUT_LIMIT - 2);
    expect(text.startsWith(stored[0].content)).toBe(true);
    expect(stored[1].status).toBe('COMPLETED');
  });

  it('answers sendMessage past the limit with PROVIDER_ERROR saying so', async () => {
    fake.setBehavior('huge-chat', { text: 'x'.repeat(10_000), chunks: 20 });
    const res = await t.gql(
      `mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }`,
      { i: { conversationId, content: 'long one', model: 'openai:huge-chat' } },
      user.token,
    );
    expect(res.errors?.[0]).toMatchObject({
      extensions: { code: 'PROVIDER_ERROR', reason: 'UNAVAILABLE' },
      message: expect.stringMatching(/output limit/),
    });
  });

  it('caps a provider model list (300,000 entries became a 28.7 MB answer) and drops unusable names', async () => {
    fake.setModels('compatible', ['../../escape', 'has space', ...Array.from({ length: 5_000 }, (_, i) => `model-${i}`)]);
    try {
      const res = await t.gql(`{ models(provider: OPENAI_COMPATIBLE) { name } }`, {}, user.token);
      const names = res.data.models.map((m: { name: string }) => m.name);
      expect(names).toHaveLength(50);
      expect(names[0]).toBe('model-0');
      expect(names).not.toContain('../../escape');
    } finally {
      fake.reset();
    }
  });
});

describe('egress policy for a saved baseUrl', () => {
  let redirector: Server;
  let redirectorUrl: string;

  beforeAll(async () => {
    // On 127.0.0.2 (allowed by the policies below); answers every call with a redirect to the fake on 127.0.0.1.
    redirector = createServer((req, res) => {
      res.writeHead(307, { location: `${fake.url}/compatible${req.url}` });
      res.end();
    });
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.2', resolve));
    redirectorUrl = `http://127.0.0.2:${(redirector.address() as AddressInfo).port}/v1`;
  });
  afterAll(() => new Promise<void>((resolve) => redirector.close(() => resolve())));

  /** A second app on the same database with the production policy (tests run on 127.0.0.1, so it is switched on explicitly). */
  async function withPolicy<T>(policy: string, fn: (app: TestApp, token: string) => Promise<T>): Promise<T> {
    const app = await createTestApp({ db: t.db, env: { PROVIDER_ALLOW_PRIVATE_NETWORKS: policy, LLM_TIMEOUT_MS: '5000' } });
    try {
      return await fn(app, (await app.signUp('egress')).token);
    } finally {
      await app.close();
    }
  }

  it.each([
    ['loopback', 'http://127.0.0.1:11434/v1'],
    ['localhost (resolved)', 'http://localhost:11434/v1'],
    ['IPv6 loopback', 'http://[::1]:11434/v1'],
    ['IPv4-mapped loopback', 'http://[::ffff:127.0.0.1]/v1'],
    ['private', 'http://10.1.2.3/v1'],
    ['link-local / metadata', 'http://169.254.169.254/latest/meta-data'],
    ['unspecified', 'http://0.0.0.0:8080/v1'],
  ])('refuses a %s baseUrl at save time under the production policy', async (_what, baseUrl) => {
    await withPolicy('false', async (app, token) => {
      const res = await app.gql(SAVE_KEY, { i: { provider: 'OPENAI_COMPATIBLE', apiKey: 'k-egress-0001', baseUrl } }, token);
      expect(res.errors?.[0]).toMatchObject({
        extensions: { code: 'BAD_USER_INPUT', field: 'baseUrl' },
        message: expect.stringMatching(/which this server does not call/),
      });
    });
  });

  it('accepts a public address at save time', async () => {
    await withPolicy('false', async (app, token) => {
      const res = await app.gql(
        SAVE_KEY,
        { i: { provider: 'OPENAI_COMPATIBLE', apiKey: 'k-egress-0002', baseUrl: 'https://93.184.215.14/v1' } },
        token,
      );
      expect(res.errors).toBeUndefined();
    });
  });

  it('refuses the metadata address even when private networks are allowed', async () => {
    await withPolicy('true', async (app, token) => {
      const metadata = await app.gql(
        SAVE_KEY,
        { i: { provider: 'OPENAI_COMPATIBLE', apiKey: 'k-egress-0003', baseUrl: 'http://169.254.169.254/v1' } },
        token,
      );
      expect(metadata.errors?.[0]?.message).toMatch(/cloud metadata endpoint/);
      const ollama = await app.gql(
        SAVE_KEY,
        { i: { provider: 'OPENAI_COMPATIBLE', apiKey: 'k-egress-0004', baseUrl: 'http://localhost:11434/v1' } },
        token,
      );
      expect(ollama.errors).toBeUndefined();
    });
  });

  it('calls an endpoint the operator allow-list permits', async () => {
    await withPolicy('127.0.0.1/32', async (app, token) => {
      await app.gql(SAVE_KEY, { i: { provider: 'OPENAI_COMPATIBLE', apiKey: 'k-egress-0005', baseUrl: fake.baseUrls.compatible } }, token);
      const res = await app.gql(RUN, { i: { prompt: 'allowed', models: ['openai_compatible:m1', 'openai_compatible:m2'] } }, token);
      expect(res.data.runComparison.responses.map((r: { status: string }) => r.status)).toEqual(['COMPLETED', 'COMPLETED']);
    });
  });

  it('does not follow a redirect to a refused address (checked at connect time)', async () => {
    await withPolicy('127.0.0.2/32', async (app, token) => {
      const saved = await app.gql(
        SAVE_KEY,
        { i: { provider: 'OPENAI_COMPATIBLE', apiKey: 'k-egress-0006', baseUrl: redirectorUrl } },
        token,
      );
      expect(saved.errors).toBeUndefined();
      const before = fake.count('compatible');
      const res = await app.gql(RUN, { i: { prompt: 'redirect me', models: ['openai_compatible:m1', 'openai_compatible:m2'] } }, token);
      for (const r of res.data.runComparison.responses) {
        expect(r).toMatchObject({
          status: 'FAILED',
          error: expect.stringMatching(/^BAD_REQUEST: .*private, loopback, link-local or metadata address/),
        });
      }
      const models = await app.gql(`{ models(provider: OPENAI_COMPATIBLE) { name } }`, {}, token);
      expect(models.errors).toBeUndefined();
      expect(fake.count('compatible')).toBe(before);
    });
  });

  it('checks every DNS answer when connecting, so a host that rebinds to a refused address is not reached', async () => {
    const policy = { allowPrivateNetworks: false, allowCidrs: ['127.0.0.2/32'] };
    const target = new URL(redirectorUrl);
    const answers: Record<string, string> = { 'allowed.test': '127.0.0.2', 'rebound.test': '127.0.0.1' };
    const lookup = ((
      host: string,
      _opts: unknown,
      callback: (err: Error | null, list: Array<{ address: string; family: number }>) => void,
    ) => callback(null, [{ address: answers[host] ?? '203.0.113.9', family: 4 }])) as never;
    const guarded = createGuardedFetch(policy, { lookup });
    try {
      const allowed = await guarded(`http://allowed.test:${target.port}/v1/models`, { redirect: 'manual' });
      expect(allowed.status).toBe(307);
      await allowed.text();
      await expect(guarded(`http://rebound.test:${target.port}/v1/models`)).rejects.toMatchObject({ cause: { code: 'EGRESS_DENIED' } });
    } finally {
      await guarded.close();
    }
  });

  it('classifies addresses as the policy table says', () => {
    const closed = { allowPrivateNetworks: false, allowCidrs: [] };
    expect(refusal(closed, '93.184.215.14')).toBeNull();
    expect(refusal(closed, '2606:4700::1')).toBeNull();
    expect(refusal(closed, '127.0.0.1')).toBe('a loopback address');
    expect(refusal(closed, '::ffff:10.0.0.1')).toBe('a private address');
    expect(refusal(closed, '100.64.0.1')).toBe('a carrierGradeNat address');
    expect(refusal(closed, 'fd00:ec2::254')).toBe('a cloud metadata endpoint');
    expect(refusal({ allowPrivateNetworks: true, allowCidrs: [] }, '192.168.1.10')).toBeNull();
    expect(refusal({ allowPrivateNetworks: true, allowCidrs: [] }, '169.254.169.254')).toBe('a cloud metadata endpoint');
    expect(refusal({ allowPrivateNetworks: false, allowCidrs: ['169.254.169.254/32'] }, '169.254.169.254')).toBeNull();
  });

  it('defaults to refusing private networks in production only, and parses the allow-list', () => {
    const base = { JWT_SECRET: 'x'.repeat(40), ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64') };
    expect(loadConfig({ ...base, NODE_ENV: 'production' }).egress).toEqual({ allowPrivateNetworks: false, allowCidrs: [] });
    expect(loadConfig({ ...base, NODE_ENV: 'development', DATA_DIR: '/tmp/llmselect-egress-config' }).egress.allowPrivateNetworks).toBe(
      true,
    );
    expect(loadConfig({ ...base, NODE_ENV: 'production', PROVIDER_ALLOW_PRIVATE_NETWORKS: '10.0.0.0/8, fd00::/8' }).egress).toEqual({
      allowPrivateNetworks: false,
      allowCidrs: ['10.0.0.0/8', 'fd00::/8'],
    });
    expect(() => loadConfig({ ...base, NODE_ENV: 'production', PROVIDER_ALLOW_PRIVATE_NETWORKS: 'intranet' })).toThrow(
      /PROVIDER_ALLOW_PRIVATE_NETWORKS must be/,
    );
  });
});
