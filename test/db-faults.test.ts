/**
 * Connections cut under statements (issue 16, case 4). Before, an error with
 * no SQLSTATE (a reset or terminated connection) was logged by pino's plain
 * serializer: its message was MikroORM's statement with every value inlined
 * (emails, argon2id hashes, sealed API keys, message text); and the same
 * faults answered INTERNAL_SERVER_ERROR with HTTP 200 ("Transaction query
 * already complete") instead of 503.
 */
import { classifyError } from '../src/graphql/format-error';
import { isConnectionError } from '../src/db/connection-errors';
import { serializeError } from '../src/observability/error-serializer';
import { createTestDatabase, type TestDatabase } from './helpers/database';
import { FaultProxy } from './helpers/fault-proxy';
import { createTestApp, type TestApp } from './helpers/test-app';

let db: TestDatabase;
let proxy: FaultProxy;
let t: TestApp;
beforeAll(async () => {
  db = await createTestDatabase('faults');
  const proxied = await FaultProxy.forUrl(db.url);
  proxy = proxied.proxy;
  t = await createTestApp({ db: { ...db, url: proxied.url }, env: { NODE_ENV: 'production', DB_POOL_MAX: '3' } });
});
afterAll(async () => {
  proxy?.heal();
  await t?.close();
  await proxy?.close();
  await db?.drop();
});

const REGISTER = `mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token } }`;
const SAVE_KEY = `mutation($i: SaveApiKeyInput!) { saveApiKey(input: $i) { id } }`;

describe('a connection cut under a statement', () => {
  it("is logged with the statement's placeholders, never its values, and answers 503 SERVICE_UNAVAILABLE with Retry-After", async () => {
    const { token } = await t.signUp('faults');
    const secrets = { email: 'cut-victim@example.com', password: 'cut password 12345', apiKey: 'sk-live-CUT-SECRET-777777' };
    const before = t.logs.length;

    const cutUser = proxy.cutWhenSent(/insert into "users"/, { at: 'request' });
    const register = await t.gql(REGISTER, { e: secrets.email, p: secrets.password });
    await cutUser;
    const cutKey = proxy.cutWhenSent(/insert into "api_keys"/, { at: 'request' });
    const saved = await t.gql(SAVE_KEY, { i: { provider: 'OPENAI', apiKey: secrets.apiKey } }, token);
    await cutKey;

    for (const answer of [register, saved]) {
      expect(answer.status).toBe(503);
      expect(answer.headers.get('retry-after')).toBe('2');
      expect(answer.errors?.map((e) => e.extensions?.code)).toEqual(['SERVICE_UNAVAILABLE']);
      expect(answer.raw).not.toMatch(/insert|terminated|Transaction query/i);
    }

    const lines = t.logs.slice(before);
    const text = lines.join('\n');
    expect(text).not.toContain(secrets.email);
    expect(text).not.toContain(secrets.apiKey);
    expect(text).not.toContain('$argon2id$');
    expect(text).not.toMatch(/values \('/);
    // The failed statements are logged, by their placeholders.
    const errors = lines.map((l) => JSON.parse(l) as { msg: string; err?: { sql?: string; message?: string } }).filter((l) => l.err);
    const statements = errors.map((l) => `${l.err!.sql ?? ''} ${l.err!.message ?? ''}`).join('\n');
    expect(statements).toMatch(/insert into "users" \(.*\) values \(\$1, \$2/);
    expect(statements).toMatch(/insert into "api_keys" \(.*\) values \(\$1, \$2/);

    proxy.heal();
    expect((await t.gql(REGISTER, { e: secrets.email, p: secrets.password })).status).toBe(200);
  });

  it('"Transaction query already complete" (its connection broke) is SERVICE_UNAVAILABLE, not INTERNAL_SERVER_ERROR', async () => {
    const knex = t.app.orm.em.getConnection().getKnex();
    const trx = await knex.transaction();
    await trx.rollback();
    const error = await trx.raw('select 1').then(
      () => null,
      (e: unknown) => e,
    );
    expect((error as Error).message).toMatch(/Transaction query already complete/);
    expect(isConnectionError(error)).toBe(true);
    expect(classifyError({ message: (error as Error).message }, error, true).formatted.extensions).toEqual({ code: 'SERVICE_UNAVAILABLE' });
  });

  it('a driver error without a SQLSTATE whose message inlines values is serialised with the literals masked', () => {
    const error = Object.assign(
      new Error(
        `insert into "users" ("email", "password_hash") values ('x@example.com', '$argon2id$v=19$secret') ` +
          '- Connection terminated unexpectedly',
      ),
      { name: 'ConnectionException' },
    );
    const logged = JSON.stringify(serializeError(error));
    expect(logged).not.toContain('x@example.com');
    expect(logged).not.toContain('argon2id');
    expect(logged).toContain('Connection terminated unexpectedly');
  });
});
