/**
 * Comparisons, sendMessage and streaming through GraphQL against real
 * PostgreSQL, with every provider faked by a real HTTP server.
 */
import { FakeLlmServer } from './helpers/fake-llm';
import { subscribe } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';

const RESPONSE_FIELDS =
  'id model keyLabel provider status content error latencyMs timeToFirstTokenMs promptTokens completionTokens costUsd';
const START =
  'mutation($input: RunComparisonInput!) { startComparison(input: $input) { id conversation { id } ' +
  `responses { ${RESPONSE_FIELDS} } } }`;
const RUN =
  'mutation($input: RunComparisonInput!) { runComparison(input: $input) { id prompt conversation { id } ' +
  `responses { ${RESPONSE_FIELDS} } } }`;
const GET = `query($id: ID!) { comparison(id: $id) { id responses { ${RESPONSE_FIELDS} } } }`;
const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { comparisonId responseId status delta content error } }`;
const SAVE_KEY = `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id last4 } }`;
const SECRETS = ['sk-openai-secret-0001', 'sk-ant-secret-0002', 'goog-secret-0003', 'mistral-secret-0004', 'compat-secret-0005'];

let fake: FakeLlmServer;
let t: TestApp;
let user: { token: string; userId: string };
const responses: string[] = [];

async function gql(query: string, variables: Record<string, unknown> = {}, token = user.token) {
  const res = await t.gql(query, variables, token);
  responses.push(res.raw);
  return res;
}

async function signUpWithKeys(prefix: string) {
  const u = await t.signUp(prefix);
  const keys = [
    { provider: 'OPENAI', apiKey: SECRETS[0] },
    { provider: 'ANTHROPIC', apiKey: SECRETS[1] },
    { provider: 'GOOGLE', apiKey: SECRETS[2] },
    { provider: 'MISTRAL', apiKey: SECRETS[3] },
    { provider: 'OPENAI_COMPATIBLE', apiKey: SECRETS[4], baseUrl: fake.baseUrls.compatible },
  ];
  for (const input of keys) {
    const res = await gql(SAVE_KEY, { input }, u.token);
    expect(res.data.saveApiKey.last4).toBe(input.apiKey!.slice(-4));
  }
  return u;
}

beforeAll(async () => {
  fake = await FakeLlmServer.start();
  // A model call is cut only by a timeout far above what a loaded machine takes to stream these short answers
  // (2.5 s here once cut two 300 ms streams at load 17, stored empty as TIMED_OUT); the one test of the timeout
  // itself runs on an app of its own (`failures are per model`).
  t = await createTestApp({
    env: {
      ...fake.providerEnv(),
      LLM_TIMEOUT_MS: '30000',
    },
  });
  user = await signUpWithKeys('cmp');
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

type Event = { responseId: string; status: string; delta: string | null; content: string | null; error: string | null };

async function collect(sub: Awaited<ReturnType<typeof subscribe>>): Promise<Event[]> {
  const events: Event[] = [];
  for await (const message of sub.events) {
    expect(message.errors).toBeUndefined();
    events.push((message.data as { comparisonEvents: Event }).comparisonEvents);
  }
  return events;
}

/** Rebuilds each response's text from its events: the first event's content, then deltas, checked against the final content. */
function replay(events: Event[]): Map<string, { text: string; final?: Event; deltas: number }> {
  const byResponse = new Map<string, { text: string; final?: Event; deltas: number }>();
  for (const e of events) {
    const state = byResponse.get(e.responseId);
    if (!state) {
      expect(e.content).not.toBeNull(); // the first event of each response carries the content so far
      byResponse.set(e.responseId, {
        text: e.content ?? '',
        deltas: 0,
        final: ['COMPLETED', 'FAILED', 'TIMED_OUT'].includes(e.status) ? e : undefined,
      });
      continue;
    }
    if (e.delta !== null) {
      expect(e.content).toBeNull(); // deltas never repeat the whole text
      state.text += e.delta;
      state.deltas++;
    }
    if (['COMPLETED', 'FAILED', 'TIMED_OUT'].includes(e.status)) state.final = e;
  }
  return byResponse;
}

describe('a 4-model comparison across 4 providers', () => {
  it('streams deltas to a subscriber and stores all four', async () => {
    for (const model of ['gpt-4o', 'claude-sonnet-4-5', 'gemini-2.5-flash', 'mistral-small-latest'])
      fake.setBehavior(model, { chunkDelayMs: 15 });
    const models = ['openai:gpt-4o', 'anthropic:claude-sonnet-4-5', 'google:gemini-2.5-flash', 'mistral:mistral-small-latest'];
    const started = await gql(START, { input: { prompt: 'Explain keyset pagination in one line', models } });
    expect(started.errors).toBeUndefined();
    const comparison = started.data.startComparison;
    expect(comparison.responses.map((r: any) => r.model)).toEqual(models);
    for (const r of comparison.responses) expect(['PENDING', 'STREAMING']).toContain(r.status);

    const sub = await subscribe(t.url, EVENTS, { id: comparison.id }, user.token);
    expect(sub.status).toBe(200);
    const events = await collect(sub);
    const replayed = replay(events);
    expect(replayed.size).toBe(4);

    const stored = (await gql(GET, { id: comparison.id })).data.comparison.responses;
    for (const r of stored) {
      expect(r).toMatchObject({ status: 'COMPLETED', error: null });
      expect(r.content).toContain('Explain keyset pagination in one line');
      expect(r.latencyMs).toBeGreaterThan(0);
      expect(r.timeToFirstTokenMs).toBeGreaterThanOrEqual(0);
      expect(r.promptTokens).toBeGreaterThan(0);
      expect(r.completionTokens).toBeGreaterThan(0);
      expect(r.costUsd).toBeGreaterThan(0); // all four are in the catalog with prices
      const seen = replayed.get(r.id)!;
      expect(seen.text).toBe(r.content);
      expect(seen.final).toMatchObject({ status: 'COMPLETED', content: r.content });
    }
    // The subscriber really saw streaming, not just the final answers.
    expect([...replayed.values()].reduce((n, s) => n + s.deltas, 0)).toBeGreaterThan(4);
  });

  it('touches the lastUsedAt of the keys a start used (not the others), at most once a minute', async () => {
    const u = await signUpWithKeys('touch');
    const keys = async () => {
      const res = await gql('{ me { apiKeys { provider lastUsedAt } } }', {}, u.token);
      return Object.fromEntries(res.data.me.apiKeys.map((k: any) => [k.provider, k.lastUsedAt])) as Record<string, string | null>;
    };
    expect(Object.values(await keys()).every((v) => v === null)).toBe(true);
    const run = async () => {
      const res = await gql(RUN, { input: { prompt: 'touch', models: ['openai:gpt-4o', 'mistral:mistral-small-latest'] } }, u.token);
      expect(res.errors).toBeUndefined();
    };
    await run();
    const first = await keys();
    for (const provider of ['OPENAI', 'MISTRAL']) expect(Date.now() - new Date(first[provider]!).getTime()).toBeLessThan(60_000);
    for (const provider of ['ANTHROPIC', 'GOOGLE', 'OPENAI_COMPATIBLE']) expect(first[provider]).toBeNull();
    await run();
    expect(await keys()).toEqual(first); // used again within the minute: not written again
  });

  it('writes a start in one statement: the new conversation, the comparison, the prompt and every PENDING response', async () => {
    const models = ['openai:gpt-4o', 'anthropic:claude-sonnet-4-5', 'google:gemini-2.5-flash'];
    const { result: started, statements } = await t.countStatements(() => gql(START, { input: { prompt: 'one write\nplease', models } }));
    expect(started.errors).toBeUndefined();
    // Writes of the start itself (not the key's lastUsedAt, kept to the minute, nor the STREAMING mark).
    const startWrites = (sqls: string[]) =>
      sqls.filter((sql) => /^\s*(with|insert|update|begin)/i.test(sql) && !/api_keys|'STREAMING'/.test(sql));
    expect(startWrites(statements)).toHaveLength(1);
    // Answered from what it wrote: nothing read back.
    expect(statements.filter((sql) => /from "?comparison_(results|responses)/.test(sql))).toEqual([]);
    expect(started.data.startComparison.responses.map((r: any) => [r.model, r.status, r.content])).toEqual(
      models.map((m) => [m, 'PENDING', '']),
    );
    const { id, conversation } = started.data.startComparison;
    const view = await gql(
      `query($id: ID!) { conversation(id: $id) { title messages(first: 10) { nodes { role content } } comparisons { id prompt } } }`,
      { id: conversation.id },
    );
    expect(view.data.conversation.title).toBe('one write');
    expect(view.data.conversation.messages.nodes[0]).toEqual({ role: 'USER', content: 'one write\nplease' });
    expect(view.data.conversation.comparisons).toEqual([{ id, prompt: 'one write\nplease' }]);
    await collect(await subscribe(t.url, EVENTS, { id }, user.token));
    const stored = (await gql(GET, { id })).data.comparison.responses;
    expect(stored.map((r: any) => [r.model, r.status])).toEqual(models.map((m) => [m, 'COMPLETED']));

    // A follow-up in the same conversation: one write again, which also moves the conversation up the history.
    const before = (await gql(`query($id: ID!) { conversation(id: $id) { updatedAt } }`, { id: conversation.id })).data.conversation;
    const next = await t.countStatements(() =>
      gql(START, { input: { prompt: 'and a follow-up', models: models.slice(0, 2), conversationId: conversation.id } }),
    );
    expect(next.result.errors).toBeUndefined();
    expect(startWrites(next.statements)).toHaveLength(1);
    const after = (await gql(`query($id: ID!) { conversation(id: $id) { updatedAt } }`, { id: conversation.id })).data.conversation;
    expect(Date.parse(after.updatedAt)).toBeGreaterThan(Date.parse(before.updatedAt));
  });

  it('writes a conversation in one statement, and each message of sendMessage with its conversation touch in one', async () => {
    const created = await t.countStatements(() => gql(`mutation { createConversation(title: "lean") { id updatedAt } }`));
    expect(created.statements).toHaveLength(1);
    const { id, updatedAt } = created.result.data.createConversation;
    const sent = await t.countStatements(() =>
      gql(`mutation($input: SendMessageInput!) { sendMessage(input: $input) { id role content } }`, {
        input: { conversationId: id, content: 'lean write', model: 'openai:gpt-4o' },
      }),
    );
    expect(sent.result.errors).toBeUndefined();
    const writes = sent.statements.filter((sql) => /^\s*(with|insert|update|begin)/i.test(sql) && !/api_keys/.test(sql));
    expect(writes.map((sql) => sql.slice(0, 40))).toEqual([
      expect.stringMatching(/^with inserted as \(insert into "messages"/),
      expect.stringMatching(/^with inserted as \(insert into "messages"/),
    ]);
    const view = await gql(`query($id: ID!) { conversation(id: $id) { updatedAt messages(first: 5) { nodes { role content } } } }`, {
      id,
    });
    expect(view.data.conversation.messages.nodes.map((m: any) => m.role)).toEqual(['USER', 'ASSISTANT']);
    expect(view.data.conversation.messages.nodes[1].content).toBe(sent.result.data.sendMessage.content);
    expect(Date.parse(view.data.conversation.updatedAt)).toBeGreaterThan(Date.parse(updatedAt));
  });
});

describe('failures are per model', () => {
  // Another instance on the same database whose calls time out soon enough for a hanging model to be cut in a
  // test, and late enough for the others to answer in time on a loaded machine.
  let short: TestApp;
  beforeAll(async () => {
    short = await createTestApp({ env: { ...fake.providerEnv(), LLM_TIMEOUT_MS: '6000' }, db: t.db });
  });
  afterAll(async () => {
    await short?.close();
  });

  it('settles a failing model as FAILED and a hanging one as TIMED_OUT while the others complete', async () => {
    const res = await short.gql(
      RUN,
      {
        input: {
          prompt: 'hi',
          models: ['openai:fine-model', 'anthropic:fail-500', 'google:hang', 'mistral:also-fine', 'azure:my-deployment'],
        },
      },
      user.token,
    );
    responses.push(res.raw);
    expect(res.errors).toBeUndefined();
    const byModel = Object.fromEntries(res.data.runComparison.responses.map((r: any) => [r.model, r]));
    expect(byModel['openai:fine-model'].status).toBe('COMPLETED');
    expect(byModel['mistral:also-fine'].status).toBe('COMPLETED');
    expect(byModel['anthropic:fail-500']).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/^UNAVAILABLE/) });
    expect(byModel['google:hang']).toMatchObject({ status: 'TIMED_OUT', error: expect.stringMatching(/^TIMEOUT/) });
    expect(byModel['azure:my-deployment']).toMatchObject({ status: 'FAILED', error: expect.stringContaining('No azure API key') });
  });

  it('runs models in parallel: the fake provider sees all three calls in flight at once', async () => {
    const res = await gql(RUN, { input: { prompt: 'race', models: ['openai:slow-300', 'anthropic:slow-300', 'google:slow-300'] } });
    expect(res.data.runComparison.responses.map((r: any) => r.status)).toEqual(['COMPLETED', 'COMPLETED', 'COMPLETED']);
    for (const r of res.data.runComparison.responses) expect(r.latencyMs).toBeGreaterThanOrEqual(300);
    // Structural, not timed: every call arrived before any of them ended (sequential calls could not).
    const calls = fake.requests.filter((r) => r.kind === 'chat' && r.model === 'slow-300' && r.messages.some((m) => m.text === 'race'));
    expect(calls.map((c) => c.provider).sort()).toEqual(['anthropic', 'google', 'openai']);
    const lastArrival = Math.max(...calls.map((c) => c.receivedAt));
    for (const c of calls) expect(c.finishedAt).toBeGreaterThan(lastArrival);
  });

  it('retries a failed response', async () => {
    fake.setBehavior('flaky', { status: 503 });
    const res = await gql(RUN, { input: { prompt: 'try me', models: ['openai:flaky', 'anthropic:steady'] } });
    const failed = res.data.runComparison.responses.find((r: any) => r.model === 'openai:flaky');
    expect(failed.status).toBe('FAILED');
    fake.setBehavior('flaky', {});
    const retried = await gql(`mutation($id: ID!) { retryComparisonResponse(id: $id) { id status content error } }`, { id: failed.id });
    expect(retried.data.retryComparisonResponse).toMatchObject({
      id: failed.id,
      status: 'COMPLETED',
      error: null,
      content: 'Reply from flaky: try me',
    });
    const completed = res.data.runComparison.responses.find((r: any) => r.model === 'anthropic:steady');
    const again = await gql(`mutation($id: ID!) { retryComparisonResponse(id: $id) { id } }`, { id: completed.id });
    expect(again.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });

  it('cancels responses still running and completes the subscription', async () => {
    const before = fake.count(undefined, 'chat');
    const started = await gql(START, { input: { prompt: 'never mind', models: ['openai:hang', 'anthropic:hang'] } });
    const id = started.data.startComparison.id;
    const sub = await subscribe(t.url, EVENTS, { id }, user.token);
    const collecting = collect(sub);
    await fake.waitForRequests(before + 2, undefined, 'chat'); // both calls are in flight
    const cancelled = await gql(`mutation($id: ID!) { cancelComparison(id: $id) { responses { status error } } }`, { id });
    expect(cancelled.data.cancelComparison.responses).toEqual([
      { status: 'FAILED', error: 'Cancelled' },
      { status: 'FAILED', error: 'Cancelled' },
    ]);
    const events = await collecting;
    expect(events.filter((e) => e.status === 'FAILED')).toHaveLength(2);
  });
});

describe('streaming to late and leaving subscribers', () => {
  it('gives a late subscriber the content so far in its first event, then only new deltas', async () => {
    fake.setBehavior('slow-stream', { chunkDelayMs: 25, text: 'one two three four five six seven eight nine ten eleven twelve' });
    const started = await gql(START, { input: { prompt: 'count', models: ['openai:slow-stream', 'anthropic:slow-stream'] } });
    const id = started.data.startComparison.id;
    const early = await subscribe(t.url, EVENTS, { id }, user.token);
    // Wait for the first delta of each response to reach the early subscriber.
    const earlyEvents: Event[] = [];
    const withDelta = new Set<string>();
    for await (const message of early.events) {
      const event = message.data.comparisonEvents as Event;
      earlyEvents.push(event);
      if (event.delta) withDelta.add(event.responseId);
      if (withDelta.size === 2) break;
    }
    const late = await subscribe(t.url, EVENTS, { id }, user.token);
    const lateEvents = await collect(late);
    const stored = (await gql(GET, { id })).data.comparison.responses;
    expect(stored.map((r: { status: string }) => r.status)).toEqual(['COMPLETED', 'COMPLETED']);
    const firstLate = lateEvents.slice(0, 2);
    for (const e of firstLate) expect((e.content ?? '').length).toBeGreaterThan(0);
    const replayed = replay(lateEvents);
    for (const r of stored) expect(replayed.get(r.id)!.text).toBe(r.content);
  });

  it('keeps the text a response streamed before it failed, as its subscriber saw it', async () => {
    fake.setBehavior('breaks-midway', { text: 'alpha beta gamma delta epsilon', errorAfterChunks: 2 });
    const started = await gql(START, { input: { prompt: 'break', models: ['openai:breaks-midway', 'anthropic:breaks-midway'] } });
    const id = started.data.startComparison.id;
    const events = await collect(await subscribe(t.url, EVENTS, { id }, user.token));
    const seen = replay(events);
    const stored = (await gql(GET, { id })).data.comparison.responses;
    for (const r of stored) {
      expect(r.status).toBe('FAILED');
      expect(r.content.length).toBeGreaterThan(0);
      expect('alpha beta gamma delta epsilon'.startsWith(r.content)).toBe(true);
      expect(seen.get(r.id)!.text).toBe(r.content);
      expect(seen.get(r.id)!.final).toMatchObject({ status: 'FAILED', content: r.content });
    }
  });

  it('keeps running and stores the results when the subscriber disconnects', async () => {
    fake.setBehavior('long-stream', { chunkDelayMs: 20 });
    const started = await gql(START, {
      input: { prompt: 'keep going after I leave', models: ['openai:long-stream', 'mistral:long-stream'] },
    });
    const id = started.data.startComparison.id;
    const sub = await subscribe(t.url, EVENTS, { id }, user.token);
    await sub.events.next();
    sub.close();
    await t.app.services.runner.settled(id);
    const stored = (await gql(GET, { id })).data.comparison.responses;
    expect(stored.map((r: any) => r.status)).toEqual(['COMPLETED', 'COMPLETED']);
    expect(stored[0].content).toBe('Reply from long-stream: keep going after I leave');
  });
});

describe('multi-turn', () => {
  it('shows each model the earlier prompts and only its own earlier answers', async () => {
    const first = await gql(RUN, { input: { prompt: 'first question', models: ['openai:model-a', 'anthropic:model-b'] } });
    const conversationId = first.data.runComparison.conversation.id;
    fake.reset();
    await gql(RUN, { input: { prompt: 'second question', models: ['openai:model-a', 'anthropic:model-b'], conversationId } });
    const seenBy = (model: string) =>
      fake.requests.find((r) => r.kind === 'chat' && r.model === model)!.messages.map((m) => `${m.role}:${m.text}`);
    expect(seenBy('model-a')).toEqual(['user:first question', 'assistant:Reply from model-a: first question', 'user:second question']);
    expect(seenBy('model-b')).toEqual(['user:first question', 'assistant:Reply from model-b: first question', 'user:second question']);

    const conversation = await gql(
      `query($id: ID!) { conversation(id: $id) { messageCount comparisons { prompt } messages { nodes { role content } } } }`,
      { id: conversationId },
    );
    expect(conversation.data.conversation.comparisons.map((c: any) => c.prompt)).toEqual(['first question', 'second question']);
    expect(conversation.data.conversation.messages.nodes).toEqual([
      { role: 'USER', content: 'first question' },
      { role: 'USER', content: 'second question' },
    ]);
  });
});

describe('sendMessage', () => {
  const SEND =
    `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id role content provider model ` +
    `promptTokens completionTokens latencyMs costUsd conversation { id } } }`;

  it("stores the user's message and the reply with its measurements, and sends the history", async () => {
    const conversation = (await gql(`mutation { createConversation(title: "chat") { id } }`)).data.createConversation.id;
    const first = await gql(SEND, { input: { conversationId: conversation, content: 'hello there', model: 'openai:gpt-4o-mini' } });
    expect(first.errors).toBeUndefined();
    expect(first.data.sendMessage).toMatchObject({
      role: 'ASSISTANT',
      content: 'Reply from gpt-4o-mini: hello there',
      provider: 'OPENAI',
      model: 'openai:gpt-4o-mini',
    });
    expect(first.data.sendMessage.costUsd).toBeGreaterThan(0);
    fake.reset();
    await gql(SEND, { input: { conversationId: conversation, content: 'and again', model: 'openai:gpt-4o-mini' } });
    expect(fake.requests[0]!.messages.map((m) => m.text)).toEqual(['hello there', 'Reply from gpt-4o-mini: hello there', 'and again']);
    const list = await gql(`query($id: ID!) { conversation(id: $id) { messageCount lastMessage { content } } }`, { id: conversation });
    expect(list.data.conversation).toEqual({ messageCount: 4, lastMessage: { content: 'Reply from gpt-4o-mini: and again' } });
  });

  it('answers PROVIDER_ERROR with the reason and keeps the user message', async () => {
    const conversation = (await gql(`mutation { createConversation(title: "errors") { id } }`)).data.createConversation.id;
    const limited = await gql(SEND, { input: { conversationId: conversation, content: 'too fast', model: 'anthropic:fail-429' } });
    expect(limited.errors?.[0]?.extensions).toMatchObject({ code: 'PROVIDER_ERROR', provider: 'ANTHROPIC', reason: 'RATE_LIMIT' });
    const noKey = await gql(SEND, { input: { conversationId: conversation, content: 'no key', model: 'openai:gpt-4o@work' } });
    expect(noKey.errors?.[0]?.extensions).toMatchObject({ code: 'PROVIDER_ERROR', provider: 'OPENAI', reason: 'AUTH' });
    const stored = await gql(`query($id: ID!) { conversation(id: $id) { messages { nodes { role content } } } }`, { id: conversation });
    expect(stored.data.conversation.messages.nodes).toEqual([
      { role: 'USER', content: 'too fast' },
      { role: 'USER', content: 'no key' },
    ]);
  });

  it('maps a rejected key to AUTH', async () => {
    const other = await t.signUp('badkey');
    await gql(SAVE_KEY, { input: { provider: 'MISTRAL', apiKey: 'bad-key' } }, other.token);
    const conversation = (await gql(`mutation { createConversation { id } }`, {}, other.token)).data.createConversation.id;
    const res = await gql(
      SEND,
      { input: { conversationId: conversation, content: 'x', model: 'mistral:mistral-small-latest' } },
      other.token,
    );
    expect(res.errors?.[0]?.extensions).toMatchObject({ code: 'PROVIDER_ERROR', reason: 'AUTH' });
  });
});

describe('validation and isolation', () => {
  it.each([
    [['openai:gpt-4o'], /2 to 8/],
    [Array.from({ length: 9 }, (_, i) => `openai:m${i}`), /2 to 8/],
    [['openai:gpt-4o', 'openai:gpt-4o'], /distinct/],
    [['openai:gpt-4o@work', 'openai:gpt-4o@work'], /distinct/],
    [['openai:gpt-4o', 'openai:gpt-4o@default'], /distinct/],
    [['openai:gpt-4o', 'nonsense'], /provider:name/],
  ])('rejects models %j', async (models, message) => {
    const res = await gql(RUN, { input: { prompt: 'x', models } });
    expect(res.errors?.[0]).toMatchObject({ message: expect.stringMatching(message), extensions: { code: 'BAD_USER_INPUT' } });
  });

  it('rejects an empty prompt', async () => {
    const res = await gql(RUN, { input: { prompt: '   ', models: ['openai:a', 'openai:b'] } });
    expect(res.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });

  it('hides a comparison, its events and its responses from another user', async () => {
    const mine = await gql(RUN, { input: { prompt: 'private', models: ['openai:p1', 'anthropic:p2'] } });
    const { id, conversation, responses: rs } = mine.data.runComparison;
    const other = await t.signUp('intruder');
    const asOther = (q: string, v: Record<string, unknown>) => gql(q, v, other.token);
    expect((await asOther(GET, { id })).data.comparison).toBeNull();
    expect((await asOther(`mutation($id: ID!) { cancelComparison(id: $id) { id } }`, { id })).errors?.[0]?.extensions?.code).toBe(
      'NOT_FOUND',
    );
    expect(
      (await asOther(`mutation($id: ID!) { retryComparisonResponse(id: $id) { id } }`, { id: rs[0].id })).errors?.[0]?.extensions?.code,
    ).toBe('NOT_FOUND');
    expect(
      (await asOther(RUN, { input: { prompt: 'x', models: ['openai:a', 'openai:b'], conversationId: conversation.id } })).errors?.[0]
        ?.extensions?.code,
    ).toBe('NOT_FOUND');
    const sub = await subscribe(t.url, EVENTS, { id }, other.token);
    const messages = [];
    for await (const m of sub.events) messages.push(m);
    expect(messages).toHaveLength(1);
    expect(messages[0]!.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const anonymous = await subscribe(t.url, EVENTS, { id });
    const first = await anonymous.events.next();
    expect(first.value?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('refuses queries and mutations on the stream endpoint', async () => {
    const sub = await subscribe(t.url, `{ me { id } }`, {}, user.token);
    expect(sub.status).toBe(400);
  });

  it('never lets an API key secret reach a response or a log line', async () => {
    // Makes its own traffic (keys saved, models called, a rejected key) rather than relying on earlier tests.
    const own = await signUpWithKeys('secrets');
    await gql(
      RUN,
      { input: { prompt: 'secret check', models: ['openai:gpt-4o', 'anthropic:fail-401', 'openai_compatible:llama3.2'] } },
      own.token,
    );
    await gql(SAVE_KEY, { input: { provider: 'MISTRAL', apiKey: 'bad-key', label: 'bad' } }, own.token);
    const conversation = (await gql(`mutation { createConversation { id } }`, {}, own.token)).data.createConversation.id;
    await gql(
      `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }`,
      { input: { conversationId: conversation, content: 'x', model: 'mistral:mistral-small-latest@bad' } },
      own.token,
    );
    await gql(`{ apiKeys { id provider label last4 } }`, {}, own.token);
    const everything = responses.join('\n') + t.logs.join('\n');
    for (const secret of SECRETS) expect(everything).not.toContain(secret);
    expect(everything).not.toContain('bad-key');
  });
});

describe('one model through two labels (two endpoints)', () => {
  const SAVE_COMPAT = (label: string, apiKey: string) => ({
    input: { provider: 'OPENAI_COMPATIBLE', apiKey, label, baseUrl: fake.baseUrls.compatible },
  });
  const OLLAMA = 'openai_compatible:llama3.1:8b@ollama';
  const VLLM = 'openai_compatible:llama3.1:8b@vllm';

  it('runs both, keeps each label on its result, and shows each endpoint only its own earlier answers', async () => {
    const u = await t.signUp('endpoints');
    await gql(SAVE_KEY, SAVE_COMPAT('ollama', 'key-for-ollama'), u.token);
    await gql(SAVE_KEY, SAVE_COMPAT('vllm', 'key-for-vllm'), u.token);
    fake.setBehavior('llama3.1:8b', { text: 'same model' });

    const first = await gql(RUN, { input: { prompt: 'which endpoint?', models: [OLLAMA, VLLM] } }, u.token);
    expect(first.errors).toBeUndefined();
    const results = first.data.runComparison.responses;
    expect(results.map((r: any) => [r.model, r.keyLabel, r.status])).toEqual([
      ['openai_compatible:llama3.1:8b', 'ollama', 'COMPLETED'],
      ['openai_compatible:llama3.1:8b', 'vllm', 'COMPLETED'],
    ]);
    // Each call went out with its own label's key.
    const calls = fake.requests.filter((r) => r.kind === 'chat' && r.messages.some((m) => m.text === 'which endpoint?'));
    expect(calls.map((c) => c.apiKey).sort()).toEqual(['key-for-ollama', 'key-for-vllm']);

    // A follow-up: each endpoint sees its own earlier answer once (not both).
    fake.setBehavior('llama3.1:8b', {});
    const before = fake.requests.length;
    await gql(
      RUN,
      { input: { prompt: 'and again', models: [OLLAMA, VLLM], conversationId: first.data.runComparison.conversation.id } },
      u.token,
    );
    const followUps = fake.requests.slice(before).filter((r) => r.kind === 'chat');
    expect(followUps).toHaveLength(2);
    for (const call of followUps) {
      expect(call.messages.map((m) => `${m.role}:${m.text}`)).toEqual(['user:which endpoint?', 'assistant:same model', 'user:and again']);
    }

    // Retrying keeps the label (and so the key).
    const read = await gql(
      `query($id: ID!) { comparison(id: $id) { responses { keyLabel } } }`,
      { id: first.data.runComparison.id },
      u.token,
    );
    expect(read.data.comparison.responses.map((r: any) => r.keyLabel)).toEqual(['ollama', 'vllm']);
  });

  it("labels are 'default' for ids without '@label'", async () => {
    const res = await gql(RUN, { input: { prompt: 'plain', models: ['openai:plain-a', 'anthropic:plain-b'] } });
    expect(res.data.runComparison.responses.map((r: any) => r.keyLabel)).toEqual(['default', 'default']);
  });
});
