/**
 * Statement and lock timeouts on every pooled connection (issue 16, case 3).
 * Before, a row held FOR UPDATE by another session (a migration, a backup,
 * an operator's psql) made `renameConversation` wait until the lock went
 * away (74 s), each waiter holding a pooled connection until the pool was
 * empty and every other user got 503s.
 */
import { Client } from 'pg';
import { isRetryableDatabaseError } from '../src/db/connection-errors';
import { migrate } from '../src/db/orm';
import { classifyError } from '../src/graphql/format-error';
import { withTimeout } from '../src/timeout';
import { createTestApp, type TestApp } from './helpers/test-app';

const RENAME = `mutation($id: ID!, $t: String!) { renameConversation(id: $id, title: $t) { id title } }`;
const CREATE = `mutation($t: String) { createConversation(title: $t) { id } }`;

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ env: { NODE_ENV: 'production', DB_LOCK_TIMEOUT_MS: '300', DB_STATEMENT_TIMEOUT_MS: '1500', DB_POOL_MAX: '5' } });
});
afterAll(() => t.close());

/** Another session (psql, a backup, a migration) holding rows locked until `release()`. */
async function lockRow(table: string, id: string): Promise<{ release(): Promise<void> }> {
  const client = new Client({ connectionString: t.db.url });
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
        [1, 2, 3].map(() => connection.execute<Array<{ statement: string; lock: string }>>(`select current_setting('statement_timeout') as statement, current_setting('lock_timeout') as lock, pg_sleep(0.05)`)),
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

  it('a row locked FOR UPDATE by another session: renameConversation answers SERVICE_UNAVAILABLE (503, Retry-After) within the lock timeout, and other users are served meanwhile', async () => {
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
        expect(answer.errors).toEqual([expect.objectContaining({ message: 'The database is busy (a lock or statement timeout), retry later', extensions: { code: 'SERVICE_UNAVAILABLE' } })]);
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

  it('a statement over DB_STATEMENT_TIMEOUT_MS is cancelled (57014) and classified SERVICE_UNAVAILABLE, retried by background writes', async () => {
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
