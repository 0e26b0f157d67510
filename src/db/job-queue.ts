/**
 * Durable jobs on PostgreSQL: pg-boss 10 (`SELECT … FOR UPDATE SKIP LOCKED`),
 * in its own schema (`pgboss`) of the app's database, installed and upgraded
 * by pg-boss at start. It runs every statement through the app's own pool
 * (MikroORM's connection): no second pool, the same TLS and timeouts, and a
 * job can be inserted in the caller's transaction (`send(…, tx)`), so the row
 * that asks for work and its jobs commit together or not at all.
 *
 * pg-boss writes `$1`-style parameters; the pool's driver takes `?`: each
 * `$n` becomes a `?` with its value (pg-boss's SQL has no literal `?`).
 * Statements are tagged `/* background *​/` unless they run in a caller's
 * transaction, so request statement counts leave the queue's polling out.
 *
 * This port only moves jobs: what a job means, and every guarantee about it
 * (claims, leases, idempotency), belongs to its feature (`modules/eval/`).
 */
import PgBoss from 'pg-boss';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Orm } from './orm';
import type { Logger } from '../observability/logger';
import { pgArray } from './sql';

export interface JobToSend<T extends object> {
  data: T;
  /** Higher first (pg-boss orders by priority desc, then age). */
  priority?: number;
  /** Not before this many seconds from now. */
  startAfterSeconds?: number;
}

export interface FetchedJob<T> {
  id: string;
  data: T;
}

/** Tag of statements sent on the queue's own schedule (see `comparison-runner.ts`'s BACKGROUND_SQL_TAG). */
const BACKGROUND = '/* background */';
/** Released jobs come back at once; a job whose work failed for good is completed by its feature, never retried by pg-boss. */
const RETRY_LIMIT = 1_000_000;

/**
 * `$1`-style SQL and values as `?`-style (values repeated where a parameter
 * is). The driver inlines values and would expand a JS array into a list:
 * arrays go as one PostgreSQL array literal, objects as JSON text.
 */
export function positional(text: string, values: readonly unknown[]): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const sql = text.replace(/\$(\d+)/g, (_, n: string) => {
    const value = values[Number(n) - 1];
    if (Array.isArray(value)) params.push(pgArray(value));
    else if (value !== null && typeof value === 'object' && !(value instanceof Date) && !Buffer.isBuffer(value))
      params.push(JSON.stringify(value));
    else params.push(value);
    return '?';
  });
  return { sql, params };
}

export interface JobQueueOptions {
  orm: Orm;
  logger: Logger;
  queues: readonly string[];
  /** How often pg-boss maintains (expires, archives, drops) its tables. */
  maintenanceIntervalSeconds?: number;
  /**
   * A fetched job not acknowledged within this long is handed out again by
   * pg-boss's maintenance (its holder died between fetching and claiming).
   * The feature's claim makes a second delivery harmless.
   */
  expireInSeconds?: number;
}

export class JobQueue {
  private readonly boss: PgBoss;
  private started = false;

  constructor(private readonly options: JobQueueOptions) {
    const orm = options.orm;
    this.boss = new PgBoss({
      db: {
        executeSql: async (text: string, values: unknown[] = []) => {
          const { sql, params } = positional(text, values);
          const rows = await orm.em.getConnection().execute(`${BACKGROUND} ${sql}`, params, 'all');
          return { rows: Array.isArray(rows) ? rows : [] };
        },
      },
      schema: 'pgboss',
      schedule: false,
      supervise: true,
      maintenanceIntervalSeconds: options.maintenanceIntervalSeconds ?? 60,
      retryLimit: RETRY_LIMIT,
      retryDelay: 0,
    });
    // pg-boss reports connection trouble (a database restart) here; its next poll reconnects through the pool.
    this.boss.on('error', (err) =>
      options.logger.warn({ error: (err as Error)?.name, code: (err as { code?: unknown })?.code }, 'job queue error'),
    );
  }

  async start(): Promise<void> {
    await this.install();
    await this.boss.start();
    this.started = true;
  }

  /**
   * Creates pg-boss's schema once, in one transaction of our own under an
   * advisory lock: instances starting together on a new database wait for the
   * first (pg-boss's own install runs BEGIN … COMMIT as one multi-statement
   * text, which on a pooled connection that lost the race would leave the
   * connection inside an aborted transaction). The queues are created the
   * same way (concurrent `create_queue` calls deadlock on pg-boss's tables).
   */
  private async install(): Promise<void> {
    // A plain read of pg_tables (the statement's snapshot): `to_regclass` may answer from a stale catalog cache.
    const installed = async (em: EntityManager) => {
      const sql = `select exists (select 1 from pg_tables where schemaname = 'pgboss' and tablename = 'version') as ok`;
      return (await em.execute<Array<{ ok: boolean }>>(sql))[0]?.ok === true;
    };
    const queues = async (em: EntityManager) =>
      new Set((await em.execute<Array<{ name: string }>>(`select name from pgboss.queue`)).map((q) => q.name));
    const fork = this.options.orm.em.fork();
    // The common case (an instance starting on a database that has it all): two reads, no lock.
    if (await installed(fork)) {
      const have = await queues(fork);
      if (this.options.queues.every((q) => have.has(q))) return;
    }
    const plans = PgBoss.getConstructionPlans('pgboss')
      .replace(/^\s*BEGIN;/, '')
      .replace(/COMMIT;\s*$/, '');
    await this.options.orm.em.fork().transactional(async (tx) => {
      await tx.execute(`select pg_advisory_xact_lock(hashtextextended('llmselect:pgboss:install', 0))`);
      if (!(await installed(tx))) await tx.execute(plans);
      const have = await queues(tx);
      for (const name of this.options.queues) {
        if (have.has(name)) continue;
        const options = { policy: 'standard', retryLimit: RETRY_LIMIT, retryDelay: 0 };
        await tx.execute(`select pgboss.create_queue(?, ?::json)`, [name, JSON.stringify(options)]);
      }
    });
  }

  /** Inserts jobs in the caller's transaction `tx` (they exist when it commits, and never if it rolls back). */
  async send<T extends object>(tx: EntityManager, queue: string, jobs: ReadonlyArray<JobToSend<T>>): Promise<void> {
    if (jobs.length === 0) return;
    const db = {
      executeSql: async (text: string, values: unknown[] = []) => {
        const { sql, params } = positional(text, values);
        const rows = await tx.execute(sql, params, 'all');
        return { rows: Array.isArray(rows) ? rows : [] };
      },
    };
    // pg-boss's insert takes up to a few thousand rows as one JSON parameter; larger batches are split.
    for (let i = 0; i < jobs.length; i += 2_000) {
      const batch = jobs.slice(i, i + 2_000).map((job) => ({
        name: queue,
        data: job.data,
        priority: job.priority ?? 0,
        ...(this.options.expireInSeconds ? { expireInSeconds: this.options.expireInSeconds } : {}),
        ...(job.startAfterSeconds ? { startAfter: `${Math.ceil(job.startAfterSeconds)} seconds` } : {}),
      }));
      await this.boss.insert(batch as PgBoss.JobInsert[], { db });
    }
  }

  /** Up to `batchSize` jobs, now active (held) until completed or released. */
  async fetch<T>(queue: string, batchSize: number): Promise<Array<FetchedJob<T>>> {
    if (!this.started) return [];
    const jobs = await this.boss.fetch<T>(queue, { batchSize });
    return (jobs ?? []).map((j) => ({ id: j.id, data: j.data }));
  }

  /** Done with these jobs (whatever the outcome: the feature recorded it). */
  async complete(queue: string, ids: readonly string[]): Promise<void> {
    if (ids.length) await this.boss.complete(queue, [...ids]);
  }

  /** Gives jobs back to the queue at once (fetched but not run here: e.g. their user is at the concurrency limit). */
  async release(queue: string, ids: readonly string[]): Promise<void> {
    if (ids.length) await this.boss.fail(queue, [...ids]);
  }

  /** Stops maintenance (jobs held by this process come back through expiry, or the feature's own leases). */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.boss.stop({ graceful: false, wait: true, close: false }).catch(() => undefined);
  }
}
