import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../auth/principal';
import { notFound } from '../../errors';
import { type CursorCodec, isUuid, type Page } from '../../db/pagination';
import { embeddedRows, plainShape } from '../../db/plain';
import {
  childListBatchSql,
  childRowsSql,
  COMPARISON_BY_ID,
  COMPARISONS,
  CONVERSATION_COMPARISONS,
  type ExtraColumn,
  orderSql,
  ownedRowsSql,
  readOwnedPage,
  RESPONSES,
  REVEALED,
} from '../../db/read-plan';
import { pgArray } from '../../db/sql';
import { type PresentedResponse, presentResponse } from './blind';
import { ComparisonResponse, type ComparisonResponseView, ComparisonResult, type ComparisonView } from './comparison.entity';

/** A comparison as a vote checks it: `responses` in position order. */
export interface VoteTarget {
  id: string;
  blind: boolean;
  responses: Array<Pick<ComparisonResponseView, 'id' | 'status' | 'kind'>>;
}

const VOTE_TARGET_SQL = `select r.id, r.blind,
    coalesce((select json_agg(json_build_object('id', x.id, 'status', x.status, 'kind', x.kind) order by x.position)
                from comparison_responses x where x.comparison_id = r.id), '[]'::json) as responses
  from comparison_results r where ${ownedRowsSql(COMPARISON_BY_ID, 'r')}`;

/**
 * Reads of comparisons, owner-scoped, as plain rows (see `db/plain.ts`).
 * Running them (the writes) lives in `comparison-runner.ts`.
 *
 * Every read computes `revealed` (the `REVEALED` rule of `db/read-plan.ts`) in SQL next to the rows and returns
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
    return readOwnedPage(em, COMPARISONS, {
      alias: 'r',
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
    return selectComparisons(em, ownedRowsSql(COMPARISON_BY_ID, 'r'), [pgArray(valid), principal.userId]);
  }

  async get(em: EntityManager, principal: Principal, id: string): Promise<ComparisonView> {
    const [comparison] = await this.findByIds(em, principal, [id]);
    if (!comparison) throw notFound('Comparison');
    return comparison;
  }

  /**
   * What a vote checks, in one statement: the viewer's comparison (NOT_FOUND otherwise, as `get`) and every
   * response's id, status and kind (no content: nothing of it leaves the vote).
   */
  async voteTarget(em: EntityManager, principal: Principal, id: string): Promise<VoteTarget> {
    if (!isUuid(id)) throw notFound('Comparison');
    const [row] = await em.getConnection().execute<Array<VoteTarget>>(VOTE_TARGET_SQL, [pgArray([id]), principal.userId]);
    if (!row) throw notFound('Comparison');
    return row;
  }

  /** Oldest first. Callers reach these ids through an owner-checked conversation. */
  async byConversationIds(em: EntityManager, conversationIds: readonly string[]): Promise<ComparisonView[]> {
    const ids = pgArray([...conversationIds]);
    const shape = plainShape<ComparisonView>(em, ComparisonResult);
    // Own and inherited (a fork's) comparisons, each under the conversation that reads it.
    const sql = childListBatchSql(CONVERSATION_COMPARISONS, (a) => `${shape.columns(a)}, ${REVEALED.sql(a)} as "revealed"`);
    const rows: Array<Record<string, unknown>> = await em.getConnection().execute(sql, [ids, ids]);
    return rows.map(shape.map);
  }

  /** In the order shown (by label). Callers reach these ids through an owner-checked comparison. */
  async responsesByComparisonIds(em: EntityManager, comparisonIds: readonly string[]): Promise<PresentedResponse[]> {
    const shape = plainShape<ComparisonResponseView>(em, ComparisonResponse);
    const rows: Array<Record<string, unknown>> = await em
      .getConnection()
      .execute(childListBatchSql(RESPONSES, shape.columns), [pgArray([...comparisonIds])]);
    return rows.map(({ __visible, ...row }) => presentResponse(shape.map(row), __visible === true));
  }

  /**
   * Each listed comparison's responses, embedded in the list's own statement
   * (look-ahead, see `modules/common/lookahead.ts`); `parentAlias` is the list's
   * alias, and the list must select `revealed` (as `list` does).
   */
  embeddedResponses(em: EntityManager, parentAlias: string) {
    const embedded = embeddedRows<ComparisonResponseView>(em, ComparisonResponse, {
      as: '__responses',
      childQuery: childRowsSql(RESPONSES, 'x2', `${parentAlias}.id`),
      orderBy: orderSql(RESPONSES, 'x'),
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

const REVEALED_COLUMN: ExtraColumn = { sql: `${REVEALED.sql('r')} as "revealed"`, params: [] };

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
  const rows: Array<Record<string, unknown>> = await em.getConnection().execute(
    `select ${shape.columns('x')}, ${REVEALED.sql('c')} as "__revealed"
         from comparison_responses x join comparison_results c on c.id = x.comparison_id
        where ${where}`,
    params,
  );
  return rows.map(({ __revealed, ...row }) => presentResponse(shape.map(row), __revealed === true));
}
