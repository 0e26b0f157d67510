import { createHash } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Orm } from '../../db/orm';
import { outsideDeadline, raceDeadline } from '../../db/request-deadline';
import type { Logger } from '../../observability/logger';
import type { CachePort } from '../../cache/cache.port';
import type { GenerationInvalidator } from '../../cache/generations';
import { pgArray } from '../../db/sql';
import { DEFAULT_LABEL } from '../../llm/model-id';
import { revealedSql } from '../comparison/blind';
import type { Provider } from '../api-key/api-key.entity';
import type { ArenaRating, BattleCountRow, BattleCounts, StyleCoefficientData } from './arena-stats';
import type { FitWorker } from './fit-worker';


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
  /** JUDGE scope: share of (verdict, human vote) pairs on the same comparisons that agree; null elsewhere or without overlap. */
  judgeHumanAgreement: number | null;
  /** How many pairs `judgeHumanAgreement` is computed on (0 outside JUDGE). */
  judgeHumanPairs: number;
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

export interface NormalisedFilter {
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

/** Shared boards this instance served in the last KNOWN_FOR_MS (at most MAX_KNOWN_BOARDS) are refitted in the background after each vote. */
const MAX_KNOWN_BOARDS = 20;
const KNOWN_FOR_MS = 10 * 60_000;

/** The board whose ratings are the consensus of the vote-integrity rules: every vote, blind or not. */
const CONSENSUS_FILTER: NormalisedFilter = { blindOnly: false, styleControl: false, category: null, since: null };

/**
 * Leaderboards. Where the battle counts come from:
 * - GLOBAL: `battle_counts`, kept exact by triggers on `votes` in each
 *   vote's own transaction (see the 20261128021000 migration): one statement
 *   sums the cells the filters select (blind, category, whole UTC days since
 *   `since`; the first, partial day of a `since` window is read from that
 *   day's votes), so its cost grows with models, pairs and style bins, not
 *   votes; `vote_tallies` gives votes used and excluded the same way.
 * - MINE: the viewer's own votes (`votes.battles`, the snapshot each vote
 *   stores), one statement over that user's votes.
 * - Answers served by a user's own key `baseUrl` (`customEndpoint`, not an
 *   operator endpoint) count only on MINE: their battles stay out of
 *   `battle_counts` (cells marked `c`), of JUDGE and of the shared boards'
 *   averages (issue 16, case 7).
 * - JUDGE: judge verdicts (`judge_verdicts`), every user's, one GROUP BY
 *   over them (verdicts are few next to votes), plus judge–human agreement;
 *   a verdict on a blind comparison counts once the comparison is revealed
 *   (voted on), so the board never names the models of an unrevealed one.
 * A worker thread fits the counts (`arena-stats.ts`: Bradley–Terry with
 * ties, Fisher and bootstrap intervals, ranks, style coefficients); a second
 * statement adds the average latency and cost.
 *
 * Battles of a vote: the comparison's endpoints whose response COMPLETED,
 * plus the winner; a WINNER vote is one battle between the winner and every
 * other participant, TIE and ALL_BAD a tie between every pair; two responses
 * of one endpoint count once. Excluded votes (`votes.excluded_at`) never
 * count; `votesExcluded` says how many the filters would otherwise have taken.
 *
 * Serving: MINE is computed on each read (cached per user by the operation
 * cache). GLOBAL and JUDGE are shared: stored in the cache (namespace `resp`)
 * with the vote generation they were computed at, and served
 * stale-while-revalidate: a read that finds the generation moved starts a
 * refit and waits at most `refreshWaitMs` for it before serving the previous
 * board. After every vote (`invalidateGlobal`) the boards this instance
 * served in the last 10 minutes (at most 20, and the consensus board) are
 * refitted in the background, one at a time, so a vote shows within a fit's
 * time; `refits()` resolves when they are done.
 * One refit per board at a time across instances: a refit holds a
 * PostgreSQL advisory lock (transaction-scoped) on the board's key; an
 * instance that finds it taken waits for the lock, then serves the board the
 * holder stored instead of fitting again.
 */
export class LeaderboardService {
  /** The refit running per board, and the generation it fits. */
  private readonly inFlight = new Map<string, { generation: number; task: Promise<StoredBoard> }>();
  /** Shared boards served lately (key → what to refit, when last served). */
  private readonly known = new Map<string, { scope: LeaderboardScopeName; filter: NormalisedFilter; servedAt: number }>();
  /** Boards waiting for a background refit, refitted one at a time (one DB connection, one worker). */
  private readonly queued = new Map<string, { scope: LeaderboardScopeName; filter: NormalisedFilter }>();
  private draining: Promise<void> | null = null;
  private closed = false;

  constructor(
    private readonly orm: Orm,
    private readonly cache: CachePort,
    private readonly generations: GenerationInvalidator,
    private readonly worker: FitWorker,
    private readonly options: LeaderboardOptions,
    private readonly logger?: Logger,
  ) {
    this.known.set(boardKey('GLOBAL', CONSENSUS_FILTER), { scope: 'GLOBAL', filter: CONSENSUS_FILTER, servedAt: Infinity });
  }

  /** The board of `scope` under `filter`; `userId` is the viewer (used by MINE). */
  async board(em: EntityManager, scope: LeaderboardScopeName, userId: string, filter: LeaderboardFilterInput | null | undefined): Promise<LeaderboardBoard> {
    const f = normalise(filter);
    if (scope === 'MINE') return this.compute(em, scope, userId, f);
    return this.shared(scope, f);
  }

  /**
   * Called after every vote, vote exclusion and reversal, and judge verdict:
   * shared boards are stale; the ones this instance served lately refit now,
   * in the background.
   */
  async invalidateGlobal(): Promise<void> {
    await this.generations.bump(GLOBAL_SCOPE);
    if (this.closed) return;
    const since = Date.now() - KNOWN_FOR_MS;
    for (const [key, entry] of this.known) {
      if (entry.servedAt < since) this.known.delete(key);
      else this.queued.set(key, { scope: entry.scope, filter: entry.filter });
    }
    this.draining ??= outsideDeadline(() => this.drain()).finally(() => (this.draining = null));
  }

  /** Resolves once every background refit queued so far has finished (tests await it instead of sleeping). */
  async refits(): Promise<void> {
    while (this.draining) await this.draining;
  }

  /** At shutdown: no more background refits; waits for the running ones (before the worker and the pool close). */
  async close(): Promise<void> {
    this.closed = true;
    this.queued.clear();
    await this.refits();
    await Promise.allSettled([...this.inFlight.values()].map((r) => r.task));
  }

  /** Background refits, one at a time; a board queued again while it refits is refitted once more. */
  private async drain(): Promise<void> {
    for (let next = this.queued.entries().next(); !next.done; next = this.queued.entries().next()) {
      const [key, { scope, filter }] = next.value;
      this.queued.delete(key);
      try {
        const generation = await this.generations.generation(GLOBAL_SCOPE);
        const stored = await this.cache.get<StoredBoard>(key);
        if (!stored || stored.generation !== generation) await this.refresh(key, generation, scope, filter);
      } catch (err) {
        this.logger?.warn({ error: err instanceof Error ? err.name : String(err) }, 'background leaderboard refit failed (the next read retries)');
      }
    }
  }

  /** Ratings of the last computed consensus board (every vote), whatever its age; null when none is stored. */
  async consensus(): Promise<Map<string, number> | null> {
    const stored = await this.cache.get<StoredBoard>(boardKey('GLOBAL', CONSENSUS_FILTER));
    if (!stored || stored.board.rankings.length === 0) return null;
    return new Map(stored.board.rankings.map((r) => [r.model, r.rating]));
  }

  private async shared(scope: LeaderboardScopeName, f: NormalisedFilter): Promise<LeaderboardBoard> {
    const key = boardKey(scope, f);
    this.remember(key, scope, f);
    const [generation, stored] = await Promise.all([this.generations.generation(GLOBAL_SCOPE), this.cache.get<StoredBoard>(key)]);
    if (stored && stored.generation === generation) return revive(stored.board);

    const refresh = this.refresh(key, generation, scope, f);
    if (!stored) return revive((await raceDeadline(refresh)).board);
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

  private remember(key: string, scope: LeaderboardScopeName, filter: NormalisedFilter): void {
    const entry = this.known.get(key);
    if (entry) entry.servedAt = Math.max(entry.servedAt, Date.now());
    else if (this.known.size < MAX_KNOWN_BOARDS) this.known.set(key, { scope, filter, servedAt: Date.now() });
  }

  /**
   * One refit per board per instance at a time, and one across instances
   * (advisory lock); the result is stored for every instance. A caller asking
   * for the generation being fitted joins that refit; one asking for a newer
   * generation gets a refit that starts once the running one is done.
   */
  private refresh(key: string, generation: number, scope: LeaderboardScopeName, f: NormalisedFilter): Promise<StoredBoard> {
    const running = this.inFlight.get(key);
    if (running && running.generation === generation) return running.task;
    // Shared by every reader of the board: never cut by one request's deadline (each reader bounds its own wait).
    const fit = () => outsideDeadline(() => this.refit(key, generation, scope, f));
    const task: Promise<StoredBoard> = (running ? running.task.then(fit, fit) : fit()).finally(() => {
      if (this.inFlight.get(key)?.task === task) this.inFlight.delete(key);
    });
    this.inFlight.set(key, { generation, task });
    return task;
  }

  private refit(key: string, generation: number, scope: LeaderboardScopeName, f: NormalisedFilter): Promise<StoredBoard> {
    return this.orm.em.fork().transactional(async (tx) => {
      const sql = <T>(text: string, params: unknown[]) => tx.getConnection().execute(text, params, 'all', tx.getTransactionContext()) as Promise<T>;
      const lock = `llmselect:leaderboard:${key}`;
      const [{ locked }] = await sql<Array<{ locked: boolean }>>(`select pg_try_advisory_xact_lock(hashtextextended(?, 0)) as locked`, [lock]);
      // Another instance is fitting this board: wait for it.
      if (!locked) await sql(`select pg_advisory_xact_lock(hashtextextended(?, 0))`, [lock]);
      // Under the lock: the board of this generation may have been stored meanwhile (by another instance).
      const theirs = await this.cache.get<StoredBoard>(key);
      if (theirs && theirs.generation === generation) return theirs;
      const stored: StoredBoard = { generation, board: await this.compute(tx, scope, null, f) };
      await this.cache.set(key, stored, this.options.maxAgeMs);
      return stored;
    });
  }

  /** `userId` null = every user's votes. */
  private async compute(em: EntityManager, scope: LeaderboardScopeName, userId: string | null, f: NormalisedFilter): Promise<LeaderboardBoard> {
    const features = f.styleControl ? [...STYLE_FEATURES] : [];
    const connection = em.getConnection();
    const ctx = em.getTransactionContext();
    const { sql, params } = scope === 'JUDGE' ? judgeStatement(f) : scope === 'MINE' ? mineStatement(userId!, f) : globalStatement(f);
    const rows = await connection.execute<CellRow[]>(sql, params, 'all', ctx);
    const summary = rows.find((r) => r.kind === 'summary');
    const cells = rows.filter((r) => r.kind === 'cell');
    const votesUsed = Number(summary?.n ?? 0);
    const votesExcluded = Number(summary?.excluded ?? 0);
    const agreement = scope === 'JUDGE' ? await judgeHumanAgreement(em, f) : { judgeHumanAgreement: null, judgeHumanPairs: 0 };
    if (cells.length === 0) {
      return {
        rankings: [],
        info: {
          votesUsed: 0,
          votesExcluded,
          models: 0,
          computedAt: new Date(),
          bootstrapSamples: 0,
          styleCoefficients: features.map((feature) => ({ feature, coefficient: 0, low: 0, high: 0 })),
          ...agreement,
        },
      };
    }

    const providers = new Map<string, Provider>();
    const counts: BattleCounts = { features, rows: [] };
    for (const c of cells) {
      providers.set(c.model_a!, c.provider_a as Provider);
      providers.set(c.model_b!, c.provider_b as Provider);
      const row: BattleCountRow = { a: c.model_a!, b: c.model_b!, outcome: c.outcome!, count: Number(c.n) };
      if (f.styleControl) row.x = [c.s_length, c.s_headers, c.s_lists, c.s_bold].map((v) => Number(v) / STYLE_BINS_PER_UNIT);
      counts.rows.push(row);
    }
    const fit = await this.worker.fit(counts, { bootstrapSamples: this.options.bootstrapSamples, seed: this.options.seed });

    const averages = await connection.execute<AverageRow[]>(
      // Unrevealed blind responses stay out: a moving average would tell which models a battle holds.
      `select ${endpoint('r')} as model, avg(r.latency_ms)::float8 as avg_latency_ms, avg(r.cost_usd)::float8 as avg_cost_usd
         from comparison_responses r
         join comparison_results c on c.id = r.comparison_id ${userId === null ? '' : 'and c.owner_id = ?'}
        where r.status = 'COMPLETED' and ${endpoint('r')} = any(?::text[]) and ${revealedSql('c')} ${userId === null ? 'and not r.custom_endpoint' : ''}
        group by 1`,
      [...(userId === null ? [] : [userId]), pgArray(fit.ratings.map((r) => r.model))],
      'all',
      ctx,
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
        votesUsed,
        votesExcluded,
        models: fit.ratings.length,
        computedAt: new Date(),
        bootstrapSamples: fit.bootstrapSamples,
        styleCoefficients: fit.styleCoefficients,
        ...agreement,
      },
    };
  }
}

function boardKey(scope: LeaderboardScopeName, f: NormalisedFilter): string {
  return `resp:leaderboard:${scope}:${createHash('sha256').update(JSON.stringify(f)).digest('base64url').slice(0, 22)}`;
}

/** The endpoint key of a response row (as `endpointKey` builds it): each label of a model is ranked apart. */
function endpoint(alias: string): string {
  return `case when ${alias}.key_label = '${DEFAULT_LABEL}' then ${alias}.model else ${alias}.model || '@' || ${alias}.key_label end`;
}

const CELL_GROUP = `group by model_a, model_b, outcome, s_length, s_headers, s_lists, s_bold having sum(n) > 0`;
const CELL_ORDER = `order by 1, 2, 3, 6, 7, 8, 9, 10`;

/** Bins as selected: the stored ones with style control, 0 without (so the cells merge). */
function bins(f: NormalisedFilter, alias = ''): string {
  const p = alias ? `${alias}.` : '';
  return f.styleControl ? `${p}s_length, ${p}s_headers, ${p}s_lists, ${p}s_bold` : `0 as s_length, 0 as s_headers, 0 as s_lists, 0 as s_bold`;
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
    return `${where} and v.created_at >= ?::timestamptz and v.created_at < ((?::timestamptz at time zone 'UTC')::date + 1) at time zone 'UTC'`;
  };
  const params: unknown[] = [];
  const cellSources = [`select model_a, model_b, provider_a, provider_b, outcome, s_length, s_headers, s_lists, s_bold, n from battle_counts where ${tableWhere(params)}`];
  if (f.since !== null) cellSources.push(`${VOTE_CELLS} where v.excluded_at is null and ${SHARED_CELL} and ${firstDay(params)}`);
  const tallySources = [`select used_votes as used, excluded_votes as excluded from vote_tallies where ${tableWhere(params)}`];
  if (f.since !== null) {
    tallySources.push(
      `select (v.excluded_at is null and exists (select 1 from jsonb_array_elements(v.battles->'cells') c where ${SHARED_CELL}))::int, (v.excluded_at is not null)::int from votes v where ${firstDay(params)}`,
    );
  }
  const sql = `
    select 'cell' as kind, model_a, model_b, min(provider_a) as provider_a, min(provider_b) as provider_b, outcome, ${bins(f)}, sum(n)::int as n, 0 as excluded
      from (${cellSources.join(' union all ')}) t
     ${CELL_GROUP}
    union all
    select 'summary', null, null, null, null, null, null, null, null, null, coalesce(sum(used), 0)::int, coalesce(sum(excluded), 0)::int
      from (${tallySources.join(' union all ')}) s
    ${CELL_ORDER}`;
  return { sql, params };
}

/** MINE: the viewer's votes' battle snapshots. */
function mineStatement(userId: string, f: NormalisedFilter): { sql: string; params: unknown[] } {
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
    select 'cell' as kind, model_a, model_b, min(provider_a) as provider_a, min(provider_b) as provider_b, outcome, ${bins(f)}, sum(n)::int as n, 0 as excluded
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
    '(not c.blind or exists (select 1 from votes rv where rv.comparison_id = c.id))',
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
function judgeStatement(f: NormalisedFilter): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const where = verdictWhere(f, params);
  const styles = f.styleControl
    ? STYLE_FEATURES.map((name) => `${styleBin(name)} as s_${name}`).join(', ')
    : '0 as s_length, 0 as s_headers, 0 as s_lists, 0 as s_bold';
  const sql = `
    with j as (
      select j.winner_id,
             case when ${endpoint('f')} < ${endpoint('s')} then f.id else s.id end as x_id,
             case when ${endpoint('f')} < ${endpoint('s')} then s.id else f.id end as y_id
        from judge_verdicts j
        join comparison_results c on c.id = j.comparison_id
        join comparison_responses f on f.id = j.first_id
        join comparison_responses s on s.id = j.second_id
       where ${where}
    ),
    b as (
      select ${endpoint('x')} as model_a, ${endpoint('y')} as model_b, x.provider::text as provider_a, y.provider::text as provider_b,
             case when j.winner_id = x.id then 'A' when j.winner_id = y.id then 'B' else 'TIE' end as outcome,
             ${styles}, 1 as n
        from j join comparison_responses x on x.id = j.x_id join comparison_responses y on y.id = j.y_id
    )
    select 'cell' as kind, model_a, model_b, min(provider_a) as provider_a, min(provider_b) as provider_b, outcome, s_length, s_headers, s_lists, s_bold, sum(n)::int as n, 0 as excluded
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
async function judgeHumanAgreement(em: EntityManager, f: NormalisedFilter): Promise<{ judgeHumanAgreement: number | null; judgeHumanPairs: number }> {
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

