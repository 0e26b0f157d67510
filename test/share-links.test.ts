/**
 * Share links through GraphQL, on two instances sharing PostgreSQL and Redis,
 * with every provider faked: a link shows its conversation or comparison as it
 * was when shared, to anyone, without owner, email, key labels or costs; a
 * blind comparison shared before its vote stays blind through that link on
 * every path (resolver, shared cache, memo, HTTP cache headers) even after the
 * vote, until the owner shares again; revocation and expiry stop every
 * instance within a second; anonymous callers reach nothing else.
 */
import { createClient } from '@redis/client';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildSchema,
  getNamedType,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLObjectType,
  isEnumType,
  isInputObjectType,
  isLeafType,
  isListType,
  isNonNullType,
} from 'graphql';
import { withClient } from './helpers/factories';
import { FakeLlmServer } from './helpers/fake-llm';
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { subscribe } from './helpers/sse';
import { createTestApp, sharedServerUrl, type TestApp } from './helpers/test-app';

const MODEL_A = 'openai:gpt-4o-mini';
const MODEL_B = 'anthropic:claude-haiku-4-5';
/** Any of these in a shared view of an unrevealed comparison is a leak (the prompts and answers avoid them). */
const IDENTITY = ['gpt-4o', 'claude', 'openai', 'OPENAI', 'anthropic', 'ANTHROPIC', '"default"', 'costUsd', '@example.com'];

const RUN = `mutation($input: RunComparisonInput!) { runComparison(input: $input) { id blind revealed conversation { id }
  responses { id label model } } }`;
const SEND = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id model } }`;
const SAVE_KEY = `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`;
const CREATE = `mutation($input: ShareLinkInput!) { createShareLink(input: $input) {
  token link { id target targetId createdAt expiresAt revokedAt views url } } }`;
const REVOKE = `mutation($id: ID!) { revokeShareLink(id: $id) { id revokedAt } }`;
const LINKS = `query($first: Int, $after: String) { shareLinks(first: $first, after: $after) {
  nodes { id target targetId views url revokedAt expiresAt } pageInfo { hasNextPage endCursor } } }`;
const SHARED = `query($token: String!) { shared(token: $token) { title sharedAt
  messages { role content model createdAt }
  comparisons { prompt blind revealed createdAt responses { label model content status kind } } } }`;
const EXPORT_SHARED = `query($token: String!, $format: ExportFormat) { exportShared(token: $token, format: $format) }`;
const VOTE = `mutation($input: VoteInput!) { vote(input: $input) { outcome } }`;
const DELETE_CONVERSATION = `mutation($id: ID!) { deleteConversation(id: $id) }`;

const codeOf = (res: { errors?: Array<{ extensions?: Record<string, any> }> }) => res.errors?.[0]?.extensions?.code;

function expectNoIdentity(raw: string): void {
  for (const word of IDENTITY) expect({ word, leaked: raw.includes(word) }).toEqual({ word, leaked: false });
}

/** Polls `check` until it holds or `ms` pass; returns how long it took. */
async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A literal of `type` for a document: the smallest well-formed value (required input fields only). */
function literalOf(type: GraphQLInputType): string {
  if (isNonNullType(type)) return literalOf(type.ofType);
  if (isListType(type)) return `[${literalOf(type.ofType)}]`;
  if (isEnumType(type)) return type.getValues()[0]!.name;
  if (isInputObjectType(type)) {
    const fields = Object.values(type.getFields()).filter((f) => isNonNullType(f.type) && f.defaultValue === undefined);
    return `{ ${fields.map((f) => `${f.name}: ${literalOf(f.type)}`).join(', ')} }`;
  }
  const scalars: Record<string, string> = {
    Int: '1',
    Float: '1',
    Boolean: 'false',
    DateTime: '"2026-01-01T00:00:00Z"',
    ID: '"00000000-0000-4000-8000-000000000000"',
  };
  return scalars[type.name] ?? '"x"';
}

/** `name(required args) { __typename }`: one root field asked with the smallest arguments the schema accepts. */
function fieldDocument(field: GraphQLField<unknown, unknown>): string {
  const args = field.args.filter((a) => isNonNullType(a.type) && a.defaultValue === undefined);
  const argText = args.length ? `(${args.map((a) => `${a.name}: ${literalOf(a.type)}`).join(', ')})` : '';
  return `${field.name}${argText}${isLeafType(getNamedType(field.type)) ? '' : ' { __typename }'}`;
}

describeRedis('share links (two instances)', () => {
  let fake: FakeLlmServer;
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    fake = await FakeLlmServer.start();
    fake.setBehavior('gpt-4o-mini', { text: 'Falling leaves drift down, amber light on quiet paths, the year exhales slow.' });
    fake.setBehavior('claude-haiku-4-5', { text: 'Red leaves on the ground; cold wind carries them away; branches wait for snow.' });
    const env = {
      CACHE_PREFIX: `t-share-${Date.now().toString(36)}`,
      REDIS_URL: redisUrlForTests(),
      OPENAI_BASE_URL: fake.baseUrls.openai,
      ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
      SHARE_LINK_VIEW_FLUSH_MS: '100',
      SHARE_LINK_BASE_URL: 'https://llmselect.example/s',
    };
    a = await createTestApp({ env });
    b = await createTestApp({ db: a.db, env });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    await fake?.close();
  });

  async function userWithKeys(prefix: string) {
    const u = await a.signUp(prefix);
    for (const input of [
      { provider: 'OPENAI', apiKey: 'sk-openai-share-0001' },
      { provider: 'ANTHROPIC', apiKey: 'sk-ant-share-0002' },
    ]) {
      expect((await a.gql(SAVE_KEY, { input }, u.token)).errors).toBeUndefined();
    }
    return u;
  }

  async function share(token: string, input: Record<string, unknown>) {
    const res = await a.gql(CREATE, { input }, token);
    expect(res.errors).toBeUndefined();
    return res.data.createShareLink as { token: string; link: any };
  }

  /** Reads the link's page and export on `app` until both are answered at the edge from the read cache (x-cache HIT). */
  async function hotAtEdge(app: TestApp, token: string): Promise<void> {
    for (const [query, variables] of [
      [SHARED, { token }],
      [EXPORT_SHARED, { token, format: 'JSON' }],
    ] as const) {
      let hit = false;
      for (let i = 0; i < 5 && !hit; i++) {
        const res = await app.gql(query, variables);
        expect(res.errors).toBeUndefined();
        expect(res.data[query === SHARED ? 'shared' : 'exportShared']).not.toBeNull();
        hit = res.headers.get('x-cache') === 'HIT';
      }
      expect(hit).toBe(true);
    }
  }

  it('shares a conversation as it was: later messages, the owner and costs stay out; views are counted', async () => {
    const u = await userWithKeys('conv');
    const run = await a.gql(RUN, { input: { prompt: 'Write a haiku about autumn leaves', models: [MODEL_A, MODEL_B] } }, u.token);
    expect(run.errors).toBeUndefined();
    const conversationId = run.data.runComparison.conversation.id;
    const sent = await a.gql(SEND, { input: { conversationId, content: 'And one about winter', model: MODEL_A } }, u.token);
    expect(sent.errors).toBeUndefined();

    const { token, link } = await share(u.token, { conversationId, expiresInHours: 24 });
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(link).toMatchObject({ target: 'CONVERSATION', targetId: conversationId, views: 0, revokedAt: null });
    expect(link.url).toBe(`https://llmselect.example/s/${token}`);
    expect(new Date(link.expiresAt).getTime() - new Date(link.createdAt).getTime()).toBe(24 * 3600 * 1000);
    // Stored hashed: the token is in no column.
    const stored = await withClient(a.db.url, (c) => c.query(`select * from share_links where id = $1`, [link.id]));
    expect(JSON.stringify(stored.rows)).not.toContain(token);

    // A message after the share is not in it.
    await a.gql(SEND, { input: { conversationId, content: 'A third, later one', model: MODEL_B } }, u.token);

    const anonymous = await b.gql(SHARED, { token });
    expect(anonymous.errors).toBeUndefined();
    const view = anonymous.data.shared;
    expect(view.title).toBeTruthy();
    expect(view.messages.map((m: any) => m.role)).toEqual(['USER', 'USER', 'ASSISTANT']);
    expect(view.messages.map((m: any) => m.content)).not.toContain('A third, later one');
    expect(view.messages[2].model).toBe(MODEL_A);
    expect(view.comparisons).toHaveLength(1);
    expect(view.comparisons[0]).toMatchObject({ blind: false, revealed: true });
    expect(view.comparisons[0].responses.map((r: any) => [r.label, r.model, r.kind, r.status])).toEqual([
      ['A', MODEL_A, 'MODEL', 'COMPLETED'],
      ['B', MODEL_B, 'MODEL', 'COMPLETED'],
    ]);
    expect(anonymous.raw).not.toContain(u.email);
    expect(anonymous.raw).not.toContain('keyLabel');
    // Public, short-lived HTTP caching for anonymous readers.
    expect(anonymous.headers.get('cache-control')).toBe('public, max-age=5');

    // GET: an ETag, and a 304 on revalidation.
    const url = `${b.url}/graphql?query=${encodeURIComponent(SHARED)}&variables=${encodeURIComponent(JSON.stringify({ token }))}`;
    const get = await fetch(url, { headers: { 'apollo-require-preflight': 'true' } });
    expect(get.status).toBe(200);
    const etag = get.headers.get('etag');
    expect(etag).toBeTruthy();
    expect(get.headers.get('cache-control')).toBe('public, max-age=5');
    const again = await fetch(url, { headers: { 'apollo-require-preflight': 'true', 'if-none-match': etag! } });
    expect(again.status).toBe(304);

    // Views: counted in batches, listed to the owner.
    await within(3000, async () => {
      const list = await a.gql(LINKS, {}, u.token);
      return list.data.shareLinks.nodes[0].views === 3;
    });
    const list = await a.gql(LINKS, {}, u.token);
    expect(list.data.shareLinks.nodes[0]).toMatchObject({ id: link.id, target: 'CONVERSATION', views: 3 });
    // A listed link never shows the whole token.
    expect(list.raw).not.toContain(token);
    expect(list.data.shareLinks.nodes[0].url).toBe(`https://llmselect.example/s/${token.slice(0, 6)}…`);
  });

  it('a hot shared page is answered at the edge from the read cache, without SQL, on both instances, and counted', async () => {
    const u = await userWithKeys('hot');
    const run = await a.gql(RUN, { input: { prompt: 'Write a haiku about rivers', models: [MODEL_A, MODEL_B] } }, u.token);
    const { token, link } = await share(u.token, { comparisonId: run.data.runComparison.id });
    const first = await a.gql(SHARED, { token });
    expect(first.errors).toBeUndefined();
    let reads = 1;
    for (const app of [a, b]) {
      // The document known to this instance, then its answer stored under the link's scope, then hits at the edge.
      for (let i = 0; i < 2; i++, reads++) expect((await app.gql(SHARED, { token })).raw).toBe(first.raw);
      for (let i = 0; i < 3; i++, reads++) {
        const hot = await app.countStatements(() => app.gql(SHARED, { token }));
        expect(hot.count).toBe(0);
        expect(hot.result.raw).toBe(first.raw);
        expect(hot.result.headers.get('x-cache')).toBe('HIT');
        expect(hot.result.headers.get('cache-control')).toBe('public, max-age=5');
      }
      // Past the memo's second: still answered without SQL (the edge's entry lives as long as the link, at most a minute).
      await new Promise((r) => setTimeout(r, 1100));
      const warm = await app.countStatements(() => app.gql(SHARED, { token }));
      reads++;
      expect(warm.count).toBe(0);
      expect(warm.result.raw).toBe(first.raw);
    }
    // Every read counted, hits at the edge included (in batches).
    await within(3000, async () => {
      const list = await a.gql(LINKS, {}, u.token);
      return list.data.shareLinks.nodes.find((n: any) => n.id === link.id)?.views === reads;
    });
  });

  it('keeps a blind comparison blind through its link, even after the vote, until the owner shares again', async () => {
    const u = await userWithKeys('blind');
    const run = await a.gql(
      RUN,
      { input: { prompt: 'Write a haiku about autumn leaves', models: [MODEL_A, MODEL_B], blind: true } },
      u.token,
    );
    expect(run.errors).toBeUndefined();
    const comparison = run.data.runComparison;
    const { token } = await share(u.token, { comparisonId: comparison.id });
    const { token: conversationToken } = await share(u.token, { conversationId: comparison.conversation.id });

    /** Every shared path on both instances: the view, and its export as JSON and Markdown. */
    const readBoth = async () => {
      const out = [];
      for (const app of [a, b]) {
        for (const t of [token, conversationToken]) {
          const res = await app.gql(SHARED, { token: t });
          expect(res.errors).toBeUndefined();
          out.push(res);
          for (const format of ['JSON', 'MARKDOWN']) {
            const file = await app.gql(EXPORT_SHARED, { token: t, format });
            expect(file.errors).toBeUndefined();
            expectNoIdentity(file.raw);
            if (format === 'JSON') {
              const exported = JSON.parse(file.data.exportShared).comparisons[0];
              expect(exported).toMatchObject({ blind: true, revealed: false });
              expect(exported.responses.map((r: any) => r.model)).toEqual([null, null]);
            } else expect(file.data.exportShared).toContain('Blind: models hidden');
          }
        }
      }
      return out;
    };
    for (const res of await readBoth()) {
      expectNoIdentity(res.raw);
      const c = res.data.shared.comparisons[0];
      expect(c).toMatchObject({ blind: true, revealed: false });
      expect(c.responses.map((r: any) => [r.label, r.model])).toEqual([
        ['A', null],
        ['B', null],
      ]);
    }

    // The owner votes: the comparison is revealed to them, but not through the links made before.
    const winner = comparison.responses[0];
    const vote = await a.gql(VOTE, { input: { comparisonId: comparison.id, outcome: 'WINNER', winnerResponseId: winner.id } }, u.token);
    expect(vote.errors).toBeUndefined();
    await new Promise((r) => setTimeout(r, 1100)); // past any memo: the cache and PostgreSQL answer
    for (const res of await readBoth()) {
      expectNoIdentity(res.raw);
      expect(res.data.shared.comparisons[0].revealed).toBe(false);
    }
    // Answered at the edge from the read cache (x-cache HIT), page and export: the stored bytes are the blind ones.
    for (const app of [a, b]) {
      await hotAtEdge(app, token);
      const hit = await app.gql(SHARED, { token });
      expect(hit.headers.get('x-cache')).toBe('HIT');
      expectNoIdentity(hit.raw);
      const file = await app.gql(EXPORT_SHARED, { token, format: 'MARKDOWN' });
      expect(file.headers.get('x-cache')).toBe('HIT');
      expectNoIdentity(file.raw);
    }
    // Signed in, the owner included: the same blind snapshot, through the resolver (a compiled read never serves shared:
    // test/read-plan-sql/Query.not-compiled.txt), and never from the reader's own read-cache entries.
    const served = async () =>
      Object.fromEntries((await a.app.metrics.compiledReads.get()).values.map((v) => [String(v.labels.outcome), v.value])).served ?? 0;
    const other = await a.signUp('blind-reader');
    for (const reader of [u.token, other.token]) {
      for (let i = 0; i < 2; i++) {
        const compiledBefore = await served();
        const res = await a.gql(SHARED, { token }, reader, { 'cache-control': 'no-cache' });
        expect(res.errors).toBeUndefined();
        expect(await served()).toBe(compiledBefore);
        expect(res.headers.get('x-cache')).not.toBe('HIT');
        expectNoIdentity(res.raw);
        expect(res.data.shared.comparisons[0]).toMatchObject({ blind: true, revealed: false });
        expect(res.data.shared.comparisons[0].responses.map((r: any) => r.model)).toEqual([null, null]);
      }
    }
    // Built again from PostgreSQL (the cache flushed): still the snapshot's rule.
    await a.app.cache.clearNamespace('resp');
    await new Promise((r) => setTimeout(r, 1100));
    for (const res of await readBoth()) expectNoIdentity(res.raw);

    // Sharing again makes a snapshot of the revealed comparison.
    const { token: again } = await share(u.token, { comparisonId: comparison.id });
    const revealed = await b.gql(SHARED, { token: again });
    expect(revealed.data.shared.comparisons[0].revealed).toBe(true);
    expect(revealed.data.shared.comparisons[0].responses.map((r: any) => r.model).sort()).toEqual([MODEL_B, MODEL_A].sort());
    // The owner's own reads are unchanged (revealed) and never show the share links' rule.
    const own = await a.gql(`query($id: ID!) { comparison(id: $id) { revealed } }`, { id: comparison.id }, u.token);
    expect(own.data.comparison.revealed).toBe(true);
  });

  it('revocation stops both instances within a second; so does expiry', async () => {
    const u = await userWithKeys('revoke');
    const run = await a.gql(RUN, { input: { prompt: 'Write a haiku about stones', models: [MODEL_A, MODEL_B] } }, u.token);
    const { token, link } = await share(u.token, { comparisonId: run.data.runComparison.id, expiresInHours: 1 });
    // Both instances hold it hot: the page and its export answered at the edge from the read cache (x-cache HIT), and memoised.
    for (const app of [a, b]) await hotAtEdge(app, token);
    const revoke = await b.gql(REVOKE, { id: link.id }, u.token);
    expect(revoke.errors).toBeUndefined();
    expect(revoke.data.revokeShareLink.revokedAt).toBeTruthy();
    // Revoked on b; a (the other instance) and b both stop, page and export, within a second of the answer.
    const gone = async (app: TestApp) => {
      const [view, file] = await Promise.all([app.gql(SHARED, { token }), app.gql(EXPORT_SHARED, { token })]);
      return view.data.shared === null && file.data.exportShared === null;
    };
    const took = await within(1000, async () => (await Promise.all([gone(a), gone(b)])).every(Boolean));
    expect(took).toBeLessThan(1000);
    // Revoking again is harmless; the list shows it revoked.
    expect((await b.gql(REVOKE, { id: link.id }, u.token)).errors).toBeUndefined();
    const listed = await b.gql(LINKS, {}, u.token);
    expect(listed.data.shareLinks.nodes.find((n: any) => n.id === link.id).revokedAt).toBeTruthy();

    // Expiry: a link hot on both instances (memo and shared cache) stops at its expiry on both, with no event to tell them.
    // It lives 4 s: long enough to be made hot on both (up to 20 reads) on a loaded machine, as in the test below.
    const { token: soon, link: soonLink } = await share(u.token, { comparisonId: run.data.runComparison.id, expiresInHours: 1 });
    const [{ at }] = (
      await withClient(a.db.url, (c) =>
        c.query(`update share_links set expires_at = now() + interval '4 seconds' where id = $1 returning expires_at as at`, [soonLink.id]),
      )
    ).rows;
    for (const app of [a, b]) await hotAtEdge(app, soon);
    await new Promise((r) => setTimeout(r, Math.max(0, new Date(at).getTime() - Date.now())));
    const afterExpiry = await within(1000, async () => {
      const [x, y] = await Promise.all([a.gql(SHARED, { token: soon }), b.gql(SHARED, { token: soon })]);
      return x.data.shared === null && y.data.shared === null;
    });
    expect(afterExpiry).toBeLessThan(1000);
  });

  it('answers null for unknown, malformed and deleted targets; NOT_FOUND and BAD_USER_INPUT on bad creates', async () => {
    const u = await userWithKeys('bad');
    const other = await a.signUp('other');
    // Malformed tokens: null, without SQL.
    for (const token of ['', 'short', 'x'.repeat(44), `${'a'.repeat(42)}!`, `${'a'.repeat(42)}=`]) {
      const res = await a.countStatements(() => a.gql(SHARED, { token }));
      expect(res.result.errors).toBeUndefined();
      expect(res.result.data.shared).toBeNull();
      expect(res.count).toBe(0);
    }
    // Well formed but unknown: null (never FORBIDDEN).
    expect((await a.gql(SHARED, { token: 'A'.repeat(43) })).data.shared).toBeNull();

    const run = await a.gql(RUN, { input: { prompt: 'Write a haiku about snow', models: [MODEL_A, MODEL_B] } }, u.token);
    const conversationId = run.data.runComparison.conversation.id;
    const comparisonId = run.data.runComparison.id;
    const bad = async (input: Record<string, unknown>, token = u.token) => codeOf(await a.gql(CREATE, { input }, token));
    expect(await bad({})).toBe('BAD_USER_INPUT');
    expect(await bad({ conversationId, comparisonId })).toBe('BAD_USER_INPUT');
    expect(await bad({ conversationId, expiresInHours: 0 })).toBe('BAD_USER_INPUT');
    expect(await bad({ conversationId, expiresInHours: 24 * 365 + 1 })).toBe('BAD_USER_INPUT');
    expect(await bad({ conversationId, includeLaterMessages: true })).toBe('BAD_USER_INPUT');
    expect(await bad({ conversationId: 'not-an-id' })).toBe('NOT_FOUND');
    expect(await bad({ conversationId }, other.token)).toBe('NOT_FOUND');
    expect(await bad({ comparisonId }, other.token)).toBe('NOT_FOUND');
    expect(codeOf(await a.gql(REVOKE, { id: '00000000-0000-4000-8000-000000000000' }, u.token))).toBe('NOT_FOUND');
    const count = async () =>
      Number(
        (await withClient(a.db.url, (c) => c.query(`select count(*) from share_links where owner_id = $1`, [u.userId]))).rows[0].count,
      );
    expect(await count()).toBe(0);

    // Shared, then the conversation deleted: the link answers null; sharing the deleted one is NOT_FOUND.
    const { token, link } = await share(u.token, { conversationId });
    expect((await b.gql(SHARED, { token })).data.shared).not.toBeNull();
    expect((await a.gql(DELETE_CONVERSATION, { id: conversationId }, u.token)).errors).toBeUndefined();
    expect(codeOf(await a.gql(REVOKE, { id: link.id }, other.token))).toBe('NOT_FOUND');
    // Hot on the other instance until now: it stops within a second, with no cache flushed.
    await within(1000, async () => (await b.gql(SHARED, { token })).data.shared === null);
    expect(await bad({ conversationId })).toBe('NOT_FOUND');
  });

  it('shares a fork with its inherited turns and comparison; a later version or a deleted original changes nothing shared', async () => {
    const u = await userWithKeys('fork');
    const run = await a.gql(RUN, { input: { prompt: 'Write a haiku about autumn leaves', models: [MODEL_A, MODEL_B] } }, u.token);
    const conversationId = run.data.runComparison.conversation.id;
    const answer = await a.gql(SEND, { input: { conversationId, content: 'And one about winter', model: MODEL_A } }, u.token);
    expect(answer.errors).toBeUndefined();
    const fork = await a.gql(
      `mutation($m: ID!) { forkConversation(messageId: $m, title: "fork") { id } }`,
      { m: answer.data.sendMessage.id },
      u.token,
    );
    expect(fork.errors).toBeUndefined();
    const forkId = fork.data.forkConversation.id;

    // The fork has no message of its own yet: its link shows what it inherited, comparison included.
    const { token: forkToken } = await share(u.token, { conversationId: forkId });
    const forkView = (await b.gql(SHARED, { token: forkToken })).data.shared;
    expect(forkView.title).toBe('fork');
    expect(forkView.messages.map((m: any) => [m.role, m.content])).toEqual([
      ['USER', 'Write a haiku about autumn leaves'],
      ['USER', 'And one about winter'],
      ['ASSISTANT', 'Falling leaves drift down, amber light on quiet paths, the year exhales slow.'],
    ]);
    expect(forkView.comparisons).toHaveLength(1);

    // The original shared, then its answer regenerated by another model: the link keeps the version current when shared.
    const { token } = await share(u.token, { conversationId });
    const regenerated = await a.gql(
      `mutation($m: ID!, $model: String!) { regenerateMessage(messageId: $m, model: $model) { id content } }`,
      { m: answer.data.sendMessage.id, model: MODEL_B },
      u.token,
    );
    expect(regenerated.errors).toBeUndefined();
    await a.app.cache.clearNamespace('resp'); // built again from PostgreSQL, after the memo's second
    await new Promise((r) => setTimeout(r, 1100));
    const before = (await b.gql(SHARED, { token })).data.shared;
    expect(before.messages.at(-1).content).toBe('Falling leaves drift down, amber light on quiet paths, the year exhales slow.');
    const { token: after } = await share(u.token, { conversationId });
    expect((await b.gql(SHARED, { token: after })).data.shared.messages.at(-1).content).toBe(regenerated.data.regenerateMessage.content);

    // Deleting the original (kept hidden while the fork reads it): its links answer null on both instances; the fork's does not.
    expect((await a.gql(DELETE_CONVERSATION, { id: conversationId }, u.token)).errors).toBeUndefined();
    // Kept for the fork, but deleted: sharing it is NOT_FOUND, nothing written.
    const linksOf = async () =>
      (await withClient(a.db.url, (c) => c.query(`select count(*)::int as n from share_links where owner_id = $1`, [u.userId]))).rows[0].n;
    const linkCount = await linksOf();
    expect(codeOf(await a.gql(CREATE, { input: { conversationId } }, u.token))).toBe('NOT_FOUND');
    expect(await linksOf()).toBe(linkCount);
    await within(1000, async () => (await b.gql(SHARED, { token })).data.shared === null);
    await a.app.cache.clearNamespace('resp');
    await new Promise((r) => setTimeout(r, 1100));
    for (const app of [a, b]) {
      expect((await app.gql(SHARED, { token })).data.shared).toBeNull();
      expect((await app.gql(SHARED, { token: forkToken })).data.shared.messages).toHaveLength(3);
    }
  });

  it('an anonymous caller reaches nothing but shared and exportShared (every root field walked); a share token is no login', async () => {
    const schema = buildSchema(readFileSync(join(__dirname, '..', 'schema', 'schema.graphql'), 'utf8'));
    // Open without signing in, each for its own reason (none reads anything of a user's), and what it answers here.
    const OPEN: Record<string, string> = {
      'Query.shared': 'answered', // a share link's snapshot (null: the token names nothing)
      'Query.exportShared': 'answered', // the same snapshot as a file
      'Query.models': 'answered', // the curated model catalog (publicly cacheable)
      'Mutation.register': 'BAD_USER_INPUT', // signing up ("x" is no email)
      'Mutation.login': 'UNAUTHENTICATED', // signing in (wrong email or password)
    };
    const seen: Record<string, string> = {};
    for (const [kind, type] of [
      ['query', schema.getQueryType()!],
      ['mutation', schema.getMutationType()!],
    ] as const) {
      for (const field of Object.values(type.getFields())) {
        const name = `${type.name}.${field.name}`;
        const res = await a.gql(`${kind} { ${fieldDocument(field)} }`, {});
        const code = codeOf(res);
        // Refused means refused before anything: UNAUTHENTICATED (HTTP 401), no data.
        if (name in OPEN) seen[name] = code ?? 'answered';
        else seen[name] = code === 'UNAUTHENTICATED' && res.status === 401 && !res.data?.[field.name] ? code : `${code} (${res.status})`;
      }
    }
    for (const field of Object.values(schema.getSubscriptionType()!.getFields())) {
      const sub = await subscribe(a.url, `subscription { ${fieldDocument(field)} }`, {});
      let code = `HTTP ${sub.status}`;
      if (sub.status === 200) for await (const message of sub.events) code = message.errors?.[0]?.extensions?.code ?? 'answered';
      sub.close();
      seen[`Subscription.${field.name}`] = code === 'UNAUTHENTICATED' || sub.status === 401 ? 'UNAUTHENTICATED' : code;
    }
    expect(Object.keys(seen).length).toBeGreaterThan(50);
    // What a link shows has no field for an owner, an email, a key label, a provider, a cost or a token count.
    const sharedFields = ['SharedView', 'SharedMessage', 'SharedComparison', 'SharedResponse'].flatMap((type) =>
      Object.keys((schema.getType(type) as GraphQLObjectType).getFields()).map((f) => `${type}.${f}`),
    );
    expect(sharedFields.length).toBeGreaterThan(10);
    expect(sharedFields.filter((f) => /owner|email|user|key|provider|cost|token|usd/i.test(f))).toEqual([]);
    expect(seen).toEqual(Object.fromEntries(Object.keys(seen).map((name) => [name, OPEN[name] ?? 'UNAUTHENTICATED'])));

    // What an anonymous caller may ask: the shared view and its export (null for a token that names nothing).
    const open = await a.gql(`query($t: String!) { shared(token: $t) { title } exportShared(token: $t) }`, { t: 'C'.repeat(43) });
    expect(open.errors).toBeUndefined();
    expect(open.data).toEqual({ shared: null, exportShared: null });

    // A live link's token signs nobody in: as a bearer token it is refused (401), and it opens nothing but its snapshot.
    const u = await userWithKeys('bearer');
    const run = await a.gql(RUN, { input: { prompt: 'Write a haiku about salt', models: [MODEL_A, MODEL_B] } }, u.token);
    const { token } = await share(u.token, { conversationId: run.data.runComparison.conversation.id });
    for (const query of [`query { me { id } }`, `query { conversations { nodes { id } } }`, LINKS]) {
      const res = await a.gql(query, {}, token);
      expect([query, res.status, codeOf(res)]).toEqual([query, 401, 'UNAUTHENTICATED']);
    }
    expect((await a.gql(SHARED, { token })).data.shared.messages).toHaveLength(1);
  });

  it('expired, revoked, deleted, unknown and malformed tokens answer exactly alike (null, never FORBIDDEN); nothing written', async () => {
    const u = await userWithKeys('alike');
    const other = await a.signUp('alike-other');
    const run = await a.gql(RUN, { input: { prompt: 'Write a haiku about fog', models: [MODEL_A, MODEL_B] } }, u.token);
    const conversationId = run.data.runComparison.conversation.id;
    const comparisonId = run.data.runComparison.id;
    const revoked = await share(u.token, { comparisonId });
    const expired = await share(u.token, { comparisonId, expiresInHours: 1 });
    const deleted = await share(u.token, { conversationId });
    // A link that expires in a few seconds (as if made an hour ago): long enough for six hot reads on a loaded machine.
    const [{ at }] = (
      await withClient(a.db.url, (c) =>
        c.query(`update share_links set expires_at = now() + interval '4 seconds' where id = $1 returning expires_at as at`, [
          expired.link.id,
        ]),
      )
    ).rows;
    // Each read while live on both instances (so the edge, the shared cache and the memos hold them), then revoked,
    // expired, deleted.
    for (const app of [a, b]) for (const t of [revoked, expired, deleted]) await hotAtEdge(app, t.token);
    expect((await a.gql(REVOKE, { id: revoked.link.id }, u.token)).errors).toBeUndefined();
    expect((await a.gql(DELETE_CONVERSATION, { id: conversationId }, u.token)).errors).toBeUndefined();
    // Past the expiry and every memo's second: each instance asks the cache or PostgreSQL.
    await new Promise((r) => setTimeout(r, Math.max(1100, new Date(at).getTime() - Date.now() + 50)));
    await Promise.all([a, b].map((app) => app.app.services.shareLinks.flushViews()));
    const links = () =>
      withClient(a.db.url, async (c) =>
        JSON.stringify((await c.query(`select * from share_links where owner_id = $1 order by id`, [u.userId])).rows),
      );
    const before = await links();

    const tokens: Record<string, string> = {
      revoked: revoked.token,
      expired: expired.token,
      deleted: deleted.token,
      unknown: 'Z'.repeat(43),
      'one short': revoked.token.slice(0, 42),
      'one long': `${revoked.token}A`,
      'another alphabet': `${revoked.token.slice(0, 42)}+`,
      padded: `${revoked.token.slice(0, 42)}=`,
      empty: '',
    };
    // Per reader (anonymous, the owner, someone else) and instance: one answer, whatever the token.
    for (const [reader, bearer] of [
      ['anonymous', undefined],
      ['owner', u.token],
      ['other', other.token],
    ] as const) {
      for (const app of [a, b]) {
        const answers = new Map<string, string[]>();
        for (const [name, token] of Object.entries(tokens)) {
          const view = await app.gql(SHARED, { token }, bearer);
          const file = await app.gql(EXPORT_SHARED, { token, format: 'MARKDOWN' }, bearer);
          const answer = JSON.stringify([view.status, view.raw, view.headers.get('cache-control'), file.status, file.raw]);
          answers.set(answer, [...(answers.get(answer) ?? []), name]);
        }
        expect([reader, [...answers.values()]]).toEqual([reader, [Object.keys(tokens)]]);
        const [[status, raw, , fileStatus, fileRaw]] = [...answers.keys()].map((k) => JSON.parse(k));
        expect([status, JSON.parse(raw), fileStatus, JSON.parse(fileRaw)]).toEqual([
          200,
          { data: { shared: null } },
          200,
          { data: { exportShared: null } },
        ]);
      }
    }
    // No view counted, nothing changed: the owner's link rows are as they were.
    await Promise.all([a, b].map((app) => app.app.services.shareLinks.flushViews()));
    expect(await links()).toBe(before);
  });

  it('limits shared reads per IP', async () => {
    const limited = await createTestApp({
      db: a.db,
      env: { CACHE_PREFIX: `t-share-rl-${Date.now().toString(36)}`, REDIS_URL: redisUrlForTests(), RATE_LIMIT_SHARED_PER_IP: '3' },
    });
    try {
      const codes = [];
      for (let i = 0; i < 5; i++) codes.push(codeOf(await limited.gql(SHARED, { token: 'B'.repeat(43) })) ?? 'OK');
      expect(codes).toEqual(['OK', 'OK', 'OK', 'RATE_LIMITED', 'RATE_LIMITED']);
    } finally {
      await limited.close();
    }
  });

  it('the public edge answers a hot page: per-IP point and entry in one round trip, one count with the limiter, no log line', async () => {
    const prefix = `t-share-edge-${Date.now().toString(36)}`;
    const edge = await createTestApp({
      db: a.db,
      env: { CACHE_PREFIX: prefix, REDIS_URL: redisUrlForTests(), RATE_LIMIT_SHARED_PER_IP: '6' },
    });
    const redis = createClient({ url: await sharedServerUrl() });
    await redis.connect();
    try {
      const u = await userWithKeys('edge');
      const run = await a.gql(RUN, { input: { prompt: 'Write a haiku about stones', models: [MODEL_A, MODEL_B] } }, u.token);
      const { token } = await share(u.token, { comparisonId: run.data.runComparison.id });
      const requestLines = () => edge.logs.filter((line) => line.includes('"path":"/graphql"')).length;
      const reads: Array<{ code: string; cache: string | null; logged: number; raw: string }> = [];
      const read = async (headers: Record<string, string> = {}) => {
        const before = requestLines();
        const res = await edge.gql(SHARED, { token }, undefined, headers);
        // The general path's line is written when its response finishes: wait for it, or for nothing on a hit.
        const logged = await within(1000, async () => requestLines() - before >= (res.headers.get('x-cache') === 'HIT' ? 0 : 1)).then(
          () => requestLines() - before,
        );
        reads.push({ code: codeOf(res) ?? 'OK', cache: res.headers.get('x-cache'), logged, raw: res.raw });
      };
      await read(); // the document is new to this instance: Apollo answers it, one point spent by the limiter
      await read(); // the edge spends a point with its lookup, which misses: handed on admitted (no second point), stored
      await read(); // the edge: a point and a hit in one round trip, no line
      await read({ 'cache-control': 'no-cache' }); // a reload goes the general way: one point, computed and stored again
      await read();
      await read();
      await read(); // the 7th: refused by the edge's script (nothing spent), answered by the general path: RATE_LIMITED
      expect(reads.map((r) => [r.code, r.cache, r.logged])).toEqual([
        ['OK', null, 1],
        ['OK', 'MISS', 1],
        ['OK', 'HIT', 0],
        ['OK', 'MISS', 1],
        ['OK', 'HIT', 0],
        ['OK', 'HIT', 0],
        ['RATE_LIMITED', null, 1],
      ]);
      for (const r of reads.slice(1, 6)) expect(r.raw).toBe(reads[0]!.raw);
      // The edge and the limiter keep one count, under the limiter's key; refused reads are not in it.
      expect(await redis.get(`${prefix}:rl:shared_ip:127.0.0.1`)).toBe('6');
    } finally {
      await redis.close();
      await edge.close();
    }
  });
});
