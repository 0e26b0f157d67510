/**
 * Forks, continuing from a comparison, and regenerated versions (issue 19,
 * items 1–3) through GraphQL against real PostgreSQL and Redis, every provider faked by
 * a real HTTP server that records what each request carried.
 */
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { createTestApp, type TestApp } from './helpers/test-app';

const SAVE_KEY = `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`;
const SEND = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id role content model conversation { id } } }`;
const RUN =
  'mutation($input: RunComparisonInput!) { runComparison(input: $input) { id conversation { id } ' +
  'responses { id label model content status } } }';
const FORK =
  'mutation($messageId: ID!, $title: String, $responseId: ID) { forkConversation(messageId: $messageId, title: $title, ' +
  'responseId: $responseId) { id title } }';
const CONTINUE = `mutation($responseId: ID!, $content: String!, $conversationId: ID) {
  continueWith(responseId: $responseId, content: $content, conversationId: $conversationId) {
  id role content model conversation { id } } }`;
const REGENERATE = `mutation($messageId: ID!, $model: String!, $conversationId: ID) {
  regenerateMessage(messageId: $messageId, model: $model, conversationId: $conversationId) {
  id role content model version current conversation { id } versions { id version current content } } }`;
const TURNS = `query($id: ID!) { conversation(id: $id) { id messageCount lastMessage { id content }
  messages(first: 100) { nodes { id content version current versions { id version current content } } } } }`;
const MESSAGES = `query($id: ID!) { conversation(id: $id) { id title messageCount lastMessage { id content }
  messages(first: 100) { nodes { id role content model current conversation { id } forkedFrom { id conversation { id } } } } } }`;
const PLAIN_MESSAGES = `query($id: ID!) { conversation(id: $id) { id
  messages(first: 100) { nodes { id role content createdAt current version } } } }`;
const VOTE = `mutation($input: VoteInput!) { vote(input: $input) { outcome } }`;

let fake: FakeLlmServer;
let t: TestApp;
let alice: { token: string; userId: string };
let bob: { token: string; userId: string };

async function gql(query: string, variables: Record<string, unknown> = {}, token = alice.token) {
  return t.gql(query, variables, token);
}

async function signUpWithKeys(prefix: string) {
  const u = await t.signUp(prefix);
  for (const input of [
    { provider: 'OPENAI', apiKey: 'sk-openai-secret-0001' },
    { provider: 'ANTHROPIC', apiKey: 'sk-ant-secret-0002' },
  ]) {
    const res = await t.gql(SAVE_KEY, { input }, u.token);
    expect(res.errors).toBeUndefined();
  }
  return u;
}

async function newConversation(title = 'chat', token = alice.token): Promise<string> {
  return (await gql(`mutation($t: String) { createConversation(title: $t) { id } }`, { t: title }, token)).data.createConversation.id;
}

async function send(conversationId: string, content: string, model = 'openai:model-a', token = alice.token) {
  const res = await gql(SEND, { input: { conversationId, content, model } }, token);
  expect(res.errors).toBeUndefined();
  return res.data.sendMessage as { id: string; content: string };
}

async function messagesOf(id: string, token = alice.token) {
  const res = await gql(MESSAGES, { id }, token);
  expect(res.errors).toBeUndefined();
  return res.data.conversation;
}

/** What the model named `model` received in its last chat request, as `role:text`. */
function lastSeenBy(model: string): string[] {
  const calls = fake.requests.filter((r) => r.kind === 'chat' && r.model === model);
  return calls.at(-1)!.messages.map((m) => `${m.role}:${m.text}`);
}

/** Rows of every table of the application's schema (a fork must write the same rows whatever the history's length). */
async function everyTableRows(): Promise<Record<string, number>> {
  return withClient(t.db.url, async (c) => {
    const { rows: tables } = await c.query(
      `select table_name as name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'
        order by table_name`,
    );
    const counts: Record<string, number> = {};
    for (const { name } of tables) counts[name] = (await c.query(`select count(*)::int as n from "${name}"`)).rows[0].n;
    return counts;
  });
}

async function rowCounts(): Promise<Record<string, number>> {
  return withClient(t.db.url, async (c) => {
    const { rows } = await c.query(
      `select (select count(*) from conversations)::int as conversations, (select count(*) from messages)::int as messages,
              (select count(*) from conversation_ancestors)::int as ancestors`,
    );
    return rows[0];
  });
}

function code(res: { errors?: Array<{ extensions?: Record<string, any> }> }): string | undefined {
  return res.errors?.[0]?.extensions?.code;
}

// On real PostgreSQL and Redis (the read cache, its generations and pub/sub as in production).
describeRedis('branching (PostgreSQL and Redis)', () => {
  beforeAll(async () => {
    fake = await FakeLlmServer.start();
    t = await createTestApp({
      env: {
        ...fake.providerEnv(),
        LLM_TIMEOUT_MS: '5000',
        REDIS_URL: redisUrlForTests(),
        CACHE_PREFIX: `t-branching-${Date.now().toString(36)}`,
      },
    });
    alice = await signUpWithKeys('alice');
    bob = await signUpWithKeys('bob');
  });
  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });

  describe('forkConversation', () => {
    it('reads the history up to and including the message, then its own; the original is unchanged', async () => {
      const original = await newConversation('original');
      await send(original, 'one');
      const second = await send(original, 'two');
      await send(original, 'three');
      const fork = await gql(FORK, { messageId: second.id, title: 'my fork' });
      expect(fork.errors).toBeUndefined();
      const forkId = fork.data.forkConversation.id;
      expect(fork.data.forkConversation.title).toBe('my fork');

      const view = await messagesOf(forkId);
      expect(view.messages.nodes.map((m: any) => m.content)).toEqual(['one', 'Reply from model-a: one', 'two', 'Reply from model-a: two']);
      expect(view.messageCount).toBe(4);
      expect(view.lastMessage).toEqual({ id: second.id, content: 'Reply from model-a: two' });
      // Read as the fork's own messages, each naming where it came from.
      for (const m of view.messages.nodes) {
        expect(m.conversation.id).toBe(forkId);
        expect(m.forkedFrom).toEqual({ id: m.id, conversation: { id: original } });
        expect(m.current).toBe(true);
      }

      fake.reset();
      await send(forkId, 'four in the fork');
      expect(lastSeenBy('model-a')).toEqual([
        'user:one',
        'assistant:Reply from model-a: one',
        'user:two',
        'assistant:Reply from model-a: two',
        'user:four in the fork',
      ]);
      const after = await messagesOf(forkId);
      expect(after.messages.nodes.map((m: any) => m.content).slice(4)).toEqual([
        'four in the fork',
        'Reply from model-a: four in the fork',
      ]);
      expect(after.messages.nodes.slice(4).map((m: any) => m.forkedFrom)).toEqual([null, null]);
      expect((await messagesOf(original)).messageCount).toBe(6);

      // A fork of the fork, cut inside what it inherited and inside its own part.
      const early = await gql(FORK, { messageId: view.messages.nodes[0].id });
      expect((await messagesOf(early.data.forkConversation.id)).messages.nodes.map((m: any) => m.content)).toEqual(['one']);
      // A message read in several conversations forks from the one it belongs to, where it is current.
      expect(early.data.forkConversation.title).toBe('Fork of original');
      const late = await gql(FORK, { messageId: after.messages.nodes[4].id });
      expect((await messagesOf(late.data.forkConversation.id)).messages.nodes.map((m: any) => m.content)).toEqual([
        'one',
        'Reply from model-a: one',
        'two',
        'Reply from model-a: two',
        'four in the fork',
      ]);
    });

    it('writes the same rows with the same statements for 10 and 1,000 messages', async () => {
      const seeded = await withClient(t.db.url, async (c) => {
        const ids: Record<number, string> = {};
        for (const n of [10, 1000]) {
          const { rows } = await c.query(
            `insert into conversations (id, created_at, updated_at, owner_id, title)
           values (gen_random_uuid(), now(), now(), $1, $2) returning id`,
            [alice.userId, `long ${n}`],
          );
          const id = rows[0].id;
          await c.query(
            `insert into messages (id, created_at, conversation_id, role, content)
           select gen_random_uuid(), now() - make_interval(secs => ($2 - g) / 1000.0) - interval '1 minute', $1,
                  (case when g % 2 = 1 then 'USER' else 'ASSISTANT' end)::message_role, 'message ' || g from generate_series(1, $2) g`,
            [id, n],
          );
          const last = await c.query(`select id from messages where conversation_id = $1 order by created_at desc limit 1`, [id]);
          ids[n] = last.rows[0].id;
        }
        return ids;
      });
      const costs: Array<{ rows: Record<string, number>; statements: number; writes: string[] }> = [];
      for (const n of [10, 1000]) {
        const before = await everyTableRows();
        const { count, statements, result } = await t.countStatements(() => gql(FORK, { messageId: seeded[n] }));
        expect(result.errors).toBeUndefined();
        const after = await everyTableRows();
        // Every table of the schema: only the ones that changed.
        const rows = Object.fromEntries(
          Object.keys(after)
            .filter((k) => after[k] !== before[k])
            .map((k) => [k, after[k]! - before[k]!]),
        );
        const writes = statements.filter((q) => /^\s*(insert|update|delete)\b/i.test(q)).map((q) => q.replace(/\s+/g, ' ').slice(0, 60));
        costs.push({ rows, statements: count, writes });
        expect((await messagesOf(result.data.forkConversation.id)).messageCount).toBe(n);
      }
      expect(costs[0]).toEqual(costs[1]);
      expect(costs[0]!.rows).toEqual({ conversations: 1, conversation_ancestors: 1 });
    });

    it('deleting the original never deletes or changes what a fork shows; the last fork takes it along', async () => {
      const original = await newConversation('to delete');
      await send(original, 'keep me');
      const cut = await send(original, 'and me');
      const fork = (await gql(FORK, { messageId: cut.id })).data.forkConversation.id;
      const before = await gql(PLAIN_MESSAGES, { id: fork });

      expect((await gql(`mutation($id: ID!) { deleteConversation(id: $id) }`, { id: original })).data.deleteConversation).toBe(true);
      expect((await gql(`query($id: ID!) { conversation(id: $id) { id } }`, { id: original })).data.conversation).toBeNull();
      const list = await gql(`{ conversations(first: 100) { nodes { id } } }`);
      expect(list.data.conversations.nodes.map((c: any) => c.id)).not.toContain(original);
      expect((await gql(PLAIN_MESSAGES, { id: fork })).raw).toBe(before.raw);
      const view = await messagesOf(fork);
      expect(view.messages.nodes.every((m: any) => m.forkedFrom === null)).toBe(true);
      // Deleting it again, or forking from it directly, is NOT_FOUND; forking the fork still works.
      expect(code(await gql(`mutation($id: ID!) { deleteConversation(id: $id) }`, { id: original }))).toBe('NOT_FOUND');
      const again = await gql(FORK, { messageId: cut.id });
      expect(again.errors).toBeUndefined();
      expect((await messagesOf(again.data.forkConversation.id)).messageCount).toBe(4);

      const stored = () =>
        withClient(
          t.db.url,
          async (c) => (await c.query(`select count(*)::int as n from messages where conversation_id = $1`, [original])).rows[0].n,
        );
      expect(await stored()).toBe(4);
      await gql(`mutation($id: ID!) { deleteConversation(id: $id) }`, { id: fork });
      expect(await stored()).toBe(4);
      await gql(`mutation($id: ID!) { deleteConversation(id: $id) }`, { id: again.data.forkConversation.id });
      expect(await stored()).toBe(0);
    });

    it('a chain of hidden originals is collected with its last fork, one generation at a time', async () => {
      const original = await newConversation('chain 0');
      const m0 = await send(original, 'root');
      const f1 = (await gql(FORK, { messageId: m0.id })).data.forkConversation.id;
      const m1 = await send(f1, 'middle');
      const f2 = (await gql(FORK, { messageId: m1.id })).data.forkConversation.id;
      const before = await gql(PLAIN_MESSAGES, { id: f2 });
      expect(before.data.conversation.messages.nodes.map((m: any) => m.content)).toEqual([
        'root',
        'Reply from model-a: root',
        'middle',
        'Reply from model-a: middle',
      ]);
      const del = (id: string) => gql(`mutation($id: ID!) { deleteConversation(id: $id) }`, { id });
      await del(original);
      await del(f1);
      expect((await gql(PLAIN_MESSAGES, { id: f2 })).raw).toBe(before.raw);
      const exists = () =>
        withClient(t.db.url, async (c) =>
          (await c.query(`select id from conversations where id = any($1::uuid[]) order by created_at`, [[original, f1, f2]])).rows.map(
            (r) => r.id,
          ),
        );
      expect(await exists()).toEqual([original, f1, f2]);
      await del(f2);
      expect(await exists()).toEqual([]);
    });

    it('refuses what it must, writing nothing: another user, a deleted message, a malformed id, a foreign response', async () => {
      const mine = await newConversation('mine');
      const message = await send(mine, 'private');
      const gone = await newConversation('gone');
      const goneMessage = await send(gone, 'deleted');
      await gql(`mutation($id: ID!) { deleteConversation(id: $id) }`, { id: gone });
      const comparison = (await gql(RUN, { input: { prompt: 'other prompt', models: ['openai:model-a', 'anthropic:model-b'] } })).data
        .runComparison;
      const before = await rowCounts();

      expect(code(await gql(FORK, { messageId: message.id }, bob.token))).toBe('NOT_FOUND');
      expect(code(await gql(FORK, { messageId: goneMessage.id }))).toBe('NOT_FOUND');
      const malformed = await t.countStatements(() => gql(FORK, { messageId: 'not-a-uuid' }));
      expect(code(malformed.result)).toBe('NOT_FOUND');
      expect(malformed.statements.filter((s) => /messages|conversation/.test(s))).toEqual([]);
      // A response of another comparison than the message's.
      expect(code(await gql(FORK, { messageId: message.id, responseId: comparison.responses[0].id }))).toBe('BAD_USER_INPUT');
      expect(code(await gql(FORK, { messageId: message.id, title: '  ' }))).toBe('BAD_USER_INPUT');
      expect(await rowCounts()).toEqual(before);
    });

    it('reads like an ordinary conversation on every path: compiled read, list look-ahead, search, export', async () => {
      const original = await newConversation('paths');
      await send(original, 'zebracorn question');
      const cut = await send(original, 'second turn');
      await send(original, 'after the cut');
      const fork = (await gql(FORK, { messageId: cut.id, title: 'paths fork' })).data.forkConversation.id;

      // The compiled read answers the same bytes as the ordinary path, and serves it.
      const noCache = { 'cache-control': 'no-cache' };
      const served = async () =>
        Object.fromEntries((await t.app.metrics.compiledReads.get()).values.map((v) => [String(v.labels.outcome), v.value])).served ?? 0;
      const ordinary = await t.gql(PLAIN_MESSAGES, { id: fork }, alice.token, noCache);
      const count = await served();
      const compiled = await t.gql(PLAIN_MESSAGES, { id: fork }, alice.token, noCache);
      expect(await served()).toBe(count + 1);
      expect(compiled.raw).toBe(ordinary.raw);
      expect(ordinary.data.conversation.messages.nodes).toHaveLength(4);

      // The list with its messages embedded (look-ahead), compiled and not.
      const LIST = `{ conversations(first: 100) { nodes { id messages(first: 10) { nodes { id content } } } } }`;
      const listOrdinary = await t.gql(LIST, {}, alice.token, noCache);
      const listCompiled = await t.gql(LIST, {}, alice.token, noCache);
      expect(listCompiled.raw).toBe(listOrdinary.raw);
      const inList = listOrdinary.data.conversations.nodes.find((c: any) => c.id === fork);
      expect(inList.messages.nodes.map((m: any) => m.content)).toEqual([
        'zebracorn question',
        'Reply from model-a: zebracorn question',
        'second turn',
        'Reply from model-a: second turn',
      ]);

      const search = await gql(`{ search(query: "zebracorn") { nodes { message { id content conversation { id title } } } } }`);
      expect(search.errors).toBeUndefined();
      const hits = search.data.search.nodes.map((n: any) => `${n.message.conversation.title}|${n.message.content}`).sort();
      expect(hits).toEqual([
        'paths fork|Reply from model-a: zebracorn question',
        'paths fork|zebracorn question',
        'paths|Reply from model-a: zebracorn question',
        'paths|zebracorn question',
      ]);

      const exported = await gql(`query($id: ID!) { exportConversation(id: $id) }`, { id: fork });
      const data = JSON.parse(exported.data.exportConversation);
      expect(data.title).toBe('paths fork');
      expect(data.messages.map((m: any) => m.content)).toEqual(ordinary.data.conversation.messages.nodes.map((m: any) => m.content));

      // Bob sees none of it.
      expect((await gql(`query($id: ID!) { conversation(id: $id) { id } }`, { id: fork }, bob.token)).data.conversation).toBeNull();
      expect((await gql(`query($id: ID!) { exportConversation(id: $id) }`, { id: fork }, bob.token)).data.exportConversation).toBeNull();
      const bobSearch = await gql(`{ search(query: "zebracorn") { nodes { message { id } } } }`, {}, bob.token);
      expect(bobSearch.data.search.nodes).toEqual([]);
    });

    it('keeps blind rules: a history with an unrevealed blind comparison cannot be forked until the vote', async () => {
      const blind = (await gql(RUN, { input: { prompt: 'blind prompt', models: ['openai:model-a', 'anthropic:model-b'], blind: true } }))
        .data.runComparison;
      const conversation = blind.conversation.id;
      const prompt = (await messagesOf(conversation)).messages.nodes[0];
      const before = await rowCounts();
      expect(code(await gql(FORK, { messageId: prompt.id }))).toBe('BAD_USER_INPUT');
      expect(code(await gql(FORK, { messageId: prompt.id, responseId: blind.responses[0].id }))).toBe('BAD_USER_INPUT');
      expect(code(await gql(CONTINUE, { responseId: blind.responses[0].id, content: 'go on' }))).toBe('BAD_USER_INPUT');
      expect(await rowCounts()).toEqual(before);
      // Still hidden.
      const hidden = await gql(`query($id: ID!) { comparison(id: $id) { revealed responses { model } } }`, { id: blind.id });
      expect(hidden.data.comparison).toEqual({ revealed: false, responses: [{ model: null }, { model: null }] });

      await gql(VOTE, { input: { comparisonId: blind.id, outcome: 'TIE' } });
      const fork = await gql(FORK, { messageId: prompt.id, responseId: blind.responses[1].id });
      expect(fork.errors).toBeUndefined();
    });

    it("lists the comparisons whose prompts it inherited, as its own, on every path; the original's deletion changes nothing", async () => {
      const comparison = (await gql(RUN, { input: { prompt: 'inherited comparison', models: ['openai:model-a', 'anthropic:model-b'] } }))
        .data.runComparison;
      const original = comparison.conversation.id;
      const prompt = (await messagesOf(original)).messages.nodes[0];
      const fork = (await gql(FORK, { messageId: prompt.id, title: 'with comparison' })).data.forkConversation.id;
      const VIEW = `query($id: ID!) { conversation(id: $id) { id comparisons { id prompt revealed conversation { id }
      responses { label model content } } } }`;
      const noCache = { 'cache-control': 'no-cache' };
      const ordinary = await t.gql(VIEW, { id: fork }, alice.token, noCache);
      expect(ordinary.errors).toBeUndefined();
      expect(ordinary.data.conversation.comparisons).toEqual([
        {
          id: comparison.id,
          prompt: 'inherited comparison',
          revealed: true,
          conversation: { id: fork },
          responses: comparison.responses.map((r: any) => ({ label: r.label, model: r.model, content: r.content })),
        },
      ]);
      const compiled = await t.gql(VIEW, { id: fork }, alice.token, noCache);
      expect(compiled.raw).toBe(ordinary.raw);
      const exported = JSON.parse((await gql(`query($id: ID!) { exportConversation(id: $id) }`, { id: fork })).data.exportConversation);
      expect(exported.comparisons.map((c: any) => c.id)).toEqual([comparison.id]);
      // The original's own list is unchanged; deleting it detaches the comparison there, the fork keeps it.
      expect((await t.gql(VIEW, { id: original }, alice.token)).data.conversation.comparisons.map((c: any) => c.id)).toEqual([
        comparison.id,
      ]);
      await gql(`mutation($id: ID!) { deleteConversation(id: $id) }`, { id: original });
      expect((await t.gql(VIEW, { id: fork }, alice.token, noCache)).raw).toBe(ordinary.raw);
    });
  });

  describe('continueWith', () => {
    it('makes the chosen response the assistant turn and sends the next message to its model only', async () => {
      const comparison = (await gql(RUN, { input: { prompt: 'pick one', models: ['openai:model-a', 'anthropic:model-b'] } })).data
        .runComparison;
      const conversation = comparison.conversation.id;
      const a = comparison.responses.find((r: any) => r.model === 'openai:model-a');
      fake.reset();
      const reply = await gql(CONTINUE, { responseId: a.id, content: 'tell me more' });
      expect(reply.errors).toBeUndefined();
      expect(reply.data.continueWith).toMatchObject({
        role: 'ASSISTANT',
        content: 'Reply from model-a: tell me more',
        model: 'openai:model-a',
        conversation: { id: conversation },
      });
      // Exactly its own branch: the prompt, its own answer, the new message. One request, to model-a.
      expect(fake.requests.filter((r) => r.kind === 'chat').map((r) => r.model)).toEqual(['model-a']);
      expect(lastSeenBy('model-a')).toEqual(['user:pick one', 'assistant:Reply from model-a: pick one', 'user:tell me more']);

      const view = await messagesOf(conversation);
      expect(view.messages.nodes.map((m: any) => `${m.role}:${m.content}`)).toEqual([
        'USER:pick one',
        'ASSISTANT:Reply from model-a: pick one',
        'USER:tell me more',
        'ASSISTANT:Reply from model-a: tell me more',
      ]);
      // The other answer stays in the comparison.
      const stored = await gql(`query($id: ID!) { comparison(id: $id) { responses { model content } } }`, { id: comparison.id });
      expect(stored.data.comparison.responses).toHaveLength(2);

      // Later turns: model-a sees its branch once; model-b never sees model-a's answers.
      await send(conversation, 'and then?', 'openai:model-a');
      expect(lastSeenBy('model-a')).toEqual([
        'user:pick one',
        'assistant:Reply from model-a: pick one',
        'user:tell me more',
        'assistant:Reply from model-a: tell me more',
        'user:and then?',
      ]);
      await send(conversation, 'your view?', 'anthropic:model-b');
      const seenByB = lastSeenBy('model-b');
      expect(seenByB.filter((m) => m.includes('model-a'))).toEqual([]);
      // (Anthropic's wire format joins consecutive user turns.)
      expect(seenByB).toEqual(['user:pick one', 'assistant:Reply from model-b: pick one', 'user:tell me moreand then?your view?']);

      // Continuing the same comparison again: it has moved on; nothing written, no call.
      const before = await rowCounts();
      const calls = fake.requests.length;
      expect(code(await gql(CONTINUE, { responseId: comparison.responses[1].id, content: 'again' }))).toBe('BAD_USER_INPUT');
      expect(await rowCounts()).toEqual(before);
      expect(fake.requests.length).toBe(calls);
    });

    it('a fork at a chosen response continues with that answer, each model seeing its own branch', async () => {
      const comparison = (await gql(RUN, { input: { prompt: 'branch here', models: ['openai:model-a', 'anthropic:model-b'] } })).data
        .runComparison;
      const prompt = (await messagesOf(comparison.conversation.id)).messages.nodes[0];
      const b = comparison.responses.find((r: any) => r.model === 'anthropic:model-b');
      const fork = (await gql(FORK, { messageId: prompt.id, responseId: b.id })).data.forkConversation.id;
      const view = await messagesOf(fork);
      expect(view.messages.nodes.map((m: any) => `${m.role}:${m.content}`)).toEqual([
        'USER:branch here',
        'ASSISTANT:Reply from model-b: branch here',
      ]);
      expect(view.messages.nodes[1].forkedFrom).toBeNull();
      await send(fork, 'continue b', 'anthropic:model-b');
      expect(lastSeenBy('model-b')).toEqual(['user:branch here', 'assistant:Reply from model-b: branch here', 'user:continue b']);
      await send(fork, 'now a', 'openai:model-a');
      expect(lastSeenBy('model-a')).toEqual([
        'user:branch here',
        'assistant:Reply from model-a: branch here',
        'user:continue b',
        'user:now a',
      ]);
    });

    it('two continuations of one comparison at once: one goes through, the other is refused', async () => {
      const comparison = (await gql(RUN, { input: { prompt: 'only once', models: ['openai:model-a', 'anthropic:model-b'] } })).data
        .runComparison;
      const results = await Promise.all(comparison.responses.map((r: any) => gql(CONTINUE, { responseId: r.id, content: 'race' })));
      expect(results.map(code).sort()).toEqual(['BAD_USER_INPUT', undefined]);
      expect((await messagesOf(comparison.conversation.id)).messageCount).toBe(4);
    });

    it("continues a comparison a fork inherited in the fork only, with the fork's branch; the original is unchanged", async () => {
      const comparison = (await gql(RUN, { input: { prompt: 'pick in a fork', models: ['openai:model-a', 'anthropic:model-b'] } })).data
        .runComparison;
      const original = comparison.conversation.id;
      const prompt = (await messagesOf(original)).messages.nodes[0];
      const b = comparison.responses.find((r: any) => r.model === 'anthropic:model-b');
      // The original moves on past the comparison (continuing it there is refused); a fork at the prompt inherits it.
      await send(original, 'the original moves on', 'openai:model-a');
      const fork = (await gql(FORK, { messageId: prompt.id })).data.forkConversation.id;
      const originalBefore = JSON.stringify((await gql(PLAIN_MESSAGES, { id: original })).data);
      const rowsBefore = await withClient(t.db.url, async (c) =>
        JSON.stringify((await c.query('select * from messages where conversation_id = $1 order by created_at, id', [original])).rows),
      );

      fake.reset();
      const reply = await gql(CONTINUE, { responseId: b.id, content: 'go on in the fork', conversationId: fork });
      expect(reply.errors).toBeUndefined();
      expect(reply.data.continueWith).toMatchObject({
        role: 'ASSISTANT',
        content: 'Reply from model-b: go on in the fork',
        model: 'anthropic:model-b',
        conversation: { id: fork },
      });
      // One request, to model-b, holding exactly the fork's branch: the prompt, its own answer, the new message.
      expect(fake.requests.filter((r) => r.kind === 'chat').map((r) => r.model)).toEqual(['model-b']);
      const seen = lastSeenBy('model-b');
      expect(seen).toEqual(['user:pick in a fork', 'assistant:Reply from model-b: pick in a fork', 'user:go on in the fork']);
      expect(seen.filter((m) => m.includes('model-a') || m.includes('moves on'))).toEqual([]);

      const view = await messagesOf(fork);
      expect(view.messages.nodes.map((m: any) => `${m.role}:${m.content}`)).toEqual([
        'USER:pick in a fork',
        'ASSISTANT:Reply from model-b: pick in a fork',
        'USER:go on in the fork',
        'ASSISTANT:Reply from model-b: go on in the fork',
      ]);
      for (const m of view.messages.nodes) expect(m.conversation.id).toBe(fork);
      const chosen = await withClient(
        t.db.url,
        async (c) =>
          (await c.query('select conversation_id, source_response_id from messages where id = $1', [view.messages.nodes[1].id])).rows[0],
      );
      expect(chosen).toEqual({ conversation_id: fork, source_response_id: b.id });

      // The original: byte-identical, through GraphQL and as stored.
      expect(JSON.stringify((await gql(PLAIN_MESSAGES, { id: original })).data)).toBe(originalBefore);
      const rowsAfter = await withClient(t.db.url, async (c) =>
        JSON.stringify((await c.query('select * from messages where conversation_id = $1 order by created_at, id', [original])).rows),
      );
      expect(rowsAfter).toBe(rowsBefore);

      // The fork has moved past the comparison now: refused, nothing written, no call.
      const before = await rowCounts();
      const calls = fake.requests.length;
      const again = await gql(CONTINUE, { responseId: comparison.responses[0].id, content: 'again', conversationId: fork });
      expect(code(again)).toBe('BAD_USER_INPUT');
      expect(again.errors?.[0]?.message).toMatch(/fork at the response/);
      expect(await rowCounts()).toEqual(before);
      expect(fake.requests.length).toBe(calls);

      // Another fork at the prompt still continues it once the original is deleted.
      const second = (await gql(FORK, { messageId: prompt.id })).data.forkConversation.id;
      expect((await gql(`mutation($id: ID!) { deleteConversation(id: $id) }`, { id: original })).data.deleteConversation).toBe(true);
      const afterDelete = await gql(CONTINUE, { responseId: comparison.responses[0].id, content: 'after delete', conversationId: second });
      expect(afterDelete.errors).toBeUndefined();
      expect(afterDelete.data.continueWith.conversation.id).toBe(second);
      expect((await messagesOf(second)).messageCount).toBe(4);
    });

    it("continuing in a fork: NOT_FOUND for a conversation another user's or one not showing the comparison; nothing written", async () => {
      const comparison = (await gql(RUN, { input: { prompt: 'not yours', models: ['openai:model-a', 'anthropic:model-b'] } })).data
        .runComparison;
      const original = comparison.conversation.id;
      const prompt = (await messagesOf(original)).messages.nodes[0];
      const fork = (await gql(FORK, { messageId: prompt.id })).data.forkConversation.id;
      const unrelated = await newConversation('unrelated');
      await send(unrelated, 'elsewhere');
      // A fork of the same original cut before the comparison does not show it.
      const earlier = await newConversation('earlier');
      const first = await send(earlier, 'before the comparison');
      const later = (
        await gql(RUN, { input: { conversationId: earlier, prompt: 'later one', models: ['openai:model-a', 'anthropic:model-b'] } })
      ).data.runComparison;
      const cutBefore = (await gql(FORK, { messageId: first.id })).data.forkConversation.id;
      const bobs = await newConversation('bob', bob.token);
      const before = await rowCounts();
      const calls = fake.requests.length;
      const go = (responseId: string, conversationId: string, token = alice.token) =>
        gql(CONTINUE, { responseId, content: 'hi', conversationId }, token);
      const a = comparison.responses[0].id;
      expect(code(await go(a, unrelated))).toBe('NOT_FOUND');
      expect(code(await go(a, bobs))).toBe('NOT_FOUND');
      expect(code(await go(a, bobs, bob.token))).toBe('NOT_FOUND');
      expect(code(await go(a, fork, bob.token))).toBe('NOT_FOUND');
      expect(code(await go(a, 'not-a-uuid'))).toBe('NOT_FOUND');
      expect(code(await go(later.responses[0].id, cutBefore))).toBe('NOT_FOUND');
      expect(await rowCounts()).toEqual(before);
      expect(fake.requests.length).toBe(calls);
    });

    it('refuses another user, a malformed id, an empty message; nothing written', async () => {
      const comparison = (await gql(RUN, { input: { prompt: 'mine only', models: ['openai:model-a', 'anthropic:model-b'] } })).data
        .runComparison;
      const before = await rowCounts();
      expect(code(await gql(CONTINUE, { responseId: comparison.responses[0].id, content: 'hi' }, bob.token))).toBe('NOT_FOUND');
      expect(code(await gql(CONTINUE, { responseId: 'nope', content: 'hi' }))).toBe('NOT_FOUND');
      expect(code(await gql(CONTINUE, { responseId: comparison.responses[0].id, content: '   ' }))).toBe('BAD_USER_INPUT');
      expect(await rowCounts()).toEqual(before);
    });
  });

  describe('regenerateMessage', () => {
    it('keeps the versions, shows and sends the current one', async () => {
      const conversation = await newConversation('regen');
      await send(conversation, 'hello');
      const first = (await messagesOf(conversation)).messages.nodes[1];
      fake.reset();
      const regenerated = await gql(REGENERATE, { messageId: first.id, model: 'anthropic:model-b' });
      expect(regenerated.errors).toBeUndefined();
      const v2 = regenerated.data.regenerateMessage;
      expect(v2).toMatchObject({
        role: 'ASSISTANT',
        content: 'Reply from model-b: hello',
        model: 'anthropic:model-b',
        version: 2,
        current: true,
      });
      expect(v2.versions.map((v: any) => [v.version, v.current, v.content])).toEqual([
        [1, false, 'Reply from model-a: hello'],
        [2, true, 'Reply from model-b: hello'],
      ]);
      // The turn's history only: the prompt, no earlier answer.
      expect(lastSeenBy('model-b')).toEqual(['user:hello']);

      const view = await messagesOf(conversation);
      expect(view.messageCount).toBe(2);
      expect(view.messages.nodes.map((m: any) => `${m.content}|${m.current}`)).toEqual(['hello|true', 'Reply from model-b: hello|true']);
      expect(view.lastMessage.id).toBe(v2.id);

      await send(conversation, 'again', 'anthropic:model-b');
      expect(lastSeenBy('model-b')).toEqual(['user:hello', 'assistant:Reply from model-b: hello', 'user:again']);
      // model-a's first answer is no longer the turn: it sees the prompts only.
      await send(conversation, 'and you?', 'openai:model-a');
      expect(lastSeenBy('model-a')).toEqual(['user:hello', 'user:again', 'user:and you?']);

      // Back to model-a for that turn (a third version, asked through the first one's id): the call holds the turns before
      // it only, never the later ones nor another version of it.
      const v3 = (await gql(REGENERATE, { messageId: first.id, model: 'openai:model-a' })).data.regenerateMessage;
      expect(v3.version).toBe(3);
      expect(lastSeenBy('model-a')).toEqual(['user:hello']);
      expect(v3.versions.filter((v: any) => v.current).map((v: any) => v.id)).toEqual([v3.id]);
      await send(conversation, 'last', 'openai:model-a');
      expect(lastSeenBy('model-a')).toEqual([
        'user:hello',
        'assistant:Reply from model-a: hello',
        'user:again',
        'user:and you?',
        'assistant:Reply from model-a: and you?',
        'user:last',
      ]);
    });

    it('concurrent regenerates of one message keep every version, exactly one current', async () => {
      const conversation = await newConversation('race');
      const reply = await send(conversation, 'race me');
      const results = await Promise.all(
        ['openai:model-a', 'anthropic:model-b', 'openai:model-c'].map((model) => gql(REGENERATE, { messageId: reply.id, model })),
      );
      expect(results.map((r) => r.errors)).toEqual([undefined, undefined, undefined]);
      const versions = (await gql(REGENERATE, { messageId: reply.id, model: 'openai:model-d' })).data.regenerateMessage.versions;
      expect(versions.map((v: any) => v.version)).toEqual([1, 2, 3, 4, 5]);
      expect(versions.filter((v: any) => v.current)).toHaveLength(1);
      expect(versions.at(-1).current).toBe(true);
      expect((await messagesOf(conversation)).messageCount).toBe(2);
    });

    it('a fork keeps the version it was made with', async () => {
      const conversation = await newConversation('versions and forks');
      const reply = await send(conversation, 'fork me');
      const fork = (await gql(FORK, { messageId: reply.id })).data.forkConversation.id;
      await gql(REGENERATE, { messageId: reply.id, model: 'anthropic:model-b' });
      expect((await messagesOf(conversation)).messages.nodes[1].content).toBe('Reply from model-b: fork me');
      expect((await messagesOf(fork)).messages.nodes.map((m: any) => `${m.content}|${m.current}`)).toEqual([
        'fork me|true',
        'Reply from model-a: fork me|true',
      ]);
      await send(fork, 'next', 'openai:model-a');
      expect(lastSeenBy('model-a')).toEqual(['user:fork me', 'assistant:Reply from model-a: fork me', 'user:next']);
    });

    it('regenerates an inherited turn in the fork only: the fork reads, lists and sends its version; original unchanged', async () => {
      const original = await newConversation('regen in fork');
      const reply = await send(original, 'fork me again');
      await send(original, 'later in the original');
      const fork = (await gql(FORK, { messageId: reply.id })).data.forkConversation.id;
      const originalBefore = await gql(TURNS, { id: original });
      const countsBefore = await rowCounts();

      fake.reset();
      const res = await gql(REGENERATE, { messageId: reply.id, model: 'anthropic:model-b', conversationId: fork });
      expect(res.errors).toBeUndefined();
      const v2 = res.data.regenerateMessage;
      expect(v2).toMatchObject({ content: 'Reply from model-b: fork me again', version: 2, current: true, conversation: { id: fork } });
      expect(v2.versions.map((v: any) => [v.version, v.current, v.content])).toEqual([
        [1, false, 'Reply from model-a: fork me again'],
        [2, true, 'Reply from model-b: fork me again'],
      ]);
      // The fork's history, up to the turn: the original's later turn is not in it.
      expect(lastSeenBy('model-b')).toEqual(['user:fork me again']);
      // One row written: the fork's version (no copy of the history).
      expect(await rowCounts()).toEqual({ ...countsBefore, messages: countsBefore.messages + 1 });

      const forkView = (await gql(TURNS, { id: fork })).data.conversation;
      expect(forkView.messageCount).toBe(2);
      expect(forkView.lastMessage).toEqual({ id: v2.id, content: 'Reply from model-b: fork me again' });
      expect(forkView.messages.nodes.map((m: any) => `${m.content}|${m.version}|${m.current}`)).toEqual([
        'fork me again|1|true',
        'Reply from model-b: fork me again|2|true',
      ]);
      expect(forkView.messages.nodes[1].versions).toEqual(v2.versions);
      // The original reads exactly as before: its content, its versions, its current one.
      expect((await gql(TURNS, { id: original })).raw).toBe(originalBefore.raw);

      // A third version in the fork (through the fork's own version, or the inherited one with the fork named).
      const v3 = (await gql(REGENERATE, { messageId: v2.id, model: 'openai:model-c' })).data.regenerateMessage;
      expect(v3).toMatchObject({ version: 3, current: true, conversation: { id: fork } });
      expect(v3.versions.map((v: any) => `${v.version}|${v.current}`)).toEqual(['1|false', '2|false', '3|true']);
      expect((await gql(TURNS, { id: original })).raw).toBe(originalBefore.raw);

      // The next message in the fork sends the fork's current version; the original's histories are unchanged.
      fake.reset();
      await send(fork, 'next in the fork', 'openai:model-c');
      expect(lastSeenBy('model-c')).toEqual(['user:fork me again', 'assistant:Reply from model-c: fork me again', 'user:next in the fork']);
      await send(original, 'next in the original', 'openai:model-a');
      expect(lastSeenBy('model-a')).toEqual([
        'user:fork me again',
        'assistant:Reply from model-a: fork me again',
        'user:later in the original',
        'assistant:Reply from model-a: later in the original',
        'user:next in the original',
      ]);
      // Regenerating in the original afterwards changes the original only (its own version numbers).
      const o2 = (await gql(REGENERATE, { messageId: reply.id, model: 'anthropic:model-b' })).data.regenerateMessage;
      expect(o2).toMatchObject({ version: 2, current: true, conversation: { id: original } });
      expect(o2.versions.map((v: any) => `${v.version}|${v.current}`)).toEqual(['1|false', '2|true']);
      expect((await gql(TURNS, { id: fork })).data.conversation.messages.nodes[1]).toMatchObject({ id: v3.id, version: 3, current: true });

      // A fork of the fork keeps the fork's version of the turn.
      const grandchild = (await gql(FORK, { messageId: v3.id })).data.forkConversation.id;
      expect((await gql(TURNS, { id: grandchild })).data.conversation.messages.nodes.map((m: any) => m.content)).toEqual([
        'fork me again',
        'Reply from model-c: fork me again',
      ]);
      const deeper = (await gql(FORK, { messageId: (await messagesOf(fork)).messages.nodes[3].id })).data.forkConversation.id;
      expect((await messagesOf(deeper)).messages.nodes.map((m: any) => m.content)).toEqual([
        'fork me again',
        'Reply from model-c: fork me again',
        'next in the fork',
        'Reply from model-c: next in the fork',
      ]);

      // The compiled read of the fork answers the ordinary path's bytes.
      const noCache = { 'cache-control': 'no-cache' };
      const served = async () =>
        Object.fromEntries((await t.app.metrics.compiledReads.get()).values.map((v) => [String(v.labels.outcome), v.value])).served ?? 0;
      const ordinary = await t.gql(PLAIN_MESSAGES, { id: fork }, alice.token, noCache);
      const count = await served();
      const compiled = await t.gql(PLAIN_MESSAGES, { id: fork }, alice.token, noCache);
      expect(await served()).toBe(count + 1);
      expect(compiled.raw).toBe(ordinary.raw);
      expect(ordinary.data.conversation.messages.nodes.map((m: any) => `${m.content}|${m.version}|${m.current}`)).toEqual([
        'fork me again|1|true',
        'Reply from model-c: fork me again|3|true',
        'next in the fork|1|true',
        'Reply from model-c: next in the fork|1|true',
      ]);
      const exported = JSON.parse((await gql(`query($id: ID!) { exportConversation(id: $id) }`, { id: fork })).data.exportConversation);
      expect(JSON.stringify(exported)).toContain('Reply from model-c: fork me again');
      expect(JSON.stringify(exported)).not.toContain('Reply from model-a: fork me again');
    });

    it('a fork regenerated in place reads its version in search and share links; a link made before keeps the old one', async () => {
      const original = await newConversation('shared fork');
      const reply = await send(original, 'quokkafish question');
      const fork = (await gql(FORK, { messageId: reply.id, title: 'shared fork copy' })).data.forkConversation.id;
      const SHARE = `mutation($input: ShareLinkInput!) { createShareLink(input: $input) { token } }`;
      const SHARED = `query($token: String!) { shared(token: $token) { messages { role content } } }`;
      const share = async (conversationId: string) => {
        const res = await gql(SHARE, { input: { conversationId, expiresInHours: 1 } });
        expect(res.errors).toBeUndefined();
        return res.data.createShareLink.token as string;
      };
      const contents = async (token: string) => (await t.gql(SHARED, { token })).data.shared.messages.map((m: any) => m.content);
      const before = await share(fork);
      await new Promise((r) => setTimeout(r, 10));
      const res = await gql(REGENERATE, { messageId: reply.id, model: 'anthropic:model-b', conversationId: fork });
      expect(res.errors).toBeUndefined();
      const after = await share(fork);
      const originalLink = await share(original);
      expect(await contents(before)).toEqual(['quokkafish question', 'Reply from model-a: quokkafish question']);
      expect(await contents(after)).toEqual(['quokkafish question', 'Reply from model-b: quokkafish question']);
      expect(await contents(originalLink)).toEqual(['quokkafish question', 'Reply from model-a: quokkafish question']);
      const search = await gql(`{ search(query: "quokkafish") { nodes { message { content conversation { title } } } } }`);
      expect(search.errors).toBeUndefined();
      expect(search.data.search.nodes.map((n: any) => `${n.message.conversation.title}|${n.message.content}`).sort()).toEqual([
        'shared fork copy|Reply from model-b: quokkafish question',
        'shared fork copy|quokkafish question',
        'shared fork|Reply from model-a: quokkafish question',
        'shared fork|quokkafish question',
      ]);
    });

    it("regenerating in a fork: NOT_FOUND for a conversation another user's or one not holding the turn; nothing written", async () => {
      const original = await newConversation('regen refusals');
      const reply = await send(original, 'whose turn');
      const later = await send(original, 'after the cut');
      const fork = (await gql(FORK, { messageId: reply.id })).data.forkConversation.id;
      const unrelated = await newConversation('unrelated');
      await send(unrelated, 'elsewhere');
      const bobs = await newConversation('bob', bob.token);
      const before = await rowCounts();
      const calls = fake.requests.length;
      const regen = (messageId: string, conversationId: string, token = alice.token) =>
        gql(REGENERATE, { messageId, model: 'openai:model-a', conversationId }, token);
      expect(code(await regen(reply.id, unrelated))).toBe('NOT_FOUND');
      expect(code(await regen(reply.id, bobs))).toBe('NOT_FOUND');
      expect(code(await regen(reply.id, fork, bob.token))).toBe('NOT_FOUND');
      expect(code(await regen(reply.id, 'not-a-uuid'))).toBe('NOT_FOUND');
      // The fork was cut before this turn: it does not hold it.
      expect(code(await regen(later.id, fork))).toBe('NOT_FOUND');
      expect(await rowCounts()).toEqual(before);
      expect(fake.requests.length).toBe(calls);
    });

    it('concurrent regenerates of an inherited turn in a fork keep every version, exactly one current; original untouched', async () => {
      const original = await newConversation('race in fork');
      const reply = await send(original, 'race me in the fork');
      const fork = (await gql(FORK, { messageId: reply.id })).data.forkConversation.id;
      const results = await Promise.all(
        ['openai:model-a', 'anthropic:model-b', 'openai:model-c'].map((model) =>
          gql(REGENERATE, { messageId: reply.id, model, conversationId: fork }),
        ),
      );
      expect(results.map((r) => r.errors)).toEqual([undefined, undefined, undefined]);
      const view = (await gql(TURNS, { id: fork })).data.conversation;
      const versions = view.messages.nodes[1].versions;
      expect(versions.map((v: any) => v.version)).toEqual([1, 2, 3, 4]);
      expect(versions.filter((v: any) => v.current)).toHaveLength(1);
      expect(versions.at(-1).current).toBe(true);
      expect(view.messageCount).toBe(2);
      const own = await withClient(
        t.db.url,
        async (c) =>
          (await c.query(`select count(*)::int as n from messages where conversation_id = $1 and replaced_at is null`, [fork])).rows[0].n,
      );
      expect(own).toBe(1);
      const originalView = (await gql(TURNS, { id: original })).data.conversation;
      expect(originalView.messages.nodes[1]).toMatchObject({ id: reply.id, version: 1, current: true });
      expect(originalView.messages.nodes[1].versions).toHaveLength(1);
    });

    it('refuses a user message, another user, a malformed id, an unknown model; nothing written', async () => {
      const conversation = await newConversation('refusals');
      await send(conversation, 'question');
      const [question, answer] = (await messagesOf(conversation)).messages.nodes;
      const before = await rowCounts();
      const calls = fake.requests.length;
      expect(code(await gql(REGENERATE, { messageId: question.id, model: 'openai:model-a' }))).toBe('BAD_USER_INPUT');
      expect(code(await gql(REGENERATE, { messageId: answer.id, model: 'openai:model-a' }, bob.token))).toBe('NOT_FOUND');
      expect(code(await gql(REGENERATE, { messageId: '123', model: 'openai:model-a' }))).toBe('NOT_FOUND');
      expect(code(await gql(REGENERATE, { messageId: answer.id, model: 'no-such-provider' }))).toBe('BAD_USER_INPUT');
      expect(await rowCounts()).toEqual(before);
      expect(fake.requests.length).toBe(calls);
    });
  });

  describe('admission and the read cache', () => {
    it('regenerate and continueWith go through sendMessage admission: past the daily cap, BUDGET_EXCEEDED before any call', async () => {
      const created = await gql(`mutation($input: ApiTokenInput!) { createApiToken(input: $input) { token } }`, {
        input: { name: 'capped', scopes: ['READ', 'COMPARE'], dailyBudgetUsd: 0.000001 },
      });
      const capped = created.data.createApiToken.token as string;
      const conversation = await newConversation('capped', capped);
      // Nothing spent yet: the first call is admitted (the one allowed overspend) and records its cost.
      const reply = await send(conversation, 'spend', 'openai:gpt-4o', capped);
      const comparison = (await gql(RUN, { input: { prompt: 'priced', models: ['openai:gpt-4o', 'openai:gpt-4o-mini'] } })).data
        .runComparison;
      const before = await rowCounts();
      const calls = fake.requests.length;
      expect(code(await gql(REGENERATE, { messageId: reply.id, model: 'openai:gpt-4o' }, capped))).toBe('BUDGET_EXCEEDED');
      expect(code(await gql(CONTINUE, { responseId: comparison.responses[0].id, content: 'more' }, capped))).toBe('BUDGET_EXCEEDED');
      expect(await rowCounts()).toEqual(before);
      expect(fake.requests.length).toBe(calls);
    });

    it('a cached read of a fork follows its writes (every mutation invalidates its author)', async () => {
      const original = await newConversation('cached');
      const reply = await send(original, 'cache me');
      const fork = (await gql(FORK, { messageId: reply.id })).data.forkConversation.id;
      const first = await gql(PLAIN_MESSAGES, { id: fork });
      expect((await gql(PLAIN_MESSAGES, { id: fork })).raw).toBe(first.raw);
      await send(fork, 'new in fork');
      const after = await gql(PLAIN_MESSAGES, { id: fork });
      expect(after.data.conversation.messages.nodes.map((m: any) => m.content)).toEqual([
        'cache me',
        'Reply from model-a: cache me',
        'new in fork',
        'Reply from model-a: new in fork',
      ]);
      await gql(`mutation($id: ID!) { deleteConversation(id: $id) }`, { id: original });
      expect((await gql(PLAIN_MESSAGES, { id: fork })).raw).toBe(after.raw);
      expect((await gql(`query($id: ID!) { conversation(id: $id) { id } }`, { id: original })).data.conversation).toBeNull();
    });

    it('versions and forkedFrom load in a constant number of statements, whatever the page size', async () => {
      const counts: number[] = [];
      for (const turns of [2, 6]) {
        const original = await newConversation(`n+1 ${turns}`);
        let last = { id: '' };
        for (let i = 0; i < turns; i++) last = await send(original, `turn ${i}`);
        const fork = (await gql(FORK, { messageId: last.id })).data.forkConversation.id;
        const query = `query($id: ID!) { conversation(id: $id) { messages(first: 100) { nodes { id current version
        versions { id current } forkedFrom { id conversation { id } } conversation { id } } } } }`;
        const { count, result } = await t.countStatements(() => gql(query, { id: fork }));
        expect(result.errors).toBeUndefined();
        expect(result.data.conversation.messages.nodes).toHaveLength(turns * 2);
        counts.push(count);
      }
      expect(counts[1]).toBe(counts[0]);
    });
  });
});
