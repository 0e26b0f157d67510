import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../graphql/auth';
import { notFound } from '../../graphql/errors';
import { type CursorCodec, isUuid, keysetPage, type Page } from '../../db/pagination';
import { ComparisonResponse, ComparisonResult } from './comparison.entity';

/** Reads of comparisons, owner-scoped. Running them lives in `comparison-runner.ts`. */
export class ComparisonService {
  constructor(private readonly cursors: CursorCodec) {}

  list(em: EntityManager, principal: Principal, first: number | null | undefined, after: string | null | undefined): Promise<Page<ComparisonResult>> {
    const qb = em.createQueryBuilder(ComparisonResult, 'r').select('*').where({ owner: principal.userId });
    return keysetPage(qb, {
      alias: 'r',
      cursors: this.cursors,
      scope: `comparisons:${principal.userId}`,
      first,
      after,
      defaultFirst: 20,
      direction: 'desc',
    });
  }

  count(em: EntityManager, principal: Principal): Promise<number> {
    return em.count(ComparisonResult, { owner: principal.userId });
  }

  findByIds(em: EntityManager, principal: Principal, ids: readonly string[]): Promise<ComparisonResult[]> {
    const valid = ids.filter(isUuid);
    if (valid.length === 0) return Promise.resolve([]);
    return em.find(ComparisonResult, { id: { $in: valid }, owner: principal.userId });
  }

  async get(em: EntityManager, principal: Principal, id: string): Promise<ComparisonResult> {
    const [comparison] = await this.findByIds(em, principal, [id]);
    if (!comparison) throw notFound('Comparison');
    return comparison;
  }

  byConversationIds(em: EntityManager, conversationIds: readonly string[]): Promise<ComparisonResult[]> {
    return em.find(ComparisonResult, { conversation: { $in: [...conversationIds] } }, { orderBy: { createdAt: 'asc', id: 'asc' } });
  }

  responsesByComparisonIds(em: EntityManager, comparisonIds: readonly string[]): Promise<ComparisonResponse[]> {
    return em.find(ComparisonResponse, { comparison: { $in: [...comparisonIds] } }, { orderBy: { position: 'asc' } });
  }

  /** Owner-scoped through the parent comparison. */
  responsesByIds(em: EntityManager, principal: Principal, ids: readonly string[]): Promise<ComparisonResponse[]> {
    const valid = ids.filter(isUuid);
    if (valid.length === 0) return Promise.resolve([]);
    return em.find(ComparisonResponse, { id: { $in: valid }, comparison: { owner: principal.userId } });
  }
}
