/**
 * MikroORM setup: options shared by the app and the CLI (`mikro-orm.config.ts`),
 * pool bounds from config, per-connection timeouts, TLS as `sslmode` asks
 * (`database-url.ts`), error messages without parameter values, the request
 * deadline on every statement (`request-deadline.ts`), migrations, the query
 * observer, and live pool statistics.
 */
import type * as Migrations from '@mikro-orm/migrations';
import { defineConfig, MikroORM, type Options } from '@mikro-orm/postgresql';
import { join } from 'node:path';
import { Client } from 'pg';
import type { PoolConfig } from '../config';
import { currentDeadline, type RequestDeadline, RequestDeadlineError } from './request-deadline';
import { withTimeout } from '../timeout';
import { type DatabaseTarget, parseDatabaseUrl, resolveSsl, type SslOptions } from './database-url';
import type { QueryObserver } from './query-observer';

export type Orm = MikroORM;

export interface OrmOptionsInput {
  clientUrl: string;
  pool: PoolConfig;
  entities: Function[];
  observer?: QueryObserver;
  /** Postgres schema, for tests that isolate by schema rather than by database. */
  schema?: string;
  /**
   * `statement_timeout` / `lock_timeout` of every pooled connection, sent as
   * startup parameters (no extra round trip). 0 or absent: none (the CLI's
   * migrations; `migrate()` lifts them for its own transaction).
   */
  timeouts?: { statementMs: number; lockMs: number };
  /** `DATABASE_CA_FILE`, for `sslmode=verify-ca` / `verify-full`. */
  caFile?: string;
  /**
   * `DATABASE_REPLICA_URLS`: streaming replicas, each with a pool like the primary's and its driver options
   * (TLS, timeouts). Which one a read uses is `replicas.ts`'s decision; absent or empty: none.
   */
  replicaUrls?: string[];
}

/** The parsed URL of each options object, for `connectOrm` (allow / prefer probe, error lines). */
const TARGETS = new WeakMap<object, DatabaseTarget>();
/** The pool's `statement_timeout` of each options object (0: none), for the request deadline's cap. */
const STATEMENT_TIMEOUTS = new WeakMap<object, number>();

/** Where migrations live: `migrations/*.ts` under ts-node/swc, `dist/migrations/*.js` when built. */
const MIGRATIONS_DIR = join(__dirname, '..', '..', 'migrations');

export function createOrmOptions(input: OrmOptionsInput): Options {
  const target = parseDatabaseUrl(input.clientUrl, { caFile: input.caFile });
  const connection: Record<string, unknown> = { ssl: target.ssl };
  if (input.timeouts?.statementMs) connection.statement_timeout = input.timeouts.statementMs;
  if (input.timeouts?.lockMs) connection.lock_timeout = input.timeouts.lockMs;
  const options = defineConfig({
    clientUrl: input.clientUrl,
    entities: input.entities,
    schema: input.schema,
    discovery: { warnWhenNoEntities: true },
    // MikroORM would otherwise CREATE a database that DATABASE_URL names but
    // that does not exist: a typo must stop startup, not start an empty database.
    ensureDatabase: false,
    // No `extensions: [Migrator]`: `migrator(orm)` registers it when a process migrates (see there).
    // Maintained by triggers (votes: 20261128021000; usage: 20261207130000, 20261207220000; deletions' spend: 20261207150000):
    // never entities.
    schemaGenerator: {
      skipTables: [
        'battle_counts',
        'vote_tallies',
        'usage_rollup',
        'usage_rollup_model_day',
        'usage_rollup_model_token_day',
        'usage_rollup_user_day',
        'deleted_spend',
      ],
    },
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
    // MikroORM drops the URL's query string: TLS and timeouts reach node-postgres here.
    driverOptions: input.observer ? { connection, log: knexLog(input.observer) } : { connection },
    debug: input.observer ? ['query'] : false,
    loggerFactory: input.observer ? () => input.observer! : undefined,
    allowGlobalContext: false,
    ...(input.replicaUrls?.length
      ? { replicas: input.replicaUrls.map((url, i) => ({ name: `replica-${i}`, clientUrl: url })), preferReadReplicas: true }
      : {}),
  });
  TARGETS.set(options, target);
  STATEMENT_TIMEOUTS.set(options, input.timeouts?.statementMs ?? 0);
  return options;
}

/** The TLS options of `options` (for `allow` / `prefer`, probed once against the server). */
export async function settleSsl(options: Options): Promise<void> {
  const target = TARGETS.get(options);
  if (!target || (target.sslmode !== 'allow' && target.sslmode !== 'prefer')) return;
  const connection = (options.driverOptions as { connection: { ssl: SslOptions } }).connection;
  connection.ssl = await resolveSsl(target, async (ssl) => {
    const client = new Client({
      host: target.host,
      port: target.port,
      user: target.user,
      password: target.password,
      database: target.database,
      ssl,
      connectionTimeoutMillis: 5_000,
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
    } finally {
      await client.end().catch(() => undefined);
    }
  });
}

/**
 * `MikroORM.init` plus a round trip, so a database that is missing or
 * unreachable stops startup with PostgreSQL's reason in one line
 * (`database "x" does not exist`) instead of failing the first request.
 */
export async function connectOrm(options: Options): Promise<Orm> {
  await settleSsl(options);
  const orm = await MikroORM.init(options);
  withoutValuesInErrors(orm);
  installRequestDeadlines(orm, STATEMENT_TIMEOUTS.get(options) ?? 0);
  const check = await orm.checkConnection();
  if (!check.ok) {
    await orm.close(true).catch(() => undefined);
    const target = TARGETS.get(options);
    const where = describeDatabaseUrl(String(options.clientUrl ?? '')) + (target?.sslmode ? ` (sslmode=${target.sslmode})` : '');
    throw new Error(`cannot use the database ${where}: ${oneLine(check.reason)}`);
  }
  return orm;
}

/**
 * The ORM's migrator. `@mikro-orm/migrations` (with umzug and its CLI
 * libraries: about half of the app's module-load CPU) is loaded here, by the
 * first process that migrates, not by every process that imports the ORM
 * setup: an app started with `MIGRATE_ON_START=false`, a test worker on a
 * migrated copy. The CLI registers it in `mikro-orm.config.ts`.
 */
export function migratorOf(orm: Orm): ReturnType<Orm['getMigrator']> {
  if (!orm.config.getExtension('@mikro-orm/migrator')) {
    const { Migrator } = require('@mikro-orm/migrations') as typeof Migrations;
    Migrator.register(orm);
  }
  return orm.getMigrator();
}

/**
 * Applies pending migrations in one transaction without the pool's statement
 * and lock timeouts (a migration may rewrite a large table or wait for a
 * lock); returns the names applied.
 */
export async function migrate(orm: Orm): Promise<string[]> {
  const connection = orm.em.getConnection();
  const migrator = migratorOf(orm) as ReturnType<Orm['getMigrator']> & { ensureDatabase(): Promise<void> };
  // The migrations table first, on a connection of its own, as `up()` does: inside the
  // transaction below it would wait for a second connection (a pool of one never has it).
  await migrator.ensureDatabase();
  migrator.ensureDatabase = async () => undefined;
  try {
    return await connection.transactional(async (trx) => {
      await connection.execute('set local statement_timeout = 0', [], 'run', trx);
      await connection.execute('set local lock_timeout = 0', [], 'run', trx);
      const applied = await migrator.up({ transaction: trx });
      return applied.map((m) => m.name);
    });
  } finally {
    delete (migrator as { ensureDatabase?: unknown }).ensureDatabase;
  }
}

/**
 * MikroORM sends statements with their parameters inlined, and knex prefixes
 * a failed statement's error message (and stack) with that text: emails,
 * password hashes, sealed keys, message content — connection errors
 * included. Here, where the statement and its parameters are still apart,
 * the inlined text in the error is replaced by the statement with its
 * placeholders (`$1`, `$2`, …), before MikroORM wraps the error and before
 * anything logs or formats it. (`observability/error-serializer.ts` masks
 * literals again, should any text escape this.)
 */
function withoutValuesInErrors(orm: Orm): void {
  for (const each of connections(orm)) {
    const connection = each as unknown as {
      executeQuery<T>(query: string, cb: () => Promise<T>, context?: { query?: string; params?: readonly unknown[] }): Promise<T>;
      getPlatform(): { formatQuery(sql: string, params: readonly unknown[]): string };
      getKnex(): { client: { positionBindings(sql: string): string } };
      __valuesStripped?: boolean;
    };
    if (connection.__valuesStripped) continue;
    connection.__valuesStripped = true;
    const executeQuery = connection.executeQuery.bind(connection);
    connection.executeQuery = async (query, cb, context) => {
      try {
        return await executeQuery(query, cb, context);
      } catch (error) {
        if (error instanceof Error && context?.query && context.params?.length) {
          const inlined = connection.getPlatform().formatQuery(context.query, context.params);
          const placeholders = connection.getKnex().client.positionBindings(context.query);
          error.message = error.message.split(inlined).join(placeholders);
          if (error.stack) error.stack = error.stack.split(inlined).join(placeholders);
        }
        throw error;
      }
    };
  }
}

/** The primary's connection, then each read replica's (`replicas` option: `DATABASE_REPLICA_URLS`). */
function connections(orm: Orm): Array<ReturnType<Orm['em']['getConnection']>> {
  const driver = orm.em.getDriver() as unknown as { replicas?: Array<ReturnType<Orm['em']['getConnection']>> };
  return [orm.em.getConnection('write'), ...(driver.replicas ?? [])];
}

interface PgClient {
  query(...args: unknown[]): unknown;
  /** Set by knex while the connection runs a transaction. */
  __knexTxId?: string;
  [GUARDED]?: true;
}

interface PoolClient {
  acquireConnection(): Promise<PgClient>;
  releaseConnection(connection: PgClient): Promise<unknown>;
  [GUARDED]?: true;
}

const GUARDED = Symbol('request deadline installed');

/** Statements that end a transaction: never refused nor capped (a connection must not go back to the pool mid-transaction). */
const ENDS_TRANSACTION = /^\s*(commit|rollback|end|abort|release)\b/i;

/**
 * The request deadline (`request-deadline.ts`) on every statement of the pool,
 * whoever sends it (MikroORM, knex transactions, `prepared.ts`):
 * - before queueing for a pooled connection, and while queued: past the
 *   deadline the wait ends with `RequestDeadlineError` (a connection that
 *   arrives later goes straight back), so waiters never outlive their request;
 * - before each statement: past the deadline it is not sent;
 * - a statement starting with less time left than the pool's
 *   `statement_timeout` runs with `SET LOCAL statement_timeout` at what is
 *   left (inside its transaction, or in one of its own), so PostgreSQL cancels
 *   it at the deadline; a cancellation there is reported as the deadline.
 * Outside a `/graphql` request (event streams, background work, migrations)
 * nothing changes, and with time to spare a statement costs one comparison.
 */
function installRequestDeadlines(orm: Orm, statementMs: number): void {
  for (const connection of connections(orm)) {
    const client = connection.getKnex().client as unknown as PoolClient;
    if (client[GUARDED]) continue;
    client[GUARDED] = true;
    const acquire = client.acquireConnection.bind(client);
    client.acquireConnection = async () => {
      const deadline = currentDeadline();
      if (deadline) deadline.check();
      const connection = deadline ? await deadline.race(acquire(), (late) => client.releaseConnection(late)) : await acquire();
      if (!connection[GUARDED]) guardStatements(connection, statementMs);
      return connection;
    };
  }
}

function guardStatements(connection: PgClient, statementMs: number): void {
  connection[GUARDED] = true;
  const query = connection.query.bind(connection) as (...args: unknown[]) => unknown;
  connection.query = (...args: unknown[]) => {
    const deadline = currentDeadline();
    const first = args[0] as { text?: unknown; submit?: unknown } | string;
    // Outside a request, a submittable (cursor, stream), or the end of a transaction: as it was.
    if (!deadline || (typeof first === 'object' && typeof first?.submit === 'function')) return query(...args);
    const text = typeof first === 'string' ? first : String(first?.text ?? '');
    if (ENDS_TRANSACTION.test(text)) return query(...args);
    const callback = typeof args[args.length - 1] === 'function' ? (args.pop() as (error: unknown, result?: unknown) => void) : undefined;
    const run = withinDeadline(connection, query, args, deadline, statementMs);
    if (!callback) return run;
    run.then(
      (result) => callback(null, result),
      (error: unknown) => callback(error),
    );
    return undefined;
  };
}

async function withinDeadline(
  connection: PgClient,
  query: (...args: unknown[]) => unknown,
  args: unknown[],
  deadline: RequestDeadline,
  statementMs: number,
): Promise<unknown> {
  const left = deadline.remaining();
  if (left <= 0) throw new RequestDeadlineError(deadline.ms);
  // Time to spare (or the request has answered): the pool's own statement_timeout bounds it.
  if (left === Infinity || (statementMs > 0 && left >= statementMs)) return query(...args);
  const capped = `set local statement_timeout = ${Math.max(1, Math.floor(left))}`;
  const cancelledAtDeadline = (error: unknown) => {
    if ((error as { code?: unknown })?.code === '57014') throw Object.assign(new RequestDeadlineError(deadline.ms), { cause: error });
    throw error;
  };
  if (connection.__knexTxId !== undefined) {
    await query(capped);
    return (query(...args) as Promise<unknown>).catch(cancelledAtDeadline);
  }
  // SET LOCAL, not SET: the lowered timeout never outlives this statement, even behind a transaction-pooling PgBouncer.
  await query('begin');
  try {
    await query(capped);
    const result = await (query(...args) as Promise<unknown>).catch(cancelledAtDeadline);
    await query('commit');
    return result;
  } catch (error) {
    await (query('rollback') as Promise<unknown>).catch(() => undefined);
    throw error;
  }
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
    deprecate: (method: unknown, alternative: unknown) =>
      observer.warn('knex', `${String(method)} is deprecated, use ${String(alternative)}`),
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
