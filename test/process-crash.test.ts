/**
 * Process life (2 of 3): a server process killed with SIGKILL mid-comparison
 * (another instance settles its responses once their lease expires), and one
 * of several instances stopping while it streams a comparison another runs.
 * Helpers and the no-sleep rule: ./helpers/process-life.ts.
 */
import { randomBytes } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from './helpers/database';
import { processLife, EVENTS, JWT_SECRET, ENCRYPTION_KEY } from './helpers/process-life';
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { subscribe } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';

const life = processLife();

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

  it('another instance settles the orphaned responses FAILED once their lease expires; subscribers complete, voting works', async () => {
    life.fake.setBehavior('crash-model', { hang: true });
    const doomed = await life.start({ DATABASE_URL: db.url, COMPARISON_LEASE_MS: '800' });
    const { token } = await life.signUpWithKeys(doomed.url);
    const comparison = await life.startComparison(doomed.url, token, ['openai:crash-model', 'anthropic:fine-model']);
    const sub = await subscribe(survivor.url, EVENTS, { id: comparison.id }, token);

    expect(await doomed.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    const events: any[] = [];
    for await (const message of sub.events) events.push(message.data.comparisonEvents);
    expect(sub.completed).toBe(true);
    const crashed = comparison.responses.find((r) => r.model === 'openai:crash-model')!;
    expect(events.filter((e) => e.responseId === crashed.id).at(-1)).toMatchObject({
      status: 'FAILED',
      error: expect.stringMatching(/lease expired/),
    });

    const vote = await survivor.gql(
      `mutation($input: VoteInput!) { vote(input: $input) { outcome } }`,
      { input: { comparisonId: comparison.id, outcome: 'TIE' } },
      token,
    );
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
    other = await createTestApp({
      db,
      env: {
        REDIS_URL: redisUrlForTests(),
        CACHE_PREFIX: prefix,
        JWT_SECRET,
        ENCRYPTION_KEY,
        SHUTDOWN_GRACE_MS: '0',
        OPENAI_BASE_URL: life.fake.baseUrls.openai,
        ANTHROPIC_BASE_URL: life.fake.baseUrls.anthropic,
      },
    });
  });
  afterAll(async () => {
    await other.close();
    await db.drop();
  });

  it('SIGTERM ends a stream that follows a comparison running on another instance with SERVICE_UNAVAILABLE, then `complete`', async () => {
    life.fake.setBehavior('elsewhere-model', { hang: true });
    const stopping = await life.start({ DATABASE_URL: db.url, REDIS_URL: redisUrlForTests(), CACHE_PREFIX: prefix });
    const { token } = await life.signUpWithKeys(other.url);
    const comparison = await life.startComparison(other.url, token, ['openai:elsewhere-model', 'anthropic:elsewhere-model']);
    const sub = await subscribe(stopping.url, EVENTS, { id: comparison.id }, token);
    const first = await sub.events.next(); // the stream is open and replaying
    expect(first.value?.data?.comparisonEvents?.status).toBe('PENDING');

    const rest: any[] = [];
    const collecting = (async () => {
      for await (const message of sub.events) rest.push(message);
    })();
    await life.stopCleanly(stopping);
    await collecting;
    expect(sub.completed).toBe(true);
    expect(rest.at(-1)).toMatchObject({ errors: [{ extensions: { code: 'SERVICE_UNAVAILABLE' } }] });

    // The comparison itself is untouched on the instance that runs it.
    await other.gql(`mutation($id: ID!) { cancelComparison(id: $id) { id } }`, { id: comparison.id }, token);
  });
});
