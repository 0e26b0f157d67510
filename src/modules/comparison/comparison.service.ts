import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../graphql/auth';
import { notFound } from '../../errors';
import { type CursorCodec, type ExtraColumn, isUuid, ownedPage, type Page } from '../../db/pagination';
import { embeddedRows, selectPlain } from '../../db/plain';
import { pgArray } from '../../db/sql';
import { ComparisonResponse, type ComparisonResponseView, ComparisonResult, type ComparisonView } from './comparison.entity';

/**
 * Reads of comparisons, owner-scoped, as plain rows (see `db/plain.ts`).
 * Running them (the writes) lives in `comparison-runner.ts`.
 */
export class ComparisonService {
  constructor(private readonly cursors: CursorCodec) {}

  list(
    em: EntityManager,
    principal: Principal,
    first: number | null | undefined,
    after: string | null | undefined,
    extraColumns?: ExtraColumn[],
  ): Promise<Page<ComparisonView>> {
    return ownedPage(em, ComparisonResult, { alias: 'r', list: 'comparisons', ownerId: principal.userId, cursors: this.cursors, first, after, extraColumns });
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

  /**
   * Each listed comparison's responses, embedded in the list's own statement
   * (look-ahead, see `graphql/lookahead.ts`); `parentAlias` is the list's alias.
   */
  embeddedResponses(em: EntityManager, parentAlias: string) {
    const embedded = embeddedRows<ComparisonResponseView>(em, ComparisonResponse, {
      as: '__responses',
      childQuery: `select * from comparison_responses x2 where x2.comparison_id = ${parentAlias}.id`,
      orderBy: 'x.position',
      params: [],
    });
    return { column: embedded.column, responsesOf: (row: Record<string, unknown>) => embedded.read(row) };
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
