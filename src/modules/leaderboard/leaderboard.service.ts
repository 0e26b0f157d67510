import { createHash } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Orm } from '../../db/orm';
import { outsideDeadline, raceDeadline } from '../../db/request-deadline';
import type { Logger } from '../../observability/logger';
import type { CachePort } from '../../cache/cache.port';
import type { Generations } from '../../read-cache/generations';
import { readCacheKeys } from '../../read-cache/keys';
import { computeBoard } from './board-fit';
import type { FitWorker } from './fit-worker';
import {
  type LeaderboardBoard,
  type LeaderboardFilterInput,
  type LeaderboardOptions,
  type LeaderboardScopeName,
  type NormalisedFilter,
  normalise,
} from './leaderboard.types';

/** Generation scope bumped by every vote; a shared board remembers the generation it was computed at. */
const GLOBAL_SCOPE = 'leaderboard-global';

/** A shared board as stored in the cache (JSON: dates as strings). */
interface StoredBoard {
  generation: number;
  board: LeaderboardBoard;
}

/**
 * Shared boards this instance served in the last KNOWN_FOR_MS (at most
 * MAX_KNOWN_BOARDS) are refitted in the background after each vote.
 */
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
 * The statements are `battle-sql.ts`'s; `board-fit.ts` runs one, has a
 * worker thread fit the counts (`arena-stats.ts`: Bradley–Terry with ties,
 * Fisher and bootstrap intervals, ranks, style coefficients) and adds the
 * average latency and cost with a second statement. This file serves boards.
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
    private readonly generations: Generations,
    private readonly worker: FitWorker,
    private readonly options: LeaderboardOptions,
    private readonly logger?: Logger,
  ) {
    this.known.set(boardKey('GLOBAL', CONSENSUS_FILTER), { scope: 'GLOBAL', filter: CONSENSUS_FILTER, servedAt: Infinity });
  }

  /** The board of `scope` under `filter`; `userId` is the viewer (used by MINE). */
  async board(
    em: EntityManager,
    scope: LeaderboardScopeName,
    userId: string,
    filter: LeaderboardFilterInput | null | undefined,
  ): Promise<LeaderboardBoard> {
    const f = normalise(filter);
    if (scope === 'MINE') return computeBoard(em, this.worker, this.options, scope, userId, f);
    return this.shared(scope, f);
  }

  /**
   * Called after every vote, vote exclusion and reversal, and judge verdict:
   * shared boards are stale; the ones this instance served lately refit now,
   * in the background.
   */
  async invalidateGlobal(): Promise<void> {
    await this.generations.invalidateShared(GLOBAL_SCOPE);
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
        this.logger?.warn(
          { error: err instanceof Error ? err.name : String(err) },
          'background leaderboard refit failed (the next read retries)',
        );
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
      const sql = <T>(text: string, params: unknown[]) =>
        tx.getConnection().execute(text, params, 'all', tx.getTransactionContext()) as Promise<T>;
      const lock = `llmselect:leaderboard:${key}`;
      const [{ locked }] = await sql<Array<{ locked: boolean }>>(`select pg_try_advisory_xact_lock(hashtextextended(?, 0)) as locked`, [
        lock,
      ]);
      // Another instance is fitting this board: wait for it.
      if (!locked) await sql(`select pg_advisory_xact_lock(hashtextextended(?, 0))`, [lock]);
      // Under the lock: the board of this generation may have been stored meanwhile (by another instance).
      const theirs = await this.cache.get<StoredBoard>(key);
      if (theirs && theirs.generation === generation) return theirs;
      const stored: StoredBoard = { generation, board: await computeBoard(tx, this.worker, this.options, scope, null, f) };
      await this.cache.set(key, stored, this.options.maxAgeMs);
      return stored;
    });
  }
}

function boardKey(scope: LeaderboardScopeName, f: NormalisedFilter): string {
  return readCacheKeys.leaderboard(scope, createHash('sha256').update(JSON.stringify(f)).digest('base64url').slice(0, 22));
}

/** Dates come back from the cache as strings. */
function revive(board: LeaderboardBoard): LeaderboardBoard {
  return { ...board, info: { ...board.info, computedAt: new Date(board.info.computedAt) } };
}
