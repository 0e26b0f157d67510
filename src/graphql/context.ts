/**
 * The per-request context. `createContext` is the only place that forks the
 * EntityManager and builds DataLoaders: nothing per-request lives at module
 * scope. What a resolver sees is `modules/common/context.ts`'s `Context`;
 * this layer adds what only the edge and its plugins use.
 *
 * `createRequestContexts` is the one factory `/graphql` and `/graphql/stream`
 * share: the same token check (an invalid token is `InvalidTokenError`, 401, on
 * both) and the same context.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { IncomingMessage } from 'node:http';
import type { Principal } from '../auth/principal';
import type { TokenService } from '../auth/tokens';
import { clientIp } from '../http/client-ip';
import type { Context } from '../modules/common/context';
import type { Logger } from '../observability/logger';
import { noteUser } from '../observability/request-log';
import type { ReadCacheRequest } from '../read-cache/request';

/** A resolver's context, plus the read cache's state of a signed-in `/graphql` request (`read-cache/request.ts`). */
export interface GraphqlContext extends Context {
  readCache?: ReadCacheRequest;
}

export interface ContextDeps {
  em: EntityManager;
  services: Context['services'];
  logger: Logger;
  /** The request's DataLoaders (`modules/index.ts`). */
  createLoaders: (em: EntityManager, principal: Principal | null, services: Context['services']) => Context['loaders'];
}

/** What the lazy members of a context share: made once per request, whichever copy of the context asks first. */
interface LazyMembers {
  deps: ContextDeps;
  em?: EntityManager;
  loaders?: Context['loaders'];
  logger?: Logger;
}

const LAZY = Symbol('lazy context members');

/**
 * The context's lazy members are getters on this prototype, over a holder that is an own (symbol) property. Apollo
 * hands resolvers a shallow copy (`Object.assign(Object.create(proto), context)`): own getters would be called by that
 * copy, forking the EntityManager, building every DataLoader and a child logger for each request, used or not. The
 * copy keeps the prototype and the holder, so it shares the original's members and still makes them on first use.
 */
class RequestContext {
  [LAZY]: LazyMembers;
  readonly services: Context['services'];

  constructor(
    deps: ContextDeps,
    readonly requestId: string,
    readonly principal: Principal | null,
    readonly clientIp: string,
  ) {
    this[LAZY] = { deps };
    this.services = deps.services;
  }

  get em(): EntityManager {
    const lazy = this[LAZY];
    return (lazy.em ??= lazy.deps.em.fork({ clear: true }));
  }

  get loaders(): Context['loaders'] {
    const lazy = this[LAZY];
    return (lazy.loaders ??= lazy.deps.createLoaders(this.em, this.principal, lazy.deps.services));
  }

  get logger(): Logger {
    const lazy = this[LAZY];
    return (lazy.logger ??= lazy.deps.logger.child({ requestId: this.requestId, userId: this.principal?.userId }));
  }
}

export function createContext(deps: ContextDeps, requestId: string, principal: Principal | null, clientIp = 'unknown'): GraphqlContext {
  // The EntityManager fork, the DataLoaders and the child logger are made on first use: many requests need none.
  return new RequestContext(deps, requestId, principal, clientIp);
}

/** The one way a request becomes a principal and a context, for GraphQL, SSE and WebSocket alike. */
export interface RequestContexts {
  /**
   * Verifies the Authorization header: the principal, null when anonymous;
   * rejects with `InvalidTokenError` (UNAUTHENTICATED, 401) for a bad token.
   * The principal is noted for the request's log line.
   */
  principal(req: IncomingMessage): Promise<Principal | null>;
  /** {@link principal} from an `Authorization` value sent another way (graphql-ws's `connection_init` payload). */
  principalFrom(authorization: string | undefined): Promise<Principal | null>;
  create(req: IncomingMessage, requestId: string, principal: Principal | null): GraphqlContext;
  /** The client's address as rate limits key it (`http/client-ip.ts`, TRUST_PROXY). */
  clientIp(req: IncomingMessage): string;
}

export function createRequestContexts(deps: ContextDeps & { tokens: TokenService; trustProxy: number }): RequestContexts {
  const noted = (principal: Principal | null) => {
    noteUser(principal?.userId);
    return principal;
  };
  return {
    principal: (req) => deps.tokens.fromAuthorizationHeader(req.headers.authorization).then(noted),
    principalFrom: (authorization) => deps.tokens.fromAuthorizationHeader(authorization),
    create: (req, requestId, principal) => createContext(deps, requestId, principal, clientIp(req, deps.trustProxy)),
    clientIp: (req) => clientIp(req, deps.trustProxy),
  };
}
