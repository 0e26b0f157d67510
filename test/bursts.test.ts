/**
 * Starts absorb a burst (issue 15): the DB part of startComparison runs
 * behind a gate (`db/burst-gate.ts`), so a burst queues there, holding no
 * pool connection, instead of at the pool, whose acquire timeout would refuse
 * starts that were merely waiting for each other; and the settles of one turn
 * of the event loop are one statement (`settle-writer.ts`).
 */
import { randomBytes } from 'node:crypto';
import { BurstGate } from '../src/db/burst-gate';
import { ResponseStatus } from '../src/modules/comparison/comparison.entity';
import { SettleWriter } from '../src/modules/comparison/settle-writer';
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestApp, type TestApp } from './helpers/test-app';

describe('BurstGate', () => {
  it('runs at most `limit` tasks at once, the rest in arrival order', async () => {
    const gate = new BurstGate(2, 60_000);
    const release: Array<() => void> = [];
    const order: number[] = [];
    let running = 0;
    let most = 0;
    const started = new Set<() => void>();
    const task = (i: number) =>
      gate.run(async () => {
        running++;
        most = Math.max(most, running);
        order.push(i);
        for (const wake of [...started]) wake();
        await new Promise<void>((resolve) => release.push(resolve));
        running--;
      });
    const all = Array.from({ length: 6 }, (_, i) => task(i));
    const until = (n: number) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (order.length < n) return;
          started.delete(check);
          resolve();
        };
        started.add(check);
        check();
      });
    for (let n = 2; n <= 6; n++) {
      await until(n);
      expect(gate.load).toEqual({ active: 2, waiting: 6 - n });
      release.shift()!();
    }
    for (const r of release.splice(0)) r();
    await Promise.all(all);
    expect(most).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
    expect(gate.load).toEqual({ active: 0, waiting: 0 });
  });

  it('refuses a task that waited past maxWaitMs with SERVICE_UNAVAILABLE and a retry delay, and keeps the others', async () => {
    const gate = new BurstGate(1, 50);
    let free!: () => void;
    const first = gate.run(() => new Promise<void>((resolve) => (free = resolve)));
    await expect(gate.run(async () => 'never')).rejects.toMatchObject({
      extensions: { code: 'SERVICE_UNAVAILABLE', retryAfterSeconds: 1 },
    });
    expect(gate.load).toEqual({ active: 1, waiting: 0 });
    free();
    await first;
    await expect(gate.run(async () => 'next')).resolves.toBe('next');
  });
});

describe('a burst of starts on a small pool', () => {
  let fake: FakeLlmServer;
  let t: TestApp;

  beforeAll(async () => {
    fake = await FakeLlmServer.start();
    // Two connections and a short acquire timeout: without the gate, 40 starts (two transactions each) at once time out at the pool.
    t = await createTestApp({
      env: {
        DB_POOL_MIN: '0',
        DB_POOL_MAX: '2',
        DB_POOL_ACQUIRE_TIMEOUT_MS: '250',
        OPENAI_BASE_URL: fake.baseUrls.openai,
        RATE_LIMIT_PROVIDER_CALLS: '0',
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });

  it('answers every start (no SERVICE_UNAVAILABLE)', async () => {
    // The users and their keys one after another: only the starts come as a burst.
    const users: Array<{ token: string }> = [];
    for (let i = 0; i < 40; i++) {
      const u = await t.signUp(`burst-${i}`);
      await t.gql(
        `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`,
        { input: { provider: 'OPENAI', apiKey: 'sk-burst-1111' } },
        u.token,
      );
      users.push(u);
    }
    const start = `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id responses { id status } } }`;
    const answers = await Promise.all(
      users.map((u, i) => t.gql(start, { input: { prompt: `burst ${i}`, models: ['openai:hang-a', 'openai:hang-b'] } }, u.token)),
    );
    const codes = answers.flatMap((a) => (a.errors ?? []).map((e: { extensions?: { code?: string } }) => e.extensions?.code));
    expect(codes).toEqual([]);
    expect(answers.every((a) => a.data.startComparison.responses.length === 2)).toBe(true);
    // Let the hanging calls go.
    await Promise.all(
      answers.map((a, i) =>
        t.gql(`mutation($id: ID!) { cancelComparison(id: $id) { id } }`, { id: a.data.startComparison.id }, users[i]!.token),
      ),
    );
  }, 60_000);
});

describe('SettleWriter: the settles of one turn in one statement', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  /** `n` PENDING responses of one comparison of a new user, straight into PostgreSQL. */
  async function pendingResponses(n: number): Promise<string[]> {
    const { userId } = await t.signUp(`settle-${randomBytes(3).toString('hex')}`);
    return withClient(t.db.url, async (c) => {
      const comparison = (
        await c.query(
          `insert into comparison_results (id, created_at, owner_id, prompt) values (gen_random_uuid(), now(), $1, 'p') returning id`,
          [userId],
        )
      ).rows[0].id;
      const rows = await c.query(
        `insert into comparison_responses (id, created_at, comparison_id, position, provider, model)
         select gen_random_uuid(), now(), $1, g - 1, 'OPENAI', 'openai:m' || g from generate_series(1, $2) g returning id`,
        [comparison, n],
      );
      return rows.rows.map((r: { id: string }) => r.id);
    });
  }

  it('writes every settle of a turn with one statement, first writer wins', async () => {
    const ids = await pendingResponses(12);
    const writer = new SettleWriter(t.app.orm);
    const row = (id: string, i: number) => ({
      id,
      status: ResponseStatus.COMPLETED,
      content: `answer "${i}" {x}\\ ${'é'.repeat(i)}`,
      error: null,
      latencyMs: i,
      customEndpoint: i % 2 === 0,
    });
    const { count, result } = await t.countStatements(() => Promise.all(ids.map((id, i) => writer.write(row(id, i)))));
    expect(result).toEqual(ids.map(() => true));
    expect(count).toBe(1);
    const stored = await withClient(
      t.db.url,
      async (c) =>
        (
          await c.query(
            `select id, status, content, latency_ms, custom_endpoint, settled_at from comparison_responses where id = any($1)`,
            [ids],
          )
        ).rows,
    );
    for (const [i, id] of ids.entries()) {
      expect(stored.find((r: { id: string }) => r.id === id)).toMatchObject({
        status: 'COMPLETED',
        content: row(id, i).content,
        latency_ms: i,
        custom_endpoint: i % 2 === 0,
      });
    }
    // Already settled: not written again.
    expect(await writer.write({ ...row(ids[0]!, 0), status: ResponseStatus.FAILED })).toBe(false);
  });

  it('a row PostgreSQL refuses fails alone: the others of its batch are written', async () => {
    const ids = await pendingResponses(3);
    await withClient(t.db.url, (c) =>
      c.query(`alter table comparison_responses add constraint refuse_poison_batch check (content not like '%poison%')`),
    );
    try {
      const writer = new SettleWriter(t.app.orm);
      const results = await Promise.allSettled(
        ids.map((id, i) => writer.write({ id, status: ResponseStatus.COMPLETED, content: i === 1 ? 'poison' : 'fine', error: null })),
      );
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    } finally {
      await withClient(t.db.url, (c) => c.query('alter table comparison_responses drop constraint refuse_poison_batch'));
    }
  });
});
