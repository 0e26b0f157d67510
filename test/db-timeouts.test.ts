/**
 * Statement and lock timeouts on every pooled connection (issue 16, case 3).
 * Before, a row held FOR UPDATE by another session (a migration, a backup,
 * an operator's psql) made `renameConversation` wait until the lock went
 * away (74 s), each waiter holding a pooled connection until the pool was
 * empty and every other user got 503s.
 */
import { Client } from 'pg';
import { isRetryableDatabaseError } from '../src/db/connection-errors';
import { DEADLINE_MESSAGE } from '../src/db/request-deadline';
import { migrate } from '../src/db/orm';
import { classifyError } from '../src/graphql/format-error';
import { withTimeout } from '../src/timeout';
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestApp, type TestApp } from './helpers/test-app';

const RENAME = `mutation($id: ID!, $t: String!) { renameConversation(id: $id, title: $t) { id title } }`;
const CREATE = `mutation($t: String) { createConversation(title: $t) { id } }`;

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({
    env: { NODE_ENV: 'production', DB_LOCK_TIMEOUT_MS: '300', DB_STATEMENT_TIMEOUT_MS: '1500', DB_POOL_MAX: '5' },
  });
});
afterAll(() => t.close());

/** Another session (psql, a backup, a migration) holding rows locked until `release()`. */
async function lockRow(table: string, id: string, app: TestApp = t): Promise<{ release(): Promise<void> }> {
  const client = new Client({ connectionString: app.db.url });
  await client.connect();
  await client.query('begin');
  await client.query(`select 1 from ${table} where id = $1 for update`, [id]);
  return {
    async release() {
      await client.query('rollback');
      await client.end();
    },
  };
}

describe('statement and lock timeouts', () => {
  it('sets DB_STATEMENT_TIMEOUT_MS and DB_LOCK_TIMEOUT_MS on every pooled connection (defaults 5000 and 2000)', async () => {
    const settings = async (app: TestApp) => {
      const connection = app.app.orm.em.getConnection();
      // Several at once: each from its own pooled connection.
      const rows = await Promise.all(
        [1, 2, 3].map(() =>
          connection.execute<Array<{ statement: string; lock: string }>>(
            `select current_setting('statement_timeout') as statement, current_setting('lock_timeout') as lock, pg_sleep(0.05)`,
          ),
        ),
      );
      return rows.map((r) => ({ statement: r[0]!.statement, lock: r[0]!.lock }));
    };
    expect(await settings(t)).toEqual(Array(3).fill({ statement: '1500ms', lock: '300ms' }));
    const defaults = await createTestApp();
    try {
      expect(await settings(defaults)).toEqual(Array(3).fill({ statement: '5s', lock: '2s' }));
    } finally {
      await defaults.close();
    }
  });

  it('a row locked FOR UPDATE by another session: renameConversation answers SERVICE_UNAVAILABLE in time; others are served', async () => {
    const owner = await t.signUp('locked');
    const other = await t.signUp('bystander');
    const created = await t.gql(CREATE, { t: 'before' }, owner.token);
    const id = created.data.createConversation.id as string;
    const lock = await lockRow('conversations', id);
    try {
      // More waiters than the pool has connections minus one: before, they held the pool until the lock went.
      const renames = Promise.all([1, 2, 3, 4, 5, 6].map((i) => t.gql(RENAME, { id, t: `renamed ${i}` }, owner.token)));
      // Another user's writes and reads are served while the lock is held.
      const bystander = await withTimeout(t.gql(CREATE, { t: 'mine' }, other.token), 10_000, 'a bystander request');
      expect(bystander.status).toBe(200);
      expect(bystander.errors).toBeUndefined();
      // The lock is still held: before, these waited for it (and this would time out).
      const answers = await withTimeout(renames, 15_000, 'renames of a locked row');
      for (const answer of answers) {
        expect(answer.status).toBe(503);
        expect(answer.headers.get('retry-after')).toBe('2');
        expect(answer.errors).toEqual([
          expect.objectContaining({
            message: 'The database is busy (a lock or statement timeout), retry later',
            extensions: { code: 'SERVICE_UNAVAILABLE' },
          }),
        ]);
        expect(answer.raw).not.toMatch(/update|lock_timeout|55P03|renamed/i);
      }
      const mine = await t.gql(`{ conversations(first: 5) { nodes { title } } }`, {}, other.token);
      expect(mine.status).toBe(200);
    } finally {
      await lock.release();
    }
    const after = await t.gql(RENAME, { id, t: 'after' }, owner.token);
    expect(after.data?.renameConversation.title).toBe('after');
  });

  it('a statement over DB_STATEMENT_TIMEOUT_MS is cancelled (57014) as SERVICE_UNAVAILABLE, retried by background writes', async () => {
    const error = await t.app.orm.em
      .getConnection()
      .execute('select pg_sleep(5)')
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect((error as { code?: string }).code).toBe('57014');
    expect(isRetryableDatabaseError(error)).toBe(true);
    expect(classifyError({ message: 'x' }, error, true).formatted.extensions).toEqual({ code: 'SERVICE_UNAVAILABLE' });
  });

  it('a deadlock (40P01: two settles taking the same rollup rows in opposite orders) is retried, not stored as a failure', async () => {
    // Two sessions, each adding one call to two models' day rows of the usage rollups, in opposite orders.
    const [a, b] = [new Client({ connectionString: t.db.url }), new Client({ connectionString: t.db.url })];
    await Promise.all([a.connect(), b.connect()]);
    try {
      // Two users (a user's own day row is one more row both would take); the models' day rows are everyone's.
      const users = new Map([
        [a, (await t.signUp('deadlock-a')).userId],
        [b, (await t.signUp('deadlock-b')).userId],
      ]);
      const record = (client: Client, model: string) =>
        client.query(`select usage_record(current_date, $1, 'OPENAI', $2, null, 1, 0, 1, 1, 0.01, 100)`, [users.get(client), model]);
      await Promise.all([a.query('begin'), b.query('begin')]);
      await record(a, 'deadlock-x');
      await record(b, 'deadlock-y');
      const outcomes = await Promise.allSettled([record(a, 'deadlock-y'), record(b, 'deadlock-x')]);
      const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      expect((failed?.reason as { code?: string })?.code).toBe('40P01');
      expect(isRetryableDatabaseError(failed!.reason)).toBe(true);
      expect(classifyError({ message: 'x' }, failed!.reason, true).formatted.extensions).toEqual({ code: 'SERVICE_UNAVAILABLE' });
    } finally {
      await Promise.allSettled([a.query('rollback'), b.query('rollback')]);
      await Promise.allSettled([a.end(), b.end()]);
    }
  });

  it('migrations at start run without the pool timeouts', async () => {
    const seen: string[] = [];
    const stop = t.app.queryObserver.onQuery((sql) => seen.push(sql));
    try {
      expect(await migrate(t.app.orm)).toEqual([]);
    } finally {
      stop();
    }
    expect(seen).toEqual(expect.arrayContaining(['set local statement_timeout = 0', 'set local lock_timeout = 0']));
  });
});

/**
 * The request-level deadline (issue 16, case 3: "a request-level deadline").
 * Each statement stays within DB_STATEMENT_TIMEOUT_MS and DB_LOCK_TIMEOUT_MS,
 * but a request running several of them must still end as a whole.
 */
describe('request deadline (REQUEST_DEADLINE_MS)', () => {
  let d: TestApp;
  let fake: FakeLlmServer;
  beforeAll(async () => {
    fake = await FakeLlmServer.start();
    d = await createTestApp({
      env: {
        ...fake.providerEnv(),
        NODE_ENV: 'production',
        DB_LOCK_TIMEOUT_MS: '400',
        // Room for a busy machine: a 300 ms statement is far inside 1.5 s, ten of them far past the 2 s deadline.
        DB_STATEMENT_TIMEOUT_MS: '1500',
        REQUEST_DEADLINE_MS: '2000',
      },
    });
  });
  afterAll(async () => {
    await d?.close();
    await fake?.close();
  });

  it(
    'a request whose statements each stay within the statement timeout ends as a whole at the deadline: ' +
      'the one running is cancelled, the rest never sent, SERVICE_UNAVAILABLE (503, Retry-After)',
    async () => {
      const owner = await d.signUp('deadline');
      const id = (await d.gql(CREATE, { t: 'before' }, owner.token)).data.createConversation.id as string;
      // This test's rows only (titles starting "slow "): every UPDATE of one takes 300 ms, a fifth of the statement timeout.
      const admin = new Client({ connectionString: d.db.url });
      await admin.connect();
      try {
        await admin.query(`create or replace function slow_rename() returns trigger language plpgsql
        as $$ begin perform pg_sleep(0.3); return new; end $$`);
        await admin.query(`create trigger slow_rename before update on conversations
        for each row when (new.title like 'slow %') execute function slow_rename()`);
      } finally {
        await admin.end();
      }
      // Mutations run one after another: ten renames of 300 ms each sum to 3 s, past the 2 s deadline.
      const aliases = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'];
      const renames = aliases.map((a) => `${a}: renameConversation(id: $id, title: "slow ${a}") { id title }`);
      const document = `mutation($id: ID!) { ${renames.join(' ')} }`;
      const { result: answer, statements } = await d.countStatements(() => d.gql(document, { id }, owner.token));

      // Before: 200, all ten renames done (3 s). Now the rename running at the deadline is cancelled (or not sent),
      // and being non-null its error ends the operation: nothing after it runs.
      expect(answer.status).toBe(503);
      expect(answer.headers.get('retry-after')).toBe('2');
      expect(answer.errors).toEqual([expect.objectContaining({ message: DEADLINE_MESSAGE, extensions: { code: 'SERVICE_UNAVAILABLE' } })]);
      expect(answer.raw).not.toMatch(/update|statement_timeout|57014|deadline of|slow_rename|at .*\.ts/i);
      const cut = aliases.indexOf(answer.errors![0]!.path![0] as string);
      expect(cut).toBeGreaterThanOrEqual(1);
      // What ran before the cut was committed; the cut rename was rolled back; nothing after it was sent.
      const updates = statements.filter((sql) => /^update\s+"?conversations"?/i.test(sql));
      expect(updates.length).toBeLessThanOrEqual(cut + 1);
      const stored = await d.gql(`query($id: ID!) { conversation(id: $id) { title } }`, { id }, owner.token);
      expect(stored.data.conversation.title).toBe(`slow ${aliases[cut - 1]}`);
    },
  );

  it(
    'a statement starting with less time left than DB_STATEMENT_TIMEOUT_MS runs with its timeout lowered to what is left: ' +
      'cancelled at the deadline',
    async () => {
      // A deadline shorter than the statement timeout: the first statement already has less time than the pool gives it.
      const env = { NODE_ENV: 'production', DB_STATEMENT_TIMEOUT_MS: '5000', REQUEST_DEADLINE_MS: '500' };
      const short = await createTestApp({ db: d.db, env });
      try {
        const owner = await short.signUp('deadline-cap');
        const id = (await short.gql(CREATE, { t: 'before' }, owner.token)).data.createConversation.id as string;
        const admin = new Client({ connectionString: d.db.url });
        await admin.connect();
        try {
          // This test's row only: its UPDATE takes 2 s, well within the statement timeout (5 s), past the deadline (0.5 s).
          await admin.query(`create or replace function sleepy_rename() returns trigger language plpgsql
          as $$ begin perform pg_sleep(2); return new; end $$`);
          await admin.query(`create trigger sleepy_rename before update on conversations
          for each row when (new.id = '${id}') execute function sleepy_rename()`);
        } finally {
          await admin.end();
        }
        const { result: answer, statements } = await short.countStatements(() => short.gql(RENAME, { id, t: 'renamed' }, owner.token));
        // Before: 200 after 2 s. Now PostgreSQL cancels the UPDATE it was sent at the deadline.
        expect(answer.status).toBe(503);
        expect(answer.errors).toEqual([
          expect.objectContaining({ message: DEADLINE_MESSAGE, extensions: { code: 'SERVICE_UNAVAILABLE' } }),
        ]);
        expect(statements.filter((sql) => /^update\s+"?conversations"?/i.test(sql))).toHaveLength(1);
        const stored = await short.gql(`query($id: ID!) { conversation(id: $id) { title } }`, { id }, owner.token);
        expect(stored.data.conversation.title).toBe('before');
      } finally {
        await short.close();
      }
    },
  );

  it('time spent waiting for models does not count: runComparison and sendMessage with a model slower than the deadline ' +
    'answer', async () => {
    // Its own instance with more room: the statements around the model calls must fit in the deadline on a busy machine.
    const own = await createTestApp({ db: d.db, env: { ...fake.providerEnv(), NODE_ENV: 'production', REQUEST_DEADLINE_MS: '2500' } });
    try {
      const owner = await own.signUp('deadline-models');
      const key = { provider: 'OPENAI', apiKey: 'sk-deadline-0001' };
      await own.gql(`mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`, { input: key }, owner.token);
      // slow-3000: the provider waits 3 s before its first byte, past the 2.5 s deadline; the statements after it still run.
      const run = await own.gql(
        `mutation($input: RunComparisonInput!) { runComparison(input: $input) { id conversation { id } responses { status content } } }`,
        { input: { prompt: 'slow please', models: ['openai:slow-3000', 'openai:quick'] } },
        owner.token,
      );
      expect(run.errors).toBeUndefined();
      expect(run.data.runComparison.responses.map((r: { status: string }) => r.status)).toEqual(['COMPLETED', 'COMPLETED']);
      const sent = await own.gql(
        `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id model content } }`,
        { input: { conversationId: run.data.runComparison.conversation.id, content: 'again, slowly', model: 'openai:slow-3000' } },
        owner.token,
      );
      expect(sent.errors).toBeUndefined();
      expect(sent.data.sendMessage.model).toBe('openai:slow-3000');
    } finally {
      await own.close();
    }
  }, 30_000);
});
