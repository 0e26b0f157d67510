/**
 * Generation numbers: every cached read of a scope's data (a user's, or a
 * shared scope such as the GLOBAL leaderboard) is keyed by `(scope,
 * generation)`, and every write that changes what the scope's readers see
 * bumps the generation with one atomic INCR. Old entries are never read again
 * and expire by TTL: invalidation is O(1), lists included, with no key scans.
 * Because the counter lives in the shared store, a write on one instance is
 * seen by the next read on every other instance.
 *
 * With read replicas, a user's invalidation first records the primary's WAL
 * position as the user's commit mark (`db/replicas.ts`), so a read that sees
 * the new generation reads from a replica that holds the write, or from the
 * primary: an entry stored at that generation is never computed from data
 * older than the write.
 */
import type { CachePort } from '../cache/cache.port';
import type { ReadCacheInvalidation } from './invalidation';
import { readCacheKeys } from './keys';

/** What records a commit mark (`ReadRouter`); absent without read replicas. */
export interface CommitMarks {
  recordCommit(scope: string): Promise<void>;
}

export class Generations implements ReadCacheInvalidation {
  constructor(
    private readonly cache: CachePort,
    private readonly commits?: CommitMarks,
  ) {}

  async invalidateUser(userId: string): Promise<void> {
    // The mark before the bump: whoever sees the new generation sees the mark.
    await this.commits?.recordCommit(userId);
    await this.cache.incr(readCacheKeys.generation(userId));
  }

  async committed(userId: string): Promise<void> {
    await this.commits?.recordCommit(userId);
  }

  async invalidateShared(scope: string): Promise<void> {
    await this.cache.incr(readCacheKeys.generation(scope));
  }

  /** Current generation (0 before the first write or when the store is unavailable: then reads miss anyway). */
  async generation(scope: string): Promise<number> {
    return (await this.cache.get<number>(readCacheKeys.generation(scope))) ?? 0;
  }
}
