/**
 * Read replicas with read-your-writes (`DATABASE_REPLICA_URLS`; unset: none of this runs).
 *
 * MikroORM opens one pool per replica (`replicas` in `orm.ts`) and asks for a
 * `'read'` connection for every statement outside a transaction that is not a
 * write. Which connection that is, is decided here, once per request, and
 * nowhere else:
 *
 * - outside a routed request (background work, event streams, migrations,
 *   mutations, anything after the request answered) a `'read'` connection is
 *   the primary: code that does not know about replicas behaves as before;
 * - a `/graphql` query (`graphql/http.ts`) is routed by {@link ReadRouter.settle}
 *   before it runs a statement: an anonymous one to a replica that answers;
 *   a signed-in user's to a replica whose replayed WAL position
 *   (`pg_last_wal_replay_lsn()`, polled every `pollMs` in the background, never
 *   per statement) has reached the user's commit mark, else to the primary;
 * - the commit mark is `pg_current_wal_lsn()` read on the primary after a
 *   write committed, stored next to the user's read-cache generation (same
 *   store: Redis when `REDIS_URL` is set, so every instance sees it) by
 *   {@link ReadRouter.recordCommit}, which the generations call before they
 *   bump (`read-cache/generations.ts`): a read that sees the new generation
 *   sees the mark too, so the read cache's entry at that generation is
 *   computed from data that holds the write. The mark only rises (an atomic
 *   max in the store), and a copy is kept in process for when the store is
 *   unavailable; a mark that cannot be read at all sends the read to the
 *   primary;
 * - compiled reads (`prepared.ts`) take their connection the same way
 *   (`getConnection('read')`), so they follow the same route;
 * - a replica statement that fails because the replica is gone (connection
 *   errors), cancelled by a recovery conflict (40001) or refused as a write
 *   (25006) is run again on the primary, the replica counts as down until a
 *   poll answers, and the rest of the request reads from the primary: a
 *   replica that stops costs no client error.
 *
 * Transactions and writes always use the primary (MikroORM asks for
 * `'write'` there).
 */
import { ScopeSlot } from '../request-scope';
import type { CachePort } from '../cache/cache.port';
import { LruMap } from '../lru-map';
import type { Logger } from '../observability/logger';
import { readCacheKeys } from '../read-cache/keys';
import { withTimeout } from '../timeout';
import { isConnectionError } from './connection-errors';
import type { Orm } from './orm';

/** Why a request reads where it does (the `reason` label of `llmselect_db_read_routes_total`). */
export type RouteReason =
  /** Anonymous: may read lagged data. */
  | 'anonymous'
  /** The user has no commit mark (never wrote, or the mark expired): lagged data is theirs to see. */
  | 'no_writes'
  /** A replica has replayed the user's last commit. */
  | 'caught_up'
  /** No replica has replayed it yet: the primary. */
  | 'behind'
  /** The mark could not be read (store unavailable): the primary. */
  | 'unknown_mark'
  /** No replica answered its last poll: the primary. */
  | 'no_replica'
  /** The operation writes (a mutation, a subscription): the primary. */
  | 'write'
  /** The replica failed a statement mid-request: the primary from then on. */
  | 'replica_failed'
  /** Not settled yet (the operation is not known): the primary. */
  | 'pending';

export type ReadTarget = 'replica' | 'primary';

/** One request's choice; it may only move to the primary. */
export class ReadRoute {
  constructor(
    /** The replica's index, or undefined for the primary. */
    public replica: number | undefined,
    public reason: RouteReason,
  ) {}

  /** Decided (once per request: {@link ReadRouter.settle}). */
  settled = false;

  get target(): ReadTarget {
    return this.replica === undefined ? 'primary' : 'replica';
  }

  toPrimary(reason: RouteReason): void {
    if (this.replica === undefined) return;
    this.replica = undefined;
    this.reason = reason;
  }

  /** The request answered: work it leaves running (a refit, a flush) reads from the primary. */
  end(): void {
    this.replica = undefined;
  }
}

/** The MikroORM connection surface used here (knex-backed). */
interface OrmConnection {
  execute(...args: unknown[]): Promise<unknown>;
  getKnex(): { raw(sql: string): Promise<{ rows: Array<Record<string, unknown>> }> };
}

interface ReplicaState {
  /** Host, port and database (never the password), for logs. */
  name: string;
  /** Replayed WAL position (bytes) at the last poll; undefined while it does not answer. */
  replayed: number | undefined;
}

export interface ReadRouterDeps {
  orm: Orm;
  cache: CachePort;
  logger: Logger;
  /** How often each replica's replay position is polled (ms). */
  pollMs: number;
  /** How long a commit mark is kept (ms): reads are routed by it for that long at most. */
  markTtlMs?: number;
  /** Replica names (host:port/db), in `replicas` order, for logs. */
  names: string[];
  /**
   * Told of each request's route once decided (where its reads go, and why), and again (`primary`) when a
   * replica failed mid-request or a later operation of its batch writes.
   */
  onRoute?(target: ReadTarget, reason: RouteReason): void;
}

/** SQLSTATEs a replica answers that the primary would not: a recovery conflict, a write sent to a standby. */
const REPLICA_ONLY_SQLSTATES = new Set(['40001', '25006']);

/** A printed LSN (`16/B374D848`) as its byte position (exact below 2^53: 8 PiB of WAL). */
export function parseLsn(lsn: string): number {
  const [high, low] = lsn.split('/');
  const value = Number.parseInt(high ?? '', 16) * 2 ** 32 + Number.parseInt(low ?? '', 16);
  if (!Number.isFinite(value)) throw new Error(`not an LSN: ${lsn}`);
  return value;
}

/** A local mark written when the store was unavailable, or the LSN unknown: honoured until `until`. */
interface LocalMark {
  lsn: number;
  until: number;
}

export class ReadRouter {
  private readonly storage = new ScopeSlot<ReadRoute>('read route');
  private readonly primary: OrmConnection;
  private readonly replicas: OrmConnection[];
  private readonly states: ReplicaState[];
  private readonly local = new LruMap<string, LocalMark>(10_000);
  private readonly markTtlMs: number;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly deps: ReadRouterDeps) {
    const driver = deps.orm.em.getDriver() as unknown as {
      getConnection(type?: 'read' | 'write'): OrmConnection;
      replicas: OrmConnection[];
    };
    this.primary = driver.getConnection('write');
    this.replicas = [...driver.replicas];
    this.states = this.replicas.map((_, i) => ({ name: deps.names[i] ?? `replica ${i}`, replayed: undefined }));
    this.markTtlMs = deps.markTtlMs ?? 24 * 60 * 60 * 1000;
    // The one decision point: a 'read' connection is the current route's replica, else the primary.
    driver.getConnection = (type = 'write') => {
      if (type === 'write') return this.primary;
      const index = this.storage.get()?.replica;
      return index === undefined ? this.primary : this.replicas[index]!;
    };
    for (const [index, replica] of this.replicas.entries()) {
      const execute = replica.execute.bind(replica);
      replica.execute = async (...args: unknown[]) => {
        try {
          return await execute(...args);
        } catch (error) {
          if (!this.isReplicaFailure(error)) throw error;
          this.replicaFailed(index, error);
          return this.primary.execute(...args);
        }
      };
    }
  }

  /** Polls once now (the routes start from it), then every `pollMs`. */
  async start(): Promise<void> {
    await this.refresh();
    // A typo in DATABASE_REPLICA_URLS must not pass unnoticed (later polls only log changes).
    for (const state of this.states) {
      if (state.replayed === undefined)
        this.deps.logger.warn({ replica: state.name }, 'read replica not answering: reads use the primary until it does');
    }
    const tick = () => {
      if (this.closed) return;
      this.timer = setTimeout(() => void this.refresh().finally(tick), this.deps.pollMs);
      this.timer.unref();
    };
    tick();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** Asks every replica for its replay position (one poll at a time; a caller during one waits for it). */
  refresh(): Promise<void> {
    return (this.polling ??= this.poll().finally(() => (this.polling = undefined)));
  }

  /** The replayed positions at the last poll (undefined: not answering), in `replicas` order. */
  replayed(): Array<number | undefined> {
    return this.states.map((s) => s.replayed);
  }

  /**
   * Runs a request's `fn` with a route of its own: the primary until
   * {@link settle} decides, and the primary again once `fn` is done (work it
   * leaves running).
   */
  async within<T>(fn: () => Promise<T>): Promise<T> {
    const route = new ReadRoute(undefined, 'pending');
    try {
      return await this.storage.run(route, fn);
    } finally {
      route.end();
    }
  }

  /**
   * The one decision of the current request's route, before its first
   * statement (later calls do nothing): `writes` (a mutation) → the primary;
   * else {@link choose}. `userId` null: anonymous.
   */
  async settle(userId: string | null, writes = false): Promise<void> {
    const route = this.storage.get();
    if (!route || route.settled) return;
    route.settled = true;
    const chosen = writes ? new ReadRoute(undefined, 'write') : await this.choose(userId);
    // A write that started meanwhile (a batch) already moved it to the primary.
    if (route.reason !== 'pending') return;
    route.replica = chosen.replica;
    route.reason = chosen.reason;
    this.deps.onRoute?.(route.target, route.reason);
  }

  /** The current request's route, if any. */
  current(): ReadRoute | undefined {
    return this.storage.get();
  }

  /** The current request writes (a mutation in a batch) or its replica failed: its reads go to the primary. */
  toPrimary(reason: RouteReason = 'write'): void {
    const route = this.storage.get();
    if (!route) return;
    if (route.reason === 'pending') route.reason = reason;
    else if (route.replica !== undefined) {
      route.toPrimary(reason);
      this.deps.onRoute?.('primary', reason);
    }
  }

  /**
   * After a write to `scope`'s data committed: the primary's WAL position,
   * raised into the scope's mark. Never throws: when the position cannot be
   * read, the scope reads from the primary for a while (in this process).
   */
  async recordCommit(scope: string): Promise<void> {
    let lsn: number;
    try {
      const rows = (await this.primary.execute('select pg_current_wal_lsn()::text as lsn')) as Array<{ lsn: string }>;
      lsn = parseLsn(rows[0]!.lsn);
    } catch (error) {
      this.deps.logger.warn({ err: error }, 'could not read the commit position: this user reads from the primary for a minute');
      this.local.set(scope, { lsn: Number.MAX_SAFE_INTEGER, until: Date.now() + 60_000 });
      return;
    }
    const held = this.local.get(scope);
    this.local.set(scope, { lsn: Math.max(lsn, held && held.until > Date.now() ? held.lsn : 0), until: Date.now() + this.markTtlMs });
    await this.deps.cache.raise(readCacheKeys.commitMark(scope), lsn, this.markTtlMs);
  }

  private async choose(userId: string | null): Promise<ReadRoute> {
    const answering = this.states.flatMap((s, i) => (s.replayed === undefined ? [] : [i]));
    if (answering.length === 0) return new ReadRoute(undefined, 'no_replica');
    if (userId === null) return new ReadRoute(pick(answering), 'anonymous');
    const shared = await this.deps.cache.getNumber(readCacheKeys.commitMark(userId));
    const held = this.local.get(userId);
    const local = held && held.until > Date.now() ? held.lsn : null;
    // The store could not say: unless this process holds a mark, the user may have written anywhere.
    if (shared === undefined && local === null) return new ReadRoute(undefined, 'unknown_mark');
    const mark = Math.max(shared ?? -1, local ?? -1);
    if (mark < 0) return new ReadRoute(pick(answering), 'no_writes');
    const ready = answering.filter((i) => this.states[i]!.replayed! >= mark);
    return ready.length ? new ReadRoute(pick(ready), 'caught_up') : new ReadRoute(undefined, 'behind');
  }

  private async poll(): Promise<void> {
    await Promise.all(
      this.replicas.map(async (replica, i) => {
        const state = this.states[i]!;
        try {
          // A replica that hangs (rather than refusing) counts as down after 10 polls' time, at least 1 s.
          const result = await withTimeout(
            replica.getKnex().raw('select pg_last_wal_replay_lsn()::text as lsn'),
            Math.max(1_000, 10 * this.deps.pollMs),
            'replica replay poll',
          );
          const lsn = result.rows[0]?.lsn;
          // Null: not a standby (or not replaying): never trusted with a user's reads.
          const replayed = typeof lsn === 'string' ? parseLsn(lsn) : undefined;
          if (state.replayed === undefined && replayed !== undefined)
            this.deps.logger.info({ replica: state.name }, 'read replica answering');
          // Replay never goes back: a stale answer (overtaken by a later poll) cannot lower it.
          state.replayed = replayed === undefined ? undefined : Math.max(replayed, state.replayed ?? 0);
        } catch (error) {
          if (state.replayed !== undefined) this.deps.logger.warn({ err: error, replica: state.name }, 'read replica not answering');
          state.replayed = undefined;
        }
      }),
    );
  }

  private isReplicaFailure(error: unknown): boolean {
    if (isConnectionError(error)) return true;
    for (let current = error, depth = 0; current && depth < 4; depth++) {
      if (REPLICA_ONLY_SQLSTATES.has(String((current as { code?: unknown }).code ?? ''))) return true;
      current = (current as { cause?: unknown; previous?: unknown }).cause ?? (current as { previous?: unknown }).previous;
    }
    return false;
  }

  /** A replica statement failed as replicas do: down until a poll answers; this request reads the primary from now on. */
  replicaFailed(index: number, error: unknown): void {
    const state = this.states[index];
    if (state?.replayed !== undefined)
      this.deps.logger.warn({ err: error, replica: state.name }, 'read replica failed: reading the primary');
    if (state) state.replayed = undefined;
    this.toPrimary('replica_failed');
  }

  /** For `prepared.ts`: whether `connection` is a replica's, and which. */
  replicaIndexOf(connection: unknown): number | undefined {
    const index = this.replicas.indexOf(connection as OrmConnection);
    return index < 0 ? undefined : index;
  }

  /** For `prepared.ts`: a statement failure worth retrying on the primary. */
  retriesOnPrimary(error: unknown): boolean {
    return this.isReplicaFailure(error);
  }
}

function pick(indices: number[]): number {
  return indices.length === 1 ? indices[0]! : indices[Math.floor(Math.random() * indices.length)]!;
}
