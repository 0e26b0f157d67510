import type { EntityManager } from '@mikro-orm/postgresql';
import DataLoader from 'dataloader';
import type { Principal } from '../../auth/principal';
import { indexByKey } from '../../db/loader-utils';
import type { ConversationView } from './conversation.entity';
import type { ConversationService } from './conversation.service';

export function createConversationLoaders(em: EntityManager, principal: Principal | null, service: ConversationService) {
  return {
    /** Owner-scoped: a foreign id loads as null, exactly like a missing one. */
    conversationByIdLoader: new DataLoader<string, ConversationView | null>(async (ids) =>
      principal ? indexByKey(ids, await service.findByIds(em, principal, ids), (c) => c.id) : ids.map(() => null),
    ),
  };
}
