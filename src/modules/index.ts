/**
 * Composition of the modules' services and per-request loaders. `app.ts`
 * builds the services once; `createContext` calls `createLoaders` per request.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { UserCacheInvalidator } from '../cache/invalidation';
import type { Principal } from '../graphql/auth';
import { createApiKeyLoaders } from './api-key/api-key.loaders';
import type { ApiKeyService } from './api-key/api-key.service';
import { createComparisonLoaders } from './comparison/comparison.loaders';
import type { ComparisonService } from './comparison/comparison.service';
import { createConversationLoaders } from './conversation/conversation.loaders';
import type { ConversationService } from './conversation/conversation.service';
import { createMessageLoaders } from './message/message.loaders';
import type { MessageService } from './message/message.service';
import type { UserService } from './user/user.service';
import { createVoteLoaders } from './vote/vote.loaders';

export interface Services {
  users: UserService;
  apiKeys: ApiKeyService;
  conversations: ConversationService;
  messages: MessageService;
  comparisons: ComparisonService;
  invalidation: UserCacheInvalidator;
}

export function createLoaders(em: EntityManager, principal: Principal | null, services: Services) {
  return {
    ...createApiKeyLoaders(em, services.apiKeys),
    ...createConversationLoaders(em, principal, services.conversations),
    ...createMessageLoaders(em, services.messages),
    ...createComparisonLoaders(em, principal, services.comparisons),
    ...createVoteLoaders(em, principal),
  };
}

export type Loaders = ReturnType<typeof createLoaders>;
