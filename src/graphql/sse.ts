/**
 * Subscriptions over Server-Sent Events (the graphql-sse protocol) at
 * `/graphql/stream`, on the same schema and auth as `/graphql`. Only
 * subscription operations are served here (queries and mutations go through
 * Apollo, with its plugins); errors are masked like everywhere else.
 */
import type { HeaderMap } from '@apollo/server';
import { type GraphQLError, type GraphQLSchema, Kind, parse } from 'graphql';
import { createHandler } from 'graphql-sse/lib/use/http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from './auth';
import type { Context } from './context';
import { AppError } from './errors';
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
  const requests = new WeakMap<IncomingMessage, { requestId: string; principal: Principal | null }>();
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
      // The token was verified before the stream opened (an invalid one answered 401);
      // a missing one is reported by the resolver as UNAUTHENTICATED.
      const request = requests.get(req.raw as IncomingMessage);
      return deps.context(request?.requestId ?? 'sse', request?.principal ?? null) as SseContext;
    },
    onNext: (_ctx, _req, result) => {
      if (!('errors' in result) || !result.errors?.length) return result;
      const errors = (result.errors as readonly GraphQLError[]).map((e) => classifyError(e.toJSON(), e, deps.production).formatted);
      // Formatted errors serialise exactly like GraphQLErrors (graphql-sse JSON.stringifies the result).
      return { ...result, errors } as unknown as typeof result;
    },
  });
  return async (req, res, requestId) => {
    let principal: Principal | null;
    try {
      principal = await deps.principalFrom(req.headers.authorization);
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      sendError(res, error, deps.production);
      return;
    }
    requests.set(req, { requestId, principal });
    await handler(req, res);
  };
}

/** Answers before any stream opens, with the status and headers the error asks for (as Apollo does on /graphql). */
function sendError(res: ServerResponse, error: AppError, production: boolean): void {
  const http = error.extensions.http as { status?: number; headers?: HeaderMap } | undefined;
  res.statusCode = http?.status ?? 400;
  for (const [name, value] of http?.headers ?? []) res.setHeader(name, value);
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(JSON.stringify({ errors: [classifyError(error.toJSON(), error, production).formatted] }));
}
