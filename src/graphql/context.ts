/**
 * The per-request context. `createContext` is the only place that forks the
 * EntityManager and builds DataLoaders: nothing per-request lives at module scope.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Loaders, Services } from '../modules';
import type { Logger } from '../observability/logger';
import type { Principal } from './auth';

export interface Context {
  requestId: string;
  principal: Principal | null;
  em: EntityManager;
  loaders: Loaders;
  services: Services;
  logger: Logger;
}

export interface ContextDeps {
  em: EntityManager;
  services: Services;
  logger: Logger;
  createLoaders: (em: EntityManager, principal: Principal | null, services: Services) => Loaders;
}

export function createContext(deps: ContextDeps, requestId: string, principal: Principal | null): Context {
  const em = deps.em.fork({ clear: true });
  return {
    requestId,
    principal,
    em,
    loaders: deps.createLoaders(em, principal, deps.services),
    services: deps.services,
    logger: deps.logger.child({ requestId, userId: principal?.userId }),
  };
}
