/**
 * Names the GraphQL operation's span (made active around Apollo by
 * `graphql/http.ts`) once Apollo has resolved the operation: `<type> <name>`,
 * with `graphql.operation.type` / `.name`, and an error status when the answer
 * carries errors (their codes, never messages or variables). Nothing when
 * tracing is off.
 */
import type { ApolloServerPlugin } from '@apollo/server';
import type { GraphqlContext } from '../context';
import { activeSpan, SpanStatusCode } from '../../observability/tracing';

export function graphqlTracingPlugin(): ApolloServerPlugin<GraphqlContext> {
  return {
    async requestDidStart() {
      const span = activeSpan();
      if (!span) return;
      return {
        async didResolveOperation(rc) {
          const type = rc.operation?.operation ?? 'unknown';
          const name = rc.operationName ?? 'anonymous';
          span.updateName(`${type} ${name}`);
          span.setAttribute('graphql.operation.type', type);
          span.setAttribute('graphql.operation.name', name);
        },
        async didEncounterErrors(rc) {
          const codes = [...new Set(rc.errors.map((e) => String(e.extensions?.code ?? 'INTERNAL_SERVER_ERROR')))];
          span.setStatus({ code: SpanStatusCode.ERROR });
          span.setAttribute('graphql.error.codes', codes);
        },
      };
    },
  };
}
