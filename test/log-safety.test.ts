/**
 * Logs carry no values (issue 8, "What to build" 3): a failed SQL statement
 * is logged by its masked text and SQLSTATE only. Before, a failing INSERT
 * was logged whole — argon2 hash, sealed API key and user content included —
 * and PostgreSQL's `detail` ("Failing row contains (…)", "Key (title)=(…)")
 * repeated the values.
 */
import { serializeError } from '../src/observability/error-serializer';
import { withClient } from './helpers/factories';
import { createTestApp, type TestApp } from './helpers/test-app';

let t: TestApp;
beforeAll(async () => {
  // Production: clients see INTERNAL_SERVER_ERROR only; the detail goes to the log, which is what is checked here.
  t = await createTestApp({ env: { NODE_ENV: 'production' } });
});
afterAll(() => t.close());

const internalErrors = () =>
  t.logs
    .map((line) => JSON.parse(line) as { msg: string; err?: Record<string, unknown>; requestId?: string })
    .filter((l) => l.msg === 'internal error');

/** Every string literal of a logged statement is the mask `'?'`. */
function expectLiteralsMasked(sql: unknown) {
  expect(typeof sql).toBe('string');
  expect((sql as string).split("'?'").join('')).not.toContain("'");
}

describe('a failing INSERT', () => {
  it('is logged by its SQL text (literals masked) and SQLSTATE, never its values', async () => {
    const { token } = await t.signUp('logs');
    const secrets = {
      email: 'victim-logs@example.com',
      password: 'hunter2 but longer',
      apiKey: 'sk-live-SECRET-4242424242',
      title: "it's a \\ secret title",
      prompt: 'my private medical question',
    };
    await withClient(t.db.url, async (c) => {
      for (const table of ['users', 'api_keys', 'conversations', 'comparison_results']) {
        await c.query(`alter table ${table} add constraint log_safety_no_insert check (false) not valid`);
      }
    });
    try {
      const results = [
        await t.gql(
          `mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token } }`,
          { e: secrets.email, p: secrets.password },
          undefined,
          { 'x-request-id': 'log-register' },
        ),
        await t.gql(
          `mutation($i: SaveApiKeyInput!) { saveApiKey(input: $i) { id } }`,
          { i: { provider: 'OPENAI', apiKey: secrets.apiKey } },
          token,
          { 'x-request-id': 'log-key' },
        ),
        await t.gql(`mutation($t: String) { createConversation(title: $t) { id } }`, { t: secrets.title }, token, {
          'x-request-id': 'log-title',
        }),
        await t.gql(
          `mutation($i: RunComparisonInput!) { startComparison(input: $i) { id } }`,
          { i: { prompt: secrets.prompt, models: ['openai:a', 'anthropic:b'] } },
          token,
          { 'x-request-id': 'log-prompt' },
        ),
      ];
      for (const res of results)
        expect(res.errors?.[0]).toMatchObject({ message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } });

      const logged = internalErrors();
      expect(logged.map((l) => l.requestId)).toEqual(expect.arrayContaining(['log-register', 'log-key', 'log-title', 'log-prompt']));
      const register = logged.find((l) => l.requestId === 'log-register')!;
      expect(register.err).toMatchObject({
        type: 'CheckConstraintViolationException',
        code: '23514',
        constraint: 'log_safety_no_insert',
        table: 'users',
      });
      // The statement by its placeholders (db/orm.ts takes the inlined values out of the error).
      expect(register.err!.sql).toMatch(
        /^insert into "users" \("id", "created_at", "email", "password_hash", "role"\) values \(\$1, \$2, \$3, \$4, \$5\)/,
      );
      expect(register.err!.message).toBe('new row for relation "users" violates check constraint "log_safety_no_insert"');

      const everything = t.logs.join('\n');
      for (const value of [...Object.values(secrets), token, '$argon2id$', 'Failing row contains', 'secret title'])
        expect(everything).not.toContain(value);
      for (const line of logged) expectLiteralsMasked(line.err!.sql);
    } finally {
      await withClient(t.db.url, async (c) => {
        for (const table of ['users', 'api_keys', 'conversations', 'comparison_results']) {
          await c.query(`alter table ${table} drop constraint log_safety_no_insert`);
        }
      });
    }
  });

  it('drops the values PostgreSQL quotes in a unique violation ("Key (title)=(…) already exists")', async () => {
    const { token } = await t.signUp('logs-unique');
    const title = 'duplicate private title 7f3a';
    await withClient(t.db.url, (c) => c.query('create unique index log_safety_unique_title on conversations (title)'));
    try {
      await t.gql(`mutation($t: String) { createConversation(title: $t) { id } }`, { t: title }, token);
      const second = await t.gql(`mutation($t: String) { createConversation(title: $t) { id } }`, { t: title }, token, {
        'x-request-id': 'log-unique',
      });
      expect(second.errors?.[0]?.extensions?.code).toBe('INTERNAL_SERVER_ERROR');
      const logged = internalErrors().find((l) => l.requestId === 'log-unique')!;
      expect(logged.err).toMatchObject({ code: '23505', constraint: 'log_safety_unique_title' });
      expect(t.logs.join('\n')).not.toContain(title);
    } finally {
      await withClient(t.db.url, (c) => c.query('drop index log_safety_unique_title'));
    }
  });
});

describe('serializeError', () => {
  function driverError(message: string, extra: Record<string, unknown> = {}): Error {
    return Object.assign(new Error(message), {
      name: 'DriverException',
      code: '22P02',
      severity: 'ERROR',
      detail: 'Failing row contains (secret)',
      ...extra,
    });
  }

  it('masks quoted values in the PostgreSQL message too', () => {
    const out = serializeError(
      driverError(`select * from "votes" where "id" = 'x'' or 1=1 - -' - invalid input syntax for type uuid: "x' or 1=1 - -"`),
    ) as Record<string, unknown>;
    expect(out).toMatchObject({
      code: '22P02',
      sql: `select * from "votes" where "id" = '?'`,
      message: 'invalid input syntax for type uuid: "?"',
    });
    expect(JSON.stringify(out)).not.toMatch(/or 1=1|Failing row/);
    const escaped = serializeError(driverError(`update "t" set "a" = E'back\\\\slash', "b" = '' - boom`)) as Record<string, unknown>;
    expect(escaped.sql).toBe(`update "t" set "a" = '?', "b" = '?'`);
  });

  it('omits a statement it cannot mask reliably (fails closed)', () => {
    const out = serializeError(driverError(`insert into "t" values ('unterminated secret - boom`)) as Record<string, unknown>;
    expect(out.message).toBe('[unparseable statement omitted]');
    expect(JSON.stringify(out)).not.toContain('secret');
  });

  it('sanitises a database error found in the cause chain (pino would concatenate its message)', () => {
    const wrapped = new Error('could not store the response', { cause: driverError(`update "x" set "content" = 'private words' - boom`) });
    const out = JSON.stringify(serializeError(wrapped));
    expect(out).toContain('could not store the response');
    expect(out).not.toContain('private words');
  });

  it('leaves other errors to pino', () => {
    expect(serializeError(new TypeError('plain'))).toMatchObject({ type: 'TypeError', message: 'plain' });
  });
});
