import type { EntityManager } from '@mikro-orm/postgresql';
import DataLoader from 'dataloader';
import type { Principal } from '../../auth/principal';
import { groupByKey, indexByKey } from '../../db/loader-utils';
import type { PresentedResponse } from './blind';
import type { ComparisonView } from './comparison.entity';
import type { ComparisonService } from './comparison.service';

export function createComparisonLoaders(em: EntityManager, principal: Principal | null, service: ComparisonService) {
  return {
    comparisonByIdLoader: new DataLoader<string, ComparisonView | null>(async (ids) =>
      principal ? indexByKey(ids, await service.findByIds(em, principal, ids), (c) => c.id) : ids.map(() => null),
    ),
    comparisonsByConversationIdLoader: new DataLoader<string, ComparisonView[]>(async (ids) =>
      groupByKey(ids, await service.byConversationIds(em, ids), (c) => c.conversationId!),
    ),
    responsesByComparisonIdLoader: new DataLoader<string, PresentedResponse[]>(async (ids) =>
      groupByKey(ids, await service.responsesByComparisonIds(em, ids), (r) => r.comparisonId),
    ),
    responseByIdLoader: new DataLoader<string, PresentedResponse | null>(async (ids) =>
      principal ? indexByKey(ids, await service.responsesByIds(em, principal, ids), (r) => r.id) : ids.map(() => null),
    ),
  };
}
