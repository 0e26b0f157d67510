/**
 * Hands each validated query to `compiled-read.ts`, which compiles it once (or
 * finds it does not compile) for the edge's next miss of that document.
 */
import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import type { CompiledReads } from '../compiled-read';

export function compiledReadsPlugin(compiledReads: CompiledReads): ApolloServerPlugin<BaseContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation(rc) {
          if (rc.operation?.operation !== 'query' || !rc.queryHash) return;
          compiledReads.learn(rc.queryHash, rc.request.operationName ?? null, rc.document, rc.operation);
        },
      };
    },
  };
}
