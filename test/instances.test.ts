/**
 * Two in-process instances sharing one PostgreSQL database and one Redis
 * (same cache prefix), as behind a load balancer: a write on one is visible
 * to the next read on the other, even though that read was cached.
 */
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { createTestApp, type TestApp } from './helpers/test-app';

const SIDEBAR = `query Sidebar { conversations(first: 20) { nodes { id title } totalCount } }`;
const titles = (res: { data?: any }) => (res.data.conversations.nodes as Array<{ title: string }>).map((n) => n.title);

describeRedis('several instances (shared PostgreSQL and Redis)', () => {
  let a: TestApp;
  let b: TestApp;
  beforeAll(async () => {
    const prefix = `t-inst-${Date.now().toString(36)}`;
    a = await createTestApp({ env: { CACHE_PREFIX: prefix, REDIS_URL: redisUrlForTests() } });
    b = await createTestApp({ db: a.db, env: { CACHE_PREFIX: prefix, REDIS_URL: redisUrlForTests() } });
  });
  afterAll(async () => {
    await b.close(); // shares a's database: close it first, a drops the database
    await a.close();
  });

  it('a write on A is visible to the next read on B, whose previous read was cached', async () => {
    const { token } = await a.signUp('multi');
    await a.gql(`mutation { createConversation(title: "first") { id } }`, {}, token);
    expect(titles(await b.gql(SIDEBAR, {}, token))).toEqual(['first']);
    const cached = await b.countStatements(() => b.gql(SIDEBAR, {}, token));
    expect(cached.result.headers.get('x-cache')).toBe('HIT');
    expect(cached.count).toBe(0);

    const created = await a.gql(`mutation { createConversation(title: "second") { id } }`, {}, token);
    expect(titles(await b.gql(SIDEBAR, {}, token))).toEqual(['second', 'first']);

    await a.gql(
      `mutation($id: ID!) { renameConversation(id: $id, title: "renamed on A") { id } }`,
      { id: created.data.createConversation.id },
      token,
    );
    expect(titles(await b.gql(SIDEBAR, {}, token))).toEqual(['renamed on A', 'first']);
  });

  it('a response cached by one instance is a hit on the other (zero SQL)', async () => {
    const { token } = await b.signUp('shared');
    await b.gql(`mutation { createConversation(title: "from B") { id } }`, {}, token);
    await b.gql(SIDEBAR, {}, token);
    const onA = await a.countStatements(() => a.gql(SIDEBAR, {}, token));
    expect(onA.result.headers.get('x-cache')).toBe('HIT');
    expect(onA.count).toBe(0);
    expect(titles(onA.result)).toEqual(['from B']);
  });

  it("writes on B do not disturb another user's entries cached by A", async () => {
    const carol = await a.signUp('carol');
    const dave = await a.signUp('dave');
    await a.gql(SIDEBAR, {}, carol.token);
    await b.gql(`mutation { createConversation(title: "dave's") { id } }`, {}, dave.token);
    const carols = await a.countStatements(() => a.gql(SIDEBAR, {}, carol.token));
    expect(carols.result.headers.get('x-cache')).toBe('HIT');
    expect(carols.count).toBe(0);
    expect(titles(await a.gql(SIDEBAR, {}, dave.token))).toEqual(["dave's"]);
  });
});
