/**
 * Turns a model id (`provider:name[@label]`) and a user into a callable AI SDK
 * model, with the user's own decrypted key. A missing key is a provider AUTH
 * error saying which key to add, so a comparison marks that model FAILED.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { LanguageModel } from 'ai';
import type { ModelId } from '../../llm/model-id';
import { toProvider } from '../../llm/model-id';
import {
  createLanguageModel,
  isCustomEndpoint,
  type ProviderBaseUrls,
  type ProviderTransport,
  resolveBaseUrl,
} from '../../llm/language-models';
import { ProviderCallError } from '../../llm/provider-errors';
import type { ModelSpec } from '../../llm/provider-threads';
import type { ApiKeyService } from './api-key.service';

/** A callable model, and whether it is served by the user's own endpoint (not an operator endpoint: see `isCustomEndpoint`). */
export interface ResolvedModel {
  /** The model as data: built where it is called (`model()` here, or a provider thread: `ProviderThreads`). */
  spec: ModelSpec;
  customEndpoint: boolean;
}

export class ModelAccess {
  private readonly operatorEndpoints: ReadonlySet<string>;

  constructor(
    private readonly apiKeys: ApiKeyService,
    private readonly baseUrls: ProviderBaseUrls,
    /** Calls to a key's own `baseUrl` go through the egress-guarded fetch. */
    private readonly transport: ProviderTransport = {},
    /** Normalised base URLs whose answers count on the shared boards (`OPERATOR_ENDPOINTS`). */
    operatorEndpoints: readonly string[] = [],
  ) {
    this.operatorEndpoints = new Set(operatorEndpoints);
  }

  /** `touchKey` false leaves the key's `lastUsedAt` alone (blind comparisons: see `ApiKeyService.credentials`). */
  async languageModel(em: EntityManager, userId: string, id: ModelId, touchKey = true): Promise<LanguageModel> {
    const [model] = this.languageModels(em, userId, [id], touchKey);
    return model!;
  }

  /**
   * One model per id, in order, with the keys read in one statement (a
   * comparison's models); each promise rejects on its own, with AUTH when the
   * user holds no key of that provider and label.
   */
  languageModels(em: EntityManager, userId: string, ids: readonly ModelId[], touchKey = true): Array<Promise<LanguageModel>> {
    return this.resolveModels(em, userId, ids, touchKey).map(async (resolved) => this.build((await resolved).spec));
  }

  /** An AI SDK model from its spec, calling a key's own `baseUrl` through the egress-guarded fetch. */
  build(spec: ModelSpec): LanguageModel {
    return createLanguageModel(spec.provider, spec.name, spec.creds, spec.baseUrls, this.transport);
  }

  /** {@link languageModels}, each with whether its key's `baseUrl` is a custom (non-operator) endpoint. */
  resolveModels(em: EntityManager, userId: string, ids: readonly ModelId[], touchKey = true): Array<Promise<ResolvedModel>> {
    const creds = this.apiKeys.credentialsFor(
      em,
      userId,
      ids.map((id) => ({ provider: toProvider(id.provider), label: id.label })),
      touchKey,
    );
    return ids.map(async (id, i) => {
      const found = (await creds)[i];
      if (!found) {
        throw new ProviderCallError(id.provider, 'AUTH', `No ${id.provider} API key labelled "${id.label}": add one with saveApiKey`);
      }
      // The base URL is checked here (BAD_REQUEST), where the model was built before threads.
      resolveBaseUrl(id.provider, found, this.baseUrls);
      return {
        spec: { provider: id.provider, name: id.name, creds: { apiKey: found.apiKey, baseUrl: found.baseUrl }, baseUrls: this.baseUrls },
        customEndpoint: isCustomEndpoint(found, this.operatorEndpoints),
      };
    });
  }
}
