/**
 * Every key the read cache uses is built here, and nowhere else: code and
 * tests import {@link readCacheKeys} instead of writing key strings. Under the
 * cache's prefix (`CACHE_PREFIX`):
 *
 *   gen:{<scope>}                            the generation of a scope: a user id, or a shared scope
 *                                            (`leaderboard-global`); bumped by every invalidation, never expires
 *   gen:lsn:{<scope>}                        the scope's commit mark (read replicas)
 *   resp:{<scope>}:<generation>:t.<digest>   a stored response body, at the generation read before it was computed
 *   resp:leaderboard:<scope>:<filters>       a computed leaderboard (JSON; the generation it was built at inside)
 *   resp:shared:<token hash>                 a share link's snapshot (JSON), kept no longer than the link lives;
 *                                            deleted by its revocation (`modules/share-link/share-link.service.ts`)
 *
 * The `t.` marks entries stored as tagged bytes (`CachePort.setVersioned`):
 * a release that stores untagged bodies (`resp:<scope>:<generation>:<digest>`)
 * never reads one of these during a rolling deploy or a rollback, and this
 * one never reads theirs. The scope is a Redis Cluster hash tag (`{…}`,
 * the first braces of the key: the prefix has none, `config.ts`): a scope's
 * generation and its entries are read together by one script, so they must
 * live in one slot; different scopes spread over the cluster. Everything the read cache stores is in the `resp`
 * namespace, so the admin's RESPONSES flush covers it; the `gen` counters are
 * invalidation bookkeeping, not a cache, and no flush touches them (dropping
 * one could make an old entry current again).
 */
import type { VersionedKey } from '../cache/cache.port';

/** The namespace of everything the read cache stores. */
export const RESPONSE_NAMESPACE = 'resp';
/** The namespace of the generation counters. */
export const GENERATION_NAMESPACE = 'gen';

/** `{scope}`: the part of a key Redis Cluster hashes to a slot. A scope is an id or a fixed name: never braces. */
function hashTag(scope: string): string {
  return `{${scope}}`;
}

export const readCacheKeys = {
  /** The counter of `scope`'s generation. */
  generation(scope: string): string {
    return `${GENERATION_NAMESPACE}:${hashTag(scope)}`;
  },
  /**
   * The WAL position (bytes) of the last commit that changed `scope`'s data, next to its generation: a read of the
   * scope goes to a replica only once that replica has replayed it (`db/replicas.ts`). Only with DATABASE_REPLICA_URLS.
   */
  commitMark(scope: string): string {
    return `${GENERATION_NAMESPACE}:lsn:${hashTag(scope)}`;
  },
  /** A response entry: read and stored with its scope's generation in one round trip. */
  response(scope: string, digest: string): VersionedKey {
    return {
      counter: readCacheKeys.generation(scope),
      entryPrefix: `${RESPONSE_NAMESPACE}:${hashTag(scope)}:`,
      entrySuffix: `:t.${digest}`,
    };
  },
  /** The key {@link readCacheKeys.response} resolves to at `generation`. */
  responseAt(scope: string, generation: number, digest: string): string {
    const key = readCacheKeys.response(scope, digest);
    return `${key.entryPrefix}${generation}${key.entrySuffix}`;
  },
  /** A share link's built snapshot, by the SHA-256 of its token (never the token). */
  sharedView(tokenHash: string): string {
    return `${RESPONSE_NAMESPACE}:shared:${tokenHash}`;
  },
  /** A computed leaderboard for one set of filters (`filters`: a digest of them). */
  leaderboard(scope: string, filters: string): string {
    return `${RESPONSE_NAMESPACE}:leaderboard:${scope}:${filters}`;
  },
};
