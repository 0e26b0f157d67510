import { KeyvAdapter } from '@apollo/utils.keyvadapter';
import { ErrorsAreMissesCache, type KeyValueCache } from '@apollo/utils.keyvaluecache';
import { Keyv, type KeyvStoreAdapter } from 'keyv';
import type { Logger } from '../observability/logger';
import type { CachePort } from './cache.port';
import { assertNamespace } from './namespaces';

/**
 * Keyv store adapter over the cache port, so APQ gets the port's prefixing
 * (`${prefix}:apq:<sha256>`), fail-open breaker, timeouts and hit/miss stats
 * for free. Keyv's own (de)serialization is disabled: the port stores Keyv's
 * `{ value, expires }` envelope as plain JSON.
 */
class CachePortStore {
  namespace?: string;
  readonly opts = { dialect: 'cache-port', url: '' };

  constructor(
    private readonly cache: CachePort,
    private readonly ns: string,
  ) {}

  get(key: string): Promise<unknown> {
    return this.cache.get(`${this.ns}:${key}`);
  }

  async set(key: string, value: unknown, ttl?: number): Promise<boolean> {
    await this.cache.set(`${this.ns}:${key}`, value, ttl);
    return true;
  }

  async delete(key: string): Promise<boolean> {
    await this.cache.delete(`${this.ns}:${key}`);
    return true;
  }

  clear(): Promise<void> {
    return this.cache.clearNamespace(this.ns);
  }

  on(): this {
    return this;
  }
}

/**
 * A `KeyValueCache` for Apollo Server's `persistedQueries: { cache }`:
 * `KeyvAdapter` → Keyv → the cache port (namespace `apq` by default), wrapped
 * in `ErrorsAreMissesCache`. The port already turns store failures into misses
 * and no-ops; the wrapper guards anything else (it logs and misses on `get`).
 * Hits and misses are counted under the namespace in `cache.stats()`.
 */
export function createApqCache(cache: CachePort, opts: { namespace?: string; logger?: Logger } = {}): KeyValueCache<string> {
  const ns = opts.namespace ?? 'apq';
  assertNamespace(ns);
  const keyv = new Keyv<string>(new CachePortStore(cache, ns) as unknown as KeyvStoreAdapter, {
    namespace: undefined,
    useKeyPrefix: false,
    serialize: undefined,
    deserialize: undefined,
  });
  const log = opts.logger?.child({ component: 'apq-cache' });
  const apolloLogger = log && {
    debug: (m: unknown) => log.debug(String(m)),
    info: (m: unknown) => log.info(String(m)),
    warn: (m: unknown) => log.warn(String(m)),
    error: (m: unknown) => log.error(String(m)),
  };
  return new ErrorsAreMissesCache(new KeyvAdapter(keyv, { disableBatchReads: true }), apolloLogger);
}
