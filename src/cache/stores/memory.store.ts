import { Keyv } from 'keyv';
import { LruMap } from '../../lru-map';
import { deserializeEnvelope, serializeEnvelope } from './serialization';
import type { Store } from './store';

/**
 * In-process store: Keyv over an LRU-bounded Map (same JSON envelope as
 * Redis, so values round-trip identically). Counters live in a separate,
 * unbounded Map: evicting a generation number could resurrect old entries.
 */
export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  readonly firstAttempt = Promise.resolve();
  private readonly map: LruMap<string, string>;
  private readonly counters = new Map<string, number>();
  /** Raw entries (response bytes), bounded like the Keyv map. */
  private readonly raw: LruMap<string, { bytes: Buffer; expires: number }>;
  /** Numbers kept by `raise` (commit marks), bounded like the Keyv map: an evicted mark only sends its user's reads to the primary. */
  private readonly marks: LruMap<string, { value: number; expires: number }>;
  private readonly keyv: Keyv;

  constructor(maxEntries: number) {
    this.map = new LruMap(maxEntries);
    this.raw = new LruMap(maxEntries);
    this.marks = new LruMap(maxEntries);
    this.keyv = new Keyv(this.map, {
      namespace: undefined,
      useKeyPrefix: false,
      throwOnErrors: true,
      serialize: serializeEnvelope,
      deserialize: deserializeEnvelope,
    });
  }

  async get(fullKey: string): Promise<unknown> {
    const counter = this.counters.get(fullKey);
    if (counter !== undefined) return counter;
    return this.keyv.get(fullKey);
  }

  async set(fullKey: string, value: unknown, ttlMs?: number): Promise<void> {
    this.counters.delete(fullKey);
    await this.keyv.set(fullKey, value, ttlMs);
  }

  async delete(fullKey: string): Promise<void> {
    this.counters.delete(fullKey);
    this.map.delete(fullKey);
    this.raw.delete(fullKey);
    this.marks.delete(fullKey);
  }

  async getVersioned(
    counterKey: string,
    entryPrefix: string,
    entrySuffix: string,
    held?: { counter: number; tag: Buffer },
  ): Promise<{ counter: number; raw: Buffer | undefined; held: boolean }> {
    const counter = this.counters.get(counterKey) ?? 0;
    const key = `${entryPrefix}${counter}${entrySuffix}`;
    const entry = this.raw.get(key);
    if (!entry) return { counter, raw: undefined, held: false };
    if (entry.expires <= Date.now()) {
      this.raw.delete(key);
      return { counter, raw: undefined, held: false };
    }
    if (held && held.counter === counter && entry.bytes.subarray(0, held.tag.length).equals(held.tag))
      return { counter, raw: undefined, held: true };
    return { counter, raw: entry.bytes, held: false };
  }

  async setRaw(fullKey: string, raw: Buffer, ttlMs: number): Promise<void> {
    this.raw.set(fullKey, { bytes: raw, expires: Date.now() + ttlMs });
  }

  /** Synchronous read-modify-write: atomic within the process. */
  async incr(fullKey: string): Promise<number> {
    const next = (this.counters.get(fullKey) ?? 0) + 1;
    this.map.delete(fullKey);
    this.counters.set(fullKey, next);
    return next;
  }

  /** Synchronous read-modify-write: atomic within the process. */
  async raise(fullKey: string, value: number, ttlMs: number): Promise<void> {
    const held = this.marks.get(fullKey);
    const current = held && held.expires > Date.now() ? held.value : -Infinity;
    this.marks.set(fullKey, { value: Math.max(current, value), expires: Date.now() + ttlMs });
  }

  async getNumber(fullKey: string): Promise<number | null> {
    const held = this.marks.get(fullKey);
    if (held && held.expires > Date.now()) return held.value;
    const counter = this.counters.get(fullKey);
    return counter ?? null;
  }

  async flushNamespace(nsPrefix: string): Promise<void> {
    const matches = (k: string) => k === nsPrefix || k.startsWith(`${nsPrefix}:`);
    for (const k of [...this.map.keys()]) if (matches(k)) this.map.delete(k);
    for (const k of [...this.counters.keys()]) if (matches(k)) this.counters.delete(k);
    for (const k of [...this.raw.keys()]) if (matches(k)) this.raw.delete(k);
  }

  async ping(): Promise<void> {}

  connected(): boolean {
    return true;
  }

  async close(): Promise<void> {
    this.map.clear();
    this.counters.clear();
    this.raw.clear();
    this.marks.clear();
  }
}
