import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../auth/principal';
import { toProviderName } from '../../llm/model-id';
import type { ModelRegistry, RegistryModel } from '../../llm/model-registry';
import type { Provider } from '../api-key/api-key.entity';
import type { ApiKeyService } from '../api-key/api-key.service';

/**
 * What `models` answers: the curated catalog for anonymous callers; for a
 * signed-in user, the catalog merged with the lists their `default` keys can
 * use (one query for the keys, then every provider in parallel through the
 * registry's cache).
 */
export class ModelService {
  constructor(
    private readonly apiKeys: ApiKeyService,
    private readonly registry: ModelRegistry,
  ) {}

  async list(em: EntityManager, principal: Principal | null, provider?: Provider | null): Promise<RegistryModel[]> {
    const only = provider ? toProviderName(provider) : undefined;
    if (!principal) return this.registry.catalog(only);
    const keys = await this.apiKeys.defaultCredentials(em, principal.userId);
    const credentials = keys.map(({ provider: p, apiKey, baseUrl }) => ({ provider: toProviderName(p), apiKey, baseUrl }));
    return this.registry.models(credentials, only);
  }
}
