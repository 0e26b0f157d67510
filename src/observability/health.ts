/**
 * `GET /health`: live pool statistics, database connectivity (a bounded
 * `select 1`), and the cache's state and hit rate. `degraded` when either
 * dependency is down; the API keeps answering (the cache fails open).
 */
import type { CachePort } from '../cache/cache.port';
import { type Orm, poolStats } from '../db/orm';
import { GENERATION_NAMESPACE } from '../read-cache/keys';

export interface HealthReport {
  status: 'ok' | 'degraded';
  database: { connected: boolean; size: number; used: number; free: number; pending: number; max: number };
  cache: {
    store: 'redis' | 'memory';
    connected: boolean;
    breakerOpen: boolean;
    hits: number;
    misses: number;
    hitRate: number | null;
    byCache: Record<string, { hits: number; misses: number; hitRate: number | null }>;
  };
  uptimeSeconds: number;
  version: string;
}

const rate = (hits: number, misses: number) => (hits + misses === 0 ? null : Number((hits / (hits + misses)).toFixed(4)));

export async function healthReport(deps: {
  orm: Orm;
  cache: CachePort;
  startedAt: number;
  version: string;
  ping: () => Promise<boolean>;
}): Promise<HealthReport> {
  const connected = await deps.ping();
  const cacheHealth = deps.cache.health();
  const byCache: HealthReport['cache']['byCache'] = {};
  let hits = 0;
  let misses = 0;
  for (const [name, s] of Object.entries(deps.cache.stats())) {
    // `gen` lookups (one per cached read) are invalidation bookkeeping, not a cache: they would inflate the hit rate.
    if (name === GENERATION_NAMESPACE) continue;
    byCache[name] = { ...s, hitRate: rate(s.hits, s.misses) };
    hits += s.hits;
    misses += s.misses;
  }
  const cacheUp = cacheHealth.connected && !cacheHealth.breakerOpen;
  return {
    status: connected && cacheUp ? 'ok' : 'degraded',
    database: { connected, ...poolStats(deps.orm) },
    cache: { ...cacheHealth, hits, misses, hitRate: rate(hits, misses), byCache },
    uptimeSeconds: Math.round((Date.now() - deps.startedAt) / 1000),
    version: deps.version,
  };
}
