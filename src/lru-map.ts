/**
 * The one LRU of the code base: a Map bounded to `maxEntries`, evicting the
 * least recently used entry. Keyv accepts any Map as its in-memory store; this
 * keeps the fallback cache from growing without bound (Keyv only drops expired
 * entries when read). Also the verified-token memo (`graphql/auth.ts`), the
 * read cache's per-document policies (`graphql/response-cache.ts`) and the
 * model registry's last good lists.
 *
 * Kept in-house rather than `quick-lru`: quick-lru 6+ is ESM-only (this
 * project compiles to CommonJS), and being a real `Map` subclass is what
 * lets Keyv use it directly; it is a few lines over Map's own insertion order.
 */
export class LruMap<K, V> extends Map<K, V> {
  constructor(private readonly maxEntries: number) {
    super();
  }

  override get(key: K): V | undefined {
    if (!super.has(key)) return undefined;
    const value = super.get(key) as V;
    super.delete(key);
    super.set(key, value);
    return value;
  }

  override set(key: K, value: V): this {
    // Map's constructor calls set before maxEntries is assigned; nothing to evict then.
    if (super.has(key)) super.delete(key);
    super.set(key, value);
    while (this.maxEntries !== undefined && this.size > this.maxEntries) {
      const oldest = this.keys().next();
      if (oldest.done) break;
      super.delete(oldest.value);
    }
    return this;
  }
}
