/**
 * Review of `/graphql/ws` (src/graphql/ws.ts, src/graphql/subscriptions.ts):
 * what the transport must hold beyond the happy path.
 * - A JWT that expires while its socket is open ends the socket (as an SSE
 *   stream ends at its token's expiry) and opens no more subscriptions.
 * - Two operations of one document prepared back to back (a signed-in
 *   caller's document is shared through the validated-document cache) each
 *   run their own selection.
 * - Shutdown does not wait for a client that never answers the close frame.
 * - A client that sends and never reads cannot grow the server's send buffer
 *   without bound (graphql-ws answers every `ping` with a `pong` carrying its payload).
 * - `TRUSTED_DOCUMENTS_ONLY` holds for subscriptions too (WebSocket and SSE), as docs/API.md says.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { type Socket, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenService } from '../src/auth/tokens';
import WebSocket from 'ws';
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestApp, type TestApp } from './helpers/test-app';

const SECRET = 'test-secret-that-is-long-enough-for-hs256-0123456789';
const START = 'mutation($input: RunComparisonInput!) { startComparison(input: $input) { id } }';
const EVENTS = 'subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status delta content } }';
const SAVE_KEY = 'mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }';

let fake: FakeLlmServer;
let t: TestApp;
let user: { token: string; userId: string };
const sockets: WebSocket[] = [];

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  t = await createTestApp({ env: { ...fake.providerEnv() } });
  user = await t.signUp('wsr');
  await t.gql(SAVE_KEY, { input: { provider: 'OPENAI', apiKey: 'sk-wsr-0000000001' } }, user.token);
});
afterAll(async () => {
  for (const s of sockets) s.terminate();
  await t?.close();
  await fake?.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const wsUrl = (app: TestApp) => `${app.url.replace(/^http/, 'ws')}/graphql/ws`;

interface Raw {
  ws: WebSocket;
  messages: Array<{ id?: string; type: string; payload?: any }>;
  closed: Promise<{ code: number; reason: string }>;
}

/** A raw graphql-transport-ws socket, acknowledged. */
async function open(authorization: string | undefined, app = t): Promise<Raw> {
  const ws = new WebSocket(wsUrl(app), 'graphql-transport-ws');
  sockets.push(ws);
  const messages: Raw['messages'] = [];
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })),
  );
  ws.on('message', (data) => messages.push(JSON.parse(String(data))));
  ws.on('error', () => undefined);
  await new Promise((resolve) => ws.once('open', resolve));
  ws.send(JSON.stringify({ type: 'connection_init', payload: authorization ? { authorization } : {} }));
  for (let i = 0; i < 200 && !messages.some((m) => m.type === 'connection_ack'); i++) await sleep(25);
  expect(messages.some((m) => m.type === 'connection_ack')).toBe(true);
  return { ws, messages, closed };
}

async function startComparison(models: string[]): Promise<string> {
  const res = await t.gql(START, { input: { prompt: 'Say something', models } }, user.token);
  expect(res.errors).toBeUndefined();
  return res.data.startComparison.id;
}

describe('/graphql/ws review', () => {
  it('ends a socket when its JWT expires, and serves no subscription on it afterwards', async () => {
    const shortLived = await new TokenService(SECRET, '2s').sign({ userId: user.userId, role: 'USER' });
    const socket = await open(`Bearer ${shortLived}`);
    await sleep(3_000); // past the token's exp
    fake.reset();
    for (const m of ['wsr-exp-a', 'wsr-exp-b']) fake.setBehavior(m, { hang: true });
    const id = await startComparison(['openai:wsr-exp-a', 'openai:wsr-exp-b']);
    if (socket.ws.readyState === WebSocket.OPEN) {
      socket.ws.send(JSON.stringify({ id: 'late', type: 'subscribe', payload: { query: EVENTS, variables: { id } } }));
    }
    const outcome = await Promise.race([socket.closed, sleep(2_000).then(() => 'still open' as const)]);
    // A stream of this user's comparison must not be served with an expired token.
    const served = socket.messages.filter((m) => m.id === 'late' && m.type === 'next' && m.payload?.data);
    expect(served).toEqual([]);
    expect(outcome).toMatchObject({ code: 4401 });
  }, 15_000);

  it('runs each operation of a shared document with its own selection when two are prepared back to back', async () => {
    const doc =
      'subscription Small($id: ID!) { comparisonEvents(comparisonId: $id) { responseId } } ' +
      'subscription Full($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status delta content } }';
    fake.reset();
    const id = await startComparison(['openai:wsr-key-a-stream-2', 'openai:wsr-key-b-stream-2']);
    const socket = await open(`Bearer ${user.token}`);
    // Both subscribe messages in one TCP write: the server reads both frames in one turn,
    // so both are prepared before either runs (what a busy server sees from any client).
    const net = (socket.ws as unknown as { _socket: import('node:net').Socket })._socket;
    net.cork();
    socket.ws.send(JSON.stringify({ id: 'small', type: 'subscribe', payload: { query: doc, operationName: 'Small', variables: { id } } }));
    socket.ws.send(JSON.stringify({ id: 'full', type: 'subscribe', payload: { query: doc, operationName: 'Full', variables: { id } } }));
    net.uncork();
    for (let i = 0; i < 400; i++) {
      if (['small', 'full'].every((s) => socket.messages.some((m) => m.id === s && m.type !== 'next'))) break;
      await sleep(25);
    }
    const fields = (sub: string) =>
      new Set(
        socket.messages
          .filter((m) => m.id === sub && m.type === 'next')
          .flatMap((m) => Object.keys(m.payload.data?.comparisonEvents ?? {})),
      );
    expect([...fields('small')]).toEqual(['responseId']);
    expect([...fields('full')].sort()).toEqual(['content', 'delta', 'responseId', 'status']);
  }, 20_000);

  it('shuts down without waiting for a client that never answers the close frame', async () => {
    const own = await createTestApp({ env: { ...fake.providerEnv() } });
    const { port } = new URL(own.url);
    // A client that upgrades, then reads nothing and answers nothing.
    const socket = tcpConnect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      'GET /graphql/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
        'Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n',
    );
    await new Promise((resolve) => socket.once('data', resolve));
    socket.pause();
    const started = Date.now();
    await own.close();
    socket.destroy();
    expect(Date.now() - started).toBeLessThan(10_000);
  }, 60_000);

  it('cuts an anonymous client that sends pings and never reads their pongs, before its unread answers pile up', async () => {
    let serverSide: Socket | undefined;
    const capture = (req: { url?: string }, socket: Socket) => {
      if (req.url?.startsWith('/graphql/ws')) serverSide = socket;
    };
    t.app.httpServer.on('upgrade', capture);
    const socket = await open(undefined);
    t.app.httpServer.off('upgrade', capture);
    // The client stops reading: what the server sends stays in its buffers.
    (socket.ws as unknown as { _socket: Socket })._socket.pause();
    const ping = JSON.stringify({ type: 'ping', payload: { pad: 'x'.repeat(900 * 1024) } });
    for (let i = 0; i < 64 && socket.ws.readyState === WebSocket.OPEN; i++) {
      await new Promise<void>((resolve) => socket.ws.send(ping, () => resolve()));
    }
    await sleep(1_000);
    expect(serverSide).toBeDefined();
    // 64 × 900 KB of pongs are waiting to be written on main: the server holds what the client refuses to read.
    const unread = serverSide!.destroyed ? 0 : serverSide!.writableLength;
    expect(unread).toBeLessThan(16 * 1024 * 1024);
  }, 60_000);

  it('refuses a subscription document outside the manifest with TRUSTED_DOCUMENTS_ONLY, over WebSocket and SSE', async () => {
    const trusted = 'query { me { id } }';
    const dir = mkdtempSync(join(tmpdir(), 'wsr-manifest-'));
    const manifest = join(dir, 'persisted-documents.json');
    writeFileSync(manifest, JSON.stringify({ [createHash('sha256').update(trusted).digest('hex')]: trusted }));
    const strict = await createTestApp({
      db: t.db,
      env: { ...fake.providerEnv(), PERSISTED_DOCUMENTS_PATH: manifest, TRUSTED_DOCUMENTS_ONLY: 'true' },
    });
    try {
      const id = await startComparison(['openai:wsr-tr-a', 'openai:wsr-tr-b']);
      // /graphql refuses a document outside the manifest.
      const query = await strict.gql('query($id: ID!) { comparison(id: $id) { id } }', { id }, user.token);
      expect(query.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
      const socket = await open(`Bearer ${user.token}`, strict);
      socket.ws.send(JSON.stringify({ id: 'x', type: 'subscribe', payload: { query: EVENTS, variables: { id } } }));
      for (let i = 0; i < 200 && !socket.messages.some((m) => m.id === 'x' && m.type !== 'next'); i++) await sleep(25);
      expect(socket.messages.filter((m) => m.id === 'x' && m.type === 'next')).toEqual([]);
      expect(socket.messages.find((m) => m.id === 'x')).toMatchObject({ type: 'error', payload: [{ extensions: { code: 'FORBIDDEN' } }] });
      socket.ws.terminate();

      const sse = await fetch(`${strict.url}/graphql/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${user.token}` },
        body: JSON.stringify({ query: EVENTS, variables: { id } }),
      });
      const body = await sse.text();
      expect({ status: sse.status, forbidden: body.includes('FORBIDDEN') }).toEqual({ status: 403, forbidden: true });
    } finally {
      await strict.close();
    }
  }, 30_000);
});
