/**
 * Per-operation metrics, the slow-request log, and the log line (with request
 * id) for every internal error a client only sees as INTERNAL_SERVER_ERROR.
 * Never logs variables (they may hold passwords or API keys). The operation
 * label is bounded (`OperationLabels`): client-chosen names cannot create
 * unbounded series.
 */
import type { ApolloServerPlugin } from '@apollo/server';
import type { GraphqlContext } from '../context';
import type { Metrics } from '../../observability/metrics';
import type { OperationLabels } from '../../observability/operation-labels';
import { classifyError } from '../format-error';

export function observabilityPlugin(opts: {
  metrics: Metrics;
  slowRequestMs: number;
  production: boolean;
  operationLabels: OperationLabels;
}): ApolloServerPlugin<GraphqlContext> {
  return {
    async requestDidStart() {
      const start = performance.now();
      return {
        async didEncounterErrors(rc) {
          for (const error of rc.errors) {
            const { formatted, internal } = classifyError({ message: error.message, extensions: error.extensions }, error, opts.production);
            opts.metrics.graphqlErrors.inc({ code: String(formatted.extensions?.code) });
            if (internal) {
              const logger = rc.contextValue?.logger ?? rc.logger;
              logger.error(
                {
                  err: error.originalError ?? error,
                  requestId: rc.contextValue?.requestId,
                  path: error.path?.join('.'),
                  operation: rc.operationName,
                },
                'internal error',
              );
            }
          }
        },
        async willSendResponse(rc) {
          const ms = performance.now() - start;
          const operation = rc.operationName ?? 'anonymous';
          const type = rc.operation?.operation ?? 'unknown';
          const outcome = rc.errors?.length ? 'error' : 'ok';
          opts.metrics.graphqlOperations.inc({ operation: opts.operationLabels.label(rc.operationName), type, outcome });
          if (ms >= opts.slowRequestMs && rc.contextValue?.logger) {
            rc.contextValue.logger.warn({ operation, type, durationMs: Math.round(ms) }, 'slow request');
          }
        },
      };
    },
  };
}
