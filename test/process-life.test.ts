/**
 * Process life, on the server as a separate process started the way
 * `npm start` starts it (`node dist/src/main.js` after `tsc -b`, and once
 * `npm start` itself): signals, exit codes, graceful shutdown of running
 * comparisons and event streams, crashes, and the embedded PostgreSQL.
 *
 * Nothing here sleeps: every wait is on an event (a log line, a process exit,
 * a request reaching the fake provider, an SSE event). Each server process
 * must log neither "uncaught exception" nor "unhandled rejection"
 * (`main.ts` logs both and exits 1), checked after every stop.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createTestDatabase, type TestDatabase } from './helpers/database';
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { describeRedis, freePort, redisUrlForTests } from './helpers/redis';
import { buildDist, gqlAt, isAlive, type ServerProcess, startServer, waitUntilExited } from './helpers/server-process';
import { subscribe } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';

const JWT_SECRET = 'process-life-secret-that-is-long-enough-0123456789';
const ENCRYPTION_KEY = Buffer.alloc(32, 9).toString('base64');
const REGISTER = `mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token user { id } } }`;
const SAVE_KEY = `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`;
const START = `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id responses { id model status } } }`;
const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status content error } }`;

let fake: FakeLlmServer;
const servers: ServerProcess[] = [];

function baseEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    NODE_ENV: 'production',
    JWT_SECRET,
    ENCRYPTION_KEY,
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_TIME_COST: '1',
    LOG_LEVEL: 'info',
    OPENAI_BASE_URL: fake.baseUrls.openai,
    ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
    LLM_TIMEOUT_MS: '60000',
    ...extra,
  };
}

async function start(env: Record<string, string | undefined>, via: 'node' | 'npm' = 'node'): Promise<ServerProcess> {
  const server = await startServer({ env: baseEnv(env), via });
  servers.push(server);
  return server;
}

/** Stops with SIGTERM and checks the process ended the way a clean stop ends. */
async function stopCleanly(server: ServerProcess): Promise<void> {
  const exit = await server.stop('SIGTERM');
  expect(exit).toEqual({ code: 0, signal: null });
  expect(server.logs.find((l) => l.msg === 'stopped')).toMatchObject({ exitCode: 0 });
  expectNoProcessErrors(server);
}

function expectNoProcessErrors(server: ServerProcess): void {
  expect(server.logs.filter((l) => l.msg === 'uncaught exception' || l.msg === 'unhandled rejection')).toEqual([]);
  expect(server.stderr()).not.toMatch(/unhandled|uncaught/i);
}

async function signUpWithKeys(url: string): Promise<{ token: string; userId: string }> {
  const reg = await gqlAt(url, REGISTER, { e: `life-${randomBytes(4).toString('hex')}@example.com`, p: 'correct horse battery' });
  const { token } = reg.data.register;
  for (const provider of ['OPENAI', 'ANTHROPIC']) {
    const saved = await gqlAt(url, SAVE_KEY, { input: { provider, apiKey: `sk-${provider.toLowerCase()}-life` } }, token);
    expect(saved.errors).toBeUndefined();
  }
  return { token, userId: reg.data.register.user.id };
}

async function startComparison(url: string, token: string, models: string[]): Promise<{ id: string; responses: Array<{ id: string; model: string }> }> {
  const before = fake.count(undefined, 'chat');
  const res = await gqlAt(url, START, { input: { prompt: 'are you still there?', models } }, token);
  expect(res.errors).toBeUndefined();
  await fake.waitForRequests(before + models.length, undefined, 'chat'); // every model call is in flight
  return res.data.startComparison;
}

async function responseRows(dbUrl: string, comparisonId: string): Promise<Array<{ model: string; status: string; error: string | null; content: string }>> {
  return withClient(dbUrl, async (c) => (await c.query('select model, status, error, content from comparison_responses where comparison_id = $1 order by position', [comparisonId])).rows);
}

beforeAll(async () => {
  buildDist();
  fake = await FakeLlmServer.start();
}, 120_000);

afterAll(async () => {
  for (const server of servers) if (server.child.exitCode === null && server.child.signalCode === null) await server.stop('SIGKILL');
  await fake?.close();
});

describe('signals and exit codes', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase('life');
  });
  afterAll(() => db.drop());

  it('npm start: SIGTERM sent to npm reaches node, which stops gracefully and exits 0 (npm too); nothing is left running', async () => {
    const server = await start({ DATABASE_URL: db.url }, 'npm');
    const listening = server.logs.find((l) => String(l.msg).startsWith('LLMSelect API listening'))!;
    const nodePid = listening.pid as number;
    // npm's child is node itself: `start` execs it, so no shell stands between npm's forwarded signal and node.
    expect(spawnSync('ps', ['-o', 'ppid=', '-p', String(nodePid)], { encoding: 'utf8' }).stdout.trim()).toBe(String(server.child.pid));
    expect((await fetch(`${server.url}/health`)).status).toBe(200);

    await stopCleanly(server); // npm's own exit code
    expect(isAlive(nodePid)).toBe(false);
    expect(server.logs.map((l) => l.msg)).toEqual(expect.arrayContaining(['shutting down', 'stopped']));
  });

  it('SIGTERM: a running comparison finishes within the grace period and is stored COMPLETED; new connections are refused meanwhile', async () => {
    fake.setBehavior('grace-slow', { chunkDelayMs: 40, chunks: 8 });
    const server = await start({ DATABASE_URL: db.url, SHUTDOWN_GRACE_MS: '30000' });
    const { token } = await signUpWithKeys(server.url);
    const comparison = await startComparison(server.url, token, ['openai:grace-slow', 'anthropic:grace-slow']);

    server.child.kill('SIGTERM');
    await server.waitForLog((l) => l.msg === 'waiting for running comparisons to finish');
    await expect(fetch(`${server.url}/health`)).rejects.toThrow(); // the listener is closed
    const exit = await server.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expectNoProcessErrors(server);

    const rows = await responseRows(db.url, comparison.id);
    expect(rows.map((r) => r.status)).toEqual(['COMPLETED', 'COMPLETED']);
    expect(rows[0]!.content).toBe('Reply from grace-slow: are you still there?');
  });

  it('SIGTERM: a comparison still running after the grace period is settled FAILED "Interrupted by shutdown"; its stream gets that final event and `complete`; it can be retried', async () => {
    fake.setBehavior('stuck-model', { hang: true });
    const server = await start({ DATABASE_URL: db.url, SHUTDOWN_GRACE_MS: '100' });
    const { token } = await signUpWithKeys(server.url);
    const comparison = await startComparison(server.url, token, ['openai:stuck-model', 'anthropic:quick-model']);
    const sub = await subscribe(server.url, EVENTS, { id: comparison.id }, token);
    const events: any[] = [];
    const collecting = (async () => {
      for await (const message of sub.events) events.push(message);
    })();

    const exit = await server.stop('SIGTERM');
    await collecting;
    expect(exit).toEqual({ code: 0, signal: null });
    expectNoProcessErrors(server);

    expect(sub.completed).toBe(true);
    expect(events.every((m) => m.errors === undefined)).toBe(true);
    const stuck = comparison.responses.find((r) => r.model === 'openai:stuck-model')!;
    const last = events.filter((m) => m.data.comparisonEvents.responseId === stuck.id).at(-1).data.comparisonEvents;
    expect(last).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/^Interrupted by shutdown/) });
    const rows = await responseRows(db.url, comparison.id);
    expect(rows).toEqual([
      expect.objectContaining({ status: 'FAILED', error: expect.stringMatching(/^Interrupted by shutdown/) }),
      expect.objectContaining({ status: 'COMPLETED' }),
    ]);

    // A restarted server retries it like any FAILED response.
    fake.setBehavior('stuck-model', {});
    const again = await start({ DATABASE_URL: db.url });
    const retried = await gqlAt(again.url, `mutation($id: ID!) { retryComparisonResponse(id: $id) { status content } }`, { id: stuck.id }, token);
    expect(retried.data.retryComparisonResponse).toEqual({ status: 'COMPLETED', content: 'Reply from stuck-model: are you still there?' });
    await stopCleanly(again);
  });

  it('a DATABASE_URL naming a missing database stops startup with one line naming it, and creates nothing', async () => {
    const missing = `llmselect_missing_${randomBytes(3).toString('hex')}`;
    const url = new URL(db.url);
    url.pathname = `/${missing}`;
    url.password = 'not-printed';
    url.username = 'postgres';
    const server = await startServer({ env: baseEnv({ DATABASE_URL: url.toString() }), expectFailure: true });
    servers.push(server);
    expect(await server.exited).toEqual({ code: 1, signal: null });
    const lines = server.stderr().trim().split('\n');
    expect(lines).toEqual([expect.stringMatching(new RegExp(`^Failed to start: cannot use the database .*/${missing}: database "${missing}" does not exist$`))]);
    expect(server.stderr()).not.toContain('not-printed');
    const exists = await withClient(db.url, async (c) => (await c.query('select 1 from pg_database where datname = $1', [missing])).rowCount);
    expect(exists).toBe(0);
  });
});

describe('a crash (kill -9) while comparing', () => {
  let db: TestDatabase;
  let survivor: TestApp;
  beforeAll(async () => {
    db = await createTestDatabase('crash');
    survivor = await createTestApp({ db, env: { COMPARISON_LEASE_MS: '800', JWT_SECRET, ENCRYPTION_KEY, SHUTDOWN_GRACE_MS: '0' } });
  });
  afterAll(async () => {
    await survivor.close();
    await db.drop();
  });

  it('another instance settles the orphaned responses FAILED once their lease expires; subscribers complete and the comparison can be voted on', async () => {
    fake.setBehavior('crash-model', { hang: true });
    const doomed = await start({ DATABASE_URL: db.url, COMPARISON_LEASE_MS: '800' });
    const { token } = await signUpWithKeys(doomed.url);
    const comparison = await startComparison(doomed.url, token, ['openai:crash-model', 'anthropic:fine-model']);
    const sub = await subscribe(survivor.url, EVENTS, { id: comparison.id }, token);

    expect(await doomed.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    const events: any[] = [];
    for await (const message of sub.events) events.push(message.data.comparisonEvents);
    expect(sub.completed).toBe(true);
    const crashed = comparison.responses.find((r) => r.model === 'openai:crash-model')!;
    expect(events.filter((e) => e.responseId === crashed.id).at(-1)).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/lease expired/) });

    const vote = await survivor.gql(`mutation($input: VoteInput!) { vote(input: $input) { outcome } }`, { input: { comparisonId: comparison.id, outcome: 'TIE' } }, token);
    expect(vote.errors).toBeUndefined();
    expect(survivor.logs.some((l) => l.includes('comparison response lease expired'))).toBe(true);
  });
});

describeRedis('shutdown of one of several instances', () => {
  let db: TestDatabase;
  let other: TestApp;
  const prefix = `t-life-${randomBytes(4).toString('hex')}`;
  beforeAll(async () => {
    db = await createTestDatabase('multi');
    other = await createTestApp({ db, env: { REDIS_URL: redisUrlForTests(), CACHE_PREFIX: prefix, JWT_SECRET, ENCRYPTION_KEY, SHUTDOWN_GRACE_MS: '0', OPENAI_BASE_URL: fake.baseUrls.openai, ANTHROPIC_BASE_URL: fake.baseUrls.anthropic } });
  });
  afterAll(async () => {
    await other.close();
    await db.drop();
  });

  it('SIGTERM ends a stream that follows a comparison running on another instance with a SERVICE_UNAVAILABLE event, then `complete`', async () => {
    fake.setBehavior('elsewhere-model', { hang: true });
    const stopping = await start({ DATABASE_URL: db.url, REDIS_URL: redisUrlForTests(), CACHE_PREFIX: prefix });
    const { token } = await signUpWithKeys(other.url);
    const comparison = await startComparison(other.url, token, ['openai:elsewhere-model', 'anthropic:elsewhere-model']);
    const sub = await subscribe(stopping.url, EVENTS, { id: comparison.id }, token);
    const first = await sub.events.next(); // the stream is open and replaying
    expect(first.value?.data?.comparisonEvents?.status).toBe('PENDING');

    const rest: any[] = [];
    const collecting = (async () => {
      for await (const message of sub.events) rest.push(message);
    })();
    await stopCleanly(stopping);
    await collecting;
    expect(sub.completed).toBe(true);
    expect(rest.at(-1)).toMatchObject({ errors: [{ extensions: { code: 'SERVICE_UNAVAILABLE' } }] });

    // The comparison itself is untouched on the instance that runs it.
    await other.gql(`mutation($id: ID!) { cancelComparison(id: $id) { id } }`, { id: comparison.id }, token);
  });
});

describe('the embedded PostgreSQL', () => {
  let dataDir: string;
  let port: number;
  const env = () => ({ DATABASE_URL: undefined, DATA_DIR: dataDir, EMBEDDED_POSTGRES_PORT: String(port), SHUTDOWN_GRACE_MS: '100' });
  const postmasterPid = () => Number(readFileSync(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'llmselect-embedded-'));
    chmodSync(dataDir, 0o755); // PostgreSQL runs as the `postgres` user when the tests run as root
    port = await freePort();
  });
  afterAll(() => {
    // Whatever happened above, leave no server behind.
    if (existsSync(join(dataDir, 'postgres', 'postmaster.pid'))) {
      const pid = postmasterPid();
      if (isAlive(pid)) process.kill(pid, 'SIGQUIT');
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('SIGTERM stores the interrupted comparison, then stops the database last, and exits 0', async () => {
    fake.setBehavior('embedded-stuck', { hang: true });
    const server = await start(env());
    const pgPid = postmasterPid();
    const { token } = await signUpWithKeys(server.url);
    const comparison = await startComparison(server.url, token, ['openai:embedded-stuck', 'anthropic:embedded-fine']);
    // The fine model has answered (its COMPLETED event went out) before the stop: only the stuck one is interrupted.
    const fine = comparison.responses.find((r) => r.model === 'anthropic:embedded-fine')!;
    const sub = await subscribe(server.url, EVENTS, { id: comparison.id }, token);
    for await (const message of sub.events) {
      const event = message.data?.comparisonEvents;
      if (event?.responseId === fine.id && event.status === 'COMPLETED') break;
    }
    sub.close();

    await stopCleanly(server);
    await waitUntilExited(pgPid);
    expect(existsSync(join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);

    // The FAILED state was written before the database stopped: a restart reads it.
    const again = await start(env());
    const res = await gqlAt(again.url, `query($id: ID!) { comparison(id: $id) { responses { model status error } } }`, { id: comparison.id }, token);
    expect(res.data.comparison.responses).toEqual([
      { model: 'openai:embedded-stuck', status: 'FAILED', error: expect.stringMatching(/^Interrupted by shutdown/) },
      expect.objectContaining({ model: 'anthropic:embedded-fine', status: 'COMPLETED' }),
    ]);
    await stopCleanly(again);
  });

  it('after kill -9 of the server, the next start stops the orphaned PostgreSQL and starts its own', async () => {
    const crashed = await start(env());
    const orphan = postmasterPid();
    await crashed.stop('SIGKILL');
    expect(isAlive(orphan)).toBe(true); // the database outlived the app

    const next = await start(env());
    expect(next.logs.some((l) => /stopping an orphaned embedded PostgreSQL/.test(String(l.msg)))).toBe(true);
    await waitUntilExited(orphan);
    expect((await fetch(`${next.url}/health`)).status).toBe(200);
    await stopCleanly(next);
  });

  it('a stale postmaster.pid (its process is gone) is removed at start', async () => {
    // Needs an initialised data directory: make one when this test runs first.
    if (!existsSync(join(dataDir, 'postgres', 'PG_VERSION'))) await stopCleanly(await start(env()));
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const deadPid = Number(gone.stdout);
    expect(isAlive(deadPid)).toBe(false);
    writeFileSync(join(dataDir, 'postgres', 'postmaster.pid'), `${deadPid}\n${join(dataDir, 'postgres')}\n`);

    const server = await start(env());
    expect(server.logs.some((l) => /removing a stale postmaster.pid/.test(String(l.msg)))).toBe(true);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    await stopCleanly(server);
  });

  it('a port already taken stops startup with one line carrying PostgreSQL\'s reason', async () => {
    const squatter = createServer();
    await new Promise<void>((resolve, reject) => {
      squatter.once('error', reject);
      squatter.listen(port, '127.0.0.1', resolve);
    });
    try {
      const server = await startServer({ env: baseEnv(env()), expectFailure: true });
      servers.push(server);
      expect(await server.exited).toEqual({ code: 1, signal: null });
      expect(server.stderr().trim().split('\n')).toEqual([
        expect.stringMatching(/^Failed to start: embedded PostgreSQL did not start on port \d+: .*Address already in use/),
      ]);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });
});

describe('a busy HTTP port', () => {
  it('is reported in one line before the database and migrations start', async () => {
    const squatter = createServer();
    const port = await freePort();
    await new Promise<void>((resolve, reject) => {
      squatter.once('error', reject);
      squatter.listen(port, resolve);
    });
    try {
      // A database that does not exist: had start-up reached PostgreSQL, the line would be about it.
      const server = await startServer({ env: baseEnv({ PORT: String(port), DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/llmselect_never_created' }), expectFailure: true });
      servers.push(server);
      expect(await server.exited).toEqual({ code: 1, signal: null });
      expect(server.stderr().trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^Port ${port} is already in use .*set PORT to a free port$`))]);
      expect(server.logs.filter((l) => /migrations|embedded|listening/.test(String(l.msg)))).toEqual([]);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });
});
