/**
 * Invalidation cannot be forgotten: every mutation in the schema that a
 * signed-in user can call bumps that user's generation before it answers
 * (one plugin does it, not each resolver). The table below must name every
 * mutation field: a new mutation without a row fails the first test.
 */
import { getSchema } from '../src/graphql/schema';
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { createTestApp, type TestApp } from './helpers/test-app';
import { readCacheKeys } from '../src/read-cache/keys';

let t: TestApp;
let fake: FakeLlmServer;
const ADMIN = 'inv-admin@example.com';

type User = { token: string; userId: string };
interface Case {
  /** Builds the document and variables, making the data it needs first. */
  run(user: User): Promise<{ query: string; variables?: Record<string, unknown> }>;
  /** The mutation works without a signed-in user and changes no user's cached reads. */
  anonymous?: true;
  admin?: true;
}

const gen = (userId: string) => t.app.cache.get<number>(readCacheKeys.generation(userId)).then((g) => g ?? 0);
const gql = (q: string, v: Record<string, unknown>, user: User) => t.gql(q, v, user.token);

async function conversation(user: User): Promise<string> {
  return (await gql(`mutation { createConversation(title: "c") { id } }`, {}, user)).data.createConversation.id;
}
async function comparison(
  user: User,
  models = ['openai:gpt-4o-mini', 'anthropic:claude-x'],
): Promise<{ id: string; responses: Array<{ id: string; status: string }> }> {
  const res = await gql(
    `mutation($i: RunComparisonInput!) { runComparison(input: $i) { id responses { id status } } }`,
    { i: { prompt: 'p', models } },
    user,
  );
  return res.data.runComparison;
}

async function promptSet(user: User): Promise<{ id: string; itemId: string }> {
  const create = `mutation { createPromptSet(input: { name: "s", items: [{ prompt: "p" }] }) { id items { nodes { id } } } }`;
  const res = await gql(create, {}, user);
  return { id: res.data.createPromptSet.id, itemId: res.data.createPromptSet.items.nodes[0].id };
}

const CASES: Record<string, Case> = {
  register: {
    anonymous: true,
    run: async () => ({ query: `mutation { register(email: "inv-new@example.com", password: "correct horse battery") { token } }` }),
  },
  login: {
    anonymous: true,
    run: async () => ({ query: `mutation { login(email: "inv-new@example.com", password: "correct horse battery") { token } }` }),
  },
  createConversation: { run: async () => ({ query: `mutation { createConversation(title: "x") { id } }` }) },
  renameConversation: {
    run: async (u) => ({
      query: `mutation($id: ID!) { renameConversation(id: $id, title: "y") { id } }`,
      variables: { id: await conversation(u) },
    }),
  },
  deleteConversation: {
    run: async (u) => ({ query: `mutation($id: ID!) { deleteConversation(id: $id) }`, variables: { id: await conversation(u) } }),
  },
  saveApiKey: { run: async () => ({ query: `mutation { saveApiKey(input: { provider: MISTRAL, apiKey: "sk-inv-1234" }) { id } }` }) },
  deleteApiKey: {
    run: async (u) => {
      const key = await gql(`mutation { saveApiKey(input: { provider: MISTRAL, label: "tmp", apiKey: "sk-inv-5678" }) { id } }`, {}, u);
      return { query: `mutation($id: ID!) { deleteApiKey(id: $id) }`, variables: { id: key.data.saveApiKey.id } };
    },
  },
  createApiToken: {
    run: async () => ({ query: `mutation { createApiToken(input: { name: "inv", scopes: [READ] }) { apiToken { id } } }` }),
  },
  revokeApiToken: {
    run: async (u) => {
      const created = await gql(`mutation { createApiToken(input: { name: "inv", scopes: [READ] }) { apiToken { id } } }`, {}, u);
      return { query: `mutation($id: ID!) { revokeApiToken(id: $id) { id } }`, variables: { id: created.data.createApiToken.apiToken.id } };
    },
  },
  sendMessage: {
    run: async (u) => ({
      query: `mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }`,
      variables: { i: { conversationId: await conversation(u), content: 'hi', model: 'openai:gpt-4o-mini' } },
    }),
  },
  forkConversation: {
    run: async (u) => {
      const sent = await gql(
        `mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }`,
        { i: { conversationId: await conversation(u), content: 'hi', model: 'openai:gpt-4o-mini' } },
        u,
      );
      return { query: `mutation($id: ID!) { forkConversation(messageId: $id) { id } }`, variables: { id: sent.data.sendMessage.id } };
    },
  },
  continueWith: {
    run: async (u) => {
      const c = await comparison(u);
      return {
        query: `mutation($id: ID!) { continueWith(responseId: $id, content: "more") { id } }`,
        variables: { id: c.responses[0]!.id },
      };
    },
  },
  regenerateMessage: {
    run: async (u) => {
      const sent = await gql(
        `mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }`,
        { i: { conversationId: await conversation(u), content: 'hi', model: 'openai:gpt-4o-mini' } },
        u,
      );
      return {
        query: `mutation($id: ID!) { regenerateMessage(messageId: $id, model: "openai:gpt-4o-mini") { id } }`,
        variables: { id: sent.data.sendMessage.id },
      };
    },
  },
  startComparison: {
    run: async () => ({
      query: `mutation { startComparison(input: { prompt: "p", models: ["openai:gpt-4o-mini", "anthropic:claude-x"] }) { id } }`,
    }),
  },
  runComparison: {
    run: async () => ({
      query: `mutation { runComparison(input: { prompt: "p", models: ["openai:gpt-4o-mini", "anthropic:claude-x"] }) { id } }`,
    }),
  },
  // Picks among the catalog models of the caller's two providers (no ARENA_MODELS here).
  startArenaBattle: { run: async () => ({ query: `mutation { startArenaBattle(input: { prompt: "p" }) { id } }` }) },
  cancelComparison: {
    run: async (u) => {
      const started = await gql(
        `mutation { startComparison(input: { prompt: "p", models: ["openai:hang", "anthropic:hang"] }) { id } }`,
        {},
        u,
      );
      return { query: `mutation($id: ID!) { cancelComparison(id: $id) { id } }`, variables: { id: started.data.startComparison.id } };
    },
  },
  retryComparisonResponse: {
    run: async (u) => {
      const c = await comparison(u, ['openai:gpt-4o-mini', 'anthropic:fail-500']);
      const failed = c.responses.find((r) => r.status === 'FAILED')!;
      return { query: `mutation($id: ID!) { retryComparisonResponse(id: $id) { id } }`, variables: { id: failed.id } };
    },
  },
  vote: {
    run: async (u) => {
      const c = await comparison(u);
      return {
        query: `mutation($i: VoteInput!) { vote(input: $i) { outcome } }`,
        variables: { i: { comparisonId: c.id, outcome: 'TIE' } },
      };
    },
  },
  flushCaches: { admin: true, run: async () => ({ query: `mutation { flushCaches(scope: MODEL_REGISTRY) { scope } }` }) },
  // The target's generation is bumped by the service (test/rate-limits.test.ts); here the target is the caller.
  setUserBudget: {
    admin: true,
    run: async (u) => ({ query: `mutation($id: ID!) { setUserBudget(userId: $id, dailyUsd: 3) { id } }`, variables: { id: u.userId } }),
  },
  judgeComparison: {
    run: async (u) => {
      const c = await comparison(u);
      return {
        query: `mutation($id: ID!) { judgeComparison(comparisonId: $id, judgeModel: "openai:judge-longer") { outcome } }`,
        variables: { id: c.id },
      };
    },
  },
  fuseComparison: {
    run: async (u) => {
      const c = await comparison(u);
      return {
        query: `mutation($id: ID!) { fuseComparison(comparisonId: $id, model: "openai:gpt-4o-mini") { id kind } }`,
        variables: { id: c.id },
      };
    },
  },
  createShareLink: {
    run: async (u) => ({
      query: `mutation($id: ID!) { createShareLink(input: { conversationId: $id }) { token } }`,
      variables: { id: await conversation(u) },
    }),
  },
  revokeShareLink: {
    run: async (u) => {
      const made = await gql(
        `mutation($id: ID!) { createShareLink(input: { conversationId: $id }) { link { id } } }`,
        { id: await conversation(u) },
        u,
      );
      return { query: `mutation($id: ID!) { revokeShareLink(id: $id) { id } }`, variables: { id: made.data.createShareLink.link.id } };
    },
  },
  createPromptSet: { run: async () => ({ query: `mutation { createPromptSet(input: { name: "s", items: [{ prompt: "p" }] }) { id } }` }) },
  startEvalRun: {
    run: async (u) => ({
      query: `mutation($id: ID!) { startEvalRun(input: { promptSetId: $id, models: ["openai:gpt-4o-mini"] }) { id } }`,
      variables: { id: (await promptSet(u)).id },
    }),
  },
  cancelEvalRun: {
    run: async (u) => {
      const started = await gql(
        `mutation($id: ID!) { startEvalRun(input: { promptSetId: $id, models: ["openai:hang"] }) { id } }`,
        { id: (await promptSet(u)).id },
        u,
      );
      return { query: `mutation($id: ID!) { cancelEvalRun(id: $id) { id } }`, variables: { id: started.data.startEvalRun.id } };
    },
  },
  importPromptItems: {
    run: async (u) => ({
      query: `mutation($id: ID!) { importPromptItems(promptSetId: $id, format: JSONL, data: "{\\"prompt\\": \\"q\\"}") { id } }`,
      variables: { id: (await promptSet(u)).id },
    }),
  },
  updatePromptItem: {
    run: async (u) => ({
      query: `mutation($id: ID!) { updatePromptItem(id: $id, input: { prompt: "changed" }) { id } }`,
      variables: { id: (await promptSet(u)).itemId },
    }),
  },
  deletePromptItem: {
    run: async (u) => ({ query: `mutation($id: ID!) { deletePromptItem(id: $id) }`, variables: { id: (await promptSet(u)).itemId } }),
  },
  deletePromptSet: {
    run: async (u) => ({ query: `mutation($id: ID!) { deletePromptSet(id: $id) }`, variables: { id: (await promptSet(u)).id } }),
  },
  // The excluded user's generation is bumped by the service (test/vote-integrity.test.ts); here the caller's.
  reverseVoteExclusion: {
    admin: true,
    run: async () => {
      const target = await t.signUp('inv-excluded');
      await withClient(t.db.url, (c) =>
        c.query(
          `insert into vote_exclusions (id, created_at, user_id, reason, detail, votes_considered)
           values (gen_random_uuid(), now(), $1, 'FIRST_POSITION', 'test', 20)`,
          [target.userId],
        ),
      );
      return { query: `mutation($id: ID!) { reverseVoteExclusion(userId: $id) { active } }`, variables: { id: target.userId } };
    },
  },
};

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  t = await createTestApp({
    env: {
      OPENAI_BASE_URL: fake.baseUrls.openai,
      ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
      MISTRAL_BASE_URL: fake.baseUrls.mistral,
      ADMIN_EMAILS: ADMIN,
      LLM_TIMEOUT_MS: '5000',
    },
  });
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

async function userWithKeys(): Promise<User> {
  const user = await t.signUp('inv');
  for (const provider of ['OPENAI', 'ANTHROPIC']) {
    await gql(`mutation($p: Provider!) { saveApiKey(input: { provider: $p, apiKey: "sk-inv-0000" }) { id } }`, { p: provider }, user);
  }
  return user;
}

it('has a case for every mutation in the schema', async () => {
  const fields = Object.keys((await getSchema()).getMutationType()!.getFields()).sort();
  expect(Object.keys(CASES).sort()).toEqual(fields);
});

describe.each(Object.entries(CASES).filter(([, c]) => !c.anonymous))('%s', (name, c) => {
  it("bumps the caller's generation before it answers, and a cached read then misses", async () => {
    const user = c.admin ? await registerAdmin() : await userWithKeys();
    const { query, variables } = await c.run(user);
    // A cached read of the user's data, so a missed bump would serve it again.
    await gql(`{ me { id } conversations { nodes { id } } }`, {}, user);
    expect((await gql(`{ me { id } conversations { nodes { id } } }`, {}, user)).headers.get('x-cache')).toBe('HIT');
    const before = await gen(user.userId);
    const res = await gql(query, variables ?? {}, user);
    expect(res.errors).toBeUndefined();
    expect(res.data[name]).toBeDefined();
    expect(await gen(user.userId)).toBeGreaterThan(before);
    expect((await gql(`{ me { id } conversations { nodes { id } } }`, {}, user)).headers.get('x-cache')).toBe('MISS');
  });
});

it('a mutation refused by validation bumps nothing', async () => {
  const user = await t.signUp('inv-invalid');
  const before = await gen(user.userId);
  const res = await gql(`mutation { createConversation(nope: 1) { id } }`, {}, user);
  expect(res.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
  expect(await gen(user.userId)).toBe(before);
});

/** Registers the admin on first use, then signs in. */
async function registerAdmin(): Promise<User> {
  const res = await t.gql(`mutation { register(email: "${ADMIN}", password: "correct horse battery") { token user { id } } }`);
  if (res.data) return { token: res.data.register.token, userId: res.data.register.user.id };
  const login = await t.gql(`mutation { login(email: "${ADMIN}", password: "correct horse battery") { token user { id } } }`);
  return { token: login.data.login.token, userId: login.data.login.user.id };
}
