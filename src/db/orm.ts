/**
 * MikroORM setup: options shared by the app and the CLI (`mikro-orm.config.ts`),
 * pool bounds from config, the query observer, and live pool statistics.
 */
import { Migrator } from '@mikro-orm/migrations';
import { defineConfig, MikroORM, type Options } from '@mikro-orm/postgresql';
import { join } from 'node:path';
import type { PoolConfig } from '../config';
import { withTimeout } from '../timeout';
import type { QueryObserver } from './query-observer';

export type Orm = MikroORM;

export interface OrmOptionsInput {
  clientUrl: string;
  pool: PoolConfig;
  entities: Function[];
  observer?: QueryObserver;
  /** Postgres schema, for tests that isolate by schema rather than by database. */
  schema?: string;
}

/** Where migrations live: `migrations/*.ts` under ts-node/swc, `dist/migrations/*.js` when built. */
const MIGRATIONS_DIR = join(__dirname, '..', '..', 'migrations');

export function createOrmOptions(input: OrmOptionsInput): Options {
  return defineConfig({
    clientUrl: input.clientUrl,
    entities: input.entities,
    schema: input.schema,
    discovery: { warnWhenNoEntities: true },
    // MikroORM would otherwise CREATE a database that DATABASE_URL names but
    // that does not exist: a typo must stop startup, not start an empty database.
    ensureDatabase: false,
    extensions: [Migrator],
    migrations: {
      tableName: 'mikro_orm_migrations',
      path: MIGRATIONS_DIR,
      pathTs: MIGRATIONS_DIR,
      glob: '!(*.d).{js,ts}',
      transactional: true,
      allOrNothing: true,
      snapshot: false,
      emit: 'ts',
    },
    pool: {
      min: input.pool.min,
      max: input.pool.max,
      acquireTimeoutMillis: input.pool.acquireTimeoutMs,
      idleTimeoutMillis: input.pool.idleTimeoutMs,
    },
    // Entities are never loaded implicitly: relations go through request-scoped loaders.
    forceUndefined: false,
    loadStrategy: 'select-in',
    // knex reports dropped pool connections itself ("Connection Error: …"): into our log, not the console.
    driverOptions: input.observer ? { log: knexLog(input.observer) } : {},
    debug: input.observer ? ['query'] : false,
    loggerFactory: input.observer ? () => input.observer! : undefined,
    allowGlobalContext: false,
  });
}

/**
 * `MikroORM.init` plus a round trip, so a database that is missing or
 * unreachable stops startup with PostgreSQL's reason in one line
 * (`database "x" does not exist`) instead of failing the first request.
 */
export async function connectOrm(options: Options): Promise<Orm> {
  const orm = await MikroORM.init(options);
  const check = await orm.checkConnection();
  if (!check.ok) {
    await orm.close(true).catch(() => undefined);
    const where = describeDatabaseUrl(String(options.clientUrl ?? ''));
    throw new Error(`cannot use the database ${where}: ${oneLine(check.reason)}`);
  }
  return orm;
}

/** `host:port/name` of a connection URL, never its password. */
export function describeDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return '(unparsable DATABASE_URL)';
  }
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function knexLog(observer: QueryObserver) {
  return {
    warn: (message: unknown) => observer.warn('knex', String(message)),
    error: (message: unknown) => observer.error('knex', String(message)),
    deprecate: (method: unknown, alternative: unknown) => observer.warn('knex', `${String(method)} is deprecated, use ${String(alternative)}`),
    debug: () => undefined,
  };
}

export interface PoolStats {
  size: number;
  used: number;
  free: number;
  pending: number;
  max: number;
}

/** Reads the live tarn pool under knex. */
export function poolStats(orm: Orm): PoolStats {
  // knex keeps the tarn pool on its client; it is created lazily on first use.
  const client = orm.em.getConnection().getKnex().client as {
    pool?: {
      numUsed(): number;
      numFree(): number;
      numPendingAcquires(): number;
      numPendingCreates(): number;
      max: number;
    };
    config: { pool?: { max?: number } };
  };
  const pool = client.pool;
  if (!pool) return { size: 0, used: 0, free: 0, pending: 0, max: client.config.pool?.max ?? 0 };
  const used = pool.numUsed();
  const free = pool.numFree();
  return {
    size: used + free + pool.numPendingCreates(),
    used,
    free,
    pending: pool.numPendingAcquires(),
    max: pool.max,
  };
}

/** True when a `SELECT 1` answers within `timeoutMs`. */
export async function pingDatabase(orm: Orm, timeoutMs = 1_000): Promise<boolean> {
  try {
    await withTimeout(orm.em.getConnection().execute('select 1'), timeoutMs, 'database ping');
    return true;
  } catch {
    return false;
  }
}

export { MikroORM };
