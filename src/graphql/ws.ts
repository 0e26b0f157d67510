/**
 * Subscriptions over WebSocket at `/graphql/ws`, in the GraphQL over
 * WebSocket protocol (`graphql-ws`, what Apollo Client's `GraphQLWsLink`
 * speaks), beside SSE (`sse.ts`) and with the same checks
 * (`subscriptions.ts`): document limits, subscriptions only, cost, token
 * scopes, masked errors with their codes.
 *
 * - **Auth**: `connection_init`'s payload `{ "authorization": "Bearer …" }`
 *   (a JWT or a personal token). A bad token closes the socket with 4403
 *   Forbidden; none is anonymous (a subscription then answers
 *   UNAUTHENTICATED, as over SSE). A personal token revoked while its socket
 *   is open closes it with 4401 on every instance that holds one; so does the
 *   token's expiry (a JWT's `exp`, a personal token's `expiresAt`).
 * - **Origin**: a browser's upgrade is accepted from the page's own origin and
 *   from the origins `CORS_ORIGINS` allows; others get 403 before any
 *   WebSocket exists. Clients that send no `Origin` (not browsers) are let in.
 * - **Limits**: a message is at most `MAX_BODY_BYTES`; at most
 *   {@link MAX_SUBSCRIPTIONS_PER_SOCKET} subscriptions run on one socket; a
 *   client that sends while {@link MAX_UNREAD_BYTES} of answers wait unread is cut; a
 *   socket with no subscription running for {@link IDLE_MS} is closed (1000 Idle).
 * - **Pacing**: while the socket's send buffer is above
 *   {@link SEND_HIGH_WATER}, a comparison's stream waits (its deltas join
 *   into fewer, longer ones) as it does for a slow SSE reader.
 * - **Shutdown**: `close()` ends every socket with 1001 (going away); a client
 *   that does not answer the close frame within {@link CLOSE_GRACE_MS} is cut.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { GraphQLError } from 'graphql';
import { CloseCode } from 'graphql-ws';
import { type Extra, useServer as serveGraphqlWs } from 'graphql-ws/use/ws';
import { type WebSocket, WebSocketServer } from 'ws';
import { InvalidTokenError } from '../auth/tokens';
import type { Principal } from '../auth/principal';
import type { GraphqlContext, RequestContexts } from './context';
import { type Subscriptions, untilExpiry } from './subscriptions';

export const WS_PATH = '/graphql/ws';
/** A socket with no subscription running for this long is closed (1000 Idle). */
export const IDLE_MS = 60_000;
/** Subscriptions one socket may hold at once. */
export const MAX_SUBSCRIPTIONS_PER_SOCKET = 100;
/** Bytes waiting in a socket's send buffer past which its streams wait (see the header). */
const SEND_HIGH_WATER = 256 * 1024;
/** Bytes of answers a client may leave unread (at least 4 messages' worth) before the next it sends cuts it. */
const MAX_UNREAD_BYTES = 16 * 1024 * 1024;
/** How long shutdown waits for clients to answer the close frame before cutting them. */
const CLOSE_GRACE_MS = 2_000;

export interface WsDeps {
  subscriptions: Subscriptions;
  contexts: RequestContexts;
  /** Whether a page on this origin may call the API (`CorsPolicy.allowsOrigin`). */
  allowsOrigin: (origin: string) => boolean;
  maxMessageBytes: number;
  /** A socket with no subscription running for this long is closed; default {@link IDLE_MS} (`WS_IDLE_MS`). */
  idleMs?: number;
  /** An unexpected error while a socket was being authenticated (logged by the app). */
  onError?: (error: unknown) => void;
  /** Personal-token revocations applied on this instance. */
  onTokenRevoked?: (listener: (tokenId: string) => void) => () => void;
}

interface Connection {
  principal: Principal | null;
  /** Its graphql-ws context (the running subscriptions). */
  subscriptions: () => number;
  /** When it last had a subscription running (or connected). */
  busyAt: number;
}

export interface GraphqlWs {
  /** Ends every socket (1001) and stops accepting upgrades. */
  close(): Promise<void>;
}

export function attachGraphqlWs(server: Server, deps: WsDeps): GraphqlWs {
  const { subscriptions } = deps;
  const wss = new WebSocketServer({ noServer: true, maxPayload: deps.maxMessageBytes });
  const connections = new WeakMap<WebSocket, Connection>();
  let closing = false;

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (pathOf(req.url) !== WS_PATH) return refuseUpgrade(socket, 404, 'Not Found');
    if (closing) return refuseUpgrade(socket, 503, 'Service Unavailable');
    const origin = req.headers.origin;
    if (origin !== undefined && !sameOrigin(origin, req) && !deps.allowsOrigin(origin)) return refuseUpgrade(socket, 403, 'Forbidden');
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  };
  server.on('upgrade', onUpgrade);

  // Registered before graphql-ws's own listeners, so it sees each message first. What a client leaves unread is held
  // by this process: a client that keeps sending (a `ping` is answered with a `pong` carrying its payload, up to
  // maxMessageBytes) and never reads is cut, not buffered for.
  const maxUnread = Math.max(MAX_UNREAD_BYTES, 4 * deps.maxMessageBytes);
  wss.on('connection', (ws: WebSocket) => {
    const check = () => {
      if (ws.bufferedAmount > maxUnread) ws.terminate();
    };
    ws.on('message', check);
    ws.on('ping', check);
  });

  const socketOf = (ctx: { extra: Extra }) => ctx.extra.socket as WebSocket;
  const requestOf = (ctx: { extra: Extra }) => ctx.extra.request;

  const disposable = serveGraphqlWs(
    {
      schema: subscriptions.schema,
      onConnect: async (ctx) => {
        const raw = (ctx.connectionParams as { authorization?: unknown } | undefined)?.authorization;
        if (raw !== undefined && typeof raw !== 'string') return false;
        try {
          const principal = await deps.contexts.principalFrom(raw);
          const socket = socketOf(ctx);
          // The credential's expiry closes the socket (4401), as a revocation does.
          const expiry = untilExpiry(principal, () => socket.close(CloseCode.Unauthorized, 'The token expired'));
          if (expiry) socket.once('close', () => clearTimeout(expiry));
          connections.set(socket, { principal, subscriptions: () => Object.keys(ctx.subscriptions).length, busyAt: Date.now() });
          return true;
        } catch (error) {
          if (error instanceof InvalidTokenError) return false; // 4403 Forbidden
          // Not the token's fault (the database, say): the client may retry (1013 Try Again Later).
          deps.onError?.(error);
          socketOf(ctx).close(1013, 'Try again later');
          return false;
        }
      },
      onSubscribe: (ctx, _id, payload) => {
        const connection = connections.get(socketOf(ctx)) ?? { principal: null, subscriptions: () => 0, busyAt: Date.now() };
        connection.busyAt = Date.now();
        // The expiry timer is not set for a credential living past a timer's longest delay (~24.8 days), and a
        // socket can outlive that: an expired credential opens nothing, whatever the timer did.
        const expiresAt = connection.principal?.expiresAt;
        if (expiresAt !== undefined && expiresAt <= Date.now()) {
          socketOf(ctx).close(CloseCode.Unauthorized, 'The token expired');
          return [new GraphQLError('The token expired', { extensions: { code: 'UNAUTHENTICATED' } })];
        }
        if (Object.keys(ctx.subscriptions).length > MAX_SUBSCRIPTIONS_PER_SOCKET) {
          const message = `At most ${MAX_SUBSCRIPTIONS_PER_SOCKET} subscriptions run on one socket: complete some, or open another socket`;
          return [new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT' } })];
        }
        const prepared = subscriptions.prepare(payload, connection.principal, WS_PATH);
        if (!prepared.ok) return prepared.errors;
        const socket = socketOf(ctx);
        const contextValue: GraphqlContext = deps.contexts.create(requestOf(ctx), randomUUID(), connection.principal);
        contextValue.streamReady = readyFor(socket);
        return {
          schema: subscriptions.schema,
          document: prepared.document,
          operationName: prepared.operationName,
          variableValues: payload.variables ?? undefined,
          contextValue,
        };
      },
      subscribe: (args) => subscriptions.subscribe(args),
      onNext: (_ctx, _id, _payload, _args, result) => subscriptions.format(result),
      onComplete: (ctx) => {
        const connection = connections.get(socketOf(ctx));
        if (connection) connection.busyAt = Date.now();
      },
      onError: (_ctx, _id, _payload, errors) => subscriptions.formatErrors(errors),
    },
    wss,
  );

  // A socket with nothing running for IDLE_MS is closed (keep-alive pings would hold it open for ever).
  const idleMs = deps.idleMs ?? IDLE_MS;
  const idleSweep = setInterval(
    () => {
      const now = Date.now();
      for (const ws of wss.clients) {
        const connection = connections.get(ws);
        if (connection && connection.subscriptions() === 0 && now - connection.busyAt >= idleMs) ws.close(1000, 'Idle');
      }
    },
    Math.max(10, Math.min(idleMs / 2, 15_000)),
  );
  idleSweep.unref();

  const stopListening = deps.onTokenRevoked?.((tokenId) => {
    for (const ws of wss.clients) {
      if (connections.get(ws)?.principal?.token?.id === tokenId) ws.close(CloseCode.Unauthorized, 'The token was revoked');
    }
  });

  return {
    close: async () => {
      closing = true;
      clearInterval(idleSweep);
      server.off('upgrade', onUpgrade);
      stopListening?.();
      for (const ws of wss.clients) ws.close(1001, 'The server is shutting down');
      // A client that never answers the close frame would hold shutdown for ws's own close timeout (30 s).
      const cut = setTimeout(() => {
        for (const ws of wss.clients) ws.terminate();
      }, CLOSE_GRACE_MS);
      try {
        await disposable.dispose();
      } finally {
        clearTimeout(cut);
      }
    },
  };
}

/** Settles at once while the socket keeps up; else when its buffer drains below the high water or it closes. */
function readyFor(ws: WebSocket): () => Promise<void> | void {
  return () => {
    if (ws.bufferedAmount <= SEND_HIGH_WATER || ws.readyState !== ws.OPEN) return;
    // ws exposes no drain event of its own: its net.Socket's is the one.
    const net = (ws as unknown as { _socket?: Duplex })._socket;
    if (!net) return;
    return new Promise<void>((resolve) => {
      const done = () => {
        net.off('drain', done);
        ws.off('close', done);
        resolve();
      };
      net.on('drain', done);
      ws.on('close', done);
    });
  };
}

function refuseUpgrade(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
}

function pathOf(url: string | undefined): string {
  const path = (url ?? '/').split('?')[0]!;
  return path.length > 1 ? path.replace(/\/+$/, '') : path;
}

/** A page served by this server itself (the explorer): its origin names the host the upgrade was sent to. */
function sameOrigin(origin: string, req: IncomingMessage): boolean {
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}
