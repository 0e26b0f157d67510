/**
 * The battle SQL, written once: the endpoint key of a response row, the style
 * features and their bins, the battle cells of a vote's snapshot, and the
 * statements that read the battles of each leaderboard scope. Used by the
 * leaderboard (`leaderboard.service.ts`, `board-fit.ts`) and the arena's pair
 * counts (`comparison/arena.service.ts`). The database computes the same
 * things in `vote_battles()`; the migrations that define it keep their own
 * frozen copies (20261128021000, 20261207064000): migrations are history.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import { REVEALED } from '../../db/read-plan';
import { DEFAULT_LABEL } from '../../llm/model-id';
import type { NormalisedFilter } from './leaderboard.types';

/** The style features, in the order of the covariates (README: "How the leaderboard is computed"). */
export const STYLE_FEATURES = ['length', 'headers', 'lists', 'bold'] as const;

/** Style differences are binned to this many steps per unit before grouping (21 bins over [−1, 1]). */
export const STYLE_BINS_PER_UNIT = 10;

/** A row of a board's statement: a cell of battles, or the one summary row. */
export interface CellRow {
  kind: 'cell' | 'summary';
  model_a: string | null;
  model_b: string | null;
  provider_a: string | null;
  provider_b: string | null;
  outcome: 'A' | 'B' | 'TIE' | null;
  s_length: number | null;
  s_headers: number | null;
  s_lists: number | null;
  s_bold: number | null;
  /** cell: battles; summary: votes used. */
  n: number;
  /** summary: votes excluded. */
  excluded: number;
}

/** The endpoint key of a response row (as `endpointKey` builds it): each label of a model is ranked apart. */
export function endpointSql(alias: string): string {
  return `case when ${alias}.key_label = '${DEFAULT_LABEL}' then ${alias}.model else ${alias}.model || '@' || ${alias}.key_label end`;
}

const CELL_GROUP = `group by model_a, model_b, outcome, s_length, s_headers, s_lists, s_bold having sum(n) > 0`;
const CELL_ORDER = `order by 1, 2, 3, 6, 7, 8, 9, 10`;

/** Bins as selected: the stored ones with style control, 0 without (so the cells merge). */
function bins(f: NormalisedFilter, alias = ''): string {
  const p = alias ? `${alias}.` : '';
  return f.styleControl
    ? `${p}s_length, ${p}s_headers, ${p}s_lists, ${p}s_bold`
    : `0 as s_length, 0 as s_headers, 0 as s_lists, 0 as s_bold`;
}

/** Cells of `votes.battles` (alias v) as battle_counts-shaped rows. */
const VOTE_CELLS = `select c->>'a' as model_a, c->>'b' as model_b, c->>'pa' as provider_a, c->>'pb' as provider_b, c->>'o' as outcome,
         (c->'x'->>0)::int as s_length, (c->'x'->>1)::int as s_headers, (c->'x'->>2)::int as s_lists, (c->'x'->>3)::int as s_bold, 1 as n
    from votes v cross join jsonb_array_elements(v.battles->'cells') c`;

/**
 * A battle cell (alias c) that may count on a shared board (GLOBAL): neither
 * side was served by a user's own endpoint (`c` set by `vote_battles()`,
 * see the 20261207064000 migration; absent on older snapshots).
 */
const SHARED_CELL = `not coalesce((c->>'c')::boolean, false)`;

/** Conditions on a vote's battle snapshot (alias v) for the filter; params appended to `params`. */
function voteWhere(f: NormalisedFilter, params: unknown[]): string {
  const where: string[] = [];
  if (f.blindOnly) where.push(`(v.battles->>'blind')::boolean`);
  if (f.category !== null) {
    where.push(`v.battles->>'category' = ?`);
    params.push(f.category);
  }
  return where.length ? where.join(' and ') : 'true';
}

/**
 * GLOBAL: cells and tallies from the pre-aggregated tables for whole days;
 * with `since`, the first (partial) UTC day from that day's votes.
 */
export function globalStatement(f: NormalisedFilter): { sql: string; params: unknown[] } {
  const tableWhere = (params: unknown[]): string => {
    const where: string[] = [];
    if (f.blindOnly) where.push('blind');
    if (f.category !== null) {
      where.push('category = ?');
      params.push(f.category);
    }
    if (f.since !== null) {
      where.push(`day > (?::timestamptz at time zone 'UTC')::date`);
      params.push(f.since);
    }
    return where.length ? where.join(' and ') : 'true';
  };
  // Votes of the first day of the window: created at or after `since`, before the next UTC midnight.
  const firstDay = (params: unknown[]): string => {
    const where = voteWhere(f, params);
    params.push(f.since, f.since);
    return `${where} and v.created_at >= ?::timestamptz
      and v.created_at < ((?::timestamptz at time zone 'UTC')::date + 1) at time zone 'UTC'`;
  };
  const params: unknown[] = [];
  const cellSources = [
    `select model_a, model_b, provider_a, provider_b, outcome, s_length, s_headers, s_lists, s_bold, n
       from battle_counts where ${tableWhere(params)}`,
  ];
  if (f.since !== null) cellSources.push(`${VOTE_CELLS} where v.excluded_at is null and ${SHARED_CELL} and ${firstDay(params)}`);
  const tallySources = [`select used_votes as used, excluded_votes as excluded from vote_tallies where ${tableWhere(params)}`];
  if (f.since !== null) {
    tallySources.push(
      `select (v.excluded_at is null and exists (select 1 from jsonb_array_elements(v.battles->'cells') c where ${SHARED_CELL}))::int,
              (v.excluded_at is not null)::int
         from votes v where ${firstDay(params)}`,
    );
  }
  const sql = `
    select 'cell' as kind, model_a, model_b, min(provider_a) as provider_a, min(provider_b) as provider_b, outcome,
           ${bins(f)}, sum(n)::int as n, 0 as excluded
      from (${cellSources.join(' union all ')}) t
     ${CELL_GROUP}
    union all
    select 'summary', null, null, null, null, null, null, null, null, null, coalesce(sum(used), 0)::int, coalesce(sum(excluded), 0)::int
      from (${tallySources.join(' union all ')}) s
    ${CELL_ORDER}`;
  return { sql, params };
}

/** MINE: the viewer's votes' battle snapshots. */
export function mineStatement(userId: string, f: NormalisedFilter): { sql: string; params: unknown[] } {
  const where = (params: unknown[]): string => {
    params.push(userId);
    let w = `v.user_id = ? and ${voteWhere(f, params)}`;
    if (f.since !== null) {
      w += ' and v.created_at >= ?::timestamptz';
      params.push(f.since);
    }
    return w;
  };
  const params: unknown[] = [];
  const sql = `
    select 'cell' as kind, model_a, model_b, min(provider_a) as provider_a, min(provider_b) as provider_b, outcome,
           ${bins(f)}, sum(n)::int as n, 0 as excluded
      from (${VOTE_CELLS} where v.excluded_at is null and ${where(params)}) t
     ${CELL_GROUP}
    union all
    select 'summary', null, null, null, null, null, null, null, null, null,
           count(*) filter (where v.excluded_at is null and jsonb_array_length(v.battles->'cells') > 0)::int,
           count(*) filter (where v.excluded_at is not null)::int
      from votes v where ${where(params)}
    ${CELL_ORDER}`;
  return { sql, params };
}

/**
 * Conditions on judge verdicts (alias j) and their comparison (alias c).
 * A blind comparison counts only once revealed (voted on): judging does not
 * reveal it, and a board filtered down to one comparison (its own category,
 * a `since` of just now) would otherwise name its models.
 */
function verdictWhere(f: NormalisedFilter, params: unknown[]): string {
  const where = [
    'j.outcome is not null',
    REVEALED.sql('c'),
    // Answers from a user's own endpoint count only on MINE (issue 16, case 7).
    'not exists (select 1 from comparison_responses cr where cr.id in (j.first_id, j.second_id) and cr.custom_endpoint)',
    // Nor does a verdict of a judge served by a user's own endpoint.
    'not j.custom_endpoint',
  ];
  if (f.blindOnly) where.push('c.blind');
  if (f.category !== null) {
    where.push('c.category = ?');
    params.push(f.category);
  }
  if (f.since !== null) {
    where.push('j.created_at >= ?::timestamptz');
    params.push(f.since);
  }
  return where.join(' and ');
}

/** A response's style feature (alias x), as `vote_battles()` computes it. */
function feature(alias: string, name: (typeof STYLE_FEATURES)[number]): string {
  switch (name) {
    case 'length':
      return `char_length(${alias}.content)`;
    case 'headers':
      return `regexp_count(${alias}.content, '^#{1,6}[ \\t]', 1, 'n')`;
    case 'lists':
      return `regexp_count(${alias}.content, '^[ \\t]*([-*+]|[0-9]+[.)])[ \\t]', 1, 'n')`;
    case 'bold':
      return `regexp_count(${alias}.content, '\\*\\*[^*\\n]+\\*\\*|__[^_\\n]+__', 1, 'n')`;
  }
}

function styleBin(name: (typeof STYLE_FEATURES)[number]): string {
  const x = feature('x', name);
  const y = feature('y', name);
  return `round(${STYLE_BINS_PER_UNIT} * case when ${x} + ${y} = 0 then 0 else (${x} - ${y})::float8 / (${x} + ${y}) end)::int`;
}

/** JUDGE: every judge verdict in scope is one battle between the endpoints of its two responses. */
export function judgeStatement(f: NormalisedFilter): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const where = verdictWhere(f, params);
  const styles = f.styleControl
    ? STYLE_FEATURES.map((name) => `${styleBin(name)} as s_${name}`).join(', ')
    : '0 as s_length, 0 as s_headers, 0 as s_lists, 0 as s_bold';
  const sql = `
    with j as (
      select j.winner_id,
             case when ${endpointSql('f')} < ${endpointSql('s')} then f.id else s.id end as x_id,
             case when ${endpointSql('f')} < ${endpointSql('s')} then s.id else f.id end as y_id
        from judge_verdicts j
        join comparison_results c on c.id = j.comparison_id
        join comparison_responses f on f.id = j.first_id
        join comparison_responses s on s.id = j.second_id
       where ${where}
    ),
    b as (
      select ${endpointSql('x')} as model_a, ${endpointSql('y')} as model_b, x.provider::text as provider_a, y.provider::text as provider_b,
             case when j.winner_id = x.id then 'A' when j.winner_id = y.id then 'B' else 'TIE' end as outcome,
             ${styles}, 1 as n
        from j join comparison_responses x on x.id = j.x_id join comparison_responses y on y.id = j.y_id
    )
    select 'cell' as kind, model_a, model_b, min(provider_a) as provider_a, min(provider_b) as provider_b, outcome,
           s_length, s_headers, s_lists, s_bold, sum(n)::int as n, 0 as excluded
      from b ${CELL_GROUP}
    union all
    select 'summary', null, null, null, null, null, null, null, null, null, (select count(*) from j)::int, 0
    ${CELL_ORDER}`;
  return { sql, params };
}

/**
 * Judge–human agreement on the comparisons that have both, under the same
 * filter: each (verdict, counted human vote) pair where the vote decides the
 * verdict's pair (a WINNER vote for one of its two responses, or a TIE /
 * ALL_BAD vote: a tie) counts once; they agree when the judge picked the
 * same response, or both called it a tie.
 */
export async function judgeHumanAgreement(
  em: EntityManager,
  f: NormalisedFilter,
): Promise<{ judgeHumanAgreement: number | null; judgeHumanPairs: number }> {
  const params: unknown[] = [];
  const where = verdictWhere(f, params);
  const [row] = await em.getConnection().execute<Array<{ n: number; agree: number }>>(
    `select count(*)::int as n,
            count(*) filter (where case when v.outcome = 'WINNER' then j.winner_id = v.winner_id else j.outcome = 'TIE' end)::int as agree
       from judge_verdicts j
       join comparison_results c on c.id = j.comparison_id
       join votes v on v.comparison_id = j.comparison_id and v.excluded_at is null
      where ${where} and (v.outcome <> 'WINNER' or v.winner_id in (j.first_id, j.second_id))`,
    params,
    'all',
    em.getTransactionContext(),
  );
  const n = Number(row?.n ?? 0);
  return { judgeHumanAgreement: n === 0 ? null : Number(row!.agree) / n, judgeHumanPairs: n };
}
