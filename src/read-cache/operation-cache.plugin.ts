/**
 * Apollo's half of the read cache (the HTTP edge answers hits for documents
 * it already knows; `request.ts` has one request's steps):
 *
 * - after validation it learns the operation's cache policy once per
 *   document, so the edge can answer the next request without Apollo;
 * - when the edge did not look the request up (the document was new to this
 *   process), it looks it up here: a hit is parsed and returned (this path runs
 *   once per document per process);
 * - a computed result without errors is kept, to be stored (the HTTP edge
 *   stores the exact bytes it sends);
 * - it sets `Cache-Control` from the static policy: `private, no-cache` for
 *   anything per-user (browsers revalidate with the ETag), `public, max-age`
 *   only when anonymous and every root field allows it (the model catalog),
 *   `no-store` otherwise. No hook runs per resolved field.
 */
import type { ApolloServerPlugin, BaseContext, GraphQLRequestContext } from '@apollo/server';
import { HeaderMap } from '@apollo/server';
import type { Principal } from '../auth/principal';
import type { OperationPolicy } from './cache-policy';
import type { ReadCacheRequest } from './request';
import type { ResponseCache } from './response-cache';

/** What the plugin reads on a request's context: its principal and, when signed in on `/graphql`, its read-cache state. */
export interface ReadCacheContext extends BaseContext {
  principal: Principal | null;
  readCache?: ReadCacheRequest;
}

export function operationCachePlugin(responseCache: ResponseCache): ApolloServerPlugin<ReadCacheContext> {
  return {
    async requestDidStart() {
      let policy: OperationPolicy | undefined;
      let hit = false;
      return {
        async didResolveOperation(rc) {
          if (rc.operation && rc.queryHash) policy = responseCache.learn(rc.queryHash, rc.request.operationName ?? null, rc.operation);
        },
        async responseForOperation(rc) {
          const reading = rc.contextValue.readCache;
          const variables = rc.request.variables ?? {};
          if (!reading || !rc.queryHash || !policy?.cacheable(variables)) return null;
          const bytes = await reading.inApollo({ documentHash: rc.queryHash, operationName: rc.request.operationName ?? null, variables });
          if (!bytes) return null;
          hit = true;
          const { data } = JSON.parse(bytes.toString('utf8')) as { data: Record<string, unknown> };
          return {
            http: { status: undefined, headers: new HeaderMap([['x-cache', 'HIT']]) },
            body: { kind: 'single', singleResult: { data } },
          };
        },
        async willSendResponse(rc) {
          const body = rc.response.body;
          const computed = !hit && body.kind === 'single' && !body.singleResult.errors && body.singleResult.data;
          if (computed) rc.contextValue.readCache?.keepApolloAnswer();
          rc.response.http.headers.set('cache-control', cacheControlHeader(rc, policy));
        },
      };
    },
  };
}

function cacheControlHeader(rc: GraphQLRequestContext<ReadCacheContext>, policy: OperationPolicy | undefined): string {
  if (policy?.type !== 'query' || rc.errors?.length) return 'no-store';
  if (rc.contextValue?.principal) return 'private, no-cache';
  return policy.publicMaxAge > 0 ? `public, max-age=${policy.publicMaxAge}` : 'no-store';
}
