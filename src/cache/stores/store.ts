/**
 * Internal store abstraction under the cache port. Methods take fully
 * prefixed keys, may throw / hang (the resilience layer handles that), and
 * values are already JSON-safe.
 */
import type { Allowance } from '../cache.port';

export interface Store {
  readonly kind: 'redis' | 'memory';
  get(fullKey: string): Promise<unknown>;
  set(fullKey: string, value: unknown, ttlMs?: number): Promise<void>;
  delete(fullKey: string): Promise<void>;
  incr(fullKey: string): Promise<number>;
  /** Sets the number at `fullKey` to `value` unless it already is at least that; the TTL restarts either way. */
  raise(fullKey: string, value: number, ttlMs: number): Promise<void>;
  /** The number at `fullKey` (set by {@link Store.raise} or {@link Store.incr}), null when absent. */
  getNumber(fullKey: string): Promise<number | null>;
  /**
   * One round trip: the counter at `counterKey` (0 when absent) and the raw
   * bytes stored at `entryPrefix + counter + entrySuffix` (set with
   * {@link Store.setRaw}). The response cache reads a user's generation and
   * the entry keyed by it together.
   *
   * `held`: the caller already has the bytes it stored (or read) for counter
   * `held.counter`, whose first bytes are `held.tag`. When the counter is
   * still that one and the entry still starts with that tag, the answer is
   * `held: true` and the bytes are not sent again.
   */
  getVersioned(
    counterKey: string,
    entryPrefix: string,
    entrySuffix: string,
    held?: { counter: number; tag: Buffer },
  ): Promise<{ counter: number; raw: Buffer | undefined; held: boolean }>;
  /**
   * {@link Store.getVersioned} after spending one point of a fixed-window allowance in the same round trip
   * (`CachePort.getVersionedSpending`); 'refused' when the point would go over the limit (nothing spent, nothing read).
   * Redis only: the memory store has none (the caller then takes its ordinary path).
   */
  getVersionedSpending?(
    counterKey: string,
    entryPrefix: string,
    entrySuffix: string,
    held: { counter: number; tag: Buffer } | undefined,
    allowance: Allowance,
  ): Promise<{ counter: number; raw: Buffer | undefined; held: boolean } | 'refused'>;
  /** Stores raw bytes (no JSON envelope) for `ttlMs`. */
  setRaw(fullKey: string, raw: Buffer, ttlMs: number): Promise<void>;
  /** Deletes `nsPrefix` (= `${prefix}:${ns}`) and every `${nsPrefix}:*` key. */
  flushNamespace(nsPrefix: string): Promise<void>;
  /** Cheap round trip proving the store works. */
  ping(): Promise<void>;
  connected(): boolean;
  /** Resolves after the first connection attempt succeeded or failed. */
  readonly firstAttempt: Promise<void>;
  close(): Promise<void>;
}
