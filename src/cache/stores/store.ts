/**
 * Internal store abstraction under the cache port. Methods take fully
 * prefixed keys, may throw / hang (the resilience layer handles that), and
 * values are already JSON-safe.
 */
export interface Store {
  readonly kind: 'redis' | 'memory';
  get(fullKey: string): Promise<unknown>;
  set(fullKey: string, value: unknown, ttlMs?: number): Promise<void>;
  delete(fullKey: string): Promise<void>;
  incr(fullKey: string): Promise<number>;
  /** Deletes `nsPrefix` (= `${prefix}:${ns}`) and every `${nsPrefix}:*` key. */
  flushNamespace(nsPrefix: string): Promise<void>;
  /** Cheap round trip proving the store works. */
  ping(): Promise<void>;
  connected(): boolean;
  /** Resolves after the first connection attempt succeeded or failed. */
  readonly firstAttempt: Promise<void>;
  close(): Promise<void>;
}
