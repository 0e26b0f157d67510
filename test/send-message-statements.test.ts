/**
 * What sendMessage reads before it calls the model (issue 20 item 4): ONE statement for the conversation (owner-scoped,
 * not deleted) with the blind check (a comparison of it not yet voted on refuses the turn), then the history and the
 * user's budget (admission). The conversation was an ORM `findOne` and the blind check a statement of its own. The
 * refusal and NOT_FOUND still hold.
 */
import { FakeLlmServer } from './helpers/fake-llm';
import { seedComparison } from './helpers/arena';
import { withClient } from './helpers/factories';
import { createTestApp, type TestApp } from './helpers/test-app';

const SEND = `mutation($i: SendMessageInput!) { sendMessage(input: $i) { id role content } }`;

describe('sendMessage statements', () => {
  let fake: FakeLlmServer;
  let t: TestApp;
  beforeAll(async () => {
    fake = await FakeLlmServer.start();
    t = await createTestApp({ env: { OPENAI_BASE_URL: fake.baseUrls.openai } });
  });
  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });

  async function userWithConversation(prefix: string) {
    const user = await t.signUp(prefix);
    const key = await t.gql(`mutation { saveApiKey(input: { provider: OPENAI, apiKey: "sk-send-0000" }) { id } }`, {}, user.token);
    expect(key.errors).toBeUndefined();
    const created = await t.gql(`mutation { createConversation(title: "Send") { id } }`, {}, user.token);
    return { user, conversationId: created.data.createConversation.id as string };
  }

  it('reads the conversation and its blind check in one statement, then the history and the budget, before any write', async () => {
    const { user, conversationId } = await userWithConversation('send-lean');
    const input = { conversationId, content: 'hello', model: 'openai:gpt-4o-mini' };
    const { result, statements } = await t.countStatements(() => t.gql(SEND, { i: input }, user.token));
    expect(result.errors).toBeUndefined();
    expect(result.data.sendMessage.role).toBe('ASSISTANT');
    const firstWrite = statements.findIndex((sql) => !/^select /i.test(sql));
    const reads = statements.slice(0, firstWrite);
    const kind = (sql: string) =>
      /from conversations c where/.test(sql) && /from comparison_results r where r\.conversation_id = c\.id/.test(sql)
        ? 'conversation and blind check'
        : /from messages o where o\.conversation_id/.test(sql)
          ? 'history'
          : /^select daily_budget_usd/.test(sql)
            ? 'budget'
            : sql.slice(0, 60);
    expect(reads.map(kind)).toEqual(['conversation and blind check', 'history', 'budget']);
  });

  it('a blind comparison not voted on still refuses the turn, and another user still gets NOT_FOUND; nothing written', async () => {
    const { user, conversationId } = await userWithConversation('send-blind');
    const blind = await seedComparison(t, user.userId, [{ model: 'openai:model-a' }, { model: 'anthropic:model-b' }], { blind: true });
    await withClient(t.db.url, (c) =>
      c.query('update comparison_results set conversation_id = $1 where id = $2', [conversationId, blind.id]),
    );
    const input = { conversationId, content: 'hello', model: 'openai:gpt-4o-mini' };
    const refused = await t.countStatements(() => t.gql(SEND, { i: input }, user.token));
    expect(refused.result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(refused.result.errors?.[0]?.message).toContain(blind.id);
    expect(refused.statements.filter((sql) => !/^select /i.test(sql))).toEqual([]);

    const other = await t.signUp('send-other');
    const missing = await t.gql(SEND, { i: input }, other.token);
    expect(missing.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
  });
});
