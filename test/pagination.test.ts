import { createTestApp, type TestApp } from './helpers/test-app';

const LIST =
  'query($first: Int, $after: String) { conversations(first: $first, after: $after) { ' +
  'totalCount nodes { id title } pageInfo { hasNextPage endCursor } } }';
const MESSAGES =
  'query($id: ID!, $first: Int, $after: String) { conversation(id: $id) { ' +
  'messages(first: $first, after: $after) { nodes { id content } pageInfo { hasNextPage endCursor } } } }';
const CREATE = `mutation($t: String) { createConversation(title: $t) { id } }`;

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

async function createConversations(token: string, titles: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const title of titles) ids.push((await t.gql(CREATE, { t: title }, token)).data.createConversation.id);
  return ids;
}

it('pages newest first without skipping or repeating while rows are inserted between pages', async () => {
  const { token } = await t.signUp('pager');
  const initial = await createConversations(
    token,
    Array.from({ length: 7 }, (_, i) => `c${i}`),
  );
  const seen: string[] = [];
  let after: string | null = null;
  let page = 0;
  do {
    const res: any = await t.gql(LIST, { first: 3, after }, token);
    expect(res.errors).toBeUndefined();
    seen.push(...res.data.conversations.nodes.map((n: any) => n.id));
    after = res.data.conversations.pageInfo.hasNextPage ? res.data.conversations.pageInfo.endCursor : null;
    // Someone adds conversations while we page: they are newer than the cursor, so they never shift our pages.
    await createConversations(token, [`inserted-${page++}`]);
  } while (after);
  expect(seen).toEqual([...initial].reverse());
  expect(new Set(seen).size).toBe(seen.length);
});

it('pages messages oldest first and picks up messages appended between pages', async () => {
  const { token } = await t.signUp('msgs');
  const [conversationId] = await createConversations(token, ['chat']);
  const insert = async (n: number) => {
    const { withClient } = await import('./helpers/factories');
    await withClient(t.db.url, (c) =>
      c.query(
        `insert into messages (id, created_at, conversation_id, role, content)
         select gen_random_uuid(), clock_timestamp() + make_interval(secs => g / 1000.0), $1, 'USER',
                'm' || (select count(*) from messages where conversation_id = $1) + g
           from generate_series(1, $2) g`,
        [conversationId, n],
      ),
    );
  };
  await insert(5);
  const first = await t.gql(MESSAGES, { id: conversationId, first: 4 }, token);
  expect(first.data.conversation.messages.nodes.map((m: any) => m.content)).toEqual(['m1', 'm2', 'm3', 'm4']);
  expect(first.data.conversation.messages.pageInfo.hasNextPage).toBe(true);
  await insert(2);
  const second = await t.gql(MESSAGES, { id: conversationId, first: 4, after: first.data.conversation.messages.pageInfo.endCursor }, token);
  expect(second.data.conversation.messages.nodes.map((m: any) => m.content)).toEqual(['m5', 'm6', 'm7']);
  expect(second.data.conversation.messages.pageInfo.hasNextPage).toBe(false);
});

describe('cursor and page size validation', () => {
  let token: string;
  let cursor: string;
  beforeAll(async () => {
    ({ token } = await t.signUp('cursor'));
    await createConversations(token, ['a', 'b', 'c']);
    cursor = (await t.gql(LIST, { first: 1 }, token)).data.conversations.pageInfo.endCursor;
  });

  it.each([
    ['garbage', 'not-a-cursor'],
    ['empty signature', 'abc.'],
    [
      'tampered body',
      () =>
        Buffer.from(JSON.stringify(['conversations:x', '2020-01-01T00:00:00.000Z', '00000000-0000-0000-0000-000000000000'])).toString(
          'base64url',
        ) +
        '.' +
        cursor.split('.')[1],
    ],
    ['tampered signature', () => cursor.slice(0, -2) + (cursor.endsWith('AA') ? 'BB' : 'AA')],
  ])('answers BAD_USER_INPUT for a %s cursor', async (_name, make) => {
    const after = typeof make === 'function' ? make() : make;
    const res = await t.gql(LIST, { first: 1, after }, token);
    expect(res.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });

  it("rejects another user's cursor and a cursor from another list", async () => {
    const other = await t.signUp('cursor-other');
    expect((await t.gql(LIST, { first: 1, after: cursor }, other.token)).errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const comparisons = await t.gql(`query($a: String) { comparisons(after: $a) { nodes { id } } }`, { a: cursor }, token);
    expect(comparisons.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });

  it.each([0, -1, 101])('answers BAD_USER_INPUT for first = %i', async (first) => {
    const res = await t.gql(LIST, { first }, token);
    expect(res.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'first' });
  });

  it('accepts first = 100 and reports totalCount', async () => {
    const res = await t.gql(LIST, { first: 100 }, token);
    expect(res.data.conversations).toMatchObject({ totalCount: 3, pageInfo: { hasNextPage: false } });
  });
});
