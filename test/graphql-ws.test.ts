/**
 * Subscriptions over WebSocket (`/graphql/ws`, the graphql-ws protocol that
 * Apollo Client's GraphQLWsLink speaks), driven by graphql-ws's own client:
 * a whole comparison streamed, the token in `connection_init`, the same
 * checks as SSE, origins, revocation and shutdown.
 */
import { type Client, createClient, type ExecutionResult } from 'graphql-ws';
import WebSocket from 'ws';
import { FakeLlmServer } from './helpers/fake-llm';
import { subscribe as sseSubscribe } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';

const START = 'mutation($input: RunComparisonInput!) { startComparison(input: $input) { id } }';
const GET = 'query($id: ID!) { comparison(id: $id) { responses { id status content } } }';
const EVENTS = 'subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status delta content } }';
const SAVE_KEY = 'mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }';
const TOKEN = 'mutation($input: ApiTokenInput!) { createApiToken(input: $input) { token apiToken { id } } }';
const REVOKE = 'mutation($id: ID!) { revokeApiToken(id: $id) { id } }';

type Event = { responseId: string; status: string; delta: string | null; content: string | null };

let fake: FakeLlmServer;
let t: TestApp;
let user: { token: string; userId: string };
const clients: Client[] = [];

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  t = await createTestApp({ env: { ...fake.providerEnv(), CORS_ORIGINS: 'https://app.example.com' } });
  user = await t.signUp('ws');
  await t.gql(SAVE_KEY, { input: { provider: 'OPENAI', apiKey: 'sk-ws-0000000001' } }, user.token);
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.dispose()));
  await t?.close();
  await fake?.close();
});

function wsUrl(app = t): string {
  return `${app.url.replace(/^http/, 'ws')}/graphql/ws`;
}

/** A client whose socket closes are reported (the close event's code and reason). */
function client(token: string | undefined, app = t) {
  let closed: (e: { code: number; reason: string }) => void;
  const closedWith = new Promise<{ code: number; reason: string }>((resolve) => (closed = resolve));
  const c = createClient({
    url: wsUrl(app),
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    connectionParams: token === undefined ? {} : { authorization: `Bearer ${token}` },
    on: { closed: (e) => closed(e as { code: number; reason: string }) },
    onNonLazyError: () => undefined,
  });
  clients.push(c);
  return { c, closedWith };
}

/** Every result of one subscription until it completes or errors. */
function collect(c: Client, query: string, variables: Record<string, unknown>) {
  const results: ExecutionResult[] = [];
  const done = new Promise<{ results: ExecutionResult[]; error?: unknown }>((resolve) => {
    c.subscribe(
      { query, variables },
      {
        next: (r) => void results.push(r as ExecutionResult),
        error: (error) => resolve({ results, error }),
        complete: () => resolve({ results }),
      },
    );
  });
  return done;
}

async function startComparison(token = user.token): Promise<string> {
  const res = await t.gql(START, { input: { prompt: 'Say something', models: ['openai:ws-a-stream-2', 'openai:ws-b-stream-2'] } }, token);
  expect(res.errors).toBeUndefined();
  return res.data.startComparison.id;
}

describe('subscriptions over WebSocket (/graphql/ws)', () => {
  it('streams a whole comparison to a client authenticated in connection_init, each answer exactly its stored text', async () => {
    const { c } = client(user.token);
    const id = await startComparison();
    const { results, error } = await collect(c, EVENTS, { id });
    expect(error).toBeUndefined();
    const events = results.map((r) => {
      expect(r.errors).toBeUndefined();
      return (r.data as { comparisonEvents: Event }).comparisonEvents;
    });
    const text = new Map<string, string>();
    const settled = new Map<string, Event>();
    for (const e of events) {
      if (e.content !== null && !text.has(e.responseId)) text.set(e.responseId, e.content);
      else if (e.delta) text.set(e.responseId, (text.get(e.responseId) ?? '') + e.delta);
      if (e.status === 'COMPLETED') settled.set(e.responseId, e);
    }
    const stored = (await t.gql(GET, { id }, user.token)).data.comparison.responses as Array<{ id: string; content: string }>;
    expect(settled.size).toBe(2);
    for (const r of stored) {
      expect(settled.get(r.id)!.content).toBe(r.content);
      expect(text.get(r.id)).toBe(r.content);
    }
    expect(events.some((e) => e.delta)).toBe(true);
  });

  it('answers the same refusals as SSE: no token UNAUTHENTICATED, a query BAD_USER_INPUT, a bad token closes with 4403', async () => {
    const id = await startComparison();
    const anonymous = client(undefined).c;
    const { results } = await collect(anonymous, EVENTS, { id });
    expect(results[0]!.errors![0]!.extensions).toMatchObject({ code: 'UNAUTHENTICATED' });

    const signedIn = client(user.token).c;
    const query = await collect(signedIn, 'query { me { id } }', {});
    expect((query.error as Array<{ extensions: { code: string } }>)[0]!.extensions.code).toBe('BAD_USER_INPUT');
    const invalid = await collect(signedIn, 'subscription { nope }', {});
    expect((invalid.error as Array<{ extensions: { code: string } }>)[0]!.extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');

    const bad = client('not-a-real-token');
    await expect(bad.closedWith).resolves.toMatchObject({ code: 4403 });
  });

  it('refuses an upgrade from an origin CORS_ORIGINS does not allow, before any WebSocket exists', async () => {
    const status = (origin: string) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(wsUrl(), 'graphql-transport-ws', { headers: { origin } });
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => {
          ws.close();
          resolve(101);
        });
        ws.on('error', () => undefined);
      });
    await expect(status('https://evil.example.org')).resolves.toBe(403);
    await expect(status('https://app.example.com')).resolves.toBe(101);
    await expect(status(t.url)).resolves.toBe(101);
  });

  it('closes the sockets of a personal token when it is revoked (4401)', async () => {
    const created = await t.gql(TOKEN, { input: { name: 'ws', scopes: ['READ', 'COMPARE'] } }, user.token);
    const { token, apiToken } = created.data.createApiToken;
    const { c, closedWith } = client(token);
    fake.reset();
    for (const m of ['ws-hold-a', 'ws-hold-b']) fake.setBehavior(m, { hang: true });
    const res = await t.gql(START, { input: { prompt: 'Hold on', models: ['openai:ws-hold-a', 'openai:ws-hold-b'] } }, user.token);
    expect(res.errors).toBeUndefined();
    const subscription = collect(c, EVENTS, { id: res.data.startComparison.id });
    await fake.waitForRequests(2, 'openai', 'chat');
    await t.gql(REVOKE, { id: apiToken.id }, user.token);
    await expect(closedWith).resolves.toMatchObject({ code: 4401 });
    await subscription;
  });

  it('ends every socket with 1001 when the server shuts down', async () => {
    const own = await createTestApp({ env: { ...fake.providerEnv() } });
    const u = await own.signUp('ws-down');
    const { closedWith } = client(u.token, own);
    // Open once the server acknowledged connection_init.
    await new Promise<void>((resolve, reject) => {
      const probe = createClient({
        url: wsUrl(own),
        webSocketImpl: WebSocket,
        lazy: false,
        retryAttempts: 0,
        on: { connected: () => resolve() },
      });
      clients.push(probe);
      setTimeout(() => reject(new Error('no connection')), 10_000).unref();
    });
    await own.close();
    await expect(closedWith).resolves.toMatchObject({ code: 1001 });
  });

  it('ends a stream when its token expires: an UNAUTHENTICATED last event over SSE, 4401 over WebSocket', async () => {
    const own = await createTestApp({ env: { ...fake.providerEnv(), JWT_EXPIRES_IN: '3s', SHUTDOWN_GRACE_MS: '200' } });
    try {
      const u = await own.signUp('ws-exp');
      await own.gql(SAVE_KEY, { input: { provider: 'OPENAI', apiKey: 'sk-ws-0000000002' } }, u.token);
      fake.reset();
      for (const m of ['ws-exp-a', 'ws-exp-b']) fake.setBehavior(m, { hang: true });
      const res = await own.gql(START, { input: { prompt: 'Hold', models: ['openai:ws-exp-a', 'openai:ws-exp-b'] } }, u.token);
      const id = res.data.startComparison.id;
      const { c, closedWith } = client(u.token, own);
      const overWs = collect(c, EVENTS, { id });
      const sse = await sseSubscribe(own.url, EVENTS, { id }, u.token);
      const last: Array<{ errors?: Array<{ extensions?: Record<string, unknown> }> }> = [];
      for await (const e of sse.events) last.push(e);
      expect(last.at(-1)!.errors![0]!.extensions).toMatchObject({ code: 'UNAUTHENTICATED' });
      expect(sse.completed).toBe(true);
      await expect(closedWith).resolves.toMatchObject({ code: 4401 });
      await overWs;
    } finally {
      await own.close();
    }
  });

  it('closes a socket with no subscription running for WS_IDLE_MS (1000 Idle)', async () => {
    const own = await createTestApp({ env: { ...fake.providerEnv(), WS_IDLE_MS: '300' } });
    try {
      const idle = client(undefined, own);
      await expect(idle.closedWith).resolves.toMatchObject({ code: 1000, reason: 'Idle' });
    } finally {
      await own.close();
    }
  });
});
