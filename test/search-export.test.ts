/**
 * `search` (full-text over the viewer's messages and comparison prompts) and
 * `exportConversation` (JSON / Markdown), through GraphQL against a real
 * PostgreSQL: ownership, stemming, snippets that cannot inject HTML, stable
 * signed cursors, a constant number of statements, and the GIN index.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from 'pg';
import { withClient } from './helpers/factories';
import { createTestApp, type TestApp } from './helpers/test-app';

const SEARCH = `query Search($q: String!, $first: Int, $after: String) {
  search(query: $q, first: $first, after: $after) {
    nodes {
      snippet
      message { id role content conversation { id } }
      conversation { id title }
      comparison { id prompt }
    }
    pageInfo { hasNextPage endCursor }
  }
}`;
const EXPORT = `query Export($id: ID!, $format: ExportFormat) { exportConversation(id: $id, format: $format) }`;

type User = { token: string; userId: string };
let t: TestApp;
let alice: User;
let bob: User;
let carol: User;

/** Rows are 1 s apart from this instant on, in insertion order. */
const T0 = Date.now() - 86_400_000;
let clock = 0;
const tick = () => new Date(T0 + ++clock * 1000);

interface MessageSeed {
  role?: 'USER' | 'ASSISTANT' | 'SYSTEM';
  content: string;
  model?: string;
  provider?: string;
  comparisonId?: string;
  at?: Date;
  promptTokens?: number;
  completionTokens?: number;
  latencyMs?: number;
  costUsd?: number;
}

async function insertConversation(c: Client, ownerId: string, title: string): Promise<string> {
  const id = randomUUID();
  const at = tick();
  await c.query(`insert into conversations (id, created_at, updated_at, owner_id, title) values ($1, $2, $2, $3, $4)`, [
    id,
    at,
    ownerId,
    title,
  ]);
  return id;
}

async function insertMessage(c: Client, conversationId: string, m: MessageSeed): Promise<string> {
  const id = randomUUID();
  await c.query(
    `insert into messages (id, created_at, conversation_id, role, content, model, provider, comparison_id, prompt_tokens, completion_tokens,
                           latency_ms, cost_usd)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
    [
      id,
      m.at ?? tick(),
      conversationId,
      m.role ?? 'USER',
      m.content,
      m.model ?? null,
      m.provider ?? null,
      m.comparisonId ?? null,
      m.promptTokens ?? null,
      m.completionTokens ?? null,
      m.latencyMs ?? null,
      m.costUsd ?? null,
    ],
  );
  return id;
}

/** A comparison of the conversation and its prompt stored as a USER message with `comparison_id` set (as the runner does). */
async function insertComparison(
  c: Client,
  ownerId: string,
  conversationId: string,
  prompt: string,
): Promise<{ comparisonId: string; messageId: string }> {
  const comparisonId = randomUUID();
  const at = tick();
  await c.query(`insert into comparison_results (id, created_at, owner_id, conversation_id, prompt) values ($1, $2, $3, $4, $5)`, [
    comparisonId,
    at,
    ownerId,
    conversationId,
    prompt,
  ]);
  const messageId = await insertMessage(c, conversationId, { content: prompt, comparisonId, at });
  return { comparisonId, messageId };
}

const alicePrompt = 'Which zephyrine shoes <script>alert(1)</script> are best for running?';
let aliceMarathon: string; // conversation: two messages and a comparison
let aliceMarathonMessages: string[];
let aliceComparison: string;
let alicePromptMessage: string;
let alicePager: string;
let carolComparisons: string[];

beforeAll(async () => {
  t = await createTestApp();
  [alice, bob, carol] = [await t.signUp('alice'), await t.signUp('bob'), await t.signUp('carol')];
  await t.gql(`mutation { saveApiKey(input: { provider: OPENAI, apiKey: "sk-alice-secret-1234" }) { id } }`, {}, alice.token);

  await withClient(t.db.url, async (c) => {
    // Alice
    aliceMarathon = await insertConversation(c, alice.userId, 'Marathon training');
    const m1 = await insertMessage(c, aliceMarathon, { content: 'How do I run a marathon without getting injured?' });
    const m2 = await insertMessage(c, aliceMarathon, {
      role: 'ASSISTANT',
      model: 'openai:gpt-4o',
      provider: 'OPENAI',
      content: 'Build mileage slowly; easy runs make up most of the week.',
      promptTokens: 12,
      completionTokens: 30,
      latencyMs: 800,
      costUsd: 0.0012,
    });
    ({ comparisonId: aliceComparison, messageId: alicePromptMessage } = await insertComparison(
      c,
      alice.userId,
      aliceMarathon,
      alicePrompt,
    ));
    aliceMarathonMessages = [m1, m2, alicePromptMessage];
    const winner = randomUUID();
    await c.query(
      `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, key_label, status, content, error,
                                         latency_ms, time_to_first_token_ms, prompt_tokens, completion_tokens, cost_usd)
       values ($1, $3, $2, 0, 'OPENAI', 'openai:gpt-4o', 'default', 'COMPLETED', 'Lightweight trainers with a firm heel.', null,
               900, 120, 20, 40, 0.0021),
              (gen_random_uuid(), $3, $2, 1, 'ANTHROPIC', 'anthropic:claude-sonnet-4-5', 'work-key-label', 'FAILED', '',
               'Rate limited by the provider', 30000, null, null, null, null)`,
      [winner, aliceComparison, tick()],
    );
    await c.query(
      `insert into votes (id, created_at, comparison_id, user_id, outcome, winner_id)
       values (gen_random_uuid(), now(), $1, $2, 'WINNER', $3)`,
      [aliceComparison, alice.userId, winner],
    );

    // Seven hits for "walrus" with different ranks and ties: two identical messages share their timestamp, so only the id orders them.
    alicePager = await insertConversation(c, alice.userId, 'Walrus notes');
    const same = tick();
    for (const content of [
      'walrus',
      'walrus walrus',
      'the walrus sat on a rock',
      'walrus walrus walrus',
      'a walrus and a carpenter',
      'walrus',
    ]) {
      await insertMessage(c, alicePager, { content });
    }
    await insertMessage(c, alicePager, { content: 'walrus', at: same });
    await insertMessage(c, alicePager, { content: 'nothing to see here' });

    // Bob: the same common words, and one of his own.
    const bobConversation = await insertConversation(c, bob.userId, "Bob's diary");
    await insertMessage(c, bobConversation, { content: 'I run every morning before work' });
    await insertMessage(c, bobConversation, { content: 'A quokkafrost recipe and a walrus' });

    // Carol: "pairword" twice, "twentyword" in twenty conversations; both include comparison prompts.
    carolComparisons = [];
    const pair = await insertConversation(c, carol.userId, 'pair 0');
    await insertMessage(c, pair, { content: 'pairword one' });
    carolComparisons.push((await insertComparison(c, carol.userId, pair, 'pairword two as a prompt')).comparisonId);
    for (let i = 0; i < 20; i++) {
      const conversation = await insertConversation(c, carol.userId, `twenty ${i}`);
      if (i % 5 === 0)
        carolComparisons.push((await insertComparison(c, carol.userId, conversation, `twentyword prompt ${i}`)).comparisonId);
      else await insertMessage(c, conversation, { content: `twentyword message ${i}` });
    }
  });
});
afterAll(() => t.close());

async function search(user: User, q: string, first?: number, after?: string | null) {
  return t.gql(SEARCH, { q, first, after }, user.token);
}

async function searchAll(user: User, q: string, first: number): Promise<any[]> {
  const hits: any[] = [];
  let after: string | null = null;
  for (let page = 0; page < 50; page++) {
    const res: any = await search(user, q, first, after);
    expect(res.errors).toBeUndefined();
    expect(res.data.search.nodes.length).toBeLessThanOrEqual(first);
    hits.push(...res.data.search.nodes);
    if (!res.data.search.pageInfo.hasNextPage) return hits;
    after = res.data.search.pageInfo.endCursor;
  }
  throw new Error('paging did not end');
}

const codeOf = (res: { errors?: Array<{ extensions?: Record<string, any> }> }) => res.errors?.[0]?.extensions?.code;

describe('search', () => {
  it("finds the user's messages and comparison prompts, with the conversation, the comparison and a marked snippet", async () => {
    const res = await search(alice, 'zephyrine');
    expect(res.errors).toBeUndefined();
    expect(res.data.search.nodes).toHaveLength(1);
    const [hit] = res.data.search.nodes;
    expect(hit.message).toEqual({ id: alicePromptMessage, role: 'USER', content: alicePrompt, conversation: { id: aliceMarathon } });
    expect(hit.conversation).toEqual({ id: aliceMarathon, title: 'Marathon training' });
    expect(hit.comparison).toEqual({ id: aliceComparison, prompt: alicePrompt });
    expect(hit.snippet).toContain('<b>zephyrine</b>');
  });

  it('escapes stored HTML: the <b> markers are the only tags in a snippet', async () => {
    const [hit] = (await search(alice, 'zephyrine')).data.search.nodes;
    expect(hit.snippet).toContain('&lt;script&gt;');
    expect(hit.snippet).not.toContain('<script>');
    expect(hit.snippet.replace(/<\/?b>/g, '')).not.toMatch(/[<>]/);
  });

  it('matches stems: "running" finds "run", "runs" and "running"', async () => {
    const res = await search(alice, 'running');
    expect(res.errors).toBeUndefined();
    const ids = res.data.search.nodes.map((n: any) => n.message.id);
    expect(ids.sort()).toEqual([...aliceMarathonMessages].sort());
    const plain = res.data.search.nodes.find((n: any) => n.message.id === aliceMarathonMessages[0]);
    expect(plain.snippet).toContain('<b>run</b>');
    expect(plain.comparison).toBeNull();
  });

  it("never shows another user's messages", async () => {
    const bobRun = await search(bob, 'run');
    expect(bobRun.data.search.nodes.map((n: any) => n.message.content)).toEqual(['I run every morning before work']);
    expect((await search(bob, 'zephyrine')).data.search).toEqual({ nodes: [], pageInfo: { hasNextPage: false, endCursor: null } });
    expect((await search(alice, 'quokkafrost')).data.search.nodes).toEqual([]);
    const aliceWalrus = await searchAll(alice, 'walrus', 100);
    expect(aliceWalrus.every((n: any) => n.conversation.id === alicePager)).toBe(true);
  });

  it('pages with first=2 through every hit, most relevant first, without repeats', async () => {
    const all = await searchAll(alice, 'walrus', 100);
    expect(all).toHaveLength(7);
    const paged = await searchAll(alice, 'walrus', 2);
    expect(paged.map((n) => n.message.id)).toEqual(all.map((n) => n.message.id));
    expect(new Set(paged.map((n) => n.message.id)).size).toBe(7);
    // The message that repeats the word most ranks first.
    expect(all[0].message.content).toBe('walrus walrus walrus');
  });

  it('answers BAD_USER_INPUT for a tampered, malformed or foreign cursor', async () => {
    const first = await search(alice, 'walrus', 2);
    const cursor: string = first.data.search.pageInfo.endCursor;
    expect((await search(alice, 'walrus', 2, cursor)).errors).toBeUndefined();

    const [body, mac] = cursor.split('.') as [string, string];
    const flipped = `${body}.${mac.slice(0, -1)}${mac.endsWith('A') ? 'B' : 'A'}`;
    const [scope, createdAt, id, rank] = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    expect(rank).toMatch(/^[0-9.e-]+$/); // the rank is the cursor's signed extra sort key
    const otherRank = `${Buffer.from(JSON.stringify([scope, createdAt, id, '0.5'])).toString('base64url')}.${mac}`;
    for (const bad of [flipped, otherRank, 'not-a-cursor', `${body}.${mac}.x`]) {
      expect(codeOf(await search(alice, 'walrus', 2, bad))).toBe('BAD_USER_INPUT');
    }
    expect(codeOf(await search(alice, 'run', 2, cursor))).toBe('BAD_USER_INPUT'); // another query
    expect(codeOf(await search(bob, 'walrus', 2, cursor))).toBe('BAD_USER_INPUT'); // another user
    // A conversation-list cursor is not a search cursor either.
    const list = await t.gql(`{ conversations(first: 1) { pageInfo { endCursor } } }`, {}, alice.token);
    expect(codeOf(await search(alice, 'walrus', 2, list.data.conversations.pageInfo.endCursor))).toBe('BAD_USER_INPUT');
  });

  it('answers BAD_USER_INPUT for a blank or too long query and for first over 100', async () => {
    expect(codeOf(await search(alice, ''))).toBe('BAD_USER_INPUT');
    expect(codeOf(await search(alice, ' \n\t '))).toBe('BAD_USER_INPUT');
    expect(codeOf(await search(alice, 'a'.repeat(501)))).toBe('BAD_USER_INPUT');
    expect((await search(alice, `walrus ${'a'.repeat(493)}`)).errors).toBeUndefined();
    expect(codeOf(await search(alice, 'walrus', 101))).toBe('BAD_USER_INPUT');
    expect(codeOf(await search(alice, 'walrus', 0))).toBe('BAD_USER_INPUT');
  });

  it('treats the query as data: quotes, operators and placeholders neither break nor widen it', async () => {
    for (const q of [
      `walrus' or '1'='1`,
      'walrus ? $1 :x',
      '"walrus sat"',
      'walrus -carpenter',
      'walrus or zephyrine',
      '!!! &&& |||',
      'the',
    ]) {
      const res = await search(alice, q, 100);
      expect({ q, errors: res.errors }).toEqual({ q, errors: undefined });
    }
    expect((await search(alice, '"walrus sat"')).data.search.nodes.map((n: any) => n.message.content)).toEqual([
      'the walrus sat on a rock',
    ]);
    expect((await search(alice, 'walrus -carpenter', 100)).data.search.nodes).toHaveLength(6);
    expect((await search(alice, 'the')).data.search.nodes).toEqual([]); // only a stop word
  });

  it('answers UNAUTHENTICATED without a token', async () => {
    expect(codeOf(await t.gql(SEARCH, { q: 'walrus' }))).toBe('UNAUTHENTICATED');
  });

  /** search (1) + conversations of the hits (1) + comparisons of the hits (1) */
  const SEARCH_STATEMENTS = 3;

  it.each([
    ['pairword', 2],
    ['twentyword', 20],
  ])('runs a search with %s (%i hits, over that many conversations) in a constant number of statements', async (q, hits) => {
    const { count, statements, result } = await t.countStatements(() => search(carol, q, 50));
    expect(result.errors).toBeUndefined();
    const nodes = result.data.search.nodes;
    expect(nodes).toHaveLength(hits);
    expect(new Set(nodes.map((n: any) => n.conversation.id)).size).toBe(q === 'pairword' ? 1 : 20);
    expect(nodes.filter((n: any) => n.comparison).length).toBeGreaterThanOrEqual(1);
    for (const n of nodes) if (n.comparison) expect(carolComparisons).toContain(n.comparison.id);
    expect({ count, statements }).toEqual({ count: SEARCH_STATEMENTS, statements: expect.any(Array) });
  });
});

describe('exportConversation', () => {
  it('exports JSON with the messages in order, the comparisons with their responses and the vote', async () => {
    const { count, result } = await t.countStatements(() => t.gql(EXPORT, { id: aliceMarathon }, alice.token));
    expect(result.errors).toBeUndefined();
    // its size (MAX_RESPONSE_BYTES, before any row is loaded) + conversation + messages + comparisons + responses + votes
    expect(count).toBe(6);
    const text: string = result.data.exportConversation;
    expect(text).toContain('\n  "title": "Marathon training"'); // pretty-printed
    const data = JSON.parse(text);
    expect(Object.keys(data)).toEqual(['id', 'title', 'createdAt', 'updatedAt', 'messages', 'comparisons', 'exportedAt']);
    expect(data.id).toBe(aliceMarathon);
    expect(data.messages.map((m: any) => m.id)).toEqual(aliceMarathonMessages);
    expect(data.messages[1]).toEqual({
      id: aliceMarathonMessages[1],
      role: 'ASSISTANT',
      content: 'Build mileage slowly; easy runs make up most of the week.',
      model: 'openai:gpt-4o',
      provider: 'OPENAI',
      createdAt: expect.any(String),
      promptTokens: 12,
      completionTokens: 30,
      latencyMs: 800,
      costUsd: 0.0012,
    });
    expect(data.comparisons).toEqual([
      {
        id: aliceComparison,
        prompt: alicePrompt,
        createdAt: expect.any(String),
        blind: false,
        revealed: true,
        category: null,
        responses: [
          {
            label: 'A',
            kind: 'MODEL',
            sources: [],
            model: 'openai:gpt-4o',
            provider: 'OPENAI',
            status: 'COMPLETED',
            content: 'Lightweight trainers with a firm heel.',
            error: null,
            latencyMs: 900,
            timeToFirstTokenMs: 120,
            promptTokens: 20,
            completionTokens: 40,
            costUsd: 0.0021,
          },
          {
            label: 'B',
            kind: 'MODEL',
            sources: [],
            model: 'anthropic:claude-sonnet-4-5',
            provider: 'ANTHROPIC',
            status: 'FAILED',
            content: '',
            error: 'Rate limited by the provider',
            latencyMs: 30000,
            timeToFirstTokenMs: null,
            promptTokens: null,
            completionTokens: null,
            costUsd: null,
          },
        ],
        vote: { outcome: 'WINNER', winnerModel: 'openai:gpt-4o' },
      },
    ]);
    expect(new Date(data.exportedAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    for (const secret of ['sk-alice', alice.userId, 'work-key-label', 'owner']) expect(text).not.toContain(secret);
  });

  it('exports Markdown with the title, the messages in order and each model response', async () => {
    const res = await t.gql(EXPORT, { id: aliceMarathon, format: 'MARKDOWN' }, alice.token);
    expect(res.errors).toBeUndefined();
    const md: string = res.data.exportConversation;
    expect(md.startsWith('# Marathon training\n')).toBe(true);
    const order = [
      '**User**',
      'How do I run a marathon',
      '**Assistant (openai:gpt-4o)**',
      'Build mileage slowly',
      '## Comparisons',
      '#### A · openai:gpt-4o',
      'Lightweight trainers',
      '#### B · anthropic:claude-sonnet-4-5',
      'Status: FAILED',
      'Rate limited by the provider',
      '**Vote:** Winner: openai:gpt-4o',
    ];
    const positions = order.map((s) => md.indexOf(s));
    expect(positions.every((p) => p >= 0)).toBe(true);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
    expect(md).toContain('Latency: 900 ms');
    expect(md).toContain('Cost: $0.0021');
    expect(md).not.toContain('sk-alice');
  });

  it('exports a conversation without comparisons in four statements (its size first)', async () => {
    const { count, result } = await t.countStatements(() => t.gql(EXPORT, { id: alicePager }, alice.token));
    expect(JSON.parse(result.data.exportConversation).comparisons).toEqual([]);
    expect(count).toBe(4);
  });

  it("answers null for another user's, a missing or a malformed id", async () => {
    const foreign = await t.gql(EXPORT, { id: aliceMarathon }, bob.token);
    const missing = await t.gql(EXPORT, { id: randomUUID() }, bob.token);
    const malformed = await t.gql(EXPORT, { id: 'nope', format: 'MARKDOWN' }, bob.token);
    expect(foreign.data).toEqual({ exportConversation: null });
    expect(foreign.raw).toBe(missing.raw);
    expect(malformed.raw).toBe(missing.raw);
  });

  it('answers UNAUTHENTICATED without a token', async () => {
    expect(codeOf(await t.gql(EXPORT, { id: aliceMarathon }))).toBe('UNAUTHENTICATED');
  });
});

// Last: it adds 20k rows to the database.
describe('search plan', () => {
  let dora: User;

  beforeAll(async () => {
    dora = await t.signUp('dora');
    await withClient(t.db.url, async (c) => {
      // A heavy user: 20k messages over 200 conversations, one of them with a rare word.
      await c.query(
        `insert into conversations (id, created_at, updated_at, owner_id, title)
         select gen_random_uuid(), now(), now(), $1, 'bulk ' || g from generate_series(1, 200) g`,
        [dora.userId],
      );
      await c.query(
        `insert into messages (id, created_at, conversation_id, role, content)
         select gen_random_uuid(), now() - make_interval(secs => g), cv.id, 'USER',
                'filler message ' || g || ' about topic' || (g % 97) || ' and subject' || (g % 89)
           from (select id from conversations where owner_id = $1) cv cross join generate_series(1, 100) g`,
        [dora.userId],
      );
      await c.query(
        `update messages set content = content || ' xylophonic'
          where id = (select id from messages where content like 'filler message 42 %' limit 1)`,
      );
      // VACUUM as autovacuum would after a bulk insert: it moves the GIN index's pending list (every row inserted since
      // the index was built, costed as a scan of the whole list) into the index proper. Without it, a sequential scan of
      // these 20k rows testing the stored content_tsv is (rightly) costed below the index.
      await c.query('vacuum analyze');
    });
  });

  /** The SQL the app sends for this search (parameters inlined) and its plan. */
  async function searchPlan(user: User, q: string): Promise<{ hits: number; plan: string }> {
    t.app.queryObserver.inlineParams = true;
    const { statements, result } = await t
      .countStatements(() => t.gql(`query($q: String!) { search(query: $q) { nodes { message { id } } } }`, { q }, user.token))
      .finally(() => (t.app.queryObserver.inlineParams = false));
    expect(statements).toHaveLength(1);
    const plan = await withClient(t.db.url, async (c) =>
      (await c.query(`explain ${statements[0]}`)).rows.map((r) => r['QUERY PLAN']).join('\n'),
    );
    return { hits: result.data.search.nodes.length, plan };
  }

  it("finds a rare word among a heavy user's 20k messages through messages_content_fts_idx", async () => {
    const { hits, plan } = await searchPlan(dora, 'xylophonic');
    expect(hits).toBe(1);
    expect(plan).toContain('messages_content_fts_idx');
    expect(plan).not.toMatch(/Seq Scan on messages/);
  });

  it('searches a light user through an index too (by their few conversations, or the text index)', async () => {
    const { hits, plan } = await searchPlan(alice, 'zephyrine');
    expect(hits).toBe(1);
    // The planner's choice for a user with two conversations (either way, never a scan of all messages).
    expect(plan).toMatch(/messages_conversation_created_idx|messages_content_fts_idx/);
    expect(plan).not.toMatch(/Seq Scan on messages/);
  });

  it("never parses a message's text to match or rank it: the stored content_tsv is read, whichever path the planner takes", async () => {
    // The per-user path (the viewer's conversations, then each of their messages) is what the planner picks for a light
    // user, and at scale for every user (the GIN path's estimate grows with the table): before content_tsv it ran
    // to_tsvector on each of the user's messages, twice (filter and rank). Forced here, with the text index disabled.
    for (const [user, q] of [
      [alice, 'zephyrine'],
      [dora, 'xylophonic'],
      [dora, 'filler'],
    ] as const) {
      const planned = await searchPlan(user, q);
      expect(planned.plan).toContain('content_tsv @@');
      expect(planned.plan).not.toContain('to_tsvector');
    }
    const forced = await withClient(t.db.url, async (c) => {
      t.app.queryObserver.inlineParams = true;
      const { statements } = await t
        .countStatements(() =>
          t.gql(`query($q: String!) { search(query: $q) { nodes { message { id } } } }`, { q: 'xylophonic' }, dora.token),
        )
        .finally(() => (t.app.queryObserver.inlineParams = false));
      await c.query('begin');
      try {
        await c.query('set local enable_bitmapscan = off');
        return (await c.query(`explain ${statements[0]}`)).rows.map((r) => r['QUERY PLAN']).join('\n');
      } finally {
        await c.query('rollback');
      }
    });
    expect(forced).toContain('messages_conversation_created_idx');
    expect(forced).not.toContain('to_tsvector');
  });
});
