/**
 * Every read and write is scoped to its owner: another user's id behaves
 * exactly like an id that does not exist (null for queries, NOT_FOUND with
 * the same message for mutations).
 */
import { randomUUID } from 'node:crypto';
import { seedUserData } from './helpers/factories';
import { createTestApp, type TestApp } from './helpers/test-app';

let t: TestApp;
let alice: { token: string; userId: string };
let bob: { token: string; userId: string };
let aliceConversation: string;
let aliceComparison: string;
let aliceKey: string;

beforeAll(async () => {
  t = await createTestApp();
  alice = await t.signUp('alice');
  bob = await t.signUp('bob');
  await seedUserData(t.db.url, alice.userId, {
    conversations: 2,
    messagesPerConversation: 2,
    comparisons: 2,
    responsesPerComparison: 2,
    votes: true,
    linkComparisons: true,
  });
  const list = await t.gql(`{ conversations { nodes { id } } comparisons { nodes { id } } }`, {}, alice.token);
  aliceConversation = list.data.conversations.nodes[0].id;
  aliceComparison = list.data.comparisons.nodes[0].id;
  const key = await t.gql(`mutation { saveApiKey(input: { provider: OPENAI, apiKey: "sk-alice-secret-1234" }) { id } }`, {}, alice.token);
  aliceKey = key.data.saveApiKey.id;
});
afterAll(() => t.close());

describe.each([
  ['conversation', `query($id: ID!) { conversation(id: $id) { id title } }`, () => aliceConversation],
  ['comparison', `query($id: ID!) { comparison(id: $id) { id prompt } }`, () => aliceComparison],
])('query %s', (name, query, id) => {
  it('answers the owner', async () => {
    const res = await t.gql(query, { id: id() }, alice.token);
    expect(res.data[name].id).toBe(id());
  });

  it("answers null for another user's id, exactly as for a missing id", async () => {
    const foreign = await t.gql(query, { id: id() }, bob.token);
    const missing = await t.gql(query, { id: randomUUID() }, bob.token);
    const malformed = await t.gql(query, { id: 'not-a-uuid' }, bob.token);
    expect(foreign.raw).toBe(missing.raw);
    expect(malformed.raw).toBe(missing.raw);
    expect(foreign.data[name]).toBeNull();
  });
});

it("lists never include another user's rows", async () => {
  const res = await t.gql(
    `{ conversations { totalCount nodes { id } } comparisons { totalCount nodes { id } } me { apiKeys { id } } }`,
    {},
    bob.token,
  );
  expect(res.data).toEqual({ conversations: { totalCount: 0, nodes: [] }, comparisons: { totalCount: 0, nodes: [] }, me: { apiKeys: [] } });
});

describe.each([
  ['renameConversation', `mutation($id: ID!) { renameConversation(id: $id, title: "pwned") { id } }`, () => aliceConversation],
  ['deleteConversation', `mutation($id: ID!) { deleteConversation(id: $id) }`, () => aliceConversation],
  ['deleteApiKey', `mutation($id: ID!) { deleteApiKey(id: $id) }`, () => aliceKey],
])('mutation %s', (_name, mutation, id) => {
  it("answers NOT_FOUND for another user's id, exactly as for a missing id, and changes nothing", async () => {
    const foreign = await t.gql(mutation, { id: id() }, bob.token);
    const missing = await t.gql(mutation, { id: randomUUID() }, bob.token);
    expect(foreign.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    expect(foreign.errors?.[0]?.message).toBe(missing.errors?.[0]?.message);
    const after = await t.gql(`{ conversations { nodes { id title } } me { apiKeys { id } } }`, {}, alice.token);
    expect(after.data.conversations.nodes.map((c: any) => c.id)).toContain(aliceConversation);
    expect(after.data.conversations.nodes.map((c: any) => c.title)).not.toContain('pwned');
    expect(after.data.me.apiKeys.map((k: any) => k.id)).toContain(aliceKey);
  });
});

it('deleting a conversation removes its messages and detaches its comparisons', async () => {
  const { token, userId } = await t.signUp('deleter');
  await seedUserData(t.db.url, userId, {
    conversations: 1,
    messagesPerConversation: 3,
    comparisons: 1,
    responsesPerComparison: 2,
    votes: true,
    linkComparisons: true,
  });
  const before = await t.gql(`{ conversations { nodes { id comparisons { id } } } }`, {}, token);
  const conversation = before.data.conversations.nodes[0];
  expect(conversation.comparisons).toHaveLength(1);
  expect((await t.gql(`mutation($id: ID!) { deleteConversation(id: $id) }`, { id: conversation.id }, token)).data.deleteConversation).toBe(
    true,
  );
  const after = await t.gql(
    `query($id: ID!) { conversation(id: $id) { id } comparisons { nodes { id conversation { id } vote { outcome } } } }`,
    { id: conversation.id },
    token,
  );
  expect(after.data.conversation).toBeNull();
  expect(after.data.comparisons.nodes).toEqual([{ id: conversation.comparisons[0].id, conversation: null, vote: { outcome: 'WINNER' } }]);
  const { withClient } = await import('./helpers/factories');
  const orphans = await withClient(t.db.url, (c) =>
    c.query('select count(*)::int as n from messages where conversation_id = $1', [conversation.id]),
  );
  expect(orphans.rows[0].n).toBe(0);
});
