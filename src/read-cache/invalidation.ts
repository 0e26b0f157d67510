/**
 * The read cache's two invalidation verbs: what a write calls when it changes
 * what someone reads. Each bumps a generation with one atomic INCR
 * (`generations.ts`): O(1), lists included, no key scans, seen by the next
 * read on every instance.
 *
 * Who calls them: every mutation by a signed-in user invalidates its author
 * (`invalidation.plugin.ts`, so no resolver has to remember); background work
 * that changes a user's data outside a mutation (the comparison runner
 * settling responses, spend settling) calls `invalidateUser` itself; the
 * service that owns a shared scope (the leaderboard's GLOBAL board) calls
 * `invalidateShared`.
 */
export interface ReadCacheInvalidation {
  /** Every cached read of `userId`'s data misses from now on. */
  invalidateUser(userId: string): Promise<void>;
  /** Every cached read of a shared `scope` (not a user's: `leaderboard-global`) misses from now on. */
  invalidateShared(scope: string): Promise<void>;
  /**
   * A write to `userId`'s data committed that no cached read holds yet (a new
   * account): with read replicas, the user's next reads wait for a replica to
   * have it (`db/replicas.ts`); without, nothing.
   */
  committed(userId: string): Promise<void>;
}
