/**
 * Process life (3 of 3): the embedded PostgreSQL a server process runs when
 * DATABASE_URL is unset: stopped last at SIGTERM, an orphan taken over after
 * kill -9, a stale postmaster.pid removed, a taken port reported in one line.
 * Helpers and the no-sleep rule: ./helpers/process-life.ts.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { processLife, EVENTS } from './helpers/process-life';
import { freePort } from './helpers/redis';
import { gqlAt, isAlive, startServer, waitUntilExited } from './helpers/server-process';
import { subscribe } from './helpers/sse';

const life = processLife();

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
    life.fake.setBehavior('embedded-stuck', { hang: true });
    const server = await life.start(env());
    const pgPid = postmasterPid();
    const { token } = await life.signUpWithKeys(server.url);
    const comparison = await life.startComparison(server.url, token, ['openai:embedded-stuck', 'anthropic:embedded-fine']);
    // The fine model has answered (its COMPLETED event went out) before the stop: only the stuck one is interrupted.
    const fine = comparison.responses.find((r) => r.model === 'anthropic:embedded-fine')!;
    const sub = await subscribe(server.url, EVENTS, { id: comparison.id }, token);
    for await (const message of sub.events) {
      const event = message.data?.comparisonEvents;
      if (event?.responseId === fine.id && event.status === 'COMPLETED') break;
    }
    sub.close();

    await life.stopCleanly(server);
    await waitUntilExited(pgPid);
    expect(existsSync(join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);

    // The FAILED state was written before the database stopped: a restart reads it.
    const again = await life.start(env());
    const res = await gqlAt(
      again.url,
      `query($id: ID!) { comparison(id: $id) { responses { model status error } } }`,
      { id: comparison.id },
      token,
    );
    expect(res.data.comparison.responses).toEqual([
      { model: 'openai:embedded-stuck', status: 'FAILED', error: expect.stringMatching(/^Interrupted by shutdown/) },
      expect.objectContaining({ model: 'anthropic:embedded-fine', status: 'COMPLETED' }),
    ]);
    await life.stopCleanly(again);
  });

  it('after kill -9 of the server, the next start stops the orphaned PostgreSQL and starts its own', async () => {
    const crashed = await life.start(env());
    const orphan = postmasterPid();
    await crashed.stop('SIGKILL');
    expect(isAlive(orphan)).toBe(true); // the database outlived the app

    const next = await life.start(env());
    expect(next.logs.some((l) => /stopping an orphaned embedded PostgreSQL/.test(String(l.msg)))).toBe(true);
    await waitUntilExited(orphan);
    expect((await fetch(`${next.url}/health`)).status).toBe(200);
    await life.stopCleanly(next);
  });

  it('a stale postmaster.pid (its process is gone) is removed at start', async () => {
    // Needs an initialised data directory: make one when this test runs first.
    if (!existsSync(join(dataDir, 'postgres', 'PG_VERSION'))) await life.stopCleanly(await life.start(env()));
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const deadPid = Number(gone.stdout);
    expect(isAlive(deadPid)).toBe(false);
    writeFileSync(join(dataDir, 'postgres', 'postmaster.pid'), `${deadPid}\n${join(dataDir, 'postgres')}\n`);

    const server = await life.start(env());
    expect(server.logs.some((l) => /removing a stale postmaster.pid/.test(String(l.msg)))).toBe(true);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    await life.stopCleanly(server);
  });

  it("a port already taken stops startup with one line carrying PostgreSQL's reason", async () => {
    const squatter = createServer();
    await new Promise<void>((resolve, reject) => {
      squatter.once('error', reject);
      squatter.listen(port, '127.0.0.1', resolve);
    });
    try {
      const server = await startServer({ env: life.baseEnv(env()), expectFailure: true });
      life.servers.push(server);
      expect(await server.exited).toEqual({ code: 1, signal: null });
      expect(server.stderr().trim().split('\n')).toEqual([
        expect.stringMatching(/^Failed to start: embedded PostgreSQL did not start on port \d+: .*Address already in use/),
      ]);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });
});
