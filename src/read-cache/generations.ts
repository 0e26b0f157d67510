/**
 * Generation numbers: every cached read of a scope's data (a user's, or a
 * shared scope such as the GLOBAL leaderboard) is keyed by `(scope,
 * generation)`, and every write that changes what the scope's readers see
 * bumps the generation with one atomic INCR. Old entries are never read again
 * and expire by TTL: invalidation is O(1), lists included, with no key scans.
 * Because the counter lives in the shared store, a write on one instance is
 * seen by the next read on every other instance.
 */
import type { CachePort } from '../cache/cache.port';
import type { ReadCacheInvalidation } from './invalidation';
import { readCacheKeys } from './keys';

export class Generations implements ReadCacheInvalidation {
  constructor(private readonly cache: CachePort) {}

  async invalidateUser(userId: string): Promise<void> {
    await this.cache.incr(readCacheKeys.generation(userId));
  }

  async invalidateShared(scope: string): Promise<void> {
    await this.cache.incr(readCacheKeys.generation(scope));
  }

  /** Current generation (0 before the first write or when the store is unavailable: then reads miss anyway). */
  async generation(scope: string): Promise<number> {
    return (await this.cache.get<number>(readCacheKeys.generation(scope))) ?? 0;
  }
}
