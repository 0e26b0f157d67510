/**
 * The one LRU of the code base: a Map bounded to `maxEntries` (and, when
 * given, to a total weight such as bytes), evicting the least recently used
 * entry. Keyv accepts any Map as its in-memory store; this keeps the fallback
 * cache from growing without bound (Keyv only drops expired entries when
 * read). Also the verified-token memo (`auth/tokens.ts`), every per-document
 * cache under `DOCUMENT_CACHE_MB` (`graphql/document-cache.ts`: documents and
 * compiled executors; compiled reads; the read cache's policies and query
 * hashes, all bounded in estimated bytes), the model registry's
 * last good lists and the cache's local copies of response bytes
 * (`cache/local-copies.ts`, bounded in bytes).
 *
 * Kept in-house rather than `quick-lru`: quick-lru 6+ is ESM-only (this
 * project compiles to CommonJS), and being a real `Map` subclass is what
 * lets Keyv use it directly; it is a few lines over Map's own insertion order.
 */
export interface LruWeight<V, K = unknown> {
  /** Total weight kept at most; an entry heavier than this on its own is not kept. */
  maxWeight: number;
  /** The weight of one entry (its key included when it matters: a query text keyed to its hash). */
  weigh(value: V, key: K): number;
}

export class LruMap<K, V> extends Map<K, V> {
  private weight = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly weighted?: LruWeight<V, K>,
  ) {
    super();
  }

  /** The total weight of the entries kept (0 without a weight bound). */
  get totalWeight(): number {
    return this.weight;
  }

  /** The value, without counting as a use. */
  peek(key: K): V | undefined {
    return super.get(key);
  }

  override get(key: K): V | undefined {
    if (!super.has(key)) return undefined;
    const value = super.get(key) as V;
    super.delete(key);
    super.set(key, value);
    return value;
  }

  override set(key: K, value: V): this {
    // Map's constructor calls set before the fields are assigned; nothing to evict then.
    this.delete(key);
    const weight = this.weighted?.weigh(value, key) ?? 0;
    if (this.weighted && weight > this.weighted.maxWeight) return this;
    super.set(key, value);
    this.weight += weight;
    while ((this.maxEntries !== undefined && this.size > this.maxEntries) || (this.weighted && this.weight > this.weighted.maxWeight)) {
      const oldest = this.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
    }
    return this;
  }

  override delete(key: K): boolean {
    if (!super.has(key)) return false;
    if (this.weighted) this.weight -= this.weighted.weigh(super.get(key) as V, key);
    return super.delete(key);
  }

  override clear(): void {
    super.clear();
    this.weight = 0;
  }
}
