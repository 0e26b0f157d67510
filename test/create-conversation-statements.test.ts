/**
 * What createConversation costs in SQL (issue 20 item 4): ONE statement, the INSERT of the conversation (a named
 * statement, outside the unit of work: no BEGIN … COMMIT, no read back). The answer is the row as stored, the author's
 * next read shows it (the mutation still bumps their read-cache generation), and a bad title changes nothing.
 */
import { createTestApp, type TestApp } from './helpers/test-app';

const CREATE = `mutation($title: String) { createConversation(title: $title) { id title createdAt updatedAt messageCount } }`;
const HISTORY = `{ conversations(first: 5) { nodes { id title createdAt updatedAt } } }`;

describe('createConversation statements', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  async function stored(id: string) {
    const [row] = await t.app.orm.em
      .fork()
      .getConnection()
      .execute<Array<Record<string, unknown>>>(
        `select owner_id, title, (extract(epoch from created_at) * 1000)::float8 as created_ms,
                (extract(epoch from updated_at) * 1000)::float8 as updated_ms, deleted_at, forked_from_message_id
           from conversations where id = ?`,
        [id],
      );
    return row;
  }

  it('one INSERT; the answer is the stored row, and the author reads it at once', async () => {
    const user = await t.signUp('lean-creator');
    // The author's history cached before the write: the write must make it miss.
    expect((await t.gql(HISTORY, {}, user.token)).data.conversations.nodes).toEqual([]);
    const { result, statements } = await t.countStatements(() => t.gql(CREATE, { title: '  Trip plans  ' }, user.token));
    expect(result.errors).toBeUndefined();
    // The conversation's own statement; `messageCount` of a new conversation reads messages after it.
    const writes = statements.filter((sql) => !/^select /i.test(sql));
    expect(writes).toHaveLength(1);
    expect(writes[0]).toMatch(/^insert into conversations \(/);
    expect(statements[0]).toBe(writes[0]);

    const created = result.data.createConversation;
    expect(created).toMatchObject({ title: 'Trip plans', messageCount: 0 });
    expect(created.updatedAt).toBe(created.createdAt);
    const row = await stored(created.id);
    expect(row).toEqual({
      owner_id: user.userId,
      title: 'Trip plans',
      created_ms: Date.parse(created.createdAt),
      updated_ms: Date.parse(created.updatedAt),
      deleted_at: null,
      forked_from_message_id: null,
    });
    const history = await t.gql(HISTORY, {}, user.token);
    expect(history.data.conversations.nodes).toEqual([
      { id: created.id, title: 'Trip plans', createdAt: created.createdAt, updatedAt: created.updatedAt },
    ]);
  });

  it('no title: the default one; an empty title: BAD_USER_INPUT and no statement', async () => {
    const user = await t.signUp('lean-creator-default');
    const created = await t.gql(CREATE, {}, user.token);
    expect(created.errors).toBeUndefined();
    expect((await stored(created.data.createConversation.id))!.title).toBe('New conversation');

    const { result, statements } = await t.countStatements(() => t.gql(CREATE, { title: '   ' }, user.token));
    expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(statements.filter((sql) => /conversations/.test(sql))).toEqual([]);
  });
});
