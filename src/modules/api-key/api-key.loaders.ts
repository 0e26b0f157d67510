import type { EntityManager } from '@mikro-orm/postgresql';
import DataLoader from 'dataloader';
import { groupByKey } from '../../db/loader-utils';
import type { ApiKey } from './api-key.entity';
import type { ApiKeyService } from './api-key.service';

export function createApiKeyLoaders(em: EntityManager, service: ApiKeyService) {
  return {
    /** `User.apiKeys`: one query for every user in the response. */
    apiKeysByUserIdLoader: new DataLoader<string, ApiKey[]>(async (userIds) => {
      const keys = await service.listForUser(em, userIds);
      return groupByKey(userIds, keys, (key) => key.owner.id);
    }),
  };
}
