/**
 * The migrations create what the entities describe (the ORM's diff is empty,
 * so `migration:create` starts clean), an app started with MIGRATE_ON_START
 * applies them all to an empty database (other test apps start on copies of the
 * template global setup migrated, with it off), and the read paths use their
 * indexes on a realistically large table (100k rows), not a sequential scan.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createTestDatabase } from './helpers/database';
import { withClient } from './helpers/factories';
import { createTestApp, type TestApp } from './helpers/test-app';

let t: TestApp;
let userId: string;
let conversationId: string;

beforeAll(async () => {
  t = await createTestApp();
  ({ userId } = await t.signUp('big'));
  await withClient(t.db.url, async (c) => {
    // 100k conversations spread over 200 users (the user under test owns 500), and 100k messages over 1000 conversations.
    await c.query(
      `insert into users (id, created_at, email, password_hash)
       select gen_random_uuid(), now(), 'bulk' || g || '@example.com', 'x' from generate_series(1, 198) g`,
    );
    await c.query(
      `insert into conversations (id, created_at, updated_at, owner_id, title)
       select gen_random_uuid(), now() - make_interval(secs => g), now(),
              case when g % 200 = 0 then $1::uuid else (select id from users where email = 'bulk' || (g % 198 + 1) || '@example.com') end,
              'c' || g
         from generate_series(1, 100000) g`,
      [userId],
    );
    const { rows } = await c.query(`select id from conversations where owner_id = $1 order by created_at desc limit 1`, [userId]);
    conversationId = rows[0].id;
    await c.query(
      `insert into messages (id, created_at, conversation_id, role, content)
       select gen_random_uuid(), now() - make_interval(secs => g), cv.id, 'USER', 'm' || g
         from (select id, row_number() over () as rn from conversations limit 1000) cv
         cross join generate_series(1, 100) g`,
    );
    await c.query(
      `insert into messages (id, created_at, conversation_id, role, content)
       select gen_random_uuid(), now() - make_interval(secs => g), $1, 'USER', 'mine' || g from generate_series(1, 50) g`,
      [conversationId],
    );
    await c.query('analyze');
  });
});
afterAll(() => t.close());

async function plan(sql: string, params: unknown[]): Promise<string> {
  return withClient(t.db.url, async (c) => {
    const { rows } = await c.query(`explain ${sql}`, params);
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  });
}

it('has no schema drift between entities and migrations', async () => {
  const diff = await t.app.orm.getSchemaGenerator().getUpdateSchemaSQL({ wrap: false });
  expect(diff.trim()).toBe('');
});

it('applies every migration at start to an empty database (MIGRATE_ON_START), then none', async () => {
  const files = readdirSync(join(__dirname, '..', 'migrations'))
    .filter((f) => /^Migration\d+.*\.ts$/.test(f) && !f.endsWith('.d.ts'))
    .map((f) => f.replace(/\.ts$/, ''))
    .sort();
  const db = await createTestDatabase('empty', { empty: true });
  try {
    const applied = async () => {
      const app = await createTestApp({ db, env: { MIGRATE_ON_START: 'true' } });
      try {
        const line = app.logs.map((l) => JSON.parse(l)).find((l) => l.msg === 'migrations applied');
        const diff = await app.app.orm.getSchemaGenerator().getUpdateSchemaSQL({ wrap: false });
        return { migrations: line?.migrations ?? [], diff: diff.trim() };
      } finally {
        await app.close();
      }
    };
    expect(await applied()).toEqual({ migrations: files, diff: '' });
    expect(await applied()).toEqual({ migrations: [], diff: '' });
  } finally {
    await db.drop();
  }
});

it('reads a conversation list page through (owner_id, created_at desc, id desc)', async () => {
  const first = await plan(`select * from conversations where owner_id = $1 order by created_at desc, id desc limit 21`, [userId]);
  expect(first).toContain('conversations_owner_created_idx');
  expect(first).not.toMatch(/Seq Scan/);
  const next = await plan(
    `select * from conversations c
      where owner_id = $1 and (c.created_at, c.id) < (now() - interval '1 hour', '00000000-0000-0000-0000-000000000000')
      order by created_at desc, id desc limit 21`,
    [userId],
  );
  expect(next).toContain('conversations_owner_created_idx');
  expect(next).not.toMatch(/Seq Scan/);
});

it('reads a message page through (conversation_id, created_at, id)', async () => {
  const page = await plan(
    `select * from messages m
      where conversation_id = $1 and (m.created_at, m.id) > (now() - interval '1 day', '00000000-0000-0000-0000-000000000000')
      order by created_at, id limit 51`,
    [conversationId],
  );
  expect(page).toContain('messages_conversation_created_idx');
  expect(page).not.toMatch(/Seq Scan/);
});

it('the statements the app actually sends use those indexes', async () => {
  const login = await t.gql(`mutation($e: String!) { login(email: $e, password: "correct horse battery") { token } }`, {
    e: (await withClient(t.db.url, (c) => c.query('select email from users where id = $1', [userId]))).rows[0].email,
  });
  const token = login.data.login.token;
  t.app.queryObserver.inlineParams = true;
  const { statements } = await t
    .countStatements(() => t.gql(`{ conversations(first: 20) { nodes { id messages(first: 10) { nodes { id } } } } }`, {}, token))
    .finally(() => (t.app.queryObserver.inlineParams = false));
  // One statement: the list with each conversation's first message page embedded (look-ahead).
  expect(statements).toHaveLength(1);
  const [listPlan] = await Promise.all(statements.map((sql) => plan(sql, [])));
  expect(listPlan).toContain('conversations_owner_created_idx');
  expect(listPlan).toContain('messages_conversation_created_idx');
  expect(listPlan).not.toMatch(/Seq Scan on (conversations|messages)/);

  // A later page of one conversation's messages goes through the loader's LATERAL statement.
  const first = await t.gql(`{ conversations(first: 1) { nodes { id messages(first: 10) { pageInfo { endCursor } } } } }`, {}, token);
  const node = first.data.conversations.nodes[0];
  t.app.queryObserver.inlineParams = true;
  const next = await t
    .countStatements(() =>
      t.gql(
        `query($id: ID!, $after: String) { conversation(id: $id) { messages(first: 10, after: $after) { nodes { id } } } }`,
        { id: node.id, after: node.messages.pageInfo.endCursor },
        token,
      ),
    )
    .finally(() => (t.app.queryObserver.inlineParams = false));
  const pagePlan = await plan(next.statements[next.statements.length - 1]!, []);
  expect(pagePlan).toContain('messages_conversation_created_idx');
  expect(pagePlan).not.toMatch(/Seq Scan on messages/);
});
