import { Counter, type Registry } from 'prom-client';
import type { CacheLookupHook } from './cache.port';

const HITS = 'llmselect_cache_hits_total';
const MISSES = 'llmselect_cache_misses_total';

/**
 * Registers `llmselect_cache_hits_total{cache}` and
 * `llmselect_cache_misses_total{cache}` (label = cache namespace: `resp`,
 * `models`, `apq`, ...) on `registry` and returns the hook to pass to
 * `createCache({ onLookup })`. Calling it again on the same registry reuses
 * the counters. Wiring:
 *
 *   const cache = createCache({ ...opts, onLookup: registerCacheMetrics(registry) });
 */
export function registerCacheMetrics(registry: Registry): CacheLookupHook {
  const counter = (name: string, help: string) =>
    (registry.getSingleMetric(name) as Counter<'cache'> | undefined) ??
    new Counter({ name, help, labelNames: ['cache'], registers: [registry] });
  const hits = counter(HITS, 'Cache lookups answered from the cache, by namespace.');
  const misses = counter(MISSES, 'Cache lookups not answered from the cache (absent, expired or cache unavailable), by namespace.');
  return (namespace, hit) => (hit ? hits : misses).inc({ cache: namespace });
}
