/**
 * The cache port: the only cache API the rest of the application sees.
 * Nothing outside `src/cache` imports Keyv or a Redis client (`src/pubsub/redis.ts`
 * gets its connections from `cache/redis-client.ts`).
 *
 * Contract shared by every method:
 * - **Keys** are `<namespace>:<rest>`; the namespace is the segment before the
 *   first `:` (e.g. `models:openai:…` → namespace `models`). It drives stats and
 *   `clearNamespace`. Stored keys are `${prefix}:${key}`. Private data must be
 *   keyed by user (the read cache's keys: `read-cache/keys.ts`).
 * - **Values** round-trip through JSON: Dates come back as ISO strings, `undefined`
 *   properties disappear, class instances become plain objects. `undefined` is
 *   never cached (it means "miss"); `null` is.
 * - **Fail open**: a store error, an operation slower than `operationTimeoutMs`, or
 *   an open circuit breaker is a miss; the methods never reject because the store
 *   is unavailable (only for programmer errors such as an invalid namespace).
 */

/**
 * Where a versioned entry lives: a counter (see {@link CachePort.incr}), and
 * for each of its values `n` the entry key `${entryPrefix}${n}${entrySuffix}`.
 * Versioned values are stored as tagged bytes: give them keys that untagged
 * values never use.
 */
export interface VersionedKey {
  counter: string;
  entryPrefix: string;
  entrySuffix: string;
}

/** One point of a fixed-window limit, for {@link CachePort.getVersionedSpending}: its key (`rateLimitKey`), points per window. */
export interface Allowance {
  key: string;
  points: number;
  windowSeconds: number;
}

/** Freshness policy for {@link CachePort.wrapSwr}. */
export interface SwrOptions {
  /** Younger than this: served as is. */
  freshMs: number;
  /** Older than `freshMs` but younger than this: served stale, refreshed in the background. Also the store TTL. */
  maxAgeMs: number;
}

export interface CacheHealth {
  store: 'redis' | 'memory';
  /** Redis connection ready (always true for memory). */
  connected: boolean;
  /** Operations are short-circuited to misses until a background probe succeeds. */
  breakerOpen: boolean;
  /** Redis with local copies on: the response bytes kept in process, and how many hits they answered. */
  localCopies?: { entries: number; bytes: number; maxBytes: number; served: number };
}

export interface NamespaceStats {
  hits: number;
  misses: number;
}

/** Called once per lookup (get, wrap, wrapSwr, APQ get); used to feed metrics. */
export type CacheLookupHook = (namespace: string, hit: boolean) => void;

export interface CachePort {
  /** The value, or `undefined` on a miss, an expired entry, or any store failure. */
  get<T>(key: string): Promise<T | undefined>;
  /**
   * Stores `value` (JSON) for `ttlMs` (> 0; omitted = no expiry; <= 0 = not stored).
   * Resolves (never rejects) when stored, dropped, or the store failed.
   */
  set<T>(key: string, value: T, ttlMs?: number): Promise<void>;
  /**
   * Removes `key`. If the store is unavailable the deletion is journaled and
   * replayed before the breaker closes again, so it is not lost.
   */
  delete(key: string): Promise<void>;
  /**
   * Read-through: hit → cached value; miss → `load()` once per key per process
   * (concurrent callers share the same promise), result stored for `ttlMs` and
   * returned in its JSON round-tripped form (same shape as a hit). `load` errors
   * propagate and nothing is cached. Store failures only mean `load` runs.
   */
  wrap<T>(key: string, ttlMs: number, load: () => Promise<T>): Promise<T>;
  /**
   * Stale-while-revalidate read-through. Stores `{ value, storedAt }` for
   * `maxAgeMs`. Fresh → returned; stale → returned at once and refreshed in the
   * background (single-flighted; errors logged, never thrown); missing → `load()`.
   */
  wrapSwr<T>(key: string, options: SwrOptions, load: () => Promise<T>): Promise<T>;
  /**
   * Atomically increments the integer counter at `key` and returns the new value
   * (starting at 1). Counters never expire; `get(key)` returns the current value.
   * Keep counters in a namespace of their own (the read cache's generations:
   * `read-cache/keys.ts`). If Redis is unavailable it returns a negative,
   * process-unique, time-based number that Redis never issues (so keys built
   * from it are cold: never a stale hit) and journals the increment, which is
   * replayed before the breaker closes again.
   */
  incr(key: string): Promise<number>;
  /**
   * Atomically raises the number at `key` to `value` when it is absent or lower
   * (never lowers it), and keeps it for `ttlMs` from now. False when the store
   * is unavailable (nothing journaled: the caller keeps its own copy). Read it
   * with {@link CachePort.getNumber}. Used for the read replicas' commit
   * marks (`db/replicas.ts`), in the `gen` namespace.
   */
  raise(key: string, value: number, ttlMs: number): Promise<boolean>;
  /** The number at `key`: null when absent, undefined when the store is unavailable (unknown, not absent). */
  getNumber(key: string): Promise<number | null | undefined>;
  /**
   * A versioned read, in one round trip: the counter at `key.counter` (its
   * version, 0 before the first {@link CachePort.incr}) and the raw bytes
   * stored (by {@link CachePort.setVersioned}) under the entry key of that
   * version. `undefined` when the store is unavailable (a miss whose result
   * must not be stored: the version is unknown). Counted as a lookup of the
   * entry key's namespace.
   */
  getVersioned(key: VersionedKey): Promise<{ version: number; bytes: Buffer | undefined } | undefined>;
  /**
   * {@link CachePort.getVersioned} after spending one point of `allowance` in the same round trip (one script):
   * 'refused' when that point would go over its limit (nothing spent, the entry not read). The allowance is a
   * fixed-window limit kept exactly as `rate-limit.ts`'s limiters keep it (same key, same steps), so both may
   * count one client. `undefined` when the store is unavailable, and always without Redis (the caller takes its
   * ordinary path: the limiter, then {@link CachePort.getVersioned}).
   */
  getVersionedSpending(
    key: VersionedKey,
    allowance: Allowance,
  ): Promise<{ version: number; bytes: Buffer | undefined } | 'refused' | undefined>;
  /** Stores raw bytes (no JSON, behind a tag) under the entry key of `version` for `ttlMs`. Never rejects for store failures. */
  setVersioned(key: VersionedKey, version: number, bytes: Buffer, ttlMs: number): Promise<void>;
  /**
   * The UTF-8 bytes of `text`, laid out so that {@link CachePort.setVersioned}
   * stores them without copying the body (a response is encoded once, sent,
   * and stored). Any Buffer may still be given to `setVersioned`.
   */
  versionedBody(text: string): Buffer;
  /**
   * Admin flush of every key in namespace `ns` (no `:` allowed). Redis: SCAN
   * MATCH + UNLINK in batches — never KEYS, and never on a hot path. If Redis
   * is unavailable the flush is journaled and replayed on recovery.
   * Rejects only for an invalid `ns`.
   */
  clearNamespace(ns: string): Promise<void>;
  health(): CacheHealth;
  /** Per-namespace lookup counts since start (a copy). */
  stats(): Record<string, NamespaceStats>;
  /** Closes connections; afterwards every operation is a miss / no-op. Idempotent. */
  close(): Promise<void>;
}
