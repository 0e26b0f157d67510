/**
 * Process life (1 of 3, with process-crash and process-embedded): the server as
 * a separate process started the way `npm start` starts it, and once through
 * `npm start` itself: signals, exit codes, graceful shutdown of running
 * comparisons and their event streams, start-up failures in one line.
 * Helpers and the no-sleep rule: ./helpers/process-life.ts.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { spawnSync } from 'node:child_process';
import { createTestDatabase, type TestDatabase } from './helpers/database';
import { withClient } from './helpers/factories';
import { processLife, EVENTS } from './helpers/process-life';
import { freePort } from './helpers/redis';
import { gqlAt, isAlive, startServer } from './helpers/server-process';
import { subscribe } from './helpers/sse';

const life = processLife();

describe('signals and exit codes', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase('life');
  });
  afterAll(() => db.drop());

  it('npm start: SIGTERM sent to npm reaches node, which stops gracefully and exits 0 (npm too); nothing is left running', async () => {
    const server = await life.start({ DATABASE_URL: db.url }, 'npm');
    const listening = server.logs.find((l) => String(l.msg).startsWith('LLMSelect API listening'))!;
    const nodePid = listening.pid as number;
    // npm's child is node itself: `start` execs it, so no shell stands between npm's forwarded signal and node.
    expect(spawnSync('ps', ['-o', 'ppid=', '-p', String(nodePid)], { encoding: 'utf8' }).stdout.trim()).toBe(String(server.child.pid));
    expect((await fetch(`${server.url}/health`)).status).toBe(200);

    await life.stopCleanly(server); // npm's own exit code
    expect(isAlive(nodePid)).toBe(false);
    expect(server.logs.map((l) => l.msg)).toEqual(expect.arrayContaining(['shutting down', 'stopped']));
  });

  it('SIGTERM: a running comparison finishes within the grace period, stored COMPLETED; new connections refused meanwhile', async () => {
    life.fake.setBehavior('grace-slow', { chunkDelayMs: 40, chunks: 8 });
    const server = await life.start({ DATABASE_URL: db.url, SHUTDOWN_GRACE_MS: '30000' });
    const { token } = await life.signUpWithKeys(server.url);
    const comparison = await life.startComparison(server.url, token, ['openai:grace-slow', 'anthropic:grace-slow']);

    server.child.kill('SIGTERM');
    await server.waitForLog((l) => l.msg === 'waiting for running comparisons to finish');
    await expect(fetch(`${server.url}/health`)).rejects.toThrow(); // the listener is closed
    const exit = await server.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    life.expectNoProcessErrors(server);

    const rows = await life.responseRows(db.url, comparison.id);
    expect(rows.map((r) => r.status)).toEqual(['COMPLETED', 'COMPLETED']);
    expect(rows[0]!.content).toBe('Reply from grace-slow: are you still there?');
  });

  it('SIGTERM: a comparison still running after the grace period is FAILED "Interrupted by shutdown", streamed and retryable', async () => {
    life.fake.setBehavior('stuck-model', { hang: true });
    const server = await life.start({ DATABASE_URL: db.url, SHUTDOWN_GRACE_MS: '100' });
    const { token } = await life.signUpWithKeys(server.url);
    const comparison = await life.startComparison(server.url, token, ['openai:stuck-model', 'anthropic:quick-model']);
    const sub = await subscribe(server.url, EVENTS, { id: comparison.id }, token);
    const events: any[] = [];
    const collecting = (async () => {
      for await (const message of sub.events) events.push(message);
    })();

    const exit = await server.stop('SIGTERM');
    await collecting;
    expect(exit).toEqual({ code: 0, signal: null });
    life.expectNoProcessErrors(server);

    expect(sub.completed).toBe(true);
    expect(events.every((m) => m.errors === undefined)).toBe(true);
    const stuck = comparison.responses.find((r) => r.model === 'openai:stuck-model')!;
    const last = events.filter((m) => m.data.comparisonEvents.responseId === stuck.id).at(-1).data.comparisonEvents;
    expect(last).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/^Interrupted by shutdown/) });
    const rows = await life.responseRows(db.url, comparison.id);
    expect(rows).toEqual([
      expect.objectContaining({ status: 'FAILED', error: expect.stringMatching(/^Interrupted by shutdown/) }),
      expect.objectContaining({ status: 'COMPLETED' }),
    ]);

    // A restarted server retries it like any FAILED response.
    life.fake.setBehavior('stuck-model', {});
    const again = await life.start({ DATABASE_URL: db.url });
    const retried = await gqlAt(
      again.url,
      `mutation($id: ID!) { retryComparisonResponse(id: $id) { status content } }`,
      { id: stuck.id },
      token,
    );
    expect(retried.data.retryComparisonResponse).toEqual({ status: 'COMPLETED', content: 'Reply from stuck-model: are you still there?' });
    await life.stopCleanly(again);
  });

  it('a DATABASE_URL naming a missing database stops startup with one line naming it, and creates nothing', async () => {
    const missing = `llmselect_missing_${randomBytes(3).toString('hex')}`;
    const url = new URL(db.url);
    url.pathname = `/${missing}`;
    url.password = 'not-printed';
    url.username = 'postgres';
    const server = await startServer({ env: life.baseEnv({ DATABASE_URL: url.toString() }), expectFailure: true });
    life.servers.push(server);
    expect(await server.exited).toEqual({ code: 1, signal: null });
    const lines = server.stderr().trim().split('\n');
    expect(lines).toEqual([
      expect.stringMatching(new RegExp(`^Failed to start: cannot use the database .*/${missing}: database "${missing}" does not exist$`)),
    ]);
    expect(server.stderr()).not.toContain('not-printed');
    const exists = await withClient(
      db.url,
      async (c) => (await c.query('select 1 from pg_database where datname = $1', [missing])).rowCount,
    );
    expect(exists).toBe(0);
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
      const server = await startServer({
        env: life.baseEnv({ PORT: String(port), DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/llmselect_never_created' }),
        expectFailure: true,
      });
      life.servers.push(server);
      expect(await server.exited).toEqual({ code: 1, signal: null });
      expect(server.stderr().trim().split('\n')).toEqual([
        expect.stringMatching(new RegExp(`^Port ${port} is already in use .*set PORT to a free port$`)),
      ]);
      expect(server.logs.filter((l) => /migrations|embedded|listening/.test(String(l.msg)))).toEqual([]);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });
});
