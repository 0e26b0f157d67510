/**
 * The one place a user's writes invalidate their cached reads: after any
 * mutation by a signed-in user — whatever it was, whether or not it failed
 * part-way — the user's generation is bumped before the response is sent,
 * so the author's next read, on any instance, misses the old entries. No
 * resolver has to remember it. Background work and shared scopes call the
 * verbs themselves (`invalidation.ts`).
 */
import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import type { Principal } from '../auth/principal';
import type { ReadCacheInvalidation } from './invalidation';

export function invalidationPlugin(invalidation: ReadCacheInvalidation): ApolloServerPlugin<BaseContext & { principal: Principal | null }> {
  return {
    async requestDidStart() {
      // Only once execution started: a mutation refused by parsing or validation changed nothing.
      let executed = false;
      return {
        async executionDidStart() {
          executed = true;
        },
        async willSendResponse(rc) {
          const principal = rc.contextValue?.principal;
          if (!executed || rc.operation?.operation !== 'mutation' || !principal) return;
          await invalidation.invalidateUser(principal.userId);
        },
      };
    },
  };
}
