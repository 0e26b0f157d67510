/**
 * Starts absorb a burst (issue 15): the DB part of startComparison runs
 * behind a gate (`db/burst-gate.ts`), so a burst queues there, holding no
 * pool connection, instead of at the pool, whose acquire timeout would refuse
 * starts that were merely waiting for each other.
 */
import { BurstGate } from '../src/db/burst-gate';
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
        const check = () => order.length >= n && (started.delete(check), resolve());
        started.add(check);
        check();
      });
    for (let n = 2; n <= 6; n++) {
      await until(n);
      expect(gate.load).toEqual({ active: 2, waiting: 6 - n });
      release.shift()!();
    }
    release.splice(0).forEach((r) => r());
    await Promise.all(all);
    expect(most).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
    expect(gate.load).toEqual({ active: 0, waiting: 0 });
  });

  it('refuses a task that waited past maxWaitMs with SERVICE_UNAVAILABLE and a retry delay, and keeps the others', async () => {
    const gate = new BurstGate(1, 50);
    let free!: () => void;
    const first = gate.run(() => new Promise<void>((resolve) => (free = resolve)));
    await expect(gate.run(async () => 'never')).rejects.toMatchObject({ extensions: { code: 'SERVICE_UNAVAILABLE', retryAfterSeconds: 1 } });
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
    t = await createTestApp({ env: { DB_POOL_MIN: '0', DB_POOL_MAX: '2', DB_POOL_ACQUIRE_TIMEOUT_MS: '250', OPENAI_BASE_URL: fake.baseUrls.openai, RATE_LIMIT_PROVIDER_CALLS: '0' } });
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
      await t.gql(`mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`, { input: { provider: 'OPENAI', apiKey: 'sk-burst-1111' } }, u.token);
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
    await Promise.all(answers.map((a, i) => t.gql(`mutation($id: ID!) { cancelComparison(id: $id) { id } }`, { id: a.data.startComparison.id }, users[i]!.token)));
  }, 60_000);
});
