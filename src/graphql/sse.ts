/**
 * Subscriptions over Server-Sent Events (the graphql-sse protocol) at
 * `/graphql/stream`, on the same schema and auth as `/graphql`. Only
 * subscription operations are served here (queries and mutations go through
 * Apollo, with its plugins); errors are masked like everywhere else.
 *
 * The same document limits as `/graphql` apply (`DocumentGuard`: body size,
 * tokens, aliases, directives, depth, cost, text inputs), and every refusal
 * is a 400 with formatted errors carrying the contract's codes. graphql-sse's
 * own Node adapter reads bodies of any size, so this file adapts its
 * server-agnostic handler to Node itself, with the body read by `readBody`.
 */
import type { HeaderMap } from '@apollo/server';
import type { ExecutionResult, GraphQLError } from 'graphql';
import { createHandler, type Response as SseResponse } from 'graphql-sse';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from '../auth/principal';
import type { GraphqlContext, RequestContexts } from './context';
import { AppError } from '../errors';
import { readBody } from '../http/respond';
import { classifyError } from './format-error';
import { type Subscriptions, untilExpiry } from './subscriptions';
import type { TurnGate } from '../turns';

export interface SseDeps {
  /** The checks and execution every subscription transport shares. */
  subscriptions: Subscriptions;
  production: boolean;
  maxBodyBytes: number;
  contexts: RequestContexts;
  /** Personal-token revocations applied on this instance (`PersonalTokenVerifier.onRevoked`): a stream opened with the token ends. */
  onTokenRevoked?: (listener: (tokenId: string) => void) => () => void;
  /** A burst of opens takes one event-loop turn each (`../turns.ts`). */
  turns?: Pick<TurnGate, 'take'>;
}

/** The last event of a stream whose personal token was revoked (or whose token expired) while it ran, then `complete`. */
const endEvents = (message: string) =>
  `event: next\ndata: {"errors":[{"message":"${message}","extensions":{"code":"UNAUTHENTICATED"}}]}\n\n` + 'event: complete\ndata:\n\n';
const REVOKED_EVENTS = endEvents('The token was revoked');
const EXPIRED_EVENTS = endEvents('The token expired: sign in again and resubscribe');

export function createSseHandler(deps: SseDeps): (req: IncomingMessage, res: ServerResponse, requestId: string) => Promise<void> {
  const { subscriptions } = deps;
  const requests = new WeakMap<IncomingMessage, { requestId: string; principal: Principal | null; res?: ServerResponse }>();
  const refuse = (errors: readonly GraphQLError[], status: 400 | 403 = 400): SseResponse => [
    JSON.stringify({ errors: subscriptions.formatErrors(errors) }),
    { status, statusText: status === 400 ? 'Bad Request' : 'Forbidden', headers: { 'content-type': 'application/json; charset=utf-8' } },
  ];
  // graphql-sse wants an index-signature context; ours is a plain interface.
  type SseContext = GraphqlContext & Record<PropertyKey, unknown>;
  const handler = createHandler<IncomingMessage, undefined, SseContext>({
    schema: subscriptions.schema,
    // Validated in onSubscribe, with the document limits.
    validate: () => [],
    subscribe: (args) => subscriptions.subscribe(args),
    onSubscribe: async (req, params) => {
      // The token was verified before the stream opened (an invalid one answered 401).
      const request = requests.get(req.raw) ?? { requestId: 'sse', principal: null };
      const prepared = subscriptions.prepare(params, request.principal, '/graphql/stream');
      if (!prepared.ok) return refuse(prepared.errors, prepared.status);
      const contextValue = deps.contexts.create(req.raw, request.requestId, request.principal) as SseContext;
      if (request.res) contextValue.streamReady = readyFor(request.res);
      const { document, operationName } = prepared;
      return { schema: subscriptions.schema, document, operationName, variableValues: params.variables, contextValue };
    },
    // Formatted errors serialise exactly like GraphQLErrors (graphql-sse JSON.stringifies the result).
    onNext: (_ctx, _req, result) => subscriptions.format(result as ExecutionResult) as typeof result,
  });

  return async (req, res, requestId) => {
    let principal: Principal | null;
    try {
      principal = await deps.contexts.principal(req);
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      sendError(res, error, deps.production);
      return;
    }
    requests.set(req, { requestId, principal, res });
    // Throws HttpError 413 past the limit (http/server.ts answers it).
    const body = req.method === 'POST' ? await readBody(req, deps.maxBodyBytes) : null;
    await deps.turns?.take();
    const [responseBody, init] = await handler({
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      headers: {
        get(key) {
          const header = req.headers[key];
          return Array.isArray(header) ? header.join('\n') : header;
        },
      },
      body,
      raw: req,
      context: undefined,
    });
    // As graphql-sse's own Node adapter (`graphql-sse/lib/use/http`) writes it.
    res.writeHead(init.status, init.statusText, init.headers);
    if (!responseBody || typeof responseBody === 'string') {
      await new Promise<void>((resolve) => res.end(responseBody, () => resolve()));
      return;
    }
    // Events are written as they come, without waiting for each to be flushed; the socket is
    // corked from the first event until the current task and its microtasks are done (nextTick),
    // so the events one task produced (the deltas of a comparison's answers that arrived together)
    // leave in one write, and none waits for the rest of the loop's turn (setImmediate did: under
    // load a turn is tens of milliseconds). Only a full socket buffer (a slow client) makes the stream wait,
    // for `drain` or the client leaving.
    let closed = false;
    let corked = false;
    const uncork = () => {
      corked = false;
      res.uncork();
    };
    let wake: (() => void) | undefined;
    const onClose = () => {
      closed = true;
      wake?.();
      void responseBody.return(undefined);
    };
    const onDrain = () => wake?.();
    res.once('close', onClose);
    res.on('drain', onDrain);
    const endWith = (events: string) => {
      if (closed || !res.writable) return;
      res.end(events);
      onClose();
    };
    // A revoked personal token ends its open streams too, with an UNAUTHENTICATED event; so does the token's expiry.
    const tokenId = principal?.token?.id;
    const stopListening = tokenId ? deps.onTokenRevoked?.((revoked) => revoked === tokenId && endWith(REVOKED_EVENTS)) : undefined;
    const expiry = untilExpiry(principal, () => endWith(EXPIRED_EVENTS));
    try {
      for await (const value of responseBody) {
        if (closed || !res.writable) break; // the response's close event may come late
        if (!corked) {
          corked = true;
          res.cork();
          process.nextTick(uncork);
        }
        if (!res.write(value)) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      stopListening?.();
      clearTimeout(expiry);
      res.off('close', onClose);
      res.off('drain', onDrain);
    }
    if (!closed) await new Promise<void>((resolve) => res.end(() => resolve()));
  };
}

/** Settles at once while the client keeps up; else when its socket buffer drains or it leaves. */
function readyFor(res: ServerResponse): () => Promise<void> | void {
  return () => {
    if (!res.writableNeedDrain || res.destroyed) return;
    return new Promise<void>((resolve) => {
      const done = () => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });
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
