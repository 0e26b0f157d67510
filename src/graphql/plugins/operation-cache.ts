/**
 * Apollo's half of the read cache (the HTTP edge, `response-cache.ts`,
 * answers hits for documents it already knows):
 *
 * - after validation it learns the operation's cache policy once per
 *   document, so the edge can answer the next request without Apollo;
 * - when the edge did not look the request up (the document was new to this
 *   process, or asked for `application/graphql-response+json`), it looks it up
 *   here: a hit is parsed and returned, with the entry's ETag (this path runs
 *   once per document per process), a miss remembers the generation;
 * - a result without errors is marked to be stored (the HTTP layer stores the
 *   exact bytes it sends);
 * - it sets `Cache-Control` from the static policy: `private, no-cache` for
 *   anything per-user (browsers revalidate with the ETag), `public, max-age`
 *   only when anonymous and every root field allows it (the model catalog),
 *   `no-store` otherwise. No hook runs per resolved field;
 * - it hands each validated query to `compiled-read.ts`, which compiles it
 *   once (or finds it does not compile) for the edge's next miss.
 */
import type { ApolloServerPlugin, GraphQLRequestContext } from '@apollo/server';
import { HeaderMap } from '@apollo/server';
import type { OperationPolicy } from '../cache-policy';
import type { CompiledReads } from '../compiled-read';
import type { Context } from '../context';
import type { ResponseCache } from '../response-cache';

export function operationCachePlugin(responseCache: ResponseCache, compiledReads?: CompiledReads): ApolloServerPlugin<Context> {
  return {
    async requestDidStart() {
      let policy: OperationPolicy | undefined;
      let pending: { scope: string; digest: string; generation: number } | undefined;
      return {
        async didResolveOperation(rc) {
          if (rc.operation && rc.queryHash) {
            policy = responseCache.learn(rc.queryHash, rc.request.operationName ?? null, rc.operation);
            // The edge answers the next miss of this document from SQL-built JSON when it compiles.
            if (policy.type === 'query') compiledReads?.learn(rc.queryHash, rc.request.operationName ?? null, rc.document, rc.operation);
          }
        },
        async responseForOperation(rc: GraphQLRequestContext<Context>) {
          const principal = rc.contextValue.principal;
          const state = rc.contextValue.readCache;
          const variables = rc.request.variables ?? {};
          if (!principal || !rc.queryHash || !policy?.cacheable(variables)) return null;
          if (state.looked) {
            if (state.looked.generation !== undefined) pending = { ...state.looked, generation: state.looked.generation };
            return null;
          }
          const plan = { scope: principal.userId, digest: responseCache.digest({ documentHash: rc.queryHash, operationName: rc.request.operationName ?? null, variables }) };
          const found = await responseCache.lookup(plan);
          if (!found) return null;
          if (found.bytes && !state.bypass) {
            state.answeredFrom = { ...plan, generation: found.generation };
            const { data } = JSON.parse(found.bytes.toString('utf8')) as { data: Record<string, unknown> };
            return { http: { status: undefined, headers: new HeaderMap([['x-cache', 'HIT']]) }, body: { kind: 'single', singleResult: { data } } };
          }
          pending = { ...plan, generation: found.generation };
          return null;
        },
        async willSendResponse(rc) {
          const body = rc.response.body;
          if (pending && body.kind === 'single' && !body.singleResult.errors && body.singleResult.data && !rc.response.http.headers.get('x-cache')) {
            if (rc.contextValue.readCache) rc.contextValue.readCache.storeAs = pending;
          }
          rc.response.http.headers.set('cache-control', cacheControlHeader(rc, policy));
        },
      };
    },
  };
}

function cacheControlHeader(rc: GraphQLRequestContext<Context>, policy: OperationPolicy | undefined): string {
  if (policy?.type !== 'query' || rc.errors?.length) return 'no-store';
  if (rc.contextValue?.principal) return 'private, no-cache';
  return policy.publicMaxAge > 0 ? `public, max-age=${policy.publicMaxAge}` : 'no-store';
}
