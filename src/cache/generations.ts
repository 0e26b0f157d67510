/**
 * Per-user generation numbers: every cached read of a user's data is keyed by
 * `(userId, generation)`; every write that changes what the user sees bumps
 * the generation with one atomic INCR. Old entries are never read again and
 * expire by TTL: invalidation is O(1), lists included, with no key scans.
 * Because the counter lives in the shared store, a write on one instance is
 * seen by the next read on every other instance.
 */
import type { CachePort } from './cache.port';
import type { UserCacheInvalidator } from './invalidation';

export class GenerationInvalidator implements UserCacheInvalidator {
  constructor(private readonly cache: CachePort) {}

  async invalidateUser(userId: string): Promise<void> {
    await this.bump(userId);
  }

  /** Makes every entry keyed by `scope`'s current generation unreachable (a user id, or a shared scope such as the GLOBAL leaderboard). */
  async bump(scope: string): Promise<void> {
    await this.cache.incr(`gen:${scope}`);
  }

  /** Current generation (0 before the first write or when the store is unavailable: then reads miss anyway). */
  async generation(scope: string): Promise<number> {
    return (await this.cache.get<number>(`gen:${scope}`)) ?? 0;
  }
}
