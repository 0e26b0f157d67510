/**
 * The HTTP server: the one entry every request goes through, whatever its route.
 *
 * - a request id (`X-Request-Id`: the caller's when short and safe to log, else a new one);
 * - CORS (`cors.ts`): the headers of `/graphql` and `/graphql/stream` are set before
 *   anything answers, and a preflight is answered here (204, or 403 for an origin
 *   not allowed), before the routes and Apollo's CSRF check;
 * - `X-Response-Time`, stamped when the headers are written (streamed answers
 *   included) by `TimedResponse`, the server's response class;
 * - a declared body over `maxBodyBytes` is refused (413) before any route reads it;
 * - the route runs inside the request's log record (`observability/request-log.ts`);
 * - what a route throws is answered here: an `HttpError` with its status, anything
 *   else 500 (logged); a 413 closes the connection after a lingering close (the
 *   answer, a half-close, the rest of the upload read and dropped for a bounded
 *   time: `lingerAfter`), so a client still writing reads the 413 instead of a reset;
 * - the duration is observed per route (`http_request_duration_seconds`).
 *
 * Routes (`routes.ts`) only say what to answer.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, ServerResponse } from 'node:http';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import { withRequestLog } from '../observability/request-log';
import type { CorsPolicy } from './cors';
import { bodyTooLarge, HttpError, sendJson } from './respond';
import { contextFromHeaders, contextWithSpan, SpanKind, SpanStatusCode, startSpan, tracingOn, withContext } from '../observability/tracing';

/** Answers one request; resolves to the route's name (a metric label). */
export type Route = (req: IncomingMessage, res: ServerResponse, requestId: string) => Promise<string>;

/**
 * The server's response class: it knows when its request started and sets
 * `X-Response-Time` as its headers are written. Node writes implicit headers
 * through `writeHead` too, so every answer (`end()`, `write()`, `writeHead()`) carries it.
 *
 * `Vary` is a list: setting it (directly, or through `writeHead`'s headers, which
 * Node sets one by one) adds to what is there, so a route saying `Vary: Accept`
 * never drops the server's `Vary: Origin`.
 */
export class TimedResponse<Request extends IncomingMessage = IncomingMessage> extends ServerResponse<Request> {
  readonly startedAt = process.hrtime.bigint();

  override setHeader(name: string, value: number | string | readonly string[]): this {
    if (name.length === 4 && name.toLowerCase() === 'vary') {
      const current = this.getHeader('vary');
      if (current !== undefined) value = mergeVary(current, value);
    }
    return super.setHeader(name, value);
  }

  override writeHead(statusCode: number, ...rest: unknown[]): this {
    if (!this.headersSent) this.setHeader('x-response-time', `${(Number(process.hrtime.bigint() - this.startedAt) / 1e6).toFixed(1)}ms`);
    return (ServerResponse.prototype.writeHead as (this: ServerResponse, ...args: unknown[]) => this).call(this, statusCode, ...rest);
  }
}

/**
 * A request answered before the general machinery (span, request log record, route table), for the one hot
 * anonymous read that needs none of it (a share link's page: `graphql/public-edge.ts`). Called once the request
 * id and CORS headers are set: false declines at once (nothing read); true takes the request, which it then
 * answers (and reports with `answered(route)`, for the duration metric) or hands on with `general()` once it
 * has read the body (`bodyReadEarly`: the route's `readBody` gets it).
 */
export type Shortcut = (
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
  general: () => void,
  answered: (route: string) => void,
) => boolean;

export interface HttpServerDeps {
  logger: Logger;
  metrics: Metrics;
  /** `Config.limits.maxBodyBytes`. */
  maxBodyBytes: number;
  /** The declared-size limit of one request when it is not `maxBodyBytes` (a route that applies the caller's own limit). */
  bodyLimit?: (req: IncomingMessage) => number;
  /** Cross-origin access to the GraphQL routes (`cors.ts`); absent: no CORS header is ever sent. */
  cors?: CorsPolicy;
  route: Route;
  /** Tried before the general machinery (not for preflights, nor while tracing is on: its requests get spans). */
  shortcut?: Shortcut;
}

export interface HttpServer {
  server: Server;
  /**
   * Shutdown, in order: stop accepting (listener and idle keep-alive connections
   * closed; answers in flight say `Connection: close`), run `settle` (running
   * comparisons finish or are settled, event streams end with their final
   * events), let the requests still open answer for up to `drainMs`, then cut
   * what is left.
   */
  stop(settle: () => Promise<void>, drainMs?: number): Promise<void>;
}

/** After the comparisons have settled, how long open requests get to answer before their connections are cut. */
const HTTP_DRAIN_MS = 5_000;

export function createHttpServer(deps: HttpServerDeps): HttpServer {
  const { logger, metrics, maxBodyBytes, cors, route } = deps;
  let stopping = false;
  const server = createServer<typeof IncomingMessage, typeof TimedResponse>({ ServerResponse: TimedResponse }, (req, res) => {
    const requestId = requestIdFrom(req.headers['x-request-id']);
    res.setHeader('x-request-id', requestId);
    if (stopping) res.setHeader('connection', 'close');
    // Before anything answers, so that every answer (413s and errors below included) carries them.
    const crossOrigin = cors ? cors.apply(req, res) : 'none';
    const observe = (routeName: string) => {
      const seconds = Number(process.hrtime.bigint() - res.startedAt) / 1e9;
      metrics.httpDuration.observe({ method: req.method ?? 'GET', route: routeName, status: String(res.statusCode) }, seconds);
    };
    // A declared body over the limit is refused on every route before anything reads it.
    const declared = Number(req.headers['content-length']);
    const answer = (): Promise<string> => {
      if (crossOrigin === 'preflight' || crossOrigin === 'refused-preflight') {
        cors!.answerPreflight(req, res, crossOrigin);
        return Promise.resolve('cors_preflight');
      }
      const limit = deps.bodyLimit?.(req) ?? maxBodyBytes;
      return declared > limit ? Promise.reject(bodyTooLarge(limit)) : route(req, res, requestId);
    };
    const general = () => answerInFull(req, res, requestId, answer, observe);
    if (deps.shortcut && crossOrigin !== 'preflight' && crossOrigin !== 'refused-preflight' && !tracingOn()) {
      if (deps.shortcut(req, res, requestId, general, observe)) return;
    }
    general();
  });
  /** The general machinery: the request's span and log record, the route, what it throws answered. */
  const answerInFull = (
    req: IncomingMessage,
    res: TimedResponse,
    requestId: string,
    answer: () => Promise<string>,
    observe: (routeName: string) => void,
  ): void => {
    // The request's span: the trace's root, or the continuation of the caller's `traceparent` (nothing when tracing is off).
    const parent = tracingOn() ? contextFromHeaders(req.headers) : undefined;
    const method = req.method ?? 'GET';
    const span =
      parent &&
      startSpan(
        method,
        {
          kind: SpanKind.SERVER,
          attributes: { 'http.request.method': method, 'url.path': (req.url ?? '/').split('?')[0]!, 'llmselect.request_id': requestId },
        },
        parent,
      );
    const endSpan = (routeName: string) => {
      if (!span) return;
      span.setAttribute('http.route', routeName);
      span.setAttribute('http.response.status_code', res.statusCode);
      if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.updateName(`${method} ${routeName}`);
      span.end();
    };
    const logged = () => withRequestLog(logger, req, res, requestId, answer);
    (parent && span ? withContext(contextWithSpan(parent, span), logged) : logged())
      .then((routeName) => {
        observe(routeName);
        endSpan(routeName);
      })
      .catch((error: unknown) => {
        const status = error instanceof HttpError ? error.status : 500;
        if (status >= 500) logger.error({ err: error, requestId }, 'request failed');
        if (status === 413 && !res.headersSent) {
          // The rest of the upload is never buffered: it is dropped while the connection lingers, then closed.
          res.setHeader('connection', 'close');
          lingerAfter(req);
          sendJson(res, 413, {
            errors: [
              {
                message: (error as Error).message,
                extensions: { code: 'BAD_USER_INPUT', maxBodyBytes: (error as HttpError).maxBytes ?? maxBodyBytes },
              },
            ],
          });
        } else if (!res.headersSent) sendJson(res, status, { error: status >= 500 ? 'Internal server error' : (error as Error).message });
        else res.end();
        observe('error');
        endSpan('error');
      });
  };
  server.keepAliveTimeout = 65_000;
  return {
    server,
    async stop(settle, drainMs = HTTP_DRAIN_MS) {
      stopping = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await settle();
      await drainConnections(server, closed, drainMs);
    },
  };
}

/**
 * After a 413, how long what is left of the upload is read and dropped: at most
 * `totalMs` in all, and the connection closes once the client has been silent
 * for `idleMs` (nginx's `lingering_time` and `lingering_timeout`, shorter: the
 * client only needs the time to read the answer and stop sending).
 */
export const LINGER = { totalMs: 5_000, idleMs: 1_000 } as const;

/**
 * A lingering close for an answer sent with `Connection: close` while the client
 * is still sending its body. Node would end such an answer with
 * `socket.destroySoon()`: closing a socket with bytes unread (or receiving more
 * after the close) makes the kernel send a reset, and a client still writing
 * then fails with EPIPE / ECONNRESET and may never read the answer. Instead the
 * socket is half-closed after the answer (FIN) and what arrives is read and
 * dropped until the body ends, the client goes quiet for `LINGER.idleMs`, or
 * `LINGER.totalMs` passes; then it is destroyed.
 */
function lingerAfter(req: IncomingMessage): void {
  const socket = req.socket;
  if (req.complete || socket.destroyed) return;
  const close = () => socket.destroy();
  const timer = setTimeout(close, LINGER.totalMs);
  socket.once('close', () => clearTimeout(timer));
  socket.setTimeout(LINGER.idleMs, close);
  // Called by Node once the answer is written (`Connection: close`): end our side, keep reading.
  socket.destroySoon = function (this: typeof socket) {
    if (this.writable) this.end();
  };
  req.once('end', close);
  req.resume();
}

/** Closes connections as they go idle until the server has closed, then cuts what is left after `ms`. */
async function drainConnections(server: Server, closed: Promise<void>, ms: number): Promise<void> {
  let done = false;
  void closed.then(() => (done = true));
  const deadline = Date.now() + ms;
  while (!done && Date.now() < deadline) {
    server.closeIdleConnections();
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 50))]);
  }
  if (!done) server.closeAllConnections();
  await closed;
}

/** `Vary` tokens of both values, each once (case-insensitively), in order. */
function mergeVary(current: number | string | string[] | undefined, added: number | string | readonly string[]): string {
  const tokens: string[] = [];
  for (const value of [current ?? [], added].flat()) {
    for (const token of String(value).split(',')) {
      const name = token.trim();
      if (name && !tokens.some((t) => t.toLowerCase() === name.toLowerCase())) tokens.push(name);
    }
  }
  return tokens.includes('*') ? '*' : tokens.join(', ');
}

/** Accepts a caller's request id when it is short and safe to log; otherwise makes one. */
function requestIdFrom(header: string | string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header;
  return value && /^[\w.-]{1,64}$/.test(value) ? value : randomUUID();
}
