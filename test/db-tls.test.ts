/**
 * `sslmode` in DATABASE_URL honoured as libpq honours it (issue 16, case 5).
 * Before, MikroORM dropped the URL's query string: `?sslmode=require`
 * against a PostgreSQL without TLS started and wrote in plaintext
 * (`pg_stat_ssl.ssl = f`) where psql refuses. Runs a private cluster whose
 * TLS each test turns on or off.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENTITIES } from '../mikro-orm.config';
import { buildApp } from '../src/app';
import { loadConfig } from '../src/config';
import { connectOrm, createOrmOptions } from '../src/db/orm';
import { type PrivatePostgres, startPrivatePostgres } from './helpers/private-postgres';

let pg: PrivatePostgres;
beforeAll(async () => {
  pg = await startPrivatePostgres();
}, 120_000);
afterAll(() => pg?.stop());

const withMode = (mode: string) => `${pg.url}?sslmode=${mode}`;

/** Whether the ORM's own pooled connection is encrypted, as the server sees it. */
async function encrypted(url: string, caFile?: string): Promise<boolean> {
  const orm = await connectOrm(
    createOrmOptions({
      clientUrl: url,
      caFile,
      pool: { min: 0, max: 1, acquireTimeoutMs: 5_000, idleTimeoutMs: 1_000 },
      entities: ENTITIES,
    }),
  );
  try {
    const [row] = await orm.em.getConnection().execute<Array<{ ssl: boolean }>>('select ssl from pg_stat_ssl where pid = pg_backend_pid()');
    return row!.ssl;
  } finally {
    await orm.close(true);
  }
}

async function startFailure(url: string, caFile?: string): Promise<string | undefined> {
  const config = loadConfig({
    NODE_ENV: 'test',
    DATABASE_URL: url,
    DATABASE_CA_FILE: caFile,
    MIGRATE_ON_START: 'false',
    JWT_SECRET: 'test-secret-that-is-long-enough-for-hs256-0123456789',
    ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
    LOG_LEVEL: 'silent',
  });
  return buildApp(config).then(
    async (app) => {
      await app.close();
      return undefined;
    },
    (error: Error) => error.message,
  );
}

describe('sslmode in DATABASE_URL', () => {
  it('sslmode=require against a server without TLS stops startup with one line', async () => {
    await pg.setSsl(false);
    const failure = await startFailure(withMode('require'));
    expect(failure).toMatch(
      /^cannot use the database 127\.0\.0\.1:\d+\/llmselect \(sslmode=require\): The server does not support SSL connections$/,
    );
    // verify-full too; prefer and disable fall back to / use plaintext, as libpq does.
    expect(await startFailure(withMode('verify-full'), pg.caFile)).toMatch(
      /\(sslmode=verify-full\): The server does not support SSL connections$/,
    );
    expect(await encrypted(withMode('prefer'))).toBe(false);
    expect(await encrypted(withMode('disable'))).toBe(false);
  });

  it('sslmode=require against a server with TLS connects encrypted (pg_stat_ssl.ssl = t); disable, no sslmode stay plaintext', async () => {
    await pg.setSsl(true);
    expect(await encrypted(withMode('require'))).toBe(true);
    expect(await encrypted(withMode('prefer'))).toBe(true);
    expect(await encrypted(withMode('allow'))).toBe(false);
    expect(await encrypted(withMode('disable'))).toBe(false);
    expect(await encrypted(pg.url)).toBe(false);
  });

  it('verify-ca and verify-full check the certificate against DATABASE_CA_FILE; a wrong CA stops startup with one line', async () => {
    await pg.setSsl(true);
    expect(await encrypted(withMode('verify-full'), pg.caFile)).toBe(true);
    expect(await encrypted(withMode('verify-ca'), pg.caFile)).toBe(true);
    const otherDir = mkdtempSync(join(tmpdir(), 'llmselect-ca-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=other',
        '-keyout',
        join(otherDir, 'k'),
        '-out',
        join(otherDir, 'ca.crt'),
      ],
      { stdio: 'ignore' },
    );
    const failure = await startFailure(withMode('verify-full'), join(otherDir, 'ca.crt'));
    expect(failure).toMatch(/^cannot use the database 127\.0\.0\.1:\d+\/llmselect \(sslmode=verify-full\): .*self[- ]signed certificate/);
    expect(failure).not.toContain('\n');
  });
});
