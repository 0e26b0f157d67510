/**
 * Turns a model id (`provider:name[@label]`) and a user into a callable AI SDK
 * model, with the user's own decrypted key. A missing key is a provider AUTH
 * error saying which key to add, so a comparison marks that model FAILED.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { LanguageModel } from 'ai';
import type { ModelId } from '../../llm/model-id';
import { toProvider } from '../../llm/model-id';
import { createLanguageModel, type ProviderBaseUrls, type ProviderTransport } from '../../llm/language-models';
import { ProviderCallError } from '../../llm/provider-errors';
import type { ApiKeyService } from './api-key.service';

export class ModelAccess {
  constructor(
    private readonly apiKeys: ApiKeyService,
    private readonly baseUrls: ProviderBaseUrls,
    /** Calls to a key's own `baseUrl` go through the egress-guarded fetch. */
    private readonly transport: ProviderTransport = {},
  ) {}

  /** `touchKey` false leaves the key's `lastUsedAt` alone (blind comparisons: see `ApiKeyService.credentials`). */
  async languageModel(em: EntityManager, userId: string, id: ModelId, touchKey = true): Promise<LanguageModel> {
    const provider = toProvider(id.provider);
    const creds = await this.apiKeys.credentials(em, userId, provider, id.label, touchKey);
    if (!creds) {
      throw new ProviderCallError(
        id.provider,
        'AUTH',
        `No ${id.provider} API key labelled "${id.label}": add one with saveApiKey`,
      );
    }
    return createLanguageModel(id.provider, id.name, creds, this.baseUrls, this.transport);
  }
}
