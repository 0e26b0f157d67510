/**
 * The model registry: the curated catalog merged with the models each
 * provider says a user's key can use.
 *
 * A provider's list is cached in the cache port under
 *
 *   models:<provider>:<sha256(baseUrl + apiKey), first 16 hex>
 *
 * (a fingerprint, never the key itself: two users with the same key and
 * endpoint share one entry, nobody else can address it) with
 * stale-while-revalidate: fresh for `freshMs` (24 h by default), then served
 * stale and refreshed once in the background for up to `maxAgeMs`. Concurrent
 * cold misses for one key in a process run a single list call (`wrapSwr`
 * single-flights), and across instances the first call's result is shared
 * through Redis.
 *
 * Failure policy, per provider, so one provider never delays or fails the
 * others:
 * - every provider is asked in parallel, each bounded by `listTimeoutMs`
 *   (the HTTP call aborts then; the whole step — cache read included — is
 *   also raced against that deadline);
 * - a failed or late list falls back to the last good list this process saw
 *   for the same fingerprint (the cache's stale entry covers the common case:
 *   a failing background refresh keeps serving it), else to the catalog alone;
 * - after a failure the provider is not asked again on the request path for
 *   `failureBackoffMs`, so a hanging provider costs one timeout, not one per
 *   request.
 */
import { createHash } from 'node:crypto';
import type { CachePort } from '../cache/cache.port';
import type { Logger } from '../observability/logger';
import { type CatalogEntry, MODEL_CATALOG } from './catalog';
import { formatModelId, type ProviderName } from './model-id';
import { DEFAULT_BASE_URLS, type ProviderBaseUrls, type ProviderCredentials, type ProviderTransport } from './language-models';
import { listProviderModels } from './model-lists';
import { ProviderCallError } from './provider-errors';
import { LruMap } from '../lru-map';
import { withTimeout } from '../timeout';

/** One model as the API lists it (catalog entry, or a listed name with no curated data). */
export type RegistryModel = CatalogEntry;

/** A provider key to list models with (the user's `default` key for that provider). */
export interface RegistryCredentials extends ProviderCredentials {
  provider: ProviderName;
}

export interface ModelRegistryOptions {
  cache: CachePort;
  /** `Config.providerBaseUrls`. */
  baseUrls: ProviderBaseUrls;
  /** `Config.llm.listTimeoutMs`: the longest a provider may take to answer. */
  listTimeoutMs: number;
  /** `Config.llm.maxListedModels`: names kept per provider list (default 1,000). */
  maxListedModels?: number;
  /** Lists from a key's own `baseUrl` go through `userFetch` (the egress-guarded fetch). */
  transport?: ProviderTransport;
  /** `Config.cache.registryTtlMs`: how long a list is served without a refresh. */
  freshMs: number;
  /** How long a stale list may still be served while refreshing (also the store TTL). Default 7 days. */
  maxAgeMs?: number;
  /** No request-path retry of a failed provider for this long. Default min(30 s, freshMs). */
  failureBackoffMs?: number;
  logger: Logger;
}

/** Cache namespace of the registry (flushed by `flushCaches(MODEL_REGISTRY)`). */
export const MODEL_REGISTRY_NAMESPACE = 'models';

const DAY_MS = 24 * 60 * 60_000;
/** Bound on the in-process fallback maps (fingerprints, not keys). */
const MAX_LOCAL_ENTRIES = 1000;

export class ModelRegistry {
  private readonly log: Logger;
  private readonly maxAgeMs: number;
  private readonly failureBackoffMs: number;
  /** Last list that loaded, per cache key: served when a load fails and the store has nothing. */
  private readonly lastGood = new LruMap<string, string[]>(MAX_LOCAL_ENTRIES);
  /** When a provider last failed on the request path, per cache key. */
  private readonly failedAt = new LruMap<string, number>(MAX_LOCAL_ENTRIES);

  constructor(private readonly opts: ModelRegistryOptions) {
    this.log = opts.logger.child({ component: 'model-registry' });
    this.maxAgeMs = Math.max(opts.maxAgeMs ?? 7 * DAY_MS, opts.freshMs * 2);
    this.failureBackoffMs = opts.failureBackoffMs ?? Math.min(30_000, opts.freshMs);
  }

  /** The curated catalog (optionally one provider): what anonymous callers see. No I/O. */
  catalog(provider?: ProviderName): RegistryModel[] {
    return MODEL_CATALOG.filter((e) => !provider || e.provider === provider);
  }

  /**
   * The catalog merged with each credential's provider list (catalog entries
   * first, then listed names the catalog lacks, with `displayName = name` and
   * null prices), optionally filtered to one provider. Never rejects because
   * of a provider: see the module comment.
   */
  async models(credentials: readonly RegistryCredentials[], provider?: ProviderName): Promise<RegistryModel[]> {
    const wanted = credentials.filter((c) => !provider || c.provider === provider);
    const lists = await Promise.all(wanted.map((c) => this.providerList(c)));
    const result = this.catalog(provider);
    const seen = new Set(result.map((e) => formatModelId(e.provider, e.name)));
    wanted.forEach((creds, i) => {
      for (const name of lists[i] ?? []) {
        const id = formatModelId(creds.provider, name);
        if (seen.has(id)) continue;
        seen.add(id);
        result.push({
          provider: creds.provider,
          name,
          displayName: name,
          contextWindow: null,
          inputCostPerMTok: null,
          outputCostPerMTok: null,
        });
      }
    });
    return result;
  }

  /** Forgets this process's fallback lists (after an admin flush of the registry). */
  clearLocal(): void {
    this.lastGood.clear();
    this.failedAt.clear();
  }

  /** The cache key for a credential: provider + fingerprint of (base URL, key). */
  cacheKey(creds: RegistryCredentials): string {
    const configured = this.opts.baseUrls as Partial<Record<ProviderName, string>>;
    const defaults = DEFAULT_BASE_URLS as Partial<Record<ProviderName, string>>;
    const baseUrl = creds.baseUrl?.trim() || configured[creds.provider] || defaults[creds.provider] || '';
    const fingerprint = createHash('sha256').update(`${baseUrl}\n${creds.apiKey}`).digest('hex').slice(0, 16);
    return `${MODEL_REGISTRY_NAMESPACE}:${creds.provider}:${fingerprint}`;
  }

  /** One provider's names, or the fallback (last good list / nothing) on failure or past the deadline. */
  private async providerList(creds: RegistryCredentials): Promise<string[]> {
    const key = this.cacheKey(creds);
    const failed = this.failedAt.get(key);
    // Recently failed: a cached list is still served, but a cold miss does not make this request wait again.
    const backingOff = failed !== undefined && Date.now() - failed < this.failureBackoffMs;
    const load = async () => {
      if (backingOff) throw new Error(`not retried within ${this.failureBackoffMs}ms of a failure`);
      const names = await listProviderModels(creds.provider, creds, this.opts.baseUrls, this.opts.listTimeoutMs, {
        ...this.opts.transport,
        maxModels: this.opts.maxListedModels,
      });
      this.lastGood.set(key, names);
      this.failedAt.delete(key);
      return names;
    };
    try {
      // Past the deadline the work goes on and may still fill the cache.
      return await withTimeout(
        this.opts.cache.wrapSwr(key, { freshMs: this.opts.freshMs, maxAgeMs: this.maxAgeMs }, load),
        this.opts.listTimeoutMs,
        'model list',
      );
    } catch (err) {
      const since = this.failedAt.get(key);
      if (since === undefined || Date.now() - since >= this.failureBackoffMs) {
        // First failure in this window (concurrent requests share it): back off and log once.
        this.failedAt.set(key, Date.now());
        const reason = err instanceof ProviderCallError ? err.reason : undefined;
        this.log.warn(
          { provider: creds.provider, reason, error: (err as Error).message },
          'provider model list unavailable: serving the catalog and the last good list',
        );
      }
      return this.lastGood.get(key) ?? [];
    }
  }
}
