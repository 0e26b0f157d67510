/**
 * Replays a realistic read-heavy session against seeded data and measures the
 * resolver cache: open the sidebar, open conversations, page the sidebar,
 * come back and re-open, look at comparisons and the model list, with an
 * occasional write (which, by design, invalidates all of that user's entries).
 * Asserts the `resp` hit rate; prints it and cached vs uncached latency.
 */
import { seedUserData } from './helpers/factories';
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { createTestApp, type TestApp } from './helpers/test-app';
import { RESPONSE_NAMESPACE } from '../src/read-cache/keys';

const SIDEBAR = `query Sidebar($after: String) {
  conversations(first: 20, after: $after) {
    nodes { id title updatedAt messageCount lastMessage { content createdAt } }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}`;
const OPEN = `query Conversation($id: ID!) {
  conversation(id: $id) {
    id title
    messages(first: 50) { nodes { id role content model createdAt } pageInfo { hasNextPage endCursor } }
    comparisons { id prompt }
  }
}`;
const COMPARISONS = `query Comparisons {
  comparisons(first: 20) { nodes { id prompt createdAt responses { model status latencyMs } vote { outcome } } totalCount }
}`;
const MODELS = `query Models { models { id displayName } }`;

const CYCLES = 24;
/** A write after every 8th cycle: the session is read-heavy, not read-only. */
const WRITE_EVERY = 8;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function replaySuite(name: string, storeEnv: () => Record<string, string>) {
  let t: TestApp;
  let token: string;
  beforeAll(async () => {
    t = await createTestApp({ env: storeEnv() });
    const user = await t.signUp('replay');
    token = user.token;
    await seedUserData(t.db.url, user.userId, {
      conversations: 60,
      messagesPerConversation: 40,
      comparisons: 30,
      responsesPerComparison: 3,
      votes: true,
      linkComparisons: true,
    });
  });
  afterAll(() => t.close());

  async function ok(query: string, variables?: Record<string, unknown>) {
    const res = await t.gql(query, variables, token);
    if (res.errors) throw new Error(`${query.slice(0, 40)}: ${JSON.stringify(res.errors)}`);
    return res.data;
  }

  it('reaches a resolver-cache hit rate above 90%', async () => {
    const before = t.app.cache.stats().resp ?? { hits: 0, misses: 0 };
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      const sidebar = await ok(SIDEBAR); // open the sidebar
      const recent = sidebar.conversations.nodes.slice(0, 5).map((n: { id: string }) => n.id);
      for (const id of recent) expect((await ok(OPEN, { id })).conversation.id).toBe(id); // open five conversations
      await ok(SIDEBAR, { after: sidebar.conversations.pageInfo.endCursor }); // page the sidebar
      await ok(SIDEBAR); // back to the top
      for (const id of recent) await ok(OPEN, { id }); // re-open them
      await ok(COMPARISONS);
      await ok(MODELS);
      if (cycle % WRITE_EVERY === 0 && cycle < CYCLES) await ok(`mutation { createConversation(title: "cycle ${cycle}") { id } }`);
    }
    const after = t.app.cache.stats().resp!;
    const hits = after.hits - before.hits;
    const misses = after.misses - before.misses;
    const hitRate = hits / (hits + misses);

    // Latency of the sidebar query, cached vs not (printed, not asserted).
    const cached: number[] = [];
    const uncached: number[] = [];
    for (let i = 0; i < 25; i++) {
      await t.app.cache.clearNamespace(RESPONSE_NAMESPACE);
      let start = performance.now();
      const miss = await t.gql(SIDEBAR, {}, token);
      uncached.push(performance.now() - start);
      start = performance.now();
      const hit = await t.gql(SIDEBAR, {}, token);
      cached.push(performance.now() - start);
      expect([miss.headers.get('x-cache'), hit.headers.get('x-cache')]).toEqual(['MISS', 'HIT']);
    }
    console.log(
      `[replay ${name}] ${CYCLES} cycles: resp hits ${hits}, misses ${misses}, hit rate ${(hitRate * 100).toFixed(1)}%; ` +
        `sidebar median latency cached ${median(cached).toFixed(2)} ms vs uncached ${median(uncached).toFixed(2)} ms`,
    );
    expect(hitRate).toBeGreaterThan(0.9);

    const health = (await (await fetch(`${t.url}/health`)).json()) as { cache: { byCache: Record<string, { hits: number }> } };
    expect(health.cache.byCache.resp!.hits).toBe(after.hits + 25);
  });
}

describe('replay (in-memory store)', () => {
  replaySuite('memory', () => ({}));
});

describeRedis('replay (Redis)', () => {
  replaySuite('redis', () => ({ REDIS_URL: redisUrlForTests() }));
});
