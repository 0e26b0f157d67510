import type { EntityManager } from '@mikro-orm/postgresql';
import DataLoader from 'dataloader';
import type { Principal } from '../../graphql/auth';
import { groupByKey, indexByKey } from '../../db/loader-utils';
import type { ComparisonResponse, ComparisonResult } from './comparison.entity';
import type { ComparisonService } from './comparison.service';

export function createComparisonLoaders(em: EntityManager, principal: Principal | null, service: ComparisonService) {
  return {
    comparisonByIdLoader: new DataLoader<string, ComparisonResult | null>(async (ids) =>
      principal ? indexByKey(ids, await service.findByIds(em, principal, ids), (c) => c.id) : ids.map(() => null),
    ),
    comparisonsByConversationIdLoader: new DataLoader<string, ComparisonResult[]>(async (ids) =>
      groupByKey(ids, await service.byConversationIds(em, ids), (c) => c.conversation!.id),
    ),
    responsesByComparisonIdLoader: new DataLoader<string, ComparisonResponse[]>(async (ids) =>
      groupByKey(ids, await service.responsesByComparisonIds(em, ids), (r) => r.comparison.id),
    ),
    responseByIdLoader: new DataLoader<string, ComparisonResponse | null>(async (ids) =>
      principal ? indexByKey(ids, await service.responsesByIds(em, principal, ids), (r) => r.id) : ids.map(() => null),
    ),
  };
}
