/**
 * Logs a person can read: one line per request (method, path, operation,
 * status, duration, SQL statements, cache HIT/MISS, user id — never variables)
 * and one line per failed provider call (provider, model, label, reason, status).
 */
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestApp, type TestApp } from './helpers/test-app';

let fake: FakeLlmServer;
let t: TestApp;
beforeAll(async () => {
  fake = await FakeLlmServer.start();
  t = await createTestApp({
    env: { OPENAI_BASE_URL: fake.baseUrls.openai, ANTHROPIC_BASE_URL: fake.baseUrls.anthropic, LLM_TIMEOUT_MS: '2500' },
  });
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

type Line = Record<string, any>;
/** The lines logged while `fn` ran, up to and including the line of the request it made. */
async function linesDuring(fn: () => Promise<{ headers: Headers } | Response>): Promise<Line[]> {
  const from = t.logs.length;
  const requestId = (await fn()).headers.get('x-request-id');
  const lines = () => t.logs.slice(from).map((l) => JSON.parse(l) as Line);
  // The request line is written when the response ends, which the client may see first: wait for that line.
  const deadline = Date.now() + 5_000;
  while (!lines().some((l) => l.requestId === requestId && typeof l.status === 'number')) {
    if (Date.now() > deadline) throw new Error(`no request line for ${requestId}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return lines();
}

const SIDEBAR = 'query Sidebar($first: Int) { conversations(first: $first) { nodes { id title } } }';

describe('the request line', () => {
  it('says method, path, operation, status, duration, SQL statements, cache and user — and no variables', async () => {
    const user = await t.signUp('logs');
    await t.gql(`mutation { createConversation(title: "logged") { id } }`, {}, user.token);
    const miss = await linesDuring(() => t.gql(SIDEBAR, { first: 7 }, user.token));
    const missLine = miss.find((l) => l.path === '/graphql' && l.operation === 'Sidebar');
    expect(missLine).toMatchObject({
      level: 30,
      method: 'POST',
      status: 200,
      cache: 'MISS',
      userId: user.userId,
      requestId: expect.any(String),
    });
    expect(missLine!.sql).toBeGreaterThan(0);
    expect(missLine!.durationMs).toBeGreaterThanOrEqual(0);
    expect(missLine!.msg).toMatch(new RegExp(`^POST /graphql Sidebar 200 [\\d.]+ms sql=\\d+ cache=MISS user=${user.userId}$`));

    const hit = await linesDuring(() => t.gql(SIDEBAR, { first: 7 }, user.token));
    expect(hit.find((l) => l.operation === 'Sidebar')).toMatchObject({ status: 200, cache: 'HIT', sql: 0, userId: user.userId });

    // Variables never reach the line.
    const secret = 'do-not-log-this-password';
    const login = await linesDuring(() =>
      t.gql(`mutation Login($e: String!, $p: String!) { login(email: $e, password: $p) { token } }`, {
        e: 'nobody@example.com',
        p: secret,
      }),
    );
    const loginLine = login.find((l) => l.operation === 'Login')!;
    expect(loginLine).toMatchObject({ method: 'POST', path: '/graphql', status: 401 }); // UNAUTHENTICATED
    expect(loginLine.userId).toBeUndefined();
    expect(JSON.stringify(login)).not.toContain(secret);
    expect(JSON.stringify(login)).not.toContain('nobody@example.com');
  });

  it('names anonymous documents by their type, and logs other routes too', async () => {
    const anonymous = await linesDuring(() => t.gql('{ __typename }'));
    expect(anonymous.find((l) => l.path === '/graphql')).toMatchObject({ operation: 'query', status: 200, sql: 0 });
    const missing = await linesDuring(() => fetch(`${t.url}/nope`));
    expect(missing.find((l) => l.path === '/nope')).toMatchObject({
      method: 'GET',
      status: 404,
      msg: expect.stringMatching(/^GET \/nope 404 /),
    });
  });
});

describe('provider failures', () => {
  it('are logged with provider, model, label, reason and status — and no provider message or key', async () => {
    const user = await t.signUp('provider-logs');
    for (const [provider, apiKey] of [
      ['OPENAI', 'sk-logs-openai-9999'],
      ['ANTHROPIC', 'sk-logs-anthropic-8888'],
    ]) {
      await t.gql(`mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`, { input: { provider, apiKey } }, user.token);
    }
    const lines = await linesDuring(() =>
      t.gql(
        `mutation($input: RunComparisonInput!) { runComparison(input: $input) { responses { status } } }`,
        { input: { prompt: 'fail please', models: ['openai:fail-429', 'anthropic:fail-503', 'openai:fine'] } },
        user.token,
      ),
    );
    const failures = lines.filter((l) => l.msg.startsWith('provider call failed'));
    expect(failures.map((l) => [l.provider, l.model, l.label, l.reason, l.status]).sort()).toEqual([
      ['anthropic', 'anthropic:fail-503', 'default', 'UNAVAILABLE', 503],
      ['openai', 'openai:fail-429', 'default', 'RATE_LIMIT', 429],
    ]);
    for (const line of failures) {
      expect(line.level).toBe(40);
      expect(line.responseId).toEqual(expect.any(String));
      expect(line.msg).toMatch(
        /^provider call failed: (openai openai:fail-429 RATE_LIMIT \(HTTP 429\)|anthropic anthropic:fail-503 UNAVAILABLE \(HTTP 503\))$/,
      );
    }
    expect(JSON.stringify(lines)).not.toMatch(/sk-logs-/);

    // sendMessage logs the same line.
    const conversation = (await t.gql(`mutation { createConversation { id } }`, {}, user.token)).data.createConversation.id;
    const sent = await linesDuring(() =>
      t.gql(
        `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }`,
        { input: { conversationId: conversation, content: 'x', model: 'openai:fail-500' } },
        user.token,
      ),
    );
    expect(sent.find((l) => l.msg.startsWith('provider call failed'))).toMatchObject({
      provider: 'openai',
      model: 'openai:fail-500',
      reason: 'UNAVAILABLE',
      status: 500,
      conversationId: conversation,
    });
  });
});
