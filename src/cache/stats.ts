import type { CacheLookupHook, NamespaceStats } from './cache.port';

/** Per-namespace hit/miss counters, optionally mirrored to a hook (metrics). */
export class CacheStats {
  private readonly counts = new Map<string, NamespaceStats>();

  constructor(private readonly hook?: CacheLookupHook) {}

  record(namespace: string, hit: boolean): void {
    let entry = this.counts.get(namespace);
    if (!entry) this.counts.set(namespace, (entry = { hits: 0, misses: 0 }));
    if (hit) entry.hits++;
    else entry.misses++;
    this.hook?.(namespace, hit);
  }

  snapshot(): Record<string, NamespaceStats> {
    const out: Record<string, NamespaceStats> = {};
    for (const [ns, s] of this.counts) out[ns] = { ...s };
    return out;
  }
}
