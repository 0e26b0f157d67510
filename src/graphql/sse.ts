/**
 * Subscriptions over Server-Sent Events (the graphql-sse protocol) at
 * `/graphql/stream`, on the same schema and auth as `/graphql`. Only
 * subscription operations are served here (queries and mutations go through
 * Apollo, with its plugins); errors are masked like everywhere else.
 */
import { type GraphQLError, type GraphQLSchema, Kind, parse } from 'graphql';
import { createHandler } from 'graphql-sse/lib/use/http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from './auth';
import type { Context } from './context';
import { classifyError } from './plugins/format-error';

export interface SseDeps {
  schema: GraphQLSchema;
  production: boolean;
  principalFrom(authorization: string | undefined): Promise<Principal | null>;
  context(requestId: string, principal: Principal | null): Context;
}

const badRequest = (message: string) =>
  [
    JSON.stringify({ errors: [{ message, extensions: { code: 'BAD_USER_INPUT' } }] }),
    { status: 400, statusText: 'Bad Request', headers: { 'content-type': 'application/json; charset=utf-8' } },
  ] as const;

export function createSseHandler(deps: SseDeps): (req: IncomingMessage, res: ServerResponse, requestId: string) => Promise<void> {
  const requestIds = new WeakMap<IncomingMessage, string>();
  // graphql-sse wants an index-signature context; ours is a plain interface.
  type SseContext = Context & Record<PropertyKey, unknown>;
  const handler = createHandler<SseContext>({
    schema: deps.schema,
    onSubscribe: (_req, params) => {
      let isSubscription = false;
      try {
        const document = typeof params.query === 'string' ? parse(params.query) : params.query;
        isSubscription = document.definitions.some((d) => d.kind === Kind.OPERATION_DEFINITION && d.operation === 'subscription');
      } catch {
        return badRequest('The query is not valid GraphQL');
      }
      if (!isSubscription) return badRequest('Only subscriptions are served at /graphql/stream; send queries and mutations to /graphql');
      return undefined;
    },
    context: async (req) => {
      const raw = req.raw as IncomingMessage;
      // An invalid token is reported by the resolver as UNAUTHENTICATED (like a missing one).
      const principal = await deps.principalFrom(raw.headers.authorization).catch(() => null);
      return deps.context(requestIds.get(raw) ?? 'sse', principal) as SseContext;
    },
    onNext: (_ctx, _req, result) => {
      if (!('errors' in result) || !result.errors?.length) return result;
      const errors = (result.errors as readonly GraphQLError[]).map((e) => classifyError(e.toJSON(), e, deps.production).formatted);
      // Formatted errors serialise exactly like GraphQLErrors (graphql-sse JSON.stringifies the result).
      return { ...result, errors } as unknown as typeof result;
    },
  });
  return async (req, res, requestId) => {
    requestIds.set(req, requestId);
    await handler(req, res);
  };
}
