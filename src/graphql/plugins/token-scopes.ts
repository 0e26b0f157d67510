/**
 * A personal API token outside its scopes is refused (FORBIDDEN, 403) once
 * the operation is known, before anything runs and before the read cache's
 * lookup inside Apollo (`responseForOperation` comes after this hook). The
 * decision is the document's (`auth/token-scopes.ts`); the edge and SSE ask
 * the same {@link TokenAccessPolicy}.
 */
import type { ApolloServerPlugin } from '@apollo/server';
import type { TokenAccessPolicy } from '../../auth/token-scopes';
import type { GraphqlContext } from '../context';

export function tokenScopesPlugin(policy: TokenAccessPolicy): ApolloServerPlugin<GraphqlContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation(rc) {
          if (!rc.contextValue.principal?.token || !rc.operation) return;
          policy.check(rc.contextValue.principal, rc.queryHash, rc.document, rc.operation);
        },
      };
    },
  };
}
