/**
 * The number of SQL statements of an operation must not grow with the number
 * of rows it returns: every relation and aggregate resolves through a
 * per-request DataLoader (one statement per relation per request).
 */
import { seedUserData } from './helpers/factories';
import { createTestApp, type TestApp } from './helpers/test-app';

const QUERY = `query History($n: Int!) {
  conversations(first: $n) {
    nodes {
      id title messageCount
      lastMessage { content }
      messages(first: 10) { nodes { id content } pageInfo { hasNextPage endCursor } }
    }
  }
  comparisons(first: $n) {
    nodes { id prompt responses { content status } vote { outcome } }
  }
}`;

/**
 * conversations page with every first message page embedded (1, look-ahead) + messageCount (1)
 * + lastMessage (1) + comparisons page with their responses embedded (1, look-ahead) + votes (1)
 */
const EXPECTED_STATEMENTS = 5;

let t: TestApp;
let token: string;

beforeAll(async () => {
  t = await createTestApp();
  const user = await t.signUp('n1');
  token = user.token;
  await seedUserData(t.db.url, user.userId, {
    conversations: 50,
    messagesPerConversation: 12,
    comparisons: 50,
    responsesPerComparison: 3,
    votes: true,
  });
});
afterAll(() => t.close());

it.each([1, 10, 50])('runs %i-row history in a constant number of statements', async (n) => {
  const { count, statements, result } = await t.countStatements(() => t.gql(QUERY, { n }, token));
  expect(result.errors).toBeUndefined();
  expect(result.data.conversations.nodes).toHaveLength(n);
  expect(result.data.comparisons.nodes).toHaveLength(n);
  for (const conversation of result.data.conversations.nodes) {
    expect(conversation.messageCount).toBe(12);
    expect(conversation.messages.nodes).toHaveLength(10);
    expect(conversation.messages.pageInfo.hasNextPage).toBe(true);
    expect(conversation.lastMessage.content).toMatch(/^message 12 of /);
  }
  for (const comparison of result.data.comparisons.nodes) {
    expect(comparison.responses).toHaveLength(3);
    expect(comparison.vote.outcome).toBe('WINNER');
  }
  expect({ n, count, statements }).toEqual({ n, count: EXPECTED_STATEMENTS, statements: expect.any(Array) });
});

it('serves the second page of each conversation’s messages in one statement for all parents', async () => {
  const first = await t.gql(QUERY, { n: 5 }, token);
  const cursors = first.data.conversations.nodes.map((c: any) => ({ id: c.id, after: c.messages.pageInfo.endCursor }));
  const fields = cursors
    .map(
      (c: { id: string; after: string }, i: number) =>
        `c${i}: conversation(id: "${c.id}") { messages(first: 10, after: "${c.after}") { nodes { content } pageInfo { hasNextPage } } }`,
    )
    .join('\n');
  const { count, result } = await t.countStatements(() => t.gql(`{ ${fields} }`, {}, token));
  expect(result.errors).toBeUndefined();
  for (let i = 0; i < cursors.length; i++) {
    expect(result.data[`c${i}`].messages.nodes.map((m: any) => m.content.split(' ')[1])).toEqual(['11', '12']);
    expect(result.data[`c${i}`].messages.pageInfo.hasNextPage).toBe(false);
  }
  // conversations by id (1) + message pages (1)
  expect(count).toBe(2);
});
