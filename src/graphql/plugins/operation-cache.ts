/**
 * The resolver-level read cache. A query whose root fields are all cacheable
 * (`conversations`, `conversation`, `comparisons`, `comparison`,
 * `leaderboard(scope: MINE)`, `me`) is answered from the cache port when a
 * result is stored under
 *
 *   resp:<userId>:<generation>:sha256(document, variables, operationName)
 *
 * so a hit runs no resolver and no SQL. The user id keeps users apart; the
 * generation (bumped by each of the user's writes, see `cache/generations.ts`)
 * makes a write visible to the author's next read on any instance.
 * Anonymous requests and results with errors are never stored.
 *
 * It also sets `Cache-Control`: `private, no-cache` for anything per-user
 * (browsers revalidate with the ETag), `public, max-age` only when the
 * operation is anonymous and every field allows public caching (the model
 * catalog), `no-store` otherwise.
 */
import type { ApolloServerPlugin, GraphQLRequestContext } from '@apollo/server';
import { HeaderMap } from '@apollo/server';
import { type FieldNode, Kind, type OperationDefinitionNode, valueFromASTUntyped } from 'graphql';
import { createHash } from 'node:crypto';
import type { CachePort } from '../../cache/cache.port';
import type { GenerationInvalidator } from '../../cache/generations';
import type { Context } from '../context';

const CACHEABLE_ROOT_FIELDS = new Set(['conversations', 'conversation', 'comparisons', 'comparison', 'me', 'leaderboard']);

/** `leaderboard` is cacheable per user only for `scope: MINE` (GLOBAL changes with everyone's votes). */
function isCacheableField(field: FieldNode, variables: Record<string, unknown>): boolean {
  const name = field.name.value;
  if (name === '__typename') return true;
  if (!CACHEABLE_ROOT_FIELDS.has(name)) return false;
  if (name !== 'leaderboard') return true;
  const scope = field.arguments?.find((a) => a.name.value === 'scope');
  return !!scope && valueFromASTUntyped(scope.value, variables) === 'MINE';
}

export function isCacheableOperation(operation: OperationDefinitionNode, variables: Record<string, unknown>): boolean {
  if (operation.operation !== 'query') return false;
  return operation.selectionSet.selections.every((s) => s.kind === Kind.FIELD && isCacheableField(s, variables));
}

export function operationCachePlugin(opts: { cache: CachePort; generations: GenerationInvalidator; ttlMs: number }): ApolloServerPlugin<Context> {
  return {
    async requestDidStart() {
      let storeKey: string | undefined;
      return {
        async responseForOperation(rc: GraphQLRequestContext<Context>) {
          const principal = rc.contextValue.principal;
          const variables = rc.request.variables ?? {};
          if (!principal || !rc.operation || !isCacheableOperation(rc.operation, variables)) return null;
          const generation = await opts.generations.generation(principal.userId);
          const digest = createHash('sha256')
            .update(JSON.stringify([rc.queryHash, rc.operationName ?? null, variables]))
            .digest('base64url');
          const key = `resp:${principal.userId}:${generation}:${digest}`;
          const data = await opts.cache.get<Record<string, unknown>>(key);
          if (data === undefined) {
            storeKey = key;
            return null;
          }
          return { http: { status: undefined, headers: new HeaderMap([['x-cache', 'HIT']]) }, body: { kind: 'single', singleResult: { data } } };
        },
        async willSendResponse(rc) {
          const body = rc.response.body;
          if (storeKey && body.kind === 'single' && !body.singleResult.errors && body.singleResult.data) {
            await opts.cache.set(storeKey, body.singleResult.data, opts.ttlMs);
          }
          rc.response.http.headers.set('cache-control', cacheControlHeader(rc));
        },
      };
    },
  };
}

function cacheControlHeader(rc: GraphQLRequestContext<Context>): string {
  const operation = rc.operation?.operation;
  if (operation !== 'query' || rc.errors?.length) return 'no-store';
  if (rc.contextValue?.principal) return 'private, no-cache';
  const policy = rc.overallCachePolicy.policyIfCacheable();
  if (policy && policy.scope === 'PUBLIC' && policy.maxAge > 0) return `public, max-age=${policy.maxAge}`;
  return 'no-store';
}
