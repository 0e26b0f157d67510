import { randomFillSync } from 'node:crypto';
import { LruMap } from '../lru-map';
import type { Logger } from '../observability/logger';
import type { Allowance, CacheHealth, CacheLookupHook, CachePort, NamespaceStats, SwrOptions, VersionedKey } from './cache.port';
import { assertNamespace, namespaceOf } from './namespaces';
import { closeRedisClient, createRedisClient, type RedisSentinelTarget, redisTarget } from './redis-client';
import { FailOpenStore } from './resilience';
import { singleFlight } from './single-flight';
import { CacheStats } from './stats';
import { MemoryStore } from './stores/memory.store';
import { RedisStore } from './stores/redis.store';
import { CacheSerializationError, jsonRoundTrip } from './stores/serialization';
import type { Store } from './stores/store';

export interface CreateCacheOptions {
  /** Unset: in-process memory store (development / tests / single instance). */
  redisUrl?: string;
  /** `Config.redisClusterNodes`: a Redis Cluster's seed nodes, instead of `redisUrl`. */
  redisClusterNodes?: readonly string[];
  /** `Config.redisSentinel`: the master Redis Sentinel names, instead of `redisUrl`. */
  redisSentinel?: RedisSentinelTarget;
  /** `Config.redisReplicaAckMs`: after a generation bump, `WAIT 1 <ms>` for a replica; a bump none acknowledged is journaled. */
  replicaAckMs?: number;
  /** `Config.cachePrefix`; every key is `${prefix}:${namespace}:...`. */
  prefix: string;
  /** `Config.cache.breakerCooldownMs`. */
  breakerCooldownMs: number;
  /** `Config.cache.operationTimeoutMs`: slower operations count as failures (misses). */
  operationTimeoutMs: number;
  logger: Logger;
  /** Called on every lookup, e.g. `registerCacheMetrics(registry)`. */
  onLookup?: CacheLookupHook;
  /** Memory store bound (LRU). Default 10 000 entries. */
  memoryMaxEntries?: number;
  /** Redis reconnect backoff cap. Default 2000 ms. */
  maxReconnectDelayMs?: number;
  /**
   * `Config.cache.localCopiesMb` in bytes: the most response bytes kept in
   * process as validated copies of Redis entries (see {@link LocalCopies}).
   * 0 turns them off; ignored by the memory store (its entries are in process already).
   */
  localCopiesMaxBytes?: number;
}

/**
 * Response bytes are stored behind a tag: a 0x00 byte (a JSON body never
 * starts with one, so an untagged value is never mistaken for a tagged one)
 * and 11 random bytes, new on every store. Same key and same tag: same bytes.
 */
const TAG_BYTES = 12;

/** What a copy costs besides its bytes (its key, the objects around it, the map entry), measured at about 1 KB. */
const COPY_OVERHEAD_BYTES = 1024;

/**
 * A new tag, then room for `length` bytes, in memory of its own: never a view
 * of a pooled slab or a socket read (a kept copy would pin those).
 */
function taggedSpace(length: number): Buffer {
  const raw = Buffer.allocUnsafeSlow(TAG_BYTES + length);
  randomFillSync(raw, 0, TAG_BYTES);
  raw[0] = 0;
  return raw;
}

/** `raw` when it owns its memory, else a copy that does. */
function owned(raw: Buffer): Buffer {
  if (raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength) return raw;
  const copy = Buffer.allocUnsafeSlow(raw.length);
  raw.copy(copy);
  return copy;
}

interface LocalCopy {
  version: number;
  /** The stored value: tag, then the response bytes. */
  raw: Buffer;
}

/**
 * Local copies of versioned entries, keyed by their {@link VersionedKey}
 * (all versions of an entry share one copy), bounded in bytes. A copy is only
 * ever served after the read's one round trip has confirmed it: the counter
 * is still the copy's version and the Redis
 * entry still starts with the copy's tag (see `Store.getVersioned`). So a
 * write on any instance (a new version), an admin flush, an expired entry
 * or an entry stored again by another instance all mean the copy is not used,
 * and Redis unavailable is a miss as before. What a copy saves is the bytes:
 * a hit's reply is a few bytes instead of the whole body, so no large buffer
 * is read, copied and collected per hit (on a 127 KB history page that
 * allocation is what drove major GCs on the hit path).
 */
class LocalCopies {
  private readonly copies: LruMap<string, LocalCopy>;
  served = 0;

  constructor(readonly maxBytes: number) {
    this.copies = new LruMap(100_000, { maxWeight: maxBytes, weigh: LocalCopies.weigh });
  }

  private static weigh(copy: LocalCopy): number {
    return copy.raw.buffer.byteLength + COPY_OVERHEAD_BYTES;
  }

  /** Whether a body of `length` bytes could be kept at all. */
  fits(length: number): boolean {
    return TAG_BYTES + length + COPY_OVERHEAD_BYTES <= this.maxBytes;
  }

  get(key: string): LocalCopy | undefined {
    return this.copies.get(key);
  }

  set(key: string, copy: LocalCopy): void {
    this.copies.set(key, copy);
  }

  /**
   * Replaces (or, with `next` undefined, drops) the copy a lookup started with,
   * unless a store replaced it meanwhile: an older reply must not undo a newer copy.
   */
  settle(key: string, started: LocalCopy | undefined, next: (() => LocalCopy) | undefined): void {
    if (this.copies.peek(key) !== started) return;
    if (next) this.copies.set(key, next());
    else this.copies.delete(key);
  }

  stats(): { entries: number; bytes: number; maxBytes: number; served: number } {
    return { entries: this.copies.size, bytes: this.copies.totalWeight, maxBytes: this.maxBytes, served: this.served };
  }
}

/** Every version of an entry shares one local copy. */
function copyKeyOf(key: VersionedKey): string {
  return `${key.entryPrefix}\n${key.entrySuffix}`;
}

/** Admin flushes may legitimately take longer than a single-key operation. */
const FLUSH_TIMEOUT_FACTOR = 20;

interface SwrEntry<T> {
  value: T;
  storedAt: number;
}

function isSwrEntry<T>(v: unknown): v is SwrEntry<T> {
  return v !== null && typeof v === 'object' && 'value' in v && typeof (v as SwrEntry<T>).storedAt === 'number';
}

/**
 * Creates the cache. Never throws and never waits for Redis: with `redisUrl` (or `redisClusterNodes`, `redisSentinel`)
 * it connects in the background (Redis down at start = misses until it is
 * up); without, it uses an in-process LRU. See {@link CachePort} for the contract.
 */
export function createCache(opts: CreateCacheOptions): CachePort {
  if (!opts.prefix) throw new TypeError('cache prefix must be non-empty');
  return new KeyvCache(opts);
}

class KeyvCache implements CachePort {
  private readonly guard: FailOpenStore;
  private readonly stats_: CacheStats;
  private readonly log: Logger;
  private readonly namespaces = new Set<string>();
  /** Local flush epoch per namespace: a load that straddles a flush is not stored. */
  private readonly epochs = new Map<string, number>();
  private readonly wraps = singleFlight();
  private readonly swrReads = singleFlight();
  private readonly swrRefreshes = singleFlight();
  private readonly closeClient: () => void;
  private fallbackSeq = 0;
  /** Redis only, when `localCopiesMaxBytes` > 0. */
  private readonly copies: LocalCopies | undefined;
  /** The store can spend an allowance with a read (`getVersionedSpending`): Redis. */
  private readonly spending: boolean = false;
  /** Memory laid out by {@link KeyvCache.versionedBody}: tag, then body. */
  private readonly laidOut = new WeakSet<ArrayBufferLike>();

  constructor(private readonly opts: CreateCacheOptions) {
    this.log = opts.logger.child({ component: 'cache' });
    this.stats_ = new CacheStats(opts.onLookup);
    let store: Store;
    const target = redisTarget(opts);
    if (target) {
      const connection = (role: string) =>
        createRedisClient({
          target,
          logger: opts.logger,
          name: `${opts.prefix.replace(/[^\w:.-]/g, '_')}:${role}`,
          disableOfflineQueue: true,
          maxReconnectDelayMs: opts.maxReconnectDelayMs,
          connectTimeoutMs: Math.max(opts.operationTimeoutMs, 1000),
        });
      const client = connection('cache');
      // WAIT blocks the connection it is sent on until a replica answers: the bumps get their own, so that reads
      // never queue behind one.
      const ackMs = opts.replicaAckMs ?? 0;
      const bumps = ackMs > 0 ? connection('bumps') : undefined;
      store = new RedisStore(client, {
        ackMs,
        connection: bumps,
        unacknowledged: (fullKey) => {
          this.log.debug('generation bump not acknowledged by a replica: journaled for replay after a failover');
          this.guard.journal.record('incr', fullKey);
        },
      });
      this.spending = true;
      client.on('error', (err: unknown) => this.guard.connectionLost(err));
      client.on('ready', () => this.guard.connectionReady());
      this.closeClient = () => {
        closeRedisClient(client);
        if (bumps) closeRedisClient(bumps);
      };
      if ((opts.localCopiesMaxBytes ?? 0) > 0) this.copies = new LocalCopies(opts.localCopiesMaxBytes!);
    } else {
      store = new MemoryStore(opts.memoryMaxEntries ?? 10_000);
      this.closeClient = () => undefined;
    }
    this.guard = new FailOpenStore(store, {
      operationTimeoutMs: opts.operationTimeoutMs,
      breakerCooldownMs: opts.breakerCooldownMs,
      logger: opts.logger,
      knownNamespaces: () => [...this.namespaces].map((ns) => this.nsPrefix(ns)),
    });
    this.log.info({ store: store.kind, prefix: opts.prefix }, 'cache created');
  }

  get<T>(key: string): Promise<T | undefined> {
    return this.lookup<T>(key);
  }

  async set<T>(key: string, value: T, ttlMs?: number): Promise<void> {
    if (value === undefined || (ttlMs !== undefined && !(ttlMs > 0))) return;
    const full = this.full(key);
    try {
      await this.guard.run(
        'set',
        (s) => s.set(full, value, ttlMs),
        () => undefined,
      );
    } catch (err) {
      this.log.error({ err, key }, 'cache set skipped: value not JSON-serializable');
    }
  }

  async delete(key: string): Promise<void> {
    const full = this.full(key);
    await this.guard.run(
      'delete',
      (s) => s.delete(full),
      () => undefined,
      () => this.guard.journal.record('delete', full),
    );
  }

  async incr(key: string): Promise<number> {
    const full = this.full(key);
    return this.guard.run(
      'incr',
      (s) => s.incr(full),
      () => this.missGeneration(),
      () => this.guard.journal.record('incr', full),
    );
  }

  async raise(key: string, value: number, ttlMs: number): Promise<boolean> {
    const full = this.full(key);
    return this.guard.run(
      'set',
      async (s) => {
        await s.raise(full, value, ttlMs);
        return true;
      },
      () => false,
    );
  }

  async getNumber(key: string): Promise<number | null | undefined> {
    const full = this.full(key);
    return this.guard.run(
      'get',
      (s) => s.getNumber(full),
      () => undefined,
    );
  }

  getVersioned(key: VersionedKey): Promise<{ version: number; bytes: Buffer | undefined } | undefined> {
    return this.versioned<never>(key, (s, counterKey, entryPrefix, held) => s.getVersioned(counterKey, entryPrefix, key.entrySuffix, held));
  }

  async getVersionedSpending(
    key: VersionedKey,
    allowance: Allowance,
  ): Promise<{ version: number; bytes: Buffer | undefined } | 'refused' | undefined> {
    if (!this.spending) return undefined;
    const spend = { key: `${this.opts.prefix}:${allowance.key}`, points: allowance.points, windowSeconds: allowance.windowSeconds };
    return this.versioned(key, (s, counterKey, entryPrefix, held) =>
      s.getVersionedSpending!(counterKey, entryPrefix, key.entrySuffix, held, spend),
    );
  }

  /** A versioned read (with or without an allowance spent first), served from the local copy when Redis says it still holds. */
  private async versioned<R extends 'refused' = never>(
    key: VersionedKey,
    read: (
      store: Store,
      counterKey: string,
      entryPrefix: string,
      held: { counter: number; tag: Buffer } | undefined,
    ) => Promise<{ counter: number; raw: Buffer | undefined; held: boolean } | R>,
  ): Promise<{ version: number; bytes: Buffer | undefined } | R | undefined> {
    const counterKey = this.full(key.counter);
    const entryPrefix = this.full(key.entryPrefix);
    const copyKey = copyKeyOf(key);
    const copy = this.copies?.get(copyKey);
    const held = copy && { counter: copy.version, tag: copy.raw.subarray(0, TAG_BYTES) };
    const found = await this.guard.run(
      'get',
      (s) => read(s, counterKey, entryPrefix, held),
      () => undefined,
    );
    if (found === 'refused') return found;
    let raw: Buffer | undefined;
    if (found?.held && copy) {
      raw = copy.raw;
      this.copies!.served++;
    } else if (found?.raw && found.raw.length >= TAG_BYTES && found.raw[0] === 0) {
      const fetched = found.raw;
      raw = fetched;
      if (this.copies?.fits(fetched.length - TAG_BYTES)) {
        this.copies.settle(copyKey, copy, () => ({ version: found.counter, raw: owned(fetched) }));
      }
    } else if (found && copy) {
      this.copies!.settle(copyKey, copy, undefined);
    }
    this.stats_.record(namespaceOf(key.entryPrefix), raw !== undefined);
    return found && { version: found.counter, bytes: raw?.subarray(TAG_BYTES) };
  }

  async setVersioned(key: VersionedKey, version: number, bytes: Buffer, ttlMs: number): Promise<void> {
    if (!(ttlMs > 0)) return;
    let raw: Buffer;
    if (this.laidOut.has(bytes.buffer) && bytes.byteOffset === TAG_BYTES && bytes.buffer.byteLength === TAG_BYTES + bytes.length) {
      // Laid out by versionedBody: stored as is (its tag is new), no copy of the body.
      this.laidOut.delete(bytes.buffer);
      raw = Buffer.from(bytes.buffer, 0, TAG_BYTES + bytes.length);
    } else {
      raw = taggedSpace(bytes.length);
      bytes.copy(raw, TAG_BYTES);
    }
    const full = this.full(`${key.entryPrefix}${version}${key.entrySuffix}`);
    // Remembered before the SET is sent: it precedes any later lookup on the one connection, and a copy
    // whose SET failed is never served (its tag is not in Redis).
    this.copies?.set(copyKeyOf(key), { version, raw });
    await this.guard.run(
      'set',
      (s) => s.setRaw(full, raw, ttlMs),
      () => undefined,
    );
  }

  versionedBody(text: string): Buffer {
    const raw = taggedSpace(Buffer.byteLength(text));
    raw.write(text, TAG_BYTES);
    this.laidOut.add(raw.buffer);
    return raw.subarray(TAG_BYTES);
  }

  async clearNamespace(ns: string): Promise<void> {
    assertNamespace(ns);
    this.epochs.set(ns, (this.epochs.get(ns) ?? 0) + 1);
    const nsPrefix = this.nsPrefix(ns);
    await this.guard.run(
      'clearNamespace',
      (s) => s.flushNamespace(nsPrefix),
      () => undefined,
      () => this.guard.journal.recordFlush(nsPrefix),
      this.opts.operationTimeoutMs * FLUSH_TIMEOUT_FACTOR,
    );
  }

  wrap<T>(key: string, ttlMs: number, load: () => Promise<T>): Promise<T> {
    return this.wraps.run(this.full(key), async () => {
      const cached = await this.lookup<T>(key);
      if (cached !== undefined) return cached;
      const epoch = this.epochs.get(namespaceOf(key));
      const { value, cacheable } = this.normalize(key, await load());
      if (cacheable && this.epochs.get(namespaceOf(key)) === epoch) await this.set(key, value, ttlMs);
      return value;
    });
  }

  wrapSwr<T>(key: string, options: SwrOptions, load: () => Promise<T>): Promise<T> {
    return this.swrReads.run(this.full(key), async () => {
      const entry = await this.lookup<SwrEntry<T>>(key, isSwrEntry);
      if (entry) {
        const age = Date.now() - entry.storedAt;
        if (age < options.freshMs) return entry.value;
        if (age < options.maxAgeMs) {
          this.swrRefreshes
            .run(this.full(key), () => this.loadSwr(key, options, load))
            .catch((err: unknown) => this.log.warn({ err, key }, 'cache background refresh failed; serving stale'));
          return entry.value;
        }
      }
      return this.loadSwr(key, options, load);
    });
  }

  health(): CacheHealth {
    return {
      store: this.guard.store.kind,
      connected: this.guard.store.connected(),
      breakerOpen: this.guard.breaker.isOpen,
      ...(this.copies ? { localCopies: this.copies.stats() } : {}),
    };
  }

  stats(): Record<string, NamespaceStats> {
    return this.stats_.snapshot();
  }

  async close(): Promise<void> {
    this.guard.close();
    this.closeClient();
    await this.guard.store.close();
  }

  private async loadSwr<T>(key: string, options: SwrOptions, load: () => Promise<T>): Promise<T> {
    const epoch = this.epochs.get(namespaceOf(key));
    const { value, cacheable } = this.normalize(key, await load());
    if (cacheable && this.epochs.get(namespaceOf(key)) === epoch) {
      await this.set<SwrEntry<T>>(key, { value, storedAt: Date.now() }, options.maxAgeMs);
    }
    return value;
  }

  /** Reads and records a hit or miss; `accept` rejects entries of the wrong shape (counted as misses). */
  private async lookup<T>(key: string, accept?: (v: unknown) => v is T): Promise<T | undefined> {
    const full = this.full(key);
    const raw = await this.guard.run(
      'get',
      (s) => s.get(full),
      () => undefined,
    );
    const value = raw === undefined || (accept && !accept(raw)) ? undefined : (raw as T);
    this.stats_.record(namespaceOf(key), value !== undefined);
    return value;
  }

  /** The JSON round-tripped value (same shape as a hit); unserializable values are returned as is, uncached. */
  private normalize<T>(key: string, value: T): { value: T; cacheable: boolean } {
    try {
      return { value: jsonRoundTrip(value), cacheable: value !== undefined };
    } catch (err) {
      if (!(err instanceof CacheSerializationError)) throw err;
      this.log.error({ err, key }, 'cache: loaded value not JSON-serializable; not cached');
      return { value, cacheable: false };
    }
  }

  /** Negative, process-unique, time-based: Redis INCR never returns it, so keys built from it are cold. */
  private missGeneration(): number {
    this.fallbackSeq = (this.fallbackSeq + 1) % 1000;
    return -(Date.now() * 1000 + this.fallbackSeq);
  }

  private full(key: string): string {
    this.namespaces.add(namespaceOf(key));
    return `${this.opts.prefix}:${key}`;
  }

  private nsPrefix(ns: string): string {
    return `${this.opts.prefix}:${ns}`;
  }
}
