/**
 * Automatic persisted queries over HTTP (Apollo's APQ protocol, documents in
 * the cache port's `apq` namespace) and the trusted-documents manifest.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePersistedDocuments } from '../src/graphql/plugins/persisted-documents';
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { createTestApp, sharedRedisKeys, type TestApp } from './helpers/test-app';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const extensions = (hash: string) => ({ persistedQuery: { version: 1, sha256Hash: hash } });

interface Reply {
  status: number;
  headers: Headers;
  body: { data?: any; errors?: Array<{ message: string; extensions?: { code?: string } }> };
}

async function parse(res: Response): Promise<Reply> {
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : {} };
}

/** POST with the full query and its hash: registers the document. */
async function register(
  t: TestApp,
  query: string,
  opts: { token?: string; hash?: string; variables?: Record<string, unknown> } = {},
): Promise<Reply> {
  const res = await fetch(`${t.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
    body: JSON.stringify({ query, variables: opts.variables, extensions: extensions(opts.hash ?? sha256(query)) }),
  });
  return parse(res);
}

/** GET with only the hash. `preflight: false` sends a "simple" request (what CSRF prevention blocks). */
async function getByHash(
  t: TestApp,
  hash: string,
  opts: { token?: string; preflight?: boolean; variables?: Record<string, unknown> } = {},
): Promise<Reply> {
  const params = new URLSearchParams({ extensions: JSON.stringify(extensions(hash)) });
  if (opts.variables) params.set('variables', JSON.stringify(opts.variables));
  const res = await fetch(`${t.url}/graphql?${params}`, {
    headers: {
      ...(opts.preflight === false ? {} : { 'apollo-require-preflight': 'true' }),
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
    },
  });
  return parse(res);
}

const CONVERSATIONS = 'query Sidebar($first: Int) { conversations(first: $first) { nodes { id title } totalCount } }';
const CATALOG = 'query Catalog { models(provider: OPENAI) { id displayName } }';

const apps: TestApp[] = [];
afterAll(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});
async function app(env: Record<string, string> = {}, db?: TestApp['db']): Promise<TestApp> {
  const t = await createTestApp({ env, db });
  apps.push(t);
  return t;
}

function apqSuite(storeEnv: () => Record<string, string>) {
  let t: TestApp;
  let user: { token: string };
  beforeAll(async () => {
    t = await app(storeEnv());
    user = await t.signUp('apq');
    await t.gql(`mutation { createConversation(title: "persisted") { id } }`, {}, user.token);
  });

  it('an unknown hash answers PERSISTED_QUERY_NOT_FOUND', async () => {
    const res = await getByHash(t, sha256('query Never { me { id } }'), { token: user.token });
    expect(res.body.errors?.[0]?.extensions?.code).toBe('PERSISTED_QUERY_NOT_FOUND');
    expect(res.body.data).toBeUndefined();
  });

  it('after registration over POST, GET with only the hash works (with a preflight header), and is cacheable', async () => {
    // Its own user: another test's conversations must not show up here.
    const user = await t.signUp('apq-get');
    await t.gql(`mutation { createConversation(title: "persisted") { id } }`, {}, user.token);
    const query = `${CONVERSATIONS} # ${Math.random()}`;
    const hash = sha256(query);
    expect((await getByHash(t, hash, { token: user.token })).body.errors?.[0]?.extensions?.code).toBe('PERSISTED_QUERY_NOT_FOUND');
    const registered = await register(t, query, { token: user.token, variables: { first: 5 } });
    expect(registered.body.errors).toBeUndefined();
    expect(registered.body.data.conversations.nodes[0].title).toBe('persisted');

    const byHash = await getByHash(t, hash, { token: user.token, variables: { first: 5 } });
    expect(byHash.status).toBe(200);
    expect(byHash.body).toEqual(registered.body);
    expect(byHash.headers.get('cache-control')).toBe('private, no-cache');
    expect(byHash.headers.get('etag')).toMatch(/^W\/"/);

    // CSRF prevention stays on: a simple GET (no preflight-forcing header) is refused before anything runs.
    const simple = await getByHash(t, hash, { token: user.token, preflight: false, variables: { first: 5 } });
    expect(simple.status).toBe(400);
    expect(JSON.stringify(simple.body)).not.toContain('persisted');
  });

  it('anonymous catalog by hash is publicly cacheable', async () => {
    await register(t, CATALOG);
    const res = await getByHash(t, sha256(CATALOG));
    expect(res.status).toBe(200);
    expect(res.body.data.models[0]).toEqual({ id: 'openai:gpt-5', displayName: 'GPT-5' });
    expect(res.headers.get('cache-control')).toBe('public, max-age=3600');
  });

  it('refuses a hash that is not the sha256 of the query, and stores nothing under it', async () => {
    const query = '{ me { id } }';
    const wrong = sha256('something else');
    const res = await register(t, query, { token: user.token, hash: wrong });
    expect(res.status).toBe(400);
    expect(res.body.errors?.[0]?.message).toMatch(/sha does not match/);
    expect(res.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(res.body.data).toBeUndefined();
    expect((await getByHash(t, wrong, { token: user.token })).body.errors?.[0]?.extensions?.code).toBe('PERSISTED_QUERY_NOT_FOUND');
  });

  it('refuses a mutation over GET even when its document is registered', async () => {
    const mutation = `mutation { createConversation(title: "via get") { id } }`;
    const registered = await register(t, mutation, { token: user.token });
    expect(registered.body.errors).toBeUndefined();
    const before = await t.gql(`{ conversations { totalCount } }`, {}, user.token);

    const res = await getByHash(t, sha256(mutation), { token: user.token });
    expect(res.status).toBe(405);
    expect(res.body.data).toBeUndefined();
    const after = await t.gql(`{ conversations { totalCount } }`, {}, user.token);
    expect(after.data.conversations.totalCount).toBe(before.data.conversations.totalCount);
  });

  it('counts APQ lookups as the `apq` cache in metrics', async () => {
    // A miss (unknown hash) and a hit (registered, then fetched by hash) of its own.
    const query = `${CATALOG} # metrics ${Math.random()}`;
    expect((await getByHash(t, sha256(query))).body.errors?.[0]?.extensions?.code).toBe('PERSISTED_QUERY_NOT_FOUND');
    await register(t, query);
    expect((await getByHash(t, sha256(query))).status).toBe(200);
    const text = await (await fetch(`${t.url}/metrics`)).text();
    expect(text).toMatch(/llmselect_cache_hits_total\{cache="apq"\} [1-9]/);
    expect(text).toMatch(/llmselect_cache_misses_total\{cache="apq"\} [1-9]/);
  });
}

describe('APQ (in-memory store)', () => {
  apqSuite(() => ({}));
});

describeRedis('APQ (Redis)', () => {
  apqSuite(() => ({ REDIS_URL: redisUrlForTests() }));

  it('a document registered on one instance is usable by hash on another (shared Redis)', async () => {
    const prefix = `t-apq-${Date.now()}`;
    const a = await app({ REDIS_URL: redisUrlForTests(), CACHE_PREFIX: prefix });
    const b = await app({ REDIS_URL: redisUrlForTests(), CACHE_PREFIX: prefix }, a.db);
    const { token } = await a.signUp('shared');
    const query = `query Me { me { id email } } # shared ${Math.random()}`;
    expect((await getByHash(b, sha256(query), { token })).body.errors?.[0]?.extensions?.code).toBe('PERSISTED_QUERY_NOT_FOUND');
    const registered = await register(a, query, { token });
    expect(registered.body.errors).toBeUndefined();
    const onB = await getByHash(b, sha256(query), { token });
    expect(onB.status).toBe(200);
    expect(onB.body.data).toEqual(registered.body.data);

    // Stored once, under the cache port's namespace, keyed by the bare hash.
    const keys = await sharedRedisKeys(`${prefix}:apq:*`);
    expect(keys.map((k) => k.key)).toEqual([`${prefix}:apq:${sha256(query)}`]);
    expect(keys[0]!.pttl).toBeGreaterThan(6 * 24 * 3600 * 1000);
  });
});

describe('flushCaches(PERSISTED_QUERIES)', () => {
  it('forgets registered documents; they can be registered again', async () => {
    const t = await app({ ADMIN_EMAILS: 'apq-admin@example.com' });
    const admin = await t.gql(`mutation { register(email: "apq-admin@example.com", password: "correct horse battery") { token } }`);
    const token = admin.data.register.token as string;
    await register(t, CATALOG);
    expect((await getByHash(t, sha256(CATALOG))).body.data).toBeDefined();
    const flushed = await t.gql(`mutation { flushCaches(scope: PERSISTED_QUERIES) { scope flushedAt } }`, {}, token);
    expect(flushed.data.flushCaches.scope).toBe('PERSISTED_QUERIES');
    expect((await getByHash(t, sha256(CATALOG))).body.errors?.[0]?.extensions?.code).toBe('PERSISTED_QUERY_NOT_FOUND');
    await register(t, CATALOG);
    expect((await getByHash(t, sha256(CATALOG))).body.data).toBeDefined();
  });
});

describe('trusted documents (persisted-documents.json)', () => {
  const TRUSTED = 'query TrustedCatalog { models(provider: ANTHROPIC) { id } }';
  const TRUSTED_APOLLO = 'query TrustedTypename { __typename }';
  let dir: string;
  let plainManifest: string;
  let apolloManifest: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'llmselect-docs-'));
    plainManifest = join(dir, 'persisted-documents.json');
    writeFileSync(plainManifest, JSON.stringify({ [sha256(TRUSTED)]: TRUSTED }));
    apolloManifest = join(dir, 'apollo-manifest.json');
    writeFileSync(
      apolloManifest,
      JSON.stringify({
        format: 'apollo-persisted-query-manifest',
        version: 1,
        operations: [
          { id: sha256(TRUSTED), body: TRUSTED, name: 'TrustedCatalog', type: 'query' },
          { id: sha256(TRUSTED_APOLLO), body: TRUSTED_APOLLO, name: 'TrustedTypename', type: 'query' },
        ],
      }),
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('serves manifest hashes without registration; ad-hoc operations still run when not restricted', async () => {
    const t = await app({ PERSISTED_DOCUMENTS_PATH: plainManifest });
    const res = await getByHash(t, sha256(TRUSTED));
    expect(res.status).toBe(200);
    expect(res.body.data.models.length).toBeGreaterThan(0);
    expect((await t.gql('{ __typename }')).data).toEqual({ __typename: 'Query' });
  });

  it('TRUSTED_DOCUMENTS_ONLY: refuses anything not in the manifest (FORBIDDEN), APQ registration included', async () => {
    const t = await app({ PERSISTED_DOCUMENTS_PATH: apolloManifest, TRUSTED_DOCUMENTS_ONLY: 'true' });
    for (const doc of [TRUSTED, TRUSTED_APOLLO]) {
      const res = await getByHash(t, sha256(doc));
      expect(res.status).toBe(200);
      expect(res.body.errors).toBeUndefined();
    }
    // The same text sent in full is the same trusted document.
    expect((await t.gql(TRUSTED)).data.models.length).toBeGreaterThan(0);

    const adHoc = await t.gql('{ models { id } }');
    expect(adHoc.status).toBe(403);
    expect(adHoc.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(adHoc.errors?.[0]?.message).toMatch(/trusted documents/);
    expect(adHoc.data).toBeUndefined();

    // Registering through APQ does not get a document past the allowlist.
    const sneaky = 'query Sneaky { models { id name } }';
    const reg = await register(t, sneaky);
    expect(reg.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect((await getByHash(t, sha256(sneaky))).body.errors?.[0]?.extensions?.code).toBe('PERSISTED_QUERY_NOT_FOUND');
  });

  it('refuses to start with a manifest whose ids are not the sha256 of their documents', async () => {
    expect(() => parsePersistedDocuments({ [sha256('x')]: TRUSTED })).toThrow(/not the sha256 of its document/);
    expect(() => parsePersistedDocuments({ format: 'apollo-persisted-query-manifest', version: 2, operations: [] })).toThrow(/version 2/);
    expect(() => parsePersistedDocuments(['nope'])).toThrow(/expected an object/);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ abc: TRUSTED }));
    const host = await app(); // its database; a failed build must not leave one behind
    await expect(createTestApp({ db: host.db, env: { PERSISTED_DOCUMENTS_PATH: bad } })).rejects.toThrow(/not a lower-case hex sha256/);
    await expect(createTestApp({ db: host.db, env: { TRUSTED_DOCUMENTS_ONLY: 'true' } })).rejects.toThrow(/PERSISTED_DOCUMENTS_PATH/);
  });
});
