import type { CachePort } from '../../cache/cache.port';
import type { Principal } from '../../auth/principal';
import { AppError } from '../../errors';
import { RESPONSE_NAMESPACE } from '../../read-cache/keys';
import { MODEL_REGISTRY_NAMESPACE, type ModelRegistry } from '../../llm/model-registry';
import type { Logger } from '../../observability/logger';

export enum CacheScope {
  ALL = 'ALL',
  RESPONSES = 'RESPONSES',
  MODEL_REGISTRY = 'MODEL_REGISTRY',
  PERSISTED_QUERIES = 'PERSISTED_QUERIES',
}

export interface FlushOutcome {
  scope: CacheScope;
  flushedAt: Date;
}

/** Cache namespaces (see `cache.port.ts`) behind each scope. */
export const APQ_NAMESPACE = 'apq';

/**
 * Which namespaces a scope clears. `ALL` is the three caches and nothing else:
 * the generation counters are not a cache but the read cache's invalidation
 * bookkeeping (`read-cache/keys.ts`), so no scope touches them.
 */
export function namespacesFor(scope: CacheScope): string[] {
  switch (scope) {
    case CacheScope.ALL:
      return [RESPONSE_NAMESPACE, MODEL_REGISTRY_NAMESPACE, APQ_NAMESPACE];
    case CacheScope.RESPONSES:
      return [RESPONSE_NAMESPACE];
    case CacheScope.MODEL_REGISTRY:
      return [MODEL_REGISTRY_NAMESPACE];
    case CacheScope.PERSISTED_QUERIES:
      return [APQ_NAMESPACE];
    default:
      return assertNever(scope);
  }
}

/**
 * Admin flushes. Refuses with CACHE_UNAVAILABLE while the store is down
 * rather than reporting a flush that did not happen (the port would journal
 * it and replay it on recovery, but the admin should know it is pending).
 */
export class CacheAdminService {
  constructor(
    private readonly cache: CachePort,
    private readonly registry: ModelRegistry,
  ) {}

  async flush(admin: Principal, scope: CacheScope, logger: Logger): Promise<FlushOutcome> {
    this.assertAvailable('The cache store is unavailable: nothing was flushed, retry later');
    const namespaces = namespacesFor(scope);
    await Promise.all(namespaces.map((ns) => this.cache.clearNamespace(ns)));
    if (namespaces.includes(MODEL_REGISTRY_NAMESPACE)) this.registry.clearLocal();
    this.assertAvailable('The cache store failed during the flush: it will complete when the store is back');
    logger.info({ adminId: admin.userId, scope, namespaces }, 'caches flushed');
    return { scope, flushedAt: new Date() };
  }

  private assertAvailable(message: string): void {
    const health = this.cache.health();
    if (!health.connected || health.breakerOpen) throw new AppError('CACHE_UNAVAILABLE', message);
  }
}

function assertNever(value: never): never {
  throw new Error(`Unknown cache scope: ${String(value)}`);
}
