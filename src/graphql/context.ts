/**
 * The per-request context. `createContext` is the only place that forks the
 * EntityManager and builds DataLoaders: nothing per-request lives at module scope.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Loaders, Services } from '../modules';
import type { Logger } from '../observability/logger';
import type { Principal } from './auth';
import type { ReadCacheState } from './response-cache';

export interface Context {
  requestId: string;
  principal: Principal | null;
  em: EntityManager;
  loaders: Loaders;
  services: Services;
  logger: Logger;
  /** The read cache's state for this request (see `response-cache.ts`). */
  readCache: ReadCacheState;
  /** The client's address as rate limits key it (see `client-ip.ts`). */
  clientIp: string;
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
