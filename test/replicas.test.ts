/**
 * Read replicas with read-your-writes (`src/db/replicas.ts`), against a real streaming replica: a private
 * primary (initdb) and a hot standby made from it with `pg_basebackup -R`, applying commits 500 ms late
 * (`recovery_min_apply_delay`), so every read that races a write would see the replica stale.
 *
 * - a writer never reads its own write stale: 320 createConversation → read pairs from 8 writers at once (list and
 *   by id, compiled and ordinary, through the read cache), 0 stale, while the replica is shown to lack the writes
 *   (with the writer's commit mark ignored in `choose`, src/db/replicas.ts, 318 of the 320 read stale);
 * - another user reads from the replica, lag and all;
 * - compiled reads take the same route;
 * - a replica that stops (pg_ctl stop) leaves reads answered from the primary, with no client error.
 *
 * Needs the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup: PG_BIN or /usr/lib/postgresql/15/bin);
 * skips with the reason otherwise, unless REQUIRE_REPLICA=1 (`.ci/run`), which turns a skip into a failure.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Pool } from 'pg';
import { lsnBytes, type PrivatePostgres, type PrivateReplica, startPrivatePostgres } from './helpers/private-postgres';
import { redisServerAvailable, redisUrlForTests } from './helpers/redis';
import { createTestApp, type TestApp } from './helpers/test-app';

const BIN = process.env.PG_BIN || '/usr/lib/postgresql/15/bin';
const missing = ['initdb', 'pg_ctl', 'pg_basebackup'].map((f) => join(BIN, f)).find((f) => !existsSync(f));
if (missing && process.env.REQUIRE_REPLICA === '1') throw new Error(`REQUIRE_REPLICA=1 but ${missing} is missing`);
if (missing) console.warn(`test/replicas.test.ts skipped: ${missing} is missing (set PG_BIN)`);
const describeIf = missing ? describe.skip : describe;

const APPLY_DELAY_MS = 500;
/** Write→read pairs per writer (8 writers). */
const PAIRS_PER_WRITER = 40;
const PAIRS = 8 * PAIRS_PER_WRITER;
const CREATE = 'mutation($t: String) { createConversation(title: $t) { id } }';
const LIST = 'query Mine { conversations(first: 3) { nodes { id title } } }';
const ONE = 'query One($id: ID!) { conversation(id: $id) { id title } }';
const HISTORY = `query History {
  me { id email }
  conversations(first: 20) { nodes { id title messages(first: 10) { nodes { id role content } } } }
  comparisons(first: 10) { nodes { id responses { id model content } } }
}`;

type User = { token: string; userId: string };

describeIf('read replicas (streaming, 500 ms apply delay)', () => {
  let pg: PrivatePostgres;
  let replica: PrivateReplica;
  let t: TestApp;
  let primarySql: Client;
  let replicaSql: Pool;

  beforeAll(async () => {
    pg = await startPrivatePostgres();
    replica = await pg.startReplica({ applyDelayMs: APPLY_DELAY_MS });
    t = await createTestApp({
      db: { name: 'llmselect', url: pg.url, drop: async () => undefined },
      env: {
        // A private PostgreSQL, not a copy of the migrated template: the app migrates it at start.
        MIGRATE_ON_START: 'true',
        DATABASE_REPLICA_URLS: replica.url,
        DATABASE_REPLICA_POLL_MS: '20',
        // The commit marks in Redis (an atomic max), as a deployment of several instances keeps them; memory otherwise.
        ...(redisServerAvailable() ? { REDIS_URL: redisUrlForTests() } : {}),
      },
    });
    primarySql = new Client({ connectionString: pg.url });
    // A pool: the writers check the replica concurrently.
    replicaSql = new Pool({ connectionString: replica.url, max: 4 });
    await primarySql.connect();
    replicaSql.on('error', () => undefined);
    // The migrations the app just applied reach the replica 500 ms later.
    await replicaCaughtUp();
  }, 60_000);
  afterAll(async () => {
    await primarySql?.end().catch(() => undefined);
    await replicaSql?.end().catch(() => undefined);
    await t?.close();
    await pg?.stop();
  });

  // A test that paused replay and failed must not leave the next one with a replica that never catches up, and
  // the stop test (the order is random) must not leave the others without one: it is started again.
  let replicaStopped = false;
  afterEach(async () => {
    if (replicaStopped) {
      await replica.start();
      replicaStopped = false;
    }
    await resumeReplay().catch(() => undefined);
  });

  const router = () => t.app.readRouter!;

  /** Requests counted by `llmselect_db_read_routes_total`, by `target/reason`. */
  async function routes(): Promise<Record<string, number>> {
    const metric = await t.app.metrics.readRoutes.get();
    return Object.fromEntries(metric.values.map((v) => [`${v.labels.target}/${v.labels.reason}`, v.value]));
  }
  function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
    return out;
  }
  const sum = (counts: Record<string, number>, prefix: string) =>
    Object.entries(counts).reduce((n, [k, v]) => (k.startsWith(prefix) ? n + v : n), 0);

  /**
   * Waits until the router has seen the replica replay everything the primary has written so far. A bounded
   * poll, not a sleep: replication is the one thing here with no event to await (the delay is the point).
   */
  async function replicaCaughtUp(): Promise<void> {
    const target = lsnBytes((await primarySql.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn')).rows[0]!.lsn);
    for (let attempt = 0; attempt < 2000; attempt++) {
      await router().refresh();
      if ((router().replayed()[0] ?? -1) >= target) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error('the replica did not catch up within 20 s');
  }

  async function user(prefix: string): Promise<User> {
    const u = await t.signUp(prefix);
    return { token: u.token, userId: u.userId };
  }

  async function create(u: User, title: string): Promise<string> {
    const res = await t.gql(CREATE, { t: title }, u.token);
    if (res.errors) throw new Error(JSON.stringify(res.errors));
    return res.data.createConversation.id as string;
  }

  /** Replay stops where it is (`pg_wal_replay_pause()`): the replica lags by construction, not by timing. */
  async function pauseReplay(): Promise<void> {
    await replicaSql.query('select pg_wal_replay_pause()');
  }
  async function resumeReplay(): Promise<void> {
    await replicaSql.query('select pg_wal_replay_resume()');
  }

  async function onReplica(id: string): Promise<boolean> {
    return (await replicaSql.query('select 1 from conversations where id = $1', [id])).rowCount === 1;
  }

  it(`a writer never reads its own write stale (${PAIRS} write→read pairs, 0 stale)`, async () => {
    const writers = await Promise.all(Array.from({ length: 8 }, (_, i) => user(`w${i}`)));
    await replicaCaughtUp();
    const before = await routes();
    const compiledBefore = await compiledServed();
    let stale = 0;
    let pairs = 0;
    let missingOnReplica = 0;
    let checkedOnReplica = 0;
    const errors: unknown[] = [];
    await Promise.all(
      writers.map(async (w, wi) => {
        for (let n = 0; n < PAIRS_PER_WRITER; n++) {
          const title = `w${wi}-${n}`;
          const id = await create(w, title);
          // Had the read gone to the replica, it would have been stale: the write is not there yet (most of the time).
          if (n % 4 === 0) {
            checkedOnReplica++;
            if (!(await onReplica(id))) missingOnReplica++;
          }
          const res = n % 2 === 0 ? await t.gql(LIST, {}, w.token) : await t.gql(ONE, { id }, w.token);
          pairs++;
          if (res.errors) errors.push(res.errors);
          const seen = n % 2 === 0 ? res.data?.conversations.nodes[0] : res.data?.conversation;
          if (seen?.id !== id || seen?.title !== title) stale++;
        }
      }),
    );
    const counted = delta(before, await routes());
    expect(errors).toEqual([]);
    expect(pairs).toBe(PAIRS);
    expect(stale).toBe(0);
    // The replica really lagged: reads that raced it would have missed the write.
    // (Bounds well below what an idle machine shows, ~80 of 80 and ~320: a stalled machine lets the replica catch up.)
    expect(checkedOnReplica).toBe(PAIRS / 4);
    expect(missingOnReplica).toBeGreaterThan(checkedOnReplica / 5);
    // The reads raced the replica and were sent to the primary because of the writer's commit mark.
    expect(counted['primary/behind'] ?? 0).toBeGreaterThan(PAIRS / 5);
    expect(counted['primary/write']).toBe(PAIRS);
    // Most reads after the first of each document were compiled.
    expect((await compiledServed()) - compiledBefore).toBeGreaterThan(PAIRS * 0.8);
  }, 60_000);

  it("another user's reads come from the replica, lag allowed", async () => {
    const a = await user('lag-a');
    const b = await user('lag-b');
    await create(b, 'b-own');
    await replicaCaughtUp();
    // Replay paused: the replica lacks A's write however slow this machine is (the 500 ms delay alone is a race).
    await pauseReplay();
    const before = await routes();
    const written = await create(a, 'a-fresh');
    // B's history page: B's own data is on the replica, so B reads there, although the replica lacks A's write.
    const res = await t.gql(HISTORY, {}, b.token, { 'cache-control': 'no-cache' });
    expect(res.errors).toBeUndefined();
    expect(res.data.conversations.nodes.map((c: { title: string }) => c.title)).toEqual(['b-own']);
    expect(await onReplica(written)).toBe(false);
    expect(delta(before, await routes())).toEqual({ 'primary/write': 1, 'replica/caught_up': 1 });
    // What B's route reads is the replica's lagged data: A's new row is not there yet, while the primary has it.
    const count = 'select count(*)::int as n from conversations where id = ?';
    const viaRoute = await router().within(async () => {
      await router().settle(b.userId);
      return t.app.orm.em.getConnection('read').execute(count, [written]);
    });
    const viaPrimary = await t.app.orm.em.getConnection('read').execute(count, [written]);
    expect([viaRoute[0].n, viaPrimary[0].n]).toEqual([0, 1]);
    await resumeReplay();
    // An anonymous request reads from the replica too.
    const anonymous = await routes();
    await t.gql('query { me { id } }');
    expect(delta(anonymous, await routes())).toEqual({ 'replica/anonymous': 1 });
  });

  it('compiled reads follow the same rule', async () => {
    const a = await user('cr-a');
    const b = await user('cr-b');
    await create(b, 'b-1');
    // Each document is learnt (validated by Apollo) once, then compiled.
    await t.gql(HISTORY, {}, a.token);
    await replicaCaughtUp();
    await pauseReplay();
    const compiledBefore = await compiledServed();
    const before = await routes();
    const id = await create(a, 'a-1');
    // Where the compiled statements (named prepared statements: `db/prepared.ts`) actually ran.
    const mine = await preparedOn(() => t.gql(HISTORY, {}, a.token));
    const theirs = await preparedOn(() => t.gql(HISTORY, {}, b.token, { 'cache-control': 'no-cache' }));
    expect(mine.result.data.conversations.nodes[0]).toMatchObject({ id, title: 'a-1' });
    expect(theirs.result.data.conversations.nodes.map((c: { title: string }) => c.title)).toEqual(['b-1']);
    expect((await compiledServed()) - compiledBefore).toBe(2);
    expect(delta(before, await routes())).toEqual({ 'primary/write': 1, 'primary/behind': 1, 'replica/caught_up': 1 });
    // One statement per root field (me, conversations, comparisons): A's on the primary, B's on the replica.
    expect([mine.primary, mine.replica, theirs.primary, theirs.replica]).toEqual([3, 0, 0, 3]);
    // Once the replica has replayed A's write, A's compiled reads go back to it.
    await resumeReplay();
    await replicaCaughtUp();
    const again = await routes();
    const later = await t.gql(HISTORY, {}, a.token, { 'cache-control': 'no-cache' });
    expect(later.data.conversations.nodes[0]).toMatchObject({ id, title: 'a-1' });
    expect(delta(again, await routes())).toEqual({ 'replica/caught_up': 1 });
  });

  it('a replica that stops: reads are answered from the primary, no client error', async () => {
    const a = await user('stop-a');
    const b = await user('stop-b');
    await create(b, 'b-kept');
    await replicaCaughtUp();
    const before = await routes();
    const errors: unknown[] = [];
    let stale = 0;
    let stopped = false;
    /** A reader sees at least the newest title written before its request (`fresh`: the title seen is not older). */
    const reader = async (u: User, fresh: () => (title: string | undefined) => boolean) => {
      // Until the stop, then 30 more each (the poll has marked the replica down by then, or a read found it gone).
      for (let after = 0; after < 30; after += stopped ? 1 : 0) {
        const check = fresh();
        const res = await t.gql(LIST, {}, u.token, { 'cache-control': 'no-cache' });
        if (res.errors) errors.push(res.errors);
        else if (!check(res.data.conversations.nodes[0]?.title)) stale++;
        if (u === b && ++bReads === 20) flowing();
      }
    };
    let written = -1;
    // The stop waits for B's reads to be flowing to the replica (an event: B's 20th answer).
    let flowing!: () => void;
    const warmed = new Promise<void>((resolve) => (flowing = resolve));
    let bReads = 0;
    const writer = async () => {
      for (let n = 0, after = 0; after < 10; n++, after += stopped ? 1 : 0) {
        await create(a, `a-${n}`);
        written = n;
      }
    };
    const running = Promise.all([
      reader(b, () => (title) => title === 'b-kept'),
      reader(a, () => {
        const floor = written;
        return (title) => floor < 0 || Number(title?.slice(2) ?? -1) >= floor;
      }),
      writer(),
    ]);
    // Reads are flowing to the replica (B's) when it stops; `pg_ctl stop -m fast` cuts its connections.
    await warmed;
    await replica.stop();
    replicaStopped = true;
    stopped = true;
    await running;
    const counted = delta(before, await routes());
    expect(errors).toEqual([]);
    expect(stale).toBe(0);
    expect(counted['replica/caught_up'] ?? 0).toBeGreaterThan(0);
    // After the stop, reads went to the primary: the replica failed mid-request, or the poll had found it gone.
    expect((counted['primary/replica_failed'] ?? 0) + (counted['primary/no_replica'] ?? 0)).toBeGreaterThan(0);
    expect(router().replayed()).toEqual([undefined]);
    expect(sum(counted, 'primary/no_replica')).toBeGreaterThan(0);
  }, 30_000);

  /**
   * Counts the named prepared statements `fn`'s requests send to the primary's pool and to the replica's, by
   * watching the pg connections each pool hands out (the replay poll and the ORM send unnamed text).
   */
  async function preparedOn<T>(fn: () => Promise<T>): Promise<{ result: T; primary: number; replica: number }> {
    const counts = { primary: 0, replica: 0 };
    const driver = t.app.orm.em.getDriver() as unknown as { replicas: Array<{ getKnex(): { client: unknown } }> };
    const pools = { primary: t.app.orm.em.getConnection('write'), replica: driver.replicas[0]! };
    const restore: Array<() => void> = [];
    // A connection handed out twice in the window is watched once.
    const watched = new WeakSet<object>();
    for (const side of ['primary', 'replica'] as const) {
      const client = pools[side].getKnex().client as { acquireConnection(): Promise<{ query(...args: unknown[]): unknown }> };
      const acquire = client.acquireConnection;
      client.acquireConnection = async () => {
        const connection = await acquire.call(client);
        if (watched.has(connection)) return connection;
        watched.add(connection);
        const query = connection.query;
        connection.query = (...args: unknown[]) => {
          if ((args[0] as { name?: string })?.name?.startsWith('llmselect_')) counts[side]++;
          return query.apply(connection, args);
        };
        restore.push(() => (connection.query = query));
        return connection;
      };
      restore.push(() => (client.acquireConnection = acquire));
    }
    try {
      return { result: await fn(), ...counts };
    } finally {
      for (const undo of restore.reverse()) undo();
    }
  }

  async function compiledServed(): Promise<number> {
    const metric = await t.app.metrics.compiledReads.get();
    return metric.values.find((v) => v.labels.outcome === 'served')?.value ?? 0;
  }
});
