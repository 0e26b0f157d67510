/**
 * The per-request context. `createContext` is the only place that forks the
 * EntityManager and builds DataLoaders: nothing per-request lives at module scope.
 *
 * `createRequestContexts` is the one factory `/graphql` and `/graphql/stream`
 * share: the same token check (an invalid token is `InvalidTokenError`, 401, on
 * both) and the same context.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { IncomingMessage } from 'node:http';
import { clientIp } from '../http/client-ip';
import type { Loaders, Services } from '../modules';
import type { Logger } from '../observability/logger';
import { noteUser } from '../observability/request-log';
import type { Principal, TokenService } from './auth';
import type { ReadCacheState } from './response-cache';
import type { ResponseBytes } from './response-bytes';

export interface Context {
  requestId: string;
  principal: Principal | null;
  em: EntityManager;
  loaders: Loaders;
  services: Services;
  logger: Logger;
  /** The read cache's state for this request (see `response-cache.ts`). */
  readCache: ReadCacheState;
  /** The client's address as rate limits key it (see `http/client-ip.ts`). */
  clientIp: string;
  /**
   * On an event stream (`sse.ts`): settles when the client can take more (its
   * socket buffer drained, or it left). A subscription waits on it before
   * taking its next batch, so what arrives meanwhile is joined, not queued.
   */
  streamReady?: () => Promise<void> | void;
  /** On `/graphql`: the response bytes counted so far against `MAX_RESPONSE_BYTES` (`response-bytes.ts`). */
  responseBytes?: ResponseBytes;
}

export interface ContextDeps {
  em: EntityManager;
  services: Services;
  logger: Logger;
  createLoaders: (em: EntityManager, principal: Principal | null, services: Services) => Loaders;
}

export function createContext(
  deps: ContextDeps,
  requestId: string,
  principal: Principal | null,
  readCache: ReadCacheState = { bypass: false },
  clientIp = 'unknown',
): Context {
  // The EntityManager fork and the child logger are made on first use: many requests need neither.
  let em: EntityManager | undefined;
  let logger: Logger | undefined;
  let loaders: Loaders | undefined;
  return {
    requestId,
    principal,
    get em() {
      return (em ??= deps.em.fork({ clear: true }));
    },
    get loaders() {
      return (loaders ??= deps.createLoaders(this.em, principal, deps.services));
    },
    services: deps.services,
    get logger() {
      return (logger ??= deps.logger.child({ requestId, userId: principal?.userId }));
    },
    readCache,
    clientIp,
  };
}

/** The one way a request becomes a principal and a context, for GraphQL and SSE alike. */
export interface RequestContexts {
  /**
   * Verifies the Authorization header: the principal, null when anonymous;
   * rejects with `InvalidTokenError` (UNAUTHENTICATED, 401) for a bad token.
   * The principal is noted for the request's log line.
   */
  principal(req: IncomingMessage): Promise<Principal | null>;
  create(req: IncomingMessage, requestId: string, principal: Principal | null, readCache?: ReadCacheState): Context;
}

export function createRequestContexts(deps: ContextDeps & { tokens: TokenService; trustProxy: number }): RequestContexts {
  const noted = (principal: Principal | null) => {
    noteUser(principal?.userId);
    return principal;
  };
  return {
    principal: (req) => deps.tokens.fromAuthorizationHeader(req.headers.authorization).then(noted),
    create: (req, requestId, principal, readCache) => createContext(deps, requestId, principal, readCache, clientIp(req, deps.trustProxy)),
  };
}
