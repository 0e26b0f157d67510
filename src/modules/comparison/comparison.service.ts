import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../auth/principal';
import { notFound } from '../../errors';
import { type CursorCodec, type ExtraColumn, isUuid, ownedPage, type Page } from '../../db/pagination';
import { embeddedRows, plainShape } from '../../db/plain';
import { pgArray } from '../../db/sql';
import { type PresentedResponse, presentResponse, revealedSql } from './blind';
import { ComparisonResponse, type ComparisonResponseView, ComparisonResult, type ComparisonView } from './comparison.entity';

/**
 * Reads of comparisons, owner-scoped, as plain rows (see `db/plain.ts`).
 * Running them (the writes) lives in `comparison-runner.ts`.
 *
 * Every read computes `revealed` in SQL next to the rows and returns
 * responses as the reader may see them (`presentResponse`, `blind.ts`): a
 * blind comparison's identity never leaves this service before its vote,
 * whichever resolver, loader, export or look-ahead asked.
 */
export class ComparisonService {
  constructor(private readonly cursors: CursorCodec) {}

  list(
    em: EntityManager,
    principal: Principal,
    first: number | null | undefined,
    after: string | null | undefined,
    extraColumns: ExtraColumn[] = [],
  ): Promise<Page<ComparisonView>> {
    return ownedPage(em, ComparisonResult, {
      alias: 'r',
      list: 'comparisons',
      ownerId: principal.userId,
      cursors: this.cursors,
      first,
      after,
      extraColumns: [REVEALED_COLUMN, ...extraColumns],
    });
  }

  count(em: EntityManager, principal: Principal): Promise<number> {
    return em.count(ComparisonResult, { owner: principal.userId });
  }

  findByIds(em: EntityManager, principal: Principal, ids: readonly string[]): Promise<ComparisonView[]> {
    const valid = ids.filter(isUuid);
    if (valid.length === 0) return Promise.resolve([]);
    return selectComparisons(em, `r.id = any(?::uuid[]) and r.owner_id = ?`, [pgArray(valid), principal.userId]);
  }

  async get(em: EntityManager, principal: Principal, id: string): Promise<ComparisonView> {
    const [comparison] = await this.findByIds(em, principal, [id]);
    if (!comparison) throw notFound('Comparison');
    return comparison;
  }

  /** Oldest first. Callers reach these ids through an owner-checked conversation. */
  byConversationIds(em: EntityManager, conversationIds: readonly string[]): Promise<ComparisonView[]> {
    return selectComparisons(em, `r.conversation_id = any(?::uuid[]) order by r.created_at, r.id`, [pgArray([...conversationIds])]);
  }

  /** In the order shown (by label). Callers reach these ids through an owner-checked comparison. */
  responsesByComparisonIds(em: EntityManager, comparisonIds: readonly string[]): Promise<PresentedResponse[]> {
    return selectResponses(em, `x.comparison_id = any(?::uuid[]) order by x.comparison_id, x.position`, [pgArray([...comparisonIds])]);
  }

  /**
   * Each listed comparison's responses, embedded in the list's own statement
   * (look-ahead, see `modules/common/lookahead.ts`); `parentAlias` is the list's
   * alias, and the list must select `revealed` (as `list` does).
   */
  embeddedResponses(em: EntityManager, parentAlias: string) {
    const embedded = embeddedRows<ComparisonResponseView>(em, ComparisonResponse, {
      as: '__responses',
      childQuery: `select * from comparison_responses x2 where x2.comparison_id = ${parentAlias}.id`,
      orderBy: 'x.position',
      params: [],
    });
    return {
      column: embedded.column,
      responsesOf: (row: ComparisonView & Record<string, unknown>): PresentedResponse[] =>
        embedded.read(row).map((r) => presentResponse(r, row.revealed === true)),
    };
  }

  /** Owner-scoped through the parent comparison. */
  responsesByIds(em: EntityManager, principal: Principal, ids: readonly string[]): Promise<PresentedResponse[]> {
    const valid = ids.filter(isUuid);
    if (valid.length === 0) return Promise.resolve([]);
    return selectResponses(em, `x.id = any(?::uuid[]) and c.owner_id = ?`, [pgArray(valid), principal.userId]);
  }
}

const REVEALED_COLUMN: ExtraColumn = { sql: `${revealedSql('r')} as "revealed"`, params: [] };

/** Plain comparisons (alias `r`) with `revealed`. */
async function selectComparisons(em: EntityManager, where: string, params: unknown[]): Promise<ComparisonView[]> {
  const shape = plainShape<ComparisonView>(em, ComparisonResult);
  const rows: Array<Record<string, unknown>> = await em
    .getConnection()
    .execute(`select ${shape.columns('r')}, ${REVEALED_COLUMN.sql} from comparison_results r where ${where}`, params);
  return rows.map(shape.map);
}

/** Plain responses (alias `x`, their comparison `c`), presented by their comparison's `revealed`. */
async function selectResponses(em: EntityManager, where: string, params: unknown[]): Promise<PresentedResponse[]> {
  const shape = plainShape<ComparisonResponseView>(em, ComparisonResponse);
  const rows: Array<Record<string, unknown>> = await em
    .getConnection()
    .execute(
      `select ${shape.columns('x')}, ${revealedSql('c')} as "__revealed"
         from comparison_responses x join comparison_results c on c.id = x.comparison_id
        where ${where}`,
      params,
    );
  return rows.map(({ __revealed, ...row }) => presentResponse(shape.map(row), __revealed === true));
}
