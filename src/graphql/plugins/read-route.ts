/**
 * Settles a `/graphql` request's read route (`db/replicas.ts`) once its
 * operation is known, before any resolver runs: a query reads from a replica
 * when the router allows it, a mutation (or anything else) from the primary.
 */
import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import type { Principal } from '../../auth/principal';
import type { ReadRouter } from '../../db/replicas';

export function readRoutePlugin(router: ReadRouter): ApolloServerPlugin<BaseContext & { principal: Principal | null }> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation(rc) {
          const writes = rc.operation?.operation !== 'query';
          await router.settle(rc.contextValue?.principal?.userId ?? null, writes);
          // A later operation of a batch that writes: its reads and the rest of the batch's go to the primary.
          if (writes) router.toPrimary('write');
        },
      };
    },
  };
}
