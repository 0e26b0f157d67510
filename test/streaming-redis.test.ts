/**
 * Two instances sharing PostgreSQL and Redis: a comparison started on one is
 * streamed to a subscriber connected to the other (Redis pub/sub), including
 * the content-so-far replay, and a cancel issued on the other instance stops it.
 */
import { randomBytes } from 'node:crypto';
import { FakeLlmServer } from './helpers/fake-llm';
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { subscribe } from './helpers/sse';
import { createTestApp, sharedRedisSubscribers, type TestApp } from './helpers/test-app';

const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status delta content } }`;
const START = `mutation($input: RunComparisonInput!) { startComparison(input: $input) { id } }`;

describeRedis('comparison events across instances (Redis pub/sub)', () => {
  let fake: FakeLlmServer;
  let a: TestApp;
  let b: TestApp;
  let token: string;
  let prefix: string;

  beforeAll(async () => {
    fake = await FakeLlmServer.start();
    const env = {
      REDIS_URL: redisUrlForTests(),
      CACHE_PREFIX: `t-${randomBytes(5).toString('hex')}`,
      OPENAI_BASE_URL: fake.baseUrls.openai,
      ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
    };
    prefix = env.CACHE_PREFIX;
    a = await createTestApp({ env });
    b = await createTestApp({ env, db: a.db });
    ({ token } = await a.signUp('stream'));
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

  it('streams a comparison running on A to a subscriber on B', async () => {
    fake.setBehavior('remote', { chunkDelayMs: 15 });
    const started = await a.gql(START, { input: { prompt: 'across the wire', models: ['openai:remote', 'anthropic:remote'] } }, token);
    const id = started.data.startComparison.id;
    const sub = await subscribe(b.url, EVENTS, { id }, token);
    const texts = new Map<string, string>();
    let deltas = 0;
    for await (const message of sub.events) {
      const e = message.data.comparisonEvents;
      if (!texts.has(e.responseId)) texts.set(e.responseId, e.content ?? '');
      else if (e.delta) {
        texts.set(e.responseId, texts.get(e.responseId)! + e.delta);
        deltas++;
      }
    }
    expect(deltas).toBeGreaterThan(0);
    const stored = await b.gql(`query($id: ID!) { comparison(id: $id) { responses { id status content } } }`, { id }, token);
    for (const r of stored.data.comparison.responses) {
      expect(r.status).toBe('COMPLETED');
      expect(texts.get(r.id)).toBe(r.content);
    }
  });

  it('cancels from B a comparison running on A', async () => {
    const before = fake.count(undefined, 'chat');
    const started = await a.gql(START, { input: { prompt: 'stop me', models: ['openai:hang', 'anthropic:hang'] } }, token);
    const id = started.data.startComparison.id;
    await fake.waitForRequests(before + 2, undefined, 'chat'); // both calls are hanging on A
    const cancelled = await b.gql(`mutation($id: ID!) { cancelComparison(id: $id) { responses { status error } } }`, { id }, token);
    expect(cancelled.data.cancelComparison.responses.map((r: any) => r.status)).toEqual(['FAILED', 'FAILED']);
    await a.app.services.runner.settled(id);
    const after = await a.gql(`query($id: ID!) { comparison(id: $id) { responses { status error } } }`, { id }, token);
    expect(after.data.comparison.responses).toEqual([
      { status: 'FAILED', error: 'Cancelled' },
      { status: 'FAILED', error: 'Cancelled' },
    ]);
  });

  it('unsubscribes from the channel as soon as the client disconnects, while the comparison keeps running', async () => {
    {
      const started = await a.gql(START, { input: { prompt: 'I will leave', models: ['openai:hang', 'anthropic:hang'] } }, token);
      const id = started.data.startComparison.id;
      const channel = `${prefix}:comparison:${id}`;
      const subscribers = () => sharedRedisSubscribers(channel);
      const sub = await subscribe(b.url, EVENTS, { id }, token);
      await sub.events.next(); // subscribed and replayed
      expect(await subscribers()).toBe(1);
      sub.close();
      const deadline = Date.now() + 5_000; // bounded wait on the server noticing the closed socket
      while ((await subscribers()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await subscribers()).toBe(0);
      const running = await a.gql(`query($id: ID!) { comparison(id: $id) { responses { status } } }`, { id }, token);
      expect(running.data.comparison.responses.map((r: any) => r.status)).toEqual(['PENDING', 'PENDING']);
      await a.gql(`mutation($id: ID!) { cancelComparison(id: $id) { id } }`, { id }, token);
    }
  });
});
