/**
 * Compiled reads (src/graphql/compiled-read.ts) must be invisible: for every
 * document they answer, the bytes are the ones the ordinary path (Apollo +
 * resolvers) sends. The first request of a document takes the ordinary path
 * (that is when the document is learnt); the next one, with the lookup
 * skipped (`Cache-Control: no-cache`), is compiled. Anything the compiler
 * does not understand, or an argument the resolvers would refuse, goes the
 * ordinary way.
 */
import { BACKGROUND_SQL_TAG } from '../src/modules/comparison/comparison-runner';
import { seedUserData, withClient } from './helpers/factories';
import { createTestApp, type GqlResult, type TestApp } from './helpers/test-app';

let t: TestApp;
let alice: { token: string; userId: string };
let bob: { token: string; userId: string };
let empty: { token: string; userId: string };

/** Text a JSON encoder can get wrong: quotes, backslashes, control characters, non-BMP, U+2028. */
const NASTY = `"quoted" \\ back\\slash \n newline \t tab \r cr \u0001 \u001f \u007f ünïcödé 😀 \u2028 \u2029 </script> '`;

beforeAll(async () => {
  t = await createTestApp();
  [alice, bob, empty] = [await t.signUp('alice'), await t.signUp('bob'), await t.signUp('empty')];
  await seedUserData(t.db.url, alice.userId, {
    conversations: 7,
    messagesPerConversation: 5,
    comparisons: 4,
    responsesPerComparison: 3,
    votes: false,
  });
  await seedUserData(t.db.url, bob.userId, {
    conversations: 2,
    messagesPerConversation: 2,
    comparisons: 1,
    responsesPerComparison: 2,
    votes: false,
  });
  await withClient(t.db.url, async (c) => {
    // Nulls and non-null values in every kind of column, and text that needs escaping.
    await c.query(
      `update conversations set title = $2 where id = (select id from conversations where owner_id = $1 order by created_at desc limit 1)`,
      [alice.userId, NASTY],
    );
    await c.query(
      `update messages set content = $2, provider = 'ANTHROPIC', model = 'anthropic:claude', prompt_tokens = 0, completion_tokens = 123,
                          latency_ms = 45
        where id in (select m.id from messages m join conversations c on c.id = m.conversation_id
                      where c.owner_id = $1 order by m.created_at limit 3)`,
      [alice.userId, NASTY],
    );
    await c.query(
      `update comparison_responses set status = 'FAILED', error = $2, content = $2, latency_ms = null, completion_tokens = 7,
                                      provider = 'OPENAI_COMPATIBLE'
        where id in (select s.id from comparison_responses s join comparison_results r on r.id = s.comparison_id
                      where r.owner_id = $1 order by s.created_at limit 2)`,
      [alice.userId, NASTY],
    );
  });
});
beforeAll(async () => {
  // One of Alice's comparisons is blind and voted on (revealed), one has a category.
  await withClient(t.db.url, async (c) => {
    const { rows } = await c.query(`select id from comparison_results where owner_id = $1 order by created_at desc limit 2`, [
      alice.userId,
    ]);
    await c.query(`update comparison_results set blind = true where id = $1`, [rows[0].id]);
    await c.query(`insert into votes (id, created_at, comparison_id, user_id, outcome) values (gen_random_uuid(), now(), $1, $2, 'TIE')`, [
      rows[0].id,
      alice.userId,
    ]);
    await c.query(`update comparison_results set category = 'code' where id = $1`, [rows[1].id]);
  });
});
afterAll(() => t?.close());

const noCache = { 'cache-control': 'no-cache' };

async function served(): Promise<Record<string, number>> {
  const metric = await t.app.metrics.compiledReads.get();
  return Object.fromEntries(metric.values.map((v) => [String(v.labels.outcome), v.value]));
}

/** The ordinary answer (first sight of the document) and the next one, which must be compiled. */
async function bothWays(
  query: string,
  variables: Record<string, unknown>,
  token: string,
): Promise<{ ordinary: GqlResult; compiled: GqlResult; statements: number }> {
  const ordinary = await t.gql(query, variables, token, noCache);
  const before = (await served()).served ?? 0;
  const { result: compiled, count } = await t.countStatements(() => t.gql(query, variables, token, noCache));
  expect((await served()).served ?? 0).toBe(before + 1);
  return { ordinary, compiled, statements: count };
}

const HISTORY = `query History {
  me { id email }
  conversations(first: 20) { nodes { id title createdAt updatedAt messages(first: 10) { nodes { id role content createdAt } } } }
  comparisons(first: 10) { nodes { id responses { id provider model content latencyMs completionTokens } } }
}`;

const CORPUS: Array<[string, string, Record<string, unknown>]> = [
  ['the history page', HISTORY, {}],
  [
    'every compiled column kind, nulls included',
    `query Columns { me { id email role createdAt __typename }
      conversations(first: 3) { __typename nodes { __typename id title createdAt updatedAt
        messages { __typename nodes { __typename id role content createdAt provider model promptTokens completionTokens latencyMs } } } }
      comparisons(first: 4) { nodes { id prompt createdAt responses { id provider model keyLabel status content error ` +
      `latencyMs timeToFirstTokenMs promptTokens completionTokens } } } }`,
    {},
  ],
  [
    'arena fields: blind, revealed (a blind comparison voted on), category, labels',
    `query Arena { comparisons(first: 4) { nodes { id blind revealed category responses { label id provider model status } } } }`,
    {},
  ],
  [
    'aliases, fragments and inline fragments',
    `query Shapes { viewer: me { ...U } list: conversations(first: 2) { ... on ConversationConnection { items: nodes { ...C } } } ` +
      `__typename }
      fragment U on User { uid: id email }
      fragment C on Conversation { cid: id name: title msgs: messages(first: 2) { nodes { ... { mid: id } role } } }`,
    {},
  ],
  [
    'page info and a page size from a variable',
    `query Paged($n: Int) { conversations(first: $n) { pageInfo { hasNextPage endCursor __typename } nodes { id } } }`,
    { n: 3 },
  ],
  ['the last page', `query Last { conversations(first: 100) { nodes { id } pageInfo { endCursor hasNextPage } } }`, {}],
];

it.each(CORPUS)(
  '%s: byte-identical to the ordinary path, in as many statements as root fields at most',
  async (_name, query, variables) => {
    for (const user of [alice, bob, empty]) {
      const { ordinary, compiled, statements } = await bothWays(
        query.replace(/query (\w+)/, `query $1_${user === alice ? 'a' : user === bob ? 'b' : 'e'}`),
        variables,
        user.token,
      );
      expect(ordinary.errors).toBeUndefined();
      expect(compiled.status).toBe(ordinary.status);
      expect(compiled.raw).toBe(ordinary.raw);
      for (const header of ['content-type', 'cache-control', 'x-cache'])
        expect([header, compiled.headers.get(header)]).toEqual([header, ordinary.headers.get(header)]);
      expect(statements).toBeLessThanOrEqual(3);
    }
  },
);

it('pages with cursors exactly as the ordinary path does', async () => {
  const query = `query Cursor($after: String) { comparisons(first: 2, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }`;
  const page1 = await bothWays(query, {}, alice.token);
  expect(page1.compiled.raw).toBe(page1.ordinary.raw);
  const after = page1.compiled.data.comparisons.pageInfo.endCursor;
  const page2 = await t.gql(query, { after }, alice.token, noCache);
  expect(page2.data.comparisons.nodes).toHaveLength(2);
  expect(page2.data.comparisons.pageInfo.hasNextPage).toBe(false);
  // The same page, the ordinary way (Apollo's own execution of this document).
  const ordinary = await t.gql(`${query} `, { after }, alice.token, noCache);
  expect(page2.raw).toBe(ordinary.raw);
});

const CONVERSATION_VIEW = `query ConversationView($id: ID!, $n: Int, $after: String) {
  conversation(id: $id) {
    id title messages(first: $n, after: $after) { nodes { id role content createdAt } pageInfo { hasNextPage endCursor } }
  }
}`;

const rowsOf = (sql: string, params: unknown[]) => withClient(t.db.url, async (c) => (await c.query(sql, params)).rows);

it('the conversation view pages with a variable cursor, compiled, byte-identical to the ordinary way, in one statement', async () => {
  const [conversation] = await rowsOf(`select id from conversations where owner_id = $1 order by created_at desc limit 1`, [alice.userId]);
  const first = await bothWays(CONVERSATION_VIEW, { id: conversation.id, n: 2, after: null }, alice.token);
  expect(first.compiled.raw).toBe(first.ordinary.raw);
  expect(first.statements).toBe(1);
  let after = first.compiled.data.conversation.messages.pageInfo.endCursor;
  const seen = first.compiled.data.conversation.messages.nodes.map((m: { id: string }) => m.id);
  for (let page = 2; after; page++) {
    const before = (await served()).served ?? 0;
    const compiled = await t.gql(CONVERSATION_VIEW, { id: conversation.id, n: 2, after }, alice.token, noCache);
    expect((await served()).served).toBe(before + 1);
    // The same page the ordinary way (another document text: Apollo executes it).
    const ordinary = await t.gql(`${CONVERSATION_VIEW} `, { id: conversation.id, n: 2, after }, alice.token, noCache);
    expect([page, compiled.raw]).toEqual([page, ordinary.raw]);
    seen.push(...compiled.data.conversation.messages.nodes.map((m: { id: string }) => m.id));
    after = compiled.data.conversation.messages.pageInfo.hasNextPage ? compiled.data.conversation.messages.pageInfo.endCursor : null;
  }
  expect(seen).toHaveLength(5);
  expect(new Set(seen).size).toBe(5);
  // Another user's conversation reads as missing; a cursor of another conversation goes the ordinary way, which refuses it.
  const foreign = await t.gql(CONVERSATION_VIEW, { id: conversation.id, n: 2, after: null }, bob.token, noCache);
  expect(foreign.raw).toBe('{"data":{"conversation":null}}\n');
  const [other] = await rowsOf(`select id from conversations where owner_id = $1 and id <> $2 limit 1`, [alice.userId, conversation.id]);
  const otherPage = await t.gql(CONVERSATION_VIEW, { id: other.id, n: 1, after: null }, alice.token, noCache);
  const otherCursor = otherPage.data.conversation.messages.pageInfo.endCursor;
  const before = await served();
  const refused = await t.gql(CONVERSATION_VIEW, { id: conversation.id, n: 2, after: otherCursor }, alice.token, noCache);
  expect(refused.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  expect((await served()).fallback).toBe((before.fallback ?? 0) + 1);
});

it('the comparison view is compiled; a blind comparison before its vote takes the ordinary path, which hides the models', async () => {
  const query = `query ComparisonView($id: ID!) {
    comparison(id: $id) { id prompt blind revealed responses { label id provider model status content error } }
  }`;
  const carol = await t.signUp('carol');
  const seeded = { conversations: 1, messagesPerConversation: 1, comparisons: 2, responsesPerComparison: 2, votes: false };
  await seedUserData(t.db.url, carol.userId, seeded);
  const ids: string[] = await withClient(t.db.url, async (c) =>
    (await c.query(`select id from comparison_results where owner_id = $1 order by created_at`, [carol.userId])).rows.map((r) => r.id),
  );
  const open = await bothWays(query, { id: ids[0] }, carol.token);
  expect(open.compiled.raw).toBe(open.ordinary.raw);
  expect(open.statements).toBe(1);
  await withClient(t.db.url, (c) => c.query(`update comparison_results set blind = true where id = $1`, [ids[1]]));
  const before = await served();
  const hidden = await t.gql(query, { id: ids[1] }, carol.token, noCache);
  expect((await served()).fallback).toBe((before.fallback ?? 0) + 1);
  expect(hidden.data.comparison.revealed).toBe(false);
  expect(hidden.data.comparison.responses.map((r: { model: string | null }) => r.model)).toEqual([null, null]);
});

it('leaves arguments the resolvers refuse to the ordinary path, which answers the error', async () => {
  const query = `query Sized($n: Int, $after: String) { conversations(first: $n, after: $after) { nodes { id } } }`;
  await bothWays(query, { n: 2 }, alice.token);
  const before = await served();
  const tooMany = await t.gql(query, { n: 500 }, alice.token, noCache);
  expect(tooMany.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  const forged = await t.gql(query, { n: 2, after: 'bm90LWEtY3Vyc29y.forged' }, alice.token, noCache);
  expect(forged.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  // Another user's cursor does not verify for this user's list either.
  const bobsCursor = (await t.gql(`{ conversations(first: 1) { pageInfo { endCursor } } }`, {}, bob.token)).data.conversations.pageInfo
    .endCursor;
  const foreign = await t.gql(query, { n: 2, after: bobsCursor }, alice.token, noCache);
  expect(foreign.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  const after = await served();
  expect(after.served).toBe(before.served);
  expect(after.fallback).toBe((before.fallback ?? 0) + 3);
});

it('does not compile what it does not understand (a field with its own resolver, a Float, a directive)', async () => {
  for (const query of [
    `query Count { conversations(first: 2) { totalCount nodes { id } } }`,
    `query Cost { conversations(first: 2) { nodes { messages { nodes { costUsd } } } } }`,
    `query Skip($s: Boolean!) { conversations(first: 2) { nodes { id title @skip(if: $s) } } }`,
    `query Other { conversations(first: 2) { nodes { id lastMessage { id } } } }`,
  ]) {
    await t.gql(query, { s: false }, alice.token, noCache);
    const before = await served();
    const again = await t.gql(query, { s: false }, alice.token, noCache);
    expect(again.errors).toBeUndefined();
    expect(await served()).toEqual(before);
  }
});

it('serves each user their own rows from one compiled document, and stores the answer for the next hit', async () => {
  const query = `query Mine { me { id } conversations(first: 5) { nodes { title } } }`;
  await t.gql(query, {}, alice.token, noCache);
  const forBob = await t.gql(query, {}, bob.token, noCache);
  expect(forBob.data.me.id).toBe(bob.userId);
  expect(forBob.data.conversations.nodes).toHaveLength(2);
  const hit = await t.countStatements(() => t.gql(query, {}, bob.token));
  expect(hit.result.headers.get('x-cache')).toBe('HIT');
  expect(hit.count).toBe(0);
  expect(hit.result.raw).toBe(forBob.raw);
});

it('sees a write at once: a mutation bumps the author, whose next read is compiled afresh', async () => {
  const query = `query Titles { conversations(first: 1) { nodes { id title } } }`;
  await t.gql(query, {}, alice.token);
  const before = await t.gql(query, {}, alice.token);
  const id = before.data.conversations.nodes[0].id;
  const renamed = await t.gql(`mutation { renameConversation(id: "${id}", title: "renamed by the test") { id } }`, {}, alice.token);
  expect(renamed.errors).toBeUndefined();
  const after = await t.gql(query, {}, alice.token);
  expect(after.headers.get('x-cache')).toBe('MISS');
  expect(after.data.conversations.nodes[0].title).toBe('renamed by the test');
});

// Named statements live on a server session: through a transaction-pooling PgBouncer (TEST_VIA_PGBOUNCER, where
// they are off) there is none to inspect; the suite's direct run covers them.
(process.env.TEST_VIA_PGBOUNCER === '1' ? describe.skip : describe)('prepared statements (db/prepared.ts)', () => {
  let one: TestApp;
  beforeAll(async () => {
    // One pooled connection: the statements below see the session the compiled reads used.
    one = await createTestApp({ db: t.db, env: { DB_POOL_MIN: '0', DB_POOL_MAX: '1' } });
  });
  afterAll(() => one?.close());

  const preparedOnConnection = async () =>
    (
      await one.app.orm.em
        .getConnection()
        .execute<Array<{ name: string; calls: string }>>(
          `select name from pg_prepared_statements where name like 'llmselect_%' order by name`,
        )
    ).map((r) => r.name);

  it('runs each compiled statement under one name, parsed once per connection, with its values bound (not inlined)', async () => {
    const query = `query Prepared { me { id } conversations(first: 3) { nodes { id } } }`;
    // The file's tests run in any order on this one connection: count what this test adds.
    const before = await preparedOnConnection();
    const added = async () => (await preparedOnConnection()).filter((name) => !before.includes(name));
    await one.gql(query, {}, alice.token, noCache);
    const first = await one.countStatements(() => one.gql(query, {}, alice.token, noCache));
    expect(first.count).toBe(2);
    expect(first.statements.join('\n')).not.toContain(alice.userId);
    const names = await added();
    expect(names).toHaveLength(2);
    // Other users, more requests: the same two statements, nothing new to prepare.
    for (const user of [bob, empty, alice]) expect((await one.gql(query, {}, user.token, noCache)).errors).toBeUndefined();
    expect(await added()).toEqual(names);
    // With a cursor: the later-page statement, also named, and the next page really follows the first.
    const pageQuery =
      'query PreparedPage($after: String) { conversations(first: 3, after: $after) { nodes { id } pageInfo { endCursor } } }';
    const firstPage = await one.gql(pageQuery, { after: null }, alice.token, noCache);
    await one.gql(pageQuery, { after: null }, alice.token, noCache);
    const nextPage = await one.gql(pageQuery, { after: firstPage.data.conversations.pageInfo.endCursor }, alice.token, noCache);
    expect(nextPage.errors).toBeUndefined();
    expect(nextPage.data.conversations.nodes).toHaveLength(3);
    expect(nextPage.data.conversations.nodes.map((n: { id: string }) => n.id)).not.toContain(firstPage.data.conversations.nodes[2].id);
    expect(await added()).toHaveLength(4);
  });

  it('DB_PREPARED_STATEMENTS=off: the same bytes, bound but unnamed (nothing left on the connection)', async () => {
    const unnamed = await createTestApp({ db: t.db, env: { DB_POOL_MIN: '0', DB_POOL_MAX: '1', DB_PREPARED_STATEMENTS: 'off' } });
    try {
      const query = `query Unnamed { me { id } conversations(first: 3) { nodes { id title } } }`;
      await unnamed.gql(query, {}, alice.token, noCache);
      const compiled = await unnamed.countStatements(() => unnamed.gql(query, {}, alice.token, noCache));
      expect(compiled.count).toBe(2);
      expect(compiled.statements.join('\n')).not.toContain(alice.userId);
      expect(compiled.result.raw).toBe((await one.gql(query, {}, alice.token, noCache)).raw);
      const left = await unnamed.app.orm.em
        .getConnection()
        .execute<Array<{ name: string }>>(`select name from pg_prepared_statements where name like 'llmselect_%'`);
      expect(left).toEqual([]);
    } finally {
      await unnamed.close();
    }
  });

  it('parses again a statement the server lost (DEALLOCATE ALL, DISCARD ALL, a swapped backend) instead of failing', async () => {
    const query = `query Lost { me { id email } }`;
    const compiledReads = async () =>
      Object.fromEntries((await one.app.metrics.compiledReads.get()).values.map((v) => [String(v.labels.outcome), v.value]));
    await one.gql(query, {}, alice.token, noCache);
    await one.gql(query, {}, alice.token, noCache);
    expect((await preparedOnConnection()).length).toBeGreaterThan(0);
    await one.app.orm.em.getConnection().execute('deallocate all');
    expect(await preparedOnConnection()).toEqual([]);
    const before = await compiledReads();
    const again = await one.gql(query, {}, alice.token, noCache);
    expect(again.errors).toBeUndefined();
    expect(again.data.me.id).toBe(alice.userId);
    const after = await compiledReads();
    expect(after.served).toBe((before.served ?? 0) + 1);
    expect(after.fallback ?? 0).toBe(before.fallback ?? 0);
    expect((await preparedOnConnection()).length).toBeGreaterThan(0);
  });

  it('reports a statement that could not get a connection as failed, like the ORM does', async () => {
    const starved = await createTestApp({ db: t.db, env: { DB_POOL_MIN: '0', DB_POOL_MAX: '1', DB_POOL_ACQUIRE_TIMEOUT_MS: '200' } });
    try {
      const { PreparedStatements } = await import('../src/db/prepared');
      const seen: Array<{ sql: string; failed: boolean }> = [];
      // The eval workers' and the runner's own schedule (background SQL) is not this statement.
      const stop = starved.app.queryObserver.onQuery((sql, _ms, failed) => {
        if (!sql.startsWith(BACKGROUND_SQL_TAG)) seen.push({ sql, failed });
      });
      const prepared = new PreparedStatements(starved.app.orm.em, starved.app.queryObserver);
      const knex = starved.app.orm.em.getConnection().getKnex().client as unknown as {
        acquireConnection(): Promise<unknown>;
        releaseConnection(c: unknown): Promise<void>;
      };
      const held = await knex.acquireConnection();
      try {
        await expect(prepared.query(prepared.prepare('select ?::int as n'), [1])).rejects.toThrow(/Timeout acquiring a connection/);
      } finally {
        await knex.releaseConnection(held);
        stop();
      }
      expect(seen).toEqual([{ sql: 'select $1::int as n', failed: true }]);
      await expect(prepared.query(prepared.prepare('select ?::int as n'), [1, 2])).rejects.toThrow(/takes 1 parameters, got 2/);
    } finally {
      await starved.close();
    }
  });

  it('names at most 200 distinct texts per process; the rest run unnamed, and a named text keeps its name', async () => {
    const { PreparedStatements } = await import('../src/db/prepared');
    const prepared = new PreparedStatements(one.app.orm.em, undefined);
    const statements = Array.from({ length: 201 }, (_, i) => prepared.prepare(`select ?::int + ${i} as n`));
    expect(statements.filter((s) => s.name).length).toBe(200);
    expect(statements[200]!.name).toBeUndefined();
    expect(prepared.prepare(`select ?::int + 0 as n`).name).toBe(statements[0]!.name);
    expect(await prepared.query(statements[200]!, [1])).toEqual([{ n: 201 }]);
    expect(await prepared.query(statements[0]!, [1])).toEqual([{ n: 1 }]);
  });
});

// Last: it adds a 2000-message conversation. The read plan derives a fork's inherited rows only where the
// conversation is a fork (`childRowsSql` in src/db/read-plan.ts): a page of one that is no fork is the first
// rows of the ordered index, the inherited branch never starts; a fork beside it still reads what it inherits.
describe('forks: the inherited branch runs only for a fork', () => {
  const PAGE = 10;
  let carol: { token: string; userId: string };
  let long: string;
  let fork: string;

  beforeAll(async () => {
    carol = await t.signUp('carol');
    await withClient(t.db.url, async (c) => {
      long = (
        await c.query(
          `insert into conversations (id, created_at, updated_at, owner_id, title)
           values (gen_random_uuid(), now() - interval '1 hour', now() - interval '1 hour', $1, 'long') returning id`,
          [carol.userId],
        )
      ).rows[0].id;
      await c.query(
        `insert into messages (id, created_at, conversation_id, role, content)
         select gen_random_uuid(), now() - interval '2 days' + make_interval(secs => g), $1, 'USER', 'message ' || g
           from generate_series(1, 2000) g`,
        [long],
      );
      // A fork of it cut at its 100th message, as forkConversation writes one.
      const [cut] = (
        await c.query(`select id, created_at from messages where conversation_id = $1 order by created_at offset 99 limit 1`, [long])
      ).rows;
      fork = (
        await c.query(
          `insert into conversations (id, created_at, updated_at, owner_id, title, forked_from_message_id)
           values (gen_random_uuid(), now(), now(), $1, 'fork', $2) returning id`,
          [carol.userId, cut.id],
        )
      ).rows[0].id;
      await c.query(
        `insert into conversation_ancestors (id, created_at, conversation_id, ancestor_id, upto_created_at, upto_id)
         values (gen_random_uuid(), now(), $1, $2, $3, $4)`,
        [fork, long, cut.created_at, cut.id],
      );
      await c.query('analyze');
    });
  });

  /** EXPLAIN ANALYZE of each statement `fn` sends that reads messages (parameters inlined). */
  async function messagePlans(fn: () => Promise<GqlResult>): Promise<string[]> {
    t.app.queryObserver.inlineParams = true;
    const { statements, result } = await t.countStatements(fn).finally(() => (t.app.queryObserver.inlineParams = false));
    expect(result.errors).toBeUndefined();
    const reads = statements.filter((s) => /^\s*select/i.test(s) && s.includes('conversation_ancestors'));
    expect(reads.length).toBeGreaterThan(0);
    return withClient(t.db.url, async (c) => {
      const plans: string[] = [];
      for (const sql of reads) plans.push((await c.query(`explain analyze ${sql}`)).rows.map((r) => r['QUERY PLAN']).join('\n'));
      return plans;
    });
  }

  /** Rows each scan of `messages` returned at most (a page: PAGE + 1), and whether a scan of the ancestry ran. */
  function shape(plan: string): { messagesRows: number; ancestryRan: boolean } {
    const lines = plan.split('\n');
    const rows = lines.filter((l) => / on messages [a-z]/.test(l)).map((l) => Number(/actual time=\S+ rows=(\d+)/.exec(l)?.[1] ?? 0));
    return {
      messagesRows: Math.max(0, ...rows),
      ancestryRan: lines.some((l) => / on conversation_ancestors /.test(l) && !l.includes('never executed')),
    };
  }

  it('a page of a conversation that is no fork reads only the page, through the ordered index, compiled and ordinary', async () => {
    const vars = { id: long, n: PAGE, after: null };
    // Compiled (the second sight of the document), then the ordinary way (the DataLoader batch; a new text is executed by Apollo).
    await t.gql(CONVERSATION_VIEW, vars, carol.token, noCache);
    const compiled = await messagePlans(() => t.gql(CONVERSATION_VIEW, vars, carol.token, noCache));
    const ordinary = await messagePlans(() => t.gql(`${CONVERSATION_VIEW}  `, vars, carol.token, noCache));
    for (const plan of [...compiled, ...ordinary]) {
      expect(plan).toContain('messages_conversation_created_idx');
      expect(shape(plan)).toEqual({ messagesRows: PAGE + 1, ancestryRan: false });
    }
  });

  it('the history page of a fork and a conversation that is no fork: each reads its own first messages, both ways', async () => {
    const history = `query ForkHistory { conversations(first: 5) { nodes { id messages(first: ${PAGE}) { nodes { id content } } } } }`;
    const { ordinary, compiled } = await bothWays(history, {}, carol.token);
    expect(compiled.raw).toBe(ordinary.raw);
    const [forkNode, longNode] = compiled.data.conversations.nodes;
    expect([forkNode.id, longNode.id]).toEqual([fork, long]);
    const first = Array.from({ length: PAGE }, (_, i) => `message ${i + 1}`);
    expect(longNode.messages.nodes.map((m: { content: string }) => m.content)).toEqual(first);
    // The fork's are the inherited ones, under their own ids.
    expect(forkNode.messages.nodes).toEqual(longNode.messages.nodes);
    // Its page reads through the inherited branch, cut at the fork: 100 messages, the last one its 100th.
    const last = await t.gql(CONVERSATION_VIEW, { id: fork, n: 100, after: null }, carol.token, noCache);
    expect(last.data.conversation.messages.nodes.at(-1).content).toBe('message 100');
    expect(last.data.conversation.messages.pageInfo.hasNextPage).toBe(false);
  });

  it('one DataLoader batch of a fork and a conversation that is no fork: pages and last messages of each (ordinary path)', async () => {
    const both = `query Both($a: ID!, $b: ID!, $n: Int) {
      a: conversation(id: $a) { lastMessage { content } messages(first: $n) { nodes { content } pageInfo { hasNextPage } } }
      b: conversation(id: $b) { lastMessage { content } messages(first: $n) { nodes { content } pageInfo { hasNextPage } } } }`;
    // The first sight of a document takes the ordinary path: the pages and the last messages come from one batch each.
    const res = await t.gql(both, { a: long, b: fork, n: 100 }, carol.token, noCache);
    expect(res.errors).toBeUndefined();
    const contents = (side: { messages: { nodes: Array<{ content: string }> } }) => side.messages.nodes.map((m) => m.content);
    const hundred = Array.from({ length: 100 }, (_, i) => `message ${i + 1}`);
    expect(contents(res.data.a)).toEqual(hundred);
    expect(contents(res.data.b)).toEqual(hundred);
    expect([res.data.a.messages.pageInfo.hasNextPage, res.data.b.messages.pageInfo.hasNextPage]).toEqual([true, false]);
    expect([res.data.a.lastMessage.content, res.data.b.lastMessage.content]).toEqual(['message 2000', 'message 100']);
  });
});
