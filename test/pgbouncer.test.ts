/**
 * Two instances behind a real PgBouncer in transaction pooling (Debian's 1.18: no protocol-level prepared
 * statements), with `DB_PREPARED_STATEMENTS=off`: compiled reads (served, and byte-identical to the ordinary
 * answer), a comparison streamed from one instance to a subscriber on the other, settled and voted on,
 * budget admission under its transaction-scoped advisory lock, and bursts of starts, all through the bouncer.
 * With named statements (the default) answers stay right, at the cost of re-parses and fallbacks: the setting
 * is what makes them plain.
 *
 * Needs `pgbouncer` (`.ci/run` installs it and sets REQUIRE_PGBOUNCER=1); skips with the reason otherwise.
 */
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestDatabase, type TestDatabase } from './helpers/database';
import { type PgBouncer, pgbouncerMissing, startPgBouncer } from './helpers/pgbouncer';
import { redisUrlForTests } from './helpers/redis';
import { subscribe } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';

const missing = pgbouncerMissing();
if (missing && process.env.REQUIRE_PGBOUNCER === '1') throw new Error(`REQUIRE_PGBOUNCER=1 but ${missing}`);
const describeIf = missing ? describe.skip : describe;
if (missing) console.warn(`test/pgbouncer.test.ts skipped: ${missing}`);

const RUN = 'mutation($input: RunComparisonInput!) { startComparison(input: $input) { id } }';
const EVENTS = 'subscription($id: ID!) { comparisonEvents(comparisonId: $id) { responseId status delta content } }';
const GET = 'query($id: ID!) { comparison(id: $id) { responses { id status content } } }';
const VOTE = 'mutation($input: VoteInput!) { vote(input: $input) { id } }';
const HISTORY = `query History {
  me { id email }
  conversations(first: 20) { nodes { id title messages(first: 10) { nodes { id role content } } } }
  comparisons(first: 10) { nodes { id prompt responses { id model content status } } }
}`;
const NO_CACHE = { 'cache-control': 'no-cache' };

describeIf('behind PgBouncer (transaction pooling)', () => {
  let fake: FakeLlmServer;
  let db: TestDatabase;
  let bouncer: PgBouncer;
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    fake = await FakeLlmServer.start();
    db = await createTestDatabase();
    bouncer = await startPgBouncer(db.url, { poolSize: 6 });
    const through = { ...db, url: bouncer.via(db.url) };
    // One Redis prefix: the two instances share pub/sub and the cache, as two instances of one deployment do.
    const env = {
      ...fake.providerEnv(),
      REDIS_URL: redisUrlForTests(),
      CACHE_PREFIX: `t-pgb-${Math.random().toString(36).slice(2, 10)}`,
      DB_PREPARED_STATEMENTS: 'off',
      USER_DAILY_BUDGET_USD: '100',
    };
    a = await createTestApp({ db: through, env });
    b = await createTestApp({ db: through, env });
  }, 60_000);
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await bouncer?.stop();
    await db?.drop();
    await fake?.close();
  });

  async function compiledReads(app: TestApp, outcome: 'served' | 'fallback'): Promise<number> {
    const metric = await app.app.metrics.compiledReads.get();
    return metric.values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
  }
  const served = (app: TestApp) => compiledReads(app, 'served');

  it('streams a comparison started on A to a subscriber on B, settles it, and takes the vote', async () => {
    const u = await a.signUp('bouncer');
    await a.gql(
      'mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }',
      {
        input: { provider: 'OPENAI', apiKey: 'sk-bouncer-0000001' },
      },
      u.token,
    );
    const started = await a.gql(RUN, { input: { prompt: 'Hello', models: ['openai:pb-a-stream-2', 'openai:pb-b-stream-2'] } }, u.token);
    expect(started.errors).toBeUndefined();
    const id = started.data.startComparison.id as string;
    const sub = await subscribe(b.url, EVENTS, { id }, u.token);
    const settled = new Set<string>();
    for await (const e of sub.events) {
      expect(e.errors).toBeUndefined();
      const event = (e.data as { comparisonEvents: { responseId: string; status: string } }).comparisonEvents;
      if (event.status === 'COMPLETED') settled.add(event.responseId);
    }
    expect(settled.size).toBe(2);
    const stored = (await b.gql(GET, { id }, u.token)).data.comparison.responses as Array<{ id: string; status: string }>;
    expect(stored.map((r) => r.status)).toEqual(['COMPLETED', 'COMPLETED']);
    const voted = await b.gql(VOTE, { input: { comparisonId: id, outcome: 'WINNER', winnerResponseId: stored[0]!.id } }, u.token);
    expect(voted.errors).toBeUndefined();
  });

  it('serves compiled reads without named statements, byte for byte the ordinary answer', async () => {
    const u = await a.signUp('bouncer-read');
    const ordinary = await a.gql(HISTORY, {}, u.token, NO_CACHE);
    expect(ordinary.errors).toBeUndefined();
    const before = await served(a);
    for (let i = 0; i < 3; i++) {
      const compiled = await a.gql(HISTORY, {}, u.token, NO_CACHE);
      expect(compiled.raw).toBe(ordinary.raw);
    }
    expect(await served(a)).toBe(before + 3);
  });

  it('admits a burst of starts across both instances on a 6-connection server pool (advisory locks are transaction-scoped)', async () => {
    const u = await a.signUp('bouncer-burst');
    await a.gql(
      'mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }',
      {
        input: { provider: 'OPENAI', apiKey: 'sk-bouncer-0000002' },
      },
      u.token,
    );
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        (i % 2 ? a : b).gql(RUN, { input: { prompt: `Burst ${i}`, models: ['openai:gpt-4o', 'openai:gpt-4o-mini'] } }, u.token),
      ),
    );
    for (const r of results) expect(r.errors).toBeUndefined();
  });

  it('with named statements (the default) every answer is still right: a statement a connection lacks is parsed again', async () => {
    const named = await createTestApp({ db: { ...db, url: bouncer.via(db.url) }, env: { ...fake.providerEnv() } });
    try {
      const u = await named.signUp('bouncer-named');
      const first = await named.gql(HISTORY, {}, u.token, NO_CACHE);
      // Requests land on whichever server connection is free: a named statement is missing there (parsed again) or
      // already exists under that name (the read falls back to the ordinary path); never a client error.
      const answers = await Promise.all(Array.from({ length: 12 }, () => named.gql(HISTORY, {}, u.token, NO_CACHE)));
      for (const answer of answers) expect(answer.raw).toBe(first.raw);
    } finally {
      await named.close();
    }
  });
});
