import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../graphql/auth';
import { notFound } from '../../graphql/errors';
import { type CursorCodec, isUuid, keysetPage, type Page } from '../../db/pagination';
import { plainShape, selectPlain } from '../../db/plain';
import { pgArray } from '../../db/sql';
import { ComparisonResponse, type ComparisonResponseView, ComparisonResult, type ComparisonView } from './comparison.entity';

/**
 * Reads of comparisons, owner-scoped, as plain rows (see `db/plain.ts`).
 * Running them (the writes) lives in `comparison-runner.ts`.
 */
export class ComparisonService {
  constructor(private readonly cursors: CursorCodec) {}

  list(em: EntityManager, principal: Principal, first: number | null | undefined, after: string | null | undefined): Promise<Page<ComparisonView>> {
    return keysetPage(em, plainShape<ComparisonView>(em, ComparisonResult), {
      table: 'comparison_results',
      alias: 'r',
      where: 'r.owner_id = ?',
      params: [principal.userId],
      cursors: this.cursors,
      scope: `comparisons:${principal.userId}`,
      first,
      after,
      defaultFirst: 20,
    });
  }

  count(em: EntityManager, principal: Principal): Promise<number> {
    return em.count(ComparisonResult, { owner: principal.userId });
  }

  findByIds(em: EntityManager, principal: Principal, ids: readonly string[]): Promise<ComparisonView[]> {
    const valid = ids.filter(isUuid);
    if (valid.length === 0) return Promise.resolve([]);
    return selectPlain(em, ComparisonResult, 'r', `r.id = any(?::uuid[]) and r.owner_id = ?`, [pgArray(valid), principal.userId]);
  }

  async get(em: EntityManager, principal: Principal, id: string): Promise<ComparisonView> {
    const [comparison] = await this.findByIds(em, principal, [id]);
    if (!comparison) throw notFound('Comparison');
    return comparison;
  }

  /** Oldest first. Callers reach these ids through an owner-checked conversation. */
  byConversationIds(em: EntityManager, conversationIds: readonly string[]): Promise<ComparisonView[]> {
    return selectPlain(em, ComparisonResult, 'r', `r.conversation_id = any(?::uuid[]) order by r.created_at, r.id`, [pgArray([...conversationIds])]);
  }

  /** In request order. Callers reach these ids through an owner-checked comparison. */
  responsesByComparisonIds(em: EntityManager, comparisonIds: readonly string[]): Promise<ComparisonResponseView[]> {
    return selectPlain(em, ComparisonResponse, 'x', `x.comparison_id = any(?::uuid[]) order by x.comparison_id, x.position`, [pgArray([...comparisonIds])]);
  }

  /** Owner-scoped through the parent comparison. */
  responsesByIds(em: EntityManager, principal: Principal, ids: readonly string[]): Promise<ComparisonResponseView[]> {
    const valid = ids.filter(isUuid);
    if (valid.length === 0) return Promise.resolve([]);
    return selectPlain(
      em,
      ComparisonResponse,
      'x',
      `x.id = any(?::uuid[]) and exists (select 1 from comparison_results r where r.id = x.comparison_id and r.owner_id = ?)`,
      [pgArray(valid), principal.userId],
    );
  }

}
