import { createHash } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { CachePort } from '../../cache/cache.port';
import type { GenerationInvalidator } from '../../cache/generations';
import { pgArray } from '../../db/sql';
import { DEFAULT_LABEL } from '../../llm/model-id';
import { revealedSql } from '../comparison/blind';
import type { Provider } from '../api-key/api-key.entity';
import type { ArenaRating, BattleCountRow, BattleCounts, StyleCoefficientData } from './arena-stats';
import type { FitWorker } from './fit-worker';

/** The endpoint key in SQL (as `endpointKey` builds it): each label of a model is ranked apart. */
const ENDPOINT_SQL = `case when r.key_label = '${DEFAULT_LABEL}' then r.model else r.model || '@' || r.key_label end`;

/** One leaderboard line: the Bradley–Terry rating plus the models' average cost and speed. */
export interface ModelRankingData extends ArenaRating {
  /** `ArenaRating.model`: the endpoint (`endpointKey`): the model id, plus `@label` when the label is not `default`. */
  provider: Provider;
  avgLatencyMs: number | null;
  avgCostUsd: number | null;
}

export interface LeaderboardInfoData {
  votesUsed: number;
  votesExcluded: number;
  models: number;
  computedAt: Date;
  bootstrapSamples: number;
  styleCoefficients: StyleCoefficientData[];
}

export interface LeaderboardBoard {
  rankings: ModelRankingData[];
  info: LeaderboardInfoData;
}

export type LeaderboardScopeName = 'GLOBAL' | 'MINE' | 'JUDGE';

/** The filter as the resolver passes it; missing fields take the API defaults. */
export interface LeaderboardFilterInput {
  blindOnly?: boolean | null;
  styleControl?: boolean | null;
  category?: string | null;
  since?: Date | null;
}

interface NormalisedFilter {
  blindOnly: boolean;
  styleControl: boolean;
  category: string | null;
  since: string | null;
}

export interface LeaderboardOptions {
  bootstrapSamples: number;
  seed: number;
  refreshWaitMs: number;
  maxAgeMs: number;
}

/** The style features, in the order of the covariates (README: "How the leaderboard is computed"). */
export const STYLE_FEATURES = ['length', 'headers', 'lists', 'bold'] as const;

/** Style differences are binned to this many steps per unit before grouping (21 bins over [−1, 1]). */
const STYLE_BINS_PER_UNIT = 10;

/** Generation scope bumped by every vote; a shared board remembers the generation it was computed at. */
const GLOBAL_SCOPE = 'leaderboard-global';

interface CellRow {
  kind: 'cell' | 'summary';
  model_a: string | null;
  model_b: string | null;
  provider_a: Provider | null;
  provider_b: Provider | null;
  outcome: 'A' | 'B' | 'TIE' | null;
  s_length: number | null;
  s_headers: number | null;
  s_lists: number | null;
  s_bold: number | null;
  n: number;
  used: number;
}

interface AverageRow {
  model: string;
  avg_latency_ms: number | null;
  avg_cost_usd: number | null;
}

/** A shared board as stored in the cache (JSON: dates as strings). */
interface StoredBoard {
  generation: number;
  board: LeaderboardBoard;
}

/**
 * Leaderboards from votes: one SQL statement aggregates the votes in scope
 * into battle counts (GROUP BY pair, outcome and, with style control, the
 * binned style differences), a worker thread fits them (`arena-stats.ts`:
 * Bradley–Terry with ties, Fisher and bootstrap intervals, ranks, style
 * coefficients), a second statement adds the averages. The cost of the fit
 * grows with models, pairs and bins, not votes.
 *
 * Decisions:
 * - Battle participants of a vote are the comparison's models whose response
 *   COMPLETED, plus the winner; a WINNER vote is one battle between the winner
 *   and every other participant, TIE and ALL_BAD a tie between every pair of
 *   participants; two responses of one model count as one participant.
 * - Filters: `blindOnly` (default true) keeps votes on blind comparisons,
 *   `category` one category, `since` votes cast at or after that instant;
 *   scope MINE the viewer's votes, GLOBAL everyone's, JUDGE the judge models'
 *   verdicts (none are stored yet, so that board is empty). Votes marked
 *   excluded (`votes.excluded_at`) never count; `votesExcluded` says how many
 *   the filters would otherwise have taken.
 * - MINE is computed on each read and cached per user by the operation cache.
 *   GLOBAL and JUDGE boards are shared: stored in the cache (namespace `resp`)
 *   with the vote generation they were computed at, and served
 *   stale-while-revalidate: a read that finds the generation moved (a vote
 *   since) starts a refit (single-flighted per instance and board) and waits
 *   at most `refreshWaitMs` for it before serving the previous board; the
 *   refit's result is stored for every instance. Several instances may refit
 *   the same generation concurrently (each at most once at a time, off their
 *   event loops); the results are identical (seeded), so the last write wins
 *   harmlessly.
 */
export class LeaderboardService {
  private readonly inFlight = new Map<string, Promise<StoredBoard>>();

  constructor(
    private readonly cache: CachePort,
    private readonly generations: GenerationInvalidator,
    private readonly worker: FitWorker,
    private readonly options: LeaderboardOptions,
  ) {}

  /** The board of `scope` under `filter`; `userId` is the viewer (used by MINE). */
  async board(em: EntityManager, scope: LeaderboardScopeName, userId: string, filter: LeaderboardFilterInput | null | undefined): Promise<LeaderboardBoard> {
    const f = normalise(filter);
    if (scope === 'MINE') return this.compute(em, scope, userId, f);
    return this.shared(em, scope, f);
  }

  /** Called after every vote. */
  async invalidateGlobal(): Promise<void> {
    await this.generations.bump(GLOBAL_SCOPE);
  }

  private async shared(em: EntityManager, scope: LeaderboardScopeName, f: NormalisedFilter): Promise<LeaderboardBoard> {
    const key = `resp:leaderboard:${scope}:${createHash('sha256').update(JSON.stringify(f)).digest('base64url').slice(0, 22)}`;
    const [generation, stored] = await Promise.all([this.generations.generation(GLOBAL_SCOPE), this.cache.get<StoredBoard>(key)]);
    if (stored && stored.generation === generation) return revive(stored.board);

    const refresh = this.refresh(key, generation, () => this.compute(em, scope, null, f));
    if (!stored) return revive((await refresh).board);
    refresh.catch(() => undefined); // the previous board is served; the next read retries
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(resolve, this.options.refreshWaitMs, null);
      timer.unref();
    });
    const fresh = await Promise.race([refresh.catch(() => null), timeout]);
    clearTimeout(timer);
    return revive((fresh ?? stored).board);
  }

  /** One refit per board per instance at a time; its result is stored for every instance. */
  private refresh(key: string, generation: number, compute: () => Promise<LeaderboardBoard>): Promise<StoredBoard> {
    const running = this.inFlight.get(key);
    if (running) return running;
    const task = (async () => {
      const stored: StoredBoard = { generation, board: await compute() };
      await this.cache.set(key, stored, this.options.maxAgeMs);
      return stored;
    })().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, task);
    return task;
  }

  /** `userId` null = every user's votes. */
  private async compute(em: EntityManager, scope: LeaderboardScopeName, userId: string | null, f: NormalisedFilter): Promise<LeaderboardBoard> {
    const features = f.styleControl ? [...STYLE_FEATURES] : [];
    const empty = (votesExcluded: number): LeaderboardBoard => ({
      rankings: [],
      info: {
        votesUsed: 0,
        votesExcluded,
        models: 0,
        computedAt: new Date(),
        bootstrapSamples: 0,
        styleCoefficients: features.map((feature) => ({ feature, coefficient: 0, low: 0, high: 0 })),
      },
    });
    // Judge verdicts are not stored yet (issue 10 item 6): the JUDGE board is empty.
    if (scope === 'JUDGE') return empty(0);

    const connection = em.getConnection();
    const { sql, params } = aggregationStatement(userId, f);
    const rows = await connection.execute<CellRow[]>(sql, params);
    const summary = rows.find((r) => r.kind === 'summary');
    const cells = rows.filter((r) => r.kind === 'cell');
    const votesExcluded = Number(summary?.n ?? 0);
    if (cells.length === 0) return empty(votesExcluded);

    const providers = new Map<string, Provider>();
    const counts: BattleCounts = { features, rows: [] };
    for (const c of cells) {
      providers.set(c.model_a!, c.provider_a!);
      providers.set(c.model_b!, c.provider_b!);
      const row: BattleCountRow = { a: c.model_a!, b: c.model_b!, outcome: c.outcome!, count: Number(c.n) };
      if (f.styleControl) row.x = [c.s_length, c.s_headers, c.s_lists, c.s_bold].map((v) => Number(v) / STYLE_BINS_PER_UNIT);
      counts.rows.push(row);
    }
    const fit = await this.worker.fit(counts, { bootstrapSamples: this.options.bootstrapSamples, seed: this.options.seed });

    const averages = await connection.execute<AverageRow[]>(
      // Unrevealed blind responses stay out: a moving average would tell which models a battle holds.
      `select ${ENDPOINT_SQL} as model, avg(r.latency_ms)::float8 as avg_latency_ms, avg(r.cost_usd)::float8 as avg_cost_usd
         from comparison_responses r
         join comparison_results c on c.id = r.comparison_id ${userId === null ? '' : 'and c.owner_id = ?'}
        where r.status = 'COMPLETED' and ${ENDPOINT_SQL} = any(?::text[]) and ${revealedSql('c')}
        group by 1`,
      [...(userId === null ? [] : [userId]), pgArray(fit.ratings.map((r) => r.model))],
    );
    const averageOf = new Map(averages.map((a) => [a.model, a]));

    return {
      rankings: fit.ratings.map((r) => ({
        ...r,
        provider: providers.get(r.model)!,
        avgLatencyMs: averageOf.get(r.model)?.avg_latency_ms ?? null,
        avgCostUsd: averageOf.get(r.model)?.avg_cost_usd ?? null,
      })),
      info: {
        votesUsed: Number(summary?.used ?? 0),
        votesExcluded,
        models: fit.ratings.length,
        computedAt: new Date(),
        bootstrapSamples: fit.bootstrapSamples,
        styleCoefficients: fit.styleCoefficients,
      },
    };
  }
}

function normalise(filter: LeaderboardFilterInput | null | undefined): NormalisedFilter {
  return {
    blindOnly: filter?.blindOnly ?? true,
    styleControl: filter?.styleControl ?? false,
    category: filter?.category ?? null,
    since: filter?.since ? new Date(filter.since).toISOString() : null,
  };
}

/** Dates come back from the cache as strings. */
function revive(board: LeaderboardBoard): LeaderboardBoard {
  return { ...board, info: { ...board.info, computedAt: new Date(board.info.computedAt) } };
}

/** Normalised difference (x − y) / (x + y), 0 when both are 0, binned. */
function styleDiff(column: string): string {
  return `round(${STYLE_BINS_PER_UNIT} * case when x.${column} + y.${column} = 0 then 0 else (x.${column} - y.${column})::float8 / (x.${column} + y.${column}) end)::int`;
}

/**
 * The aggregation: votes in scope → participants (one per model) → pairwise
 * battles → counts per (pair, outcome[, style bins]), plus one summary row
 * (kind 'summary': n = votes excluded, used = votes that produced battles).
 */
function aggregationStatement(userId: string | null, f: NormalisedFilter): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  if (userId !== null) {
    where.push('v.user_id = ?');
    params.push(userId);
  }
  if (f.blindOnly) where.push('c.blind');
  if (f.category !== null) {
    where.push('c.category = ?');
    params.push(f.category);
  }
  if (f.since !== null) {
    where.push('v.created_at >= ?::timestamptz');
    params.push(f.since);
  }
  const style = f.styleControl;
  const styleColumns = style
    ? `, char_length(r.content) as length,
         regexp_count(r.content, '^#{1,6}[ \\t]', 1, 'n') as headers,
         regexp_count(r.content, '^[ \\t]*([-*+]|[0-9]+[.)])[ \\t]', 1, 'n') as lists,
         regexp_count(r.content, '\\*\\*[^*\\n]+\\*\\*|__[^_\\n]+__', 1, 'n') as bold`
    : '';
  const styleDiffs = style
    ? `, ${styleDiff('length')} as s_length, ${styleDiff('headers')} as s_headers, ${styleDiff('lists')} as s_lists, ${styleDiff('bold')} as s_bold`
    : ', 0 as s_length, 0 as s_headers, 0 as s_lists, 0 as s_bold';
  const sql = `
    with v as (
      select v.id, v.outcome, v.winner_id, v.comparison_id, v.excluded_at is not null as excluded
        from votes v join comparison_results c on c.id = v.comparison_id
       where ${where.length > 0 ? where.join(' and ') : 'true'}
    ),
    p as (
      select distinct on (v.id, ${ENDPOINT_SQL})
             v.id as vote_id, v.outcome, ${ENDPOINT_SQL} as model, r.provider::text as provider, (r.id = v.winner_id) is true as is_winner
             ${styleColumns}
        from v join comparison_responses r
          on r.comparison_id = v.comparison_id and (r.status = 'COMPLETED' or r.id = v.winner_id)
       where not v.excluded
       order by v.id, ${ENDPOINT_SQL}, (r.id = v.winner_id) is true desc, r.position
    ),
    b as (
      select x.vote_id, x.model as model_a, y.model as model_b, x.provider as provider_a, y.provider as provider_b,
             case when x.is_winner then 'A' when y.is_winner then 'B' else 'TIE' end as outcome
             ${styleDiffs}
        from p x join p y on x.vote_id = y.vote_id and x.model < y.model
       where x.outcome <> 'WINNER' or x.is_winner or y.is_winner
    )
    select 'cell' as kind, model_a, model_b, min(provider_a) as provider_a, min(provider_b) as provider_b, outcome,
           s_length, s_headers, s_lists, s_bold, count(*)::int as n, 0 as used
      from b
     group by model_a, model_b, outcome, s_length, s_headers, s_lists, s_bold
    union all
    select 'summary', null, null, null, null, null, null, null, null, null,
           (select count(*) from v where excluded)::int, (select count(distinct vote_id) from b)::int
     order by 1, 2, 3, 6, 7, 8, 9, 10`;
  return { sql, params };
}
