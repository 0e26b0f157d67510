/**
 * The delta path is exact: every character of an answer reaches each
 * subscriber exactly once and in order, as the replay of a late subscriber or
 * as live deltas, never only inside the settled text. Subscribers join
 * mid-stream on the instance running the comparison (replay from memory) and
 * on another one (stale snapshot + a fill from the running instance); offsets
 * drop duplicates and overlaps and hold deltas past a gap; a local subscriber
 * keeps streaming with Redis down.
 *
 * Streams are held mid-answer by the fake provider (`beforeEvent`), and every
 * wait is on an event a subscriber received: no sleeps.
 */
import { randomBytes } from 'node:crypto';
import { createClient } from '@redis/client';
import { FakeLlmServer } from './helpers/fake-llm';
import { describeRedis, describeRedisServer, redisUrlForTests, startRedisServer, type PrivateRedis } from './helpers/redis';
import { subscribe, type SseSubscription } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';

const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status delta content error } }`;
const START = `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id responses { id } } }`;
const STORED = `query($id: ID!) { comparison(id: $id) { responses { id status content } } }`;
const TEXT = Array.from({ length: 30 }, (_, i) => `w${i}`).join(' ');

/** Lets a fake stream write its first `n` SSE events, then holds it until released further. */
class Gate {
  private allowed = 0;
  private waiters: Array<{ index: number; resolve: () => void }> = [];
  readonly wait = (index: number): Promise<void> =>
    index < this.allowed ? Promise.resolve() : new Promise((resolve) => this.waiters.push({ index, resolve }));
  release(n = Infinity): void {
    this.allowed = n;
    for (const w of this.waiters.filter((w) => w.index < n)) w.resolve();
    this.waiters = this.waiters.filter((w) => w.index >= n);
  }
}

interface Seen {
  /** `content` of the first event (the replay), then every delta appended. */
  text: string;
  replay: string;
  deltas: number;
  settled: string | null;
  status: string;
  eventsAfterSettle: number;
}

/** Reads a subscription in the background; `until` resolves once a predicate over what was seen holds. */
function follow(sub: SseSubscription<any>) {
  const seen = new Map<string, Seen>();
  const checks = new Set<() => void>();
  const errors: unknown[] = [];
  const done = (async () => {
    for await (const message of sub.events) {
      if (message.errors) errors.push(...message.errors);
      const e = message.data?.comparisonEvents;
      if (!e) continue;
      let s = seen.get(e.responseId);
      if (!s) {
        s = { text: e.content ?? '', replay: e.content ?? '', deltas: 0, settled: null, status: e.status, eventsAfterSettle: 0 };
        seen.set(e.responseId, s);
      } else if (s.settled !== null) s.eventsAfterSettle++;
      else if (e.delta !== null) {
        expect(e.content).toBeNull();
        s.text += e.delta;
        s.deltas++;
      } else if (e.content !== null) s.settled = e.content;
      s.status = e.status;
      for (const check of [...checks]) check();
    }
    for (const check of [...checks]) check();
  })();
  return {
    seen,
    errors,
    done,
    until(predicate: (seen: Map<string, Seen>) => boolean, what: string): Promise<void> {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (predicate(seen)) {
            checks.delete(check);
            resolve();
          } else if (sub.completed) {
            checks.delete(check);
            reject(new Error(`stream completed before ${what}: ${JSON.stringify([...seen.values()])}`));
          }
        };
        checks.add(check);
        check();
      });
    },
  };
}

/** Every response: replay + deltas is the stored text exactly, the settled event carries it too, and nothing follows the settle. */
async function expectExact(app: TestApp, token: string, comparisonId: string, followers: Array<ReturnType<typeof follow>>): Promise<void> {
  const stored = await app.gql(STORED, { id: comparisonId }, token);
  const responses = stored.data.comparison.responses as Array<{ id: string; status: string; content: string }>;
  for (const f of followers) {
    expect(f.errors).toEqual([]);
    for (const r of responses) {
      const s = f.seen.get(r.id);
      expect(s).toBeDefined();
      expect({ id: r.id, text: s!.text, settled: s!.settled, after: s!.eventsAfterSettle }).toEqual({
        id: r.id,
        text: r.content,
        settled: r.content,
        after: 0,
      });
    }
  }
}

describeRedis('the delta path is exact (two instances, one PostgreSQL, one Redis)', () => {
  let fake: FakeLlmServer;
  let a: TestApp;
  let b: TestApp;
  let token: string;
  const prefix = `t-${randomBytes(5).toString('hex')}`;

  beforeAll(async () => {
    fake = await FakeLlmServer.start();
    const env = {
      REDIS_URL: redisUrlForTests(),
      CACHE_PREFIX: prefix,
      OPENAI_BASE_URL: fake.baseUrls.openai,
      ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
    };
    a = await createTestApp({ env });
    b = await createTestApp({ env, db: a.db });
    ({ token } = await a.signUp('exact'));
    for (const input of [
      { provider: 'OPENAI', apiKey: 'sk-a-1111' },
      { provider: 'ANTHROPIC', apiKey: 'sk-b-2222' },
    ]) {
      await a.gql(`mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`, { input }, token);
    }
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    await fake?.close();
  });

  /** Starts a comparison of two held streams; the first subscriber (on A) is watching before any delta. */
  async function startHeld(model: string) {
    const gate = new Gate();
    fake.setBehavior(model, { text: TEXT, chunkDelayMs: 0, beforeEvent: gate.wait });
    const started = await a.gql(START, { input: { prompt: 'count for me', models: [`openai:${model}`, `anthropic:${model}`] } }, token);
    expect(started.errors).toBeUndefined();
    const id = started.data.startComparison.id as string;
    const first = follow(await subscribe(a.url, EVENTS, { id }, token));
    await first.until((s) => s.size === 2, 'the replay of both responses');
    return { id, gate, first };
  }

  const midway = (s: Map<string, Seen>) => s.size === 2 && [...s.values()].every((x) => x.text.includes('w9 '));

  it('a subscriber joining mid-stream on the instance running it gets the text so far, then every delta once', async () => {
    const { id, gate, first } = await startHeld('local-join');
    gate.release(14);
    await first.until(midway, 'ten words of each answer');
    // Authorised and replayed from what this instance runs: no SQL until the replay is out.
    const { result: late, statements } = await a.countStatements(async () => {
      const f = follow(await subscribe(a.url, EVENTS, { id }, token));
      await f.until((s) => s.size === 2, 'the late replay');
      return f;
    });
    expect(statements).toEqual([]);
    for (const s of late.seen.values()) expect(s.replay).toContain('w9');
    // Another user is told it does not exist, as by the SQL path.
    const stranger = await a.signUp('stranger');
    const refused = await subscribe(a.url, EVENTS, { id }, stranger.token);
    const messages = [];
    for await (const m of refused.events) messages.push(m);
    expect(messages.map((m) => m.errors?.[0]?.extensions?.code)).toEqual(['NOT_FOUND']);
    gate.release();
    await Promise.all([first.done, late.done]);
    await expectExact(a, token, id, [first, late]);
    for (const s of late.seen.values()) expect(s.deltas).toBeGreaterThan(0);
  });

  it('a late subscriber on the running instance replays a response that already settled there, and the one still running', async () => {
    const gate = new Gate();
    fake.setBehavior('half-done', { text: TEXT, chunkDelayMs: 0, beforeEvent: gate.wait });
    fake.setBehavior('done-first', { text: 'short answer', chunkDelayMs: 0 });
    const started = await a.gql(
      START,
      { input: { prompt: 'one quick, one held', models: ['openai:done-first', 'anthropic:half-done'] } },
      token,
    );
    const id = started.data.startComparison.id as string;
    const [quick, held] = started.data.startComparison.responses.map((r: { id: string }) => r.id);
    const first = follow(await subscribe(a.url, EVENTS, { id }, token));
    gate.release(5);
    await first.until((s) => s.get(quick)?.status === 'COMPLETED' && (s.get(held)?.text.length ?? 0) > 0, 'one settled, one started');
    const late = follow(await subscribe(a.url, EVENTS, { id }, token));
    await late.until((s) => s.size === 2, 'the late replay');
    expect(late.seen.get(quick)!.status).toBe('COMPLETED');
    expect(late.seen.get(quick)!.replay).toBe('short answer');
    gate.release();
    await Promise.all([first.done, late.done]);
    // Replay + deltas is the stored text, nothing after the end (a response settled before the replay has no settle event).
    const stored = (await a.gql(STORED, { id }, token)).data.comparison.responses as Array<{ id: string; content: string }>;
    for (const f of [first, late]) {
      expect(f.errors).toEqual([]);
      expect(stored.map((r) => [f.seen.get(r.id)?.text, f.seen.get(r.id)?.eventsAfterSettle])).toEqual(stored.map((r) => [r.content, 0]));
    }
    expect(late.seen.get(held)!.settled).toBe(stored.find((r) => r.id === held)!.content);
  });

  it('a subscriber joining mid-stream on another instance gets the text exactly once (snapshot + fill from the running one)', async () => {
    const { id, gate, first } = await startHeld('remote-join');
    gate.release(14);
    await first.until(midway, 'ten words of each answer');
    // Joined well within the snapshot interval: the snapshot B reads is stale or missing, and the fill must close the gap.
    const remote = follow(await subscribe(b.url, EVENTS, { id }, token));
    // While the streams are held, only the replay and the fill can bring B the text so far
    // (the settled text, which would also carry it, comes only after the release).
    await remote.until(
      (s) => s.size === 2 && [...s.values()].every((x) => x.text.includes('w9 ')),
      'the text so far on B while the streams are held',
    );
    gate.release();
    await Promise.all([first.done, remote.done]);
    await expectExact(a, token, id, [first, remote]);
  }, 20_000);

  it('a subscriber on another instance from the start streams every delta', async () => {
    const gate = new Gate();
    fake.setBehavior('remote-start', { text: TEXT, chunkDelayMs: 0, beforeEvent: gate.wait });
    const started = await a.gql(
      START,
      { input: { prompt: 'count for me', models: ['openai:remote-start', 'anthropic:remote-start'] } },
      token,
    );
    const id = started.data.startComparison.id as string;
    const remote = follow(await subscribe(b.url, EVENTS, { id }, token));
    await remote.until((s) => s.size === 2, 'the replay on B');
    gate.release();
    await remote.done;
    await expectExact(a, token, id, [remote]);
    // Streamed, not only settled (deltas already waiting may have gone out as one event).
    for (const s of remote.seen.values()) expect(s.deltas).toBeGreaterThan(0);
  });

  it('deltas stay on the running instance until a subscriber on another instance asks for them, then go through Redis', async () => {
    // What Redis carries on this comparison's channel, as another instance would hear it.
    const raw = createClient({ url: redisUrlForTests() });
    await raw.connect();
    const heard: Array<{ kind: string; responseId?: string; offset?: number; delta?: string }> = [];
    const wait = new Set<() => void>();
    try {
      const { id, gate, first } = await startHeld('local-only');
      await raw.subscribe(`${prefix}:comparison:${id}`, (message) => {
        heard.push(JSON.parse(message));
        for (const check of [...wait]) check();
      });
      gate.release(14);
      await first.until(midway, 'ten words of each answer on A');
      // A marker published by A after those deltas: once Redis brings it, it has brought whatever A sent before it.
      const marker = new Promise<void>((resolve) => wait.add(() => heard.some((m) => m.kind === 'marker') && resolve()));
      await a.app.pubsub.publish(`comparison:${id}`, { kind: 'marker' });
      await marker;
      expect(heard.filter((m) => m.kind === 'delta')).toEqual([]);
      // B joins: its `sync` asks A for the rest, and from then on A's deltas go through Redis.
      const remote = follow(await subscribe(b.url, EVENTS, { id }, token));
      await remote.until((seen) => seen.size === 2 && [...seen.values()].every((x) => x.text.includes('w9 ')), 'the text so far on B');
      gate.release();
      await Promise.all([first.done, remote.done]);
      await expectExact(a, token, id, [first, remote]);
      const deltas = heard.filter((m) => m.kind === 'delta') as Array<{ responseId: string; offset: number; delta: string }>;
      expect(deltas.length).toBeGreaterThan(0);
      // Per answer, what went through Redis is one fill (the text from B's offset, however much B's replay held, to
      // where A was when B asked) and then every live delta, each starting where the previous one ended: nothing A
      // streamed before B asked went out on its own.
      for (const responseId of new Set(deltas.map((d) => d.responseId))) {
        const mine = deltas.filter((d) => d.responseId === responseId);
        for (let k = 1; k < mine.length; k++) expect(mine[k]!.offset).toBe(mine[k - 1]!.offset + mine[k - 1]!.delta.length);
        expect(mine[0]!.delta).toMatch(/w\d+ /);
      }
      expect(heard.filter((m) => m.kind === 'settled')).toHaveLength(2);
    } finally {
      await raw.quit().catch(() => undefined);
    }
  });

  it('offsets drop duplicates and overlaps, and hold a delta past a gap until the gap is filled', async () => {
    fake.setBehavior('held', { hang: true });
    const before = fake.count(undefined, 'chat');
    const started = await a.gql(START, { input: { prompt: 'wait', models: ['openai:held', 'anthropic:held'] } }, token);
    const id = started.data.startComparison.id as string;
    const [responseId] = started.data.startComparison.responses.map((r: { id: string }) => r.id);
    await fake.waitForRequests(before + 2, undefined, 'chat');
    const sub = follow(await subscribe(a.url, EVENTS, { id }, token));
    await sub.until((s) => s.size === 2, 'the replay');
    const channel = `comparison:${id}`;
    const publish = (offset: number, delta: string) => a.app.pubsub.publish(channel, { kind: 'delta', responseId, offset, delta });
    await publish(0, 'ab');
    await publish(0, 'ab'); // duplicate
    await publish(1, 'bcd'); // overlap: only "cd" is new
    await publish(10, 'kl'); // past a gap: held
    await publish(4, 'efghij'); // fills the gap, releasing "kl"
    await publish(6, 'gh'); // already sent
    await sub.until((s) => s.get(responseId)!.text === 'abcdefghijkl', 'the text without duplicates, in order');
    await a.gql(`mutation($id: ID!) { cancelComparison(id: $id) { id } }`, { id }, token);
    await sub.done;
    expect(sub.errors).toEqual([]);
    expect(sub.seen.get(responseId)).toMatchObject({ text: 'abcdefghijkl', status: 'FAILED', eventsAfterSettle: 0 });
  });

  it('a subscriber that missed a settled message finds the settled state in PostgreSQL after a quiet interval', async () => {
    fake.setBehavior('missed', { hang: true });
    const before = fake.count(undefined, 'chat');
    const started = await a.gql(START, { input: { prompt: 'wait', models: ['openai:missed', 'anthropic:missed'] } }, token);
    const id = started.data.startComparison.id as string;
    const ids = started.data.startComparison.responses.map((r: { id: string }) => r.id) as string[];
    await fake.waitForRequests(before + 2, undefined, 'chat');
    const sub = follow(await subscribe(b.url, EVENTS, { id }, token));
    await sub.until((s) => s.size === 2, 'the replay');
    // Settled in PostgreSQL with no message on the channel: what a lost pub/sub message leaves behind.
    await a.app.orm.em
      .fork()
      .getConnection()
      .execute(`update comparison_responses set status = 'COMPLETED', content = 'stored' where comparison_id = ?`, [id]);
    await sub.done;
    expect(sub.errors).toEqual([]);
    for (const rid of ids) expect(sub.seen.get(rid)).toMatchObject({ settled: 'stored', status: 'COMPLETED' });
    await a.gql(`mutation($id: ID!) { cancelComparison(id: $id) { id } }`, { id }, token);
  }, 30_000);
});

describeRedisServer('a local subscriber streams with Redis down (private redis-server)', () => {
  let redis: PrivateRedis;
  let fake: FakeLlmServer;
  let app: TestApp;
  let token: string;

  beforeAll(async () => {
    redis = await startRedisServer();
    fake = await FakeLlmServer.start();
    app = await createTestApp({
      env: {
        REDIS_URL: redis.url,
        CACHE_TIMEOUT_MS: '200',
        OPENAI_BASE_URL: fake.baseUrls.openai,
        ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
      },
    });
    ({ token } = await app.signUp('redis-down'));
    for (const input of [
      { provider: 'OPENAI', apiKey: 'sk-a-1111' },
      { provider: 'ANTHROPIC', apiKey: 'sk-b-2222' },
    ]) {
      await app.gql(`mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`, { input }, token);
    }
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
    await redis?.stop();
  });

  it('every delta still reaches a subscriber on the instance running the comparison', async () => {
    const gate = new Gate();
    fake.setBehavior('no-redis', { text: TEXT, chunkDelayMs: 0, beforeEvent: gate.wait });
    const started = await app.gql(START, { input: { prompt: 'count for me', models: ['openai:no-redis', 'anthropic:no-redis'] } }, token);
    const id = started.data.startComparison.id as string;
    const sub = follow(await subscribe(app.url, EVENTS, { id }, token));
    await sub.until((s) => s.size === 2, 'the replay');
    await redis.kill();
    gate.release();
    await sub.done;
    await expectExact(app, token, id, [sub]);
    for (const s of sub.seen.values()) expect(s.deltas).toBeGreaterThan(0);
  });
});
