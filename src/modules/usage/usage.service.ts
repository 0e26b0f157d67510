/**
 * What a user may spend on provider calls: a rate limit on model calls and a
 * spend budget in USD over a rolling 24 h. Both are checked by
 * {@link UsageService.admit} before any provider is called (comparisons,
 * retries, sendMessage, judgeComparison).
 *
 * Spend is what was recorded: the `cost_usd` of comparison responses (counted
 * at the comparison's start), of assistant messages and of judge calls
 * (`judge_verdicts`), over the last 24 h. A
 * model without a known price records no cost, so it spends nothing it can be
 * charged for here; it still counts in the rate limit.
 *
 * Correct across instances — at most one comparison of overspend:
 * - admission takes a per-user PostgreSQL advisory lock (transaction-scoped),
 *   so admissions of one user are serialized on every instance. Nothing waits
 *   on the lock holding a pool connection: admissions of one user queue in
 *   this process first, and a lock held elsewhere is tried again after a
 *   backoff with the connection given back (`pg_try_advisory_xact_lock`), up
 *   to {@link LOCK_WAIT_MS};
 * - under the lock it reads the recorded spend and the budget held by running
 *   calls (`spend_reservations`), and writes a reservation of the new calls'
 *   worst case (list prices × the prompt's UTF-8 bytes in, LLM_MAX_OUTPUT_BYTES
 *   out: a token is at least a byte); the reservation is deleted once the
 *   calls' costs are recorded (or expires, if its instance crashed);
 * - a call is admitted when the recorded spend is under the budget and either
 *   nothing else of the user is running (this one may overspend: the one
 *   allowed overspend) or every running worst case plus this one's fits under
 *   the budget (then they cannot overspend together). A model with an unknown
 *   price has no worst case, so it only runs alone.
 * Reasoning tokens that never show in the text are not bounded by the output
 * cap; their recorded cost still counts once it is known.
 *
 * A personal API token's own daily cap (`Principal.token.dailyBudgetUsd`) is a
 * second budget checked the same way, under the same lock: the spend rows
 * made through the token (`api_token_id` on comparison responses, assistant
 * messages and judge verdicts, written by whoever records the call) and the
 * reservations held through it. Either budget refuses with BUDGET_EXCEEDED
 * before any provider call; the token's refusal carries `apiTokenId`.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import { randomUUID } from 'node:crypto';
import type { RateLimiter } from '../../cache/rate-limit';
import type { ReadCacheInvalidation } from '../../read-cache/invalidation';
import type { Orm } from '../../db/orm';
import { isUuid } from '../../db/pagination';
import { pgArray } from '../../db/sql';
import type { Principal } from '../../auth/principal';
import { AppError, badInput, notFound, rateLimited } from '../../errors';
import { findCatalogEntry } from '../../llm/catalog';
import type { ProviderName } from '../../llm/model-id';
import type { Logger } from '../../observability/logger';
import { User, type UserView } from '../user/user.entity';

/** One model call about to be made. */
export interface PlannedCall {
  provider: ProviderName;
  /** The provider's model name (catalog lookup for the worst-case price). */
  name: string;
  /** UTF-8 bytes of everything sent (history and prompt). */
  inputBytes: number;
}

/** The call of `model` with these turns. */
export function plannedCall(model: { provider: ProviderName; name: string }, turns: ReadonlyArray<{ content: string }>): PlannedCall {
  return { provider: model.provider, name: model.name, inputBytes: turns.reduce((n, t) => n + Buffer.byteLength(t.content, 'utf8'), 0) };
}

/** Admits provider calls (see {@link UsageService.admit}); what the runner and chat depend on. */
export interface ProviderCallAdmission {
  admit(principal: Principal, calls: readonly PlannedCall[]): Promise<Release>;
}

/** Gives the reserved budget back; call it once the calls' costs are recorded. Never throws. */
export type Release = () => Promise<void>;

export interface SpendSummary {
  userId: string;
  spentUsd: number;
  /** null: unlimited. */
  budgetUsd: number | null;
  /** null: unlimited; never negative. */
  remainingUsd: number | null;
}

export interface UsageServiceDeps {
  orm: Orm;
  /** Model calls per user (points = calls). */
  providerCalls: RateLimiter;
  invalidation: ReadCacheInvalidation;
  /** USER_DAILY_BUDGET_USD; 0 = unlimited. */
  defaultDailyBudgetUsd: number;
  /** LLM_MAX_OUTPUT_BYTES: the most a call can answer. */
  maxOutputBytes: number;
  /** After this a reservation no longer counts (its instance must have stopped). */
  reservationTtlMs: number;
  logger: Logger;
  /** Counts refusals by kind. */
  onRefused?: (kind: 'rate_limit' | 'budget') => void;
}

const WINDOW = `interval '24 hours'`;

/**
 * `(at, cost)` of every recorded cost of user `?` ({@link SPEND_PARAMS} times: comparisons, messages, judge calls,
 * eval cells (answer and RUBRIC judging) and eval pairwise verdicts, and those of them deleted since (`deleted_spend`,
 * kept by triggers: deleting a conversation or a prompt set must not give the budget back)) in the window.
 */
const SPEND_ROWS = `
  select r.created_at as at, x.cost_usd as cost
    from comparison_results r join comparison_responses x on x.comparison_id = r.id
   where r.owner_id = ? and r.created_at > now() - ${WINDOW} and x.cost_usd is not null
  union all
  select m.created_at, m.cost_usd
    from conversations c join messages m on m.conversation_id = c.id
   where c.owner_id = ? and m.created_at > now() - ${WINDOW} and m.cost_usd is not null
  union all
  select j.created_at, j.cost_usd
    from judge_verdicts j
   where j.user_id = ? and j.created_at > now() - ${WINDOW} and j.cost_usd is not null
  union all
  select e.finished_at, coalesce(e.cost_usd, 0) + coalesce(e.judge_cost_usd, 0)
    from eval_cells e
   where e.owner_id = ? and e.finished_at > now() - ${WINDOW} and (e.cost_usd is not null or e.judge_cost_usd is not null)
  union all
  select v.finished_at, v.cost_usd
    from eval_pair_verdicts v
   where v.owner_id = ? and v.finished_at > now() - ${WINDOW} and v.cost_usd is not null
  union all
  select d.at, d.cost_usd
    from deleted_spend d
   where d.user_id = ? and d.at > now() - ${WINDOW}`;

/** How many times a spend-rows statement takes its id. */
const SPEND_PARAMS = 6;

/** The same rows as {@link SPEND_ROWS}, made through personal API token `?` ({@link SPEND_PARAMS} times), whoever's they are. */
const TOKEN_SPEND_ROWS = `
  select r.created_at as at, x.cost_usd as cost
    from comparison_responses x join comparison_results r on r.id = x.comparison_id
   where x.api_token_id = ? and r.created_at > now() - ${WINDOW} and x.cost_usd is not null
  union all
  select m.created_at, m.cost_usd
    from messages m
   where m.api_token_id = ? and m.created_at > now() - ${WINDOW} and m.cost_usd is not null
  union all
  select j.created_at, j.cost_usd
    from judge_verdicts j
   where j.api_token_id = ? and j.created_at > now() - ${WINDOW} and j.cost_usd is not null
  union all
  select e.finished_at, coalesce(e.cost_usd, 0) + coalesce(e.judge_cost_usd, 0)
    from eval_cells e join eval_runs er on er.id = e.run_id
   where er.api_token_id = ? and e.finished_at > now() - ${WINDOW} and (e.cost_usd is not null or e.judge_cost_usd is not null)
  union all
  select v.finished_at, v.cost_usd
    from eval_pair_verdicts v join eval_runs vr on vr.id = v.run_id
   where vr.api_token_id = ? and v.finished_at > now() - ${WINDOW} and v.cost_usd is not null
  union all
  select d.at, d.cost_usd
    from deleted_spend d
   where d.api_token_id = ? and d.at > now() - ${WINDOW}`;

const ids = (id: string) => Array.from({ length: SPEND_PARAMS }, () => id);

/** One budget an admission must fit: the user's, or the personal token's cap. */
interface Budget {
  usd: number;
  /** Its spend rows (one id parameter, three times) and the reservations column that holds against it. */
  rows: string;
  column: 'user_id' | 'api_token_id';
  id: string;
  refusal: (spentUsd: number) => string;
  extensions: Record<string, unknown>;
}

/** How long an admission waits for another instance's admission of the same user before answering SERVICE_UNAVAILABLE. */
const LOCK_WAIT_MS = 10_000;
/** Thrown inside the reservation's transaction when the user's lock is held elsewhere: roll back, wait, try again. */
const LOCK_BUSY = Symbol('lock busy');

export class UsageService implements ProviderCallAdmission {
  private readonly noop: Release = async () => undefined;
  /** Per user, the tail of this process's admissions (one at a time, so one connection at most asks for the lock). */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(private readonly deps: UsageServiceDeps) {}

  /**
   * Admits `calls` for the user or throws RATE_LIMITED / BUDGET_EXCEEDED,
   * before anything is written or sent. The returned release must be called
   * once the calls have settled (their costs recorded).
   */
  async admit(principal: Principal, calls: readonly PlannedCall[]): Promise<Release> {
    const verdict = await this.deps.providerCalls.consume(principal.userId, calls.length);
    if (!verdict.allowed) {
      this.deps.onRefused?.('rate_limit');
      throw rateLimited(verdict.retryAfterSeconds, `Too many model calls: retry in ${verdict.retryAfterSeconds} s`);
    }
    try {
      return await this.oneAtATime(principal.userId, () => this.reserve(principal, calls));
    } catch (error) {
      // Refused for its budget: the calls were not made, so they do not count against the rate.
      await this.deps.providerCalls.refund(principal.userId, calls.length);
      throw error;
    }
  }

  // ─── Eval runs ─────────────────────────────────────────────────────────────
  //
  // An eval run reserves its whole worst case once, when it starts, under the
  // same per-user lock as every admission (so two runs, or a run and a
  // comparison, cannot overspend together), and refuses BUDGET_EXCEEDED when
  // the worst case does not fit what is left: there is no "one allowed
  // overspend" for a run. The reservation (`spend_reservations.eval_run_id`)
  // shrinks as cells record their costs (the worker's settle statement takes
  // each cell's worst case off it) and goes when the run ends (or with
  // the run's row). Each cell's call then only takes its rate-limit point
  // ({@link admitEvalCall}).

  /**
   * What is left of the user's budget and of the token's cap (the smaller),
   * after recorded spend and live reservations; null when neither applies.
   */
  async budgetLeft(em: EntityManager, principal: Principal): Promise<number | null> {
    const left: number[] = [];
    const sql = <T>(text: string, params: unknown[]) => em.getConnection().execute(text, params) as Promise<T>;
    for (const budget of await this.budgetsOf(sql, principal)) {
      const { spent, reserved } = await this.usageOf(sql, budget);
      left.push(Math.max(0, budget.usd - spent - reserved));
    }
    return left.length ? round(Math.min(...left)) : null;
  }

  /**
   * Reserves an eval run's worst case inside the transaction `tx` that
   * inserts the run (row `runId` already written in it), or throws
   * BUDGET_EXCEEDED with `leftUsd` and `neededUsd` (and the usual `spentUsd`,
   * `budgetUsd`). `worstCaseUsd` null: a model's price is unknown, refused
   * when a budget applies.
   */
  async reserveEvalRun(tx: EntityManager, principal: Principal, runId: string, worstCaseUsd: number | null): Promise<void> {
    const sql = <T>(text: string, params: unknown[]) => tx.execute(text, params) as Promise<T>;
    const budgets = await this.budgetsOf(sql, principal);
    if (budgets.length === 0) return;
    await sql(`select pg_advisory_xact_lock(hashtextextended(?, 0))`, [`llmselect:budget:${principal.userId}`]);
    for (const budget of budgets) {
      const { spent, reserved } = await this.usageOf(sql, budget);
      const left = Math.max(0, budget.usd - spent - reserved);
      if (worstCaseUsd === null || worstCaseUsd > left) {
        this.deps.onRefused?.('budget');
        const whose = budget.column === 'user_id' ? 'your daily budget' : "this API token's daily budget";
        const needed = worstCaseUsd === null ? 'an unknown amount (a model has no catalog price)' : `$${round(worstCaseUsd)}`;
        throw new AppError(
          'BUDGET_EXCEEDED',
          `This run may cost up to ${needed} and ${whose} has $${round(left)} left: use fewer items, models or repeats, ` +
            'or a lower maxOutputTokens',
          {
            spentUsd: round(spent),
            budgetUsd: budget.usd,
            leftUsd: round(left),
            neededUsd: worstCaseUsd === null ? null : round(worstCaseUsd),
            resetsAt: null,
            ...budget.extensions,
          },
        );
      }
    }
    await sql(
      `insert into spend_reservations (id, created_at, user_id, reserved_usd, expires_at, api_token_id, eval_run_id)
       values (?, now(), ?, ?, now() + interval '7 days', ?, ?)`,
      [randomUUID(), principal.userId, worstCaseUsd, principal.token?.id ?? null, runId],
    );
  }

  /** Drops a run's reservation (the run ended). Never throws: it also goes with the run's row. */
  async releaseEvalRun(runId: string): Promise<void> {
    await this.deps.orm.em
      .fork()
      .getConnection()
      .execute(`delete from spend_reservations where eval_run_id = ?`, [runId])
      .catch((err: unknown) => this.deps.logger.warn({ error: (err as Error)?.name, runId }, 'could not release an eval reservation'));
  }

  /** One eval cell's provider call: its rate-limit point (the budget was reserved when the run started). Throws RATE_LIMITED. */
  async admitEvalCall(principal: Principal): Promise<void> {
    const verdict = await this.deps.providerCalls.consume(principal.userId, 1);
    if (!verdict.allowed) {
      this.deps.onRefused?.('rate_limit');
      throw rateLimited(verdict.retryAfterSeconds, `Too many model calls: retry in ${verdict.retryAfterSeconds} s`);
    }
  }

  private async budgetsOf(sql: <T>(text: string, params: unknown[]) => Promise<T>, principal: Principal): Promise<Budget[]> {
    const [user] = await sql<Array<{ budget: number | null }>>(`select daily_budget_usd as budget from users where id = ?`, [
      principal.userId,
    ]);
    const budgets: Budget[] = [];
    const own = this.effectiveBudget(user?.budget);
    if (own !== null) {
      budgets.push({ usd: own, rows: SPEND_ROWS, column: 'user_id', id: principal.userId, refusal: () => '', extensions: {} });
    }
    const token = tokenCap(principal);
    if (token) {
      const extensions = { apiTokenId: token.id };
      budgets.push({ usd: token.usd, rows: TOKEN_SPEND_ROWS, column: 'api_token_id', id: token.id, refusal: () => '', extensions });
    }
    return budgets;
  }

  private async usageOf(
    sql: <T>(text: string, params: unknown[]) => Promise<T>,
    budget: Budget,
  ): Promise<{ spent: number; reserved: number }> {
    const [state] = await sql<Array<{ spent: number; reserved: number }>>(
      `select coalesce((select sum(cost) from (${budget.rows}) s), 0) as spent, coalesce(sum(reserved_usd), 0) as reserved
         from spend_reservations where ${budget.column} = ? and expires_at > now()`,
      [...ids(budget.id), budget.id],
    );
    return { spent: Number(state!.spent), reserved: Number(state!.reserved) };
  }

  /** Spend and budget of each user, in key order (one statement). */
  async summaries(em: EntityManager, userIds: readonly string[]): Promise<SpendSummary[]> {
    const rows: Array<{ id: string; budget: number | null; spent: number }> = await em.getConnection().execute(
      `select u.id, u.daily_budget_usd as budget,
              coalesce((select sum(x.cost_usd) from comparison_results r join comparison_responses x on x.comparison_id = r.id
                         where r.owner_id = u.id and r.created_at > now() - ${WINDOW}), 0)
            + coalesce((select sum(m.cost_usd) from conversations c join messages m on m.conversation_id = c.id
                         where c.owner_id = u.id and m.created_at > now() - ${WINDOW}), 0)
            + coalesce((select sum(j.cost_usd) from judge_verdicts j
                         where j.user_id = u.id and j.created_at > now() - ${WINDOW}), 0)
            + coalesce((select sum(coalesce(e.cost_usd, 0) + coalesce(e.judge_cost_usd, 0)) from eval_cells e
                         where e.owner_id = u.id and e.finished_at > now() - ${WINDOW}
                           and (e.cost_usd is not null or e.judge_cost_usd is not null)), 0)
            + coalesce((select sum(v.cost_usd) from eval_pair_verdicts v
                         where v.owner_id = u.id and v.finished_at > now() - ${WINDOW} and v.cost_usd is not null), 0)
            + coalesce((select sum(d.cost_usd) from deleted_spend d
                         where d.user_id = u.id and d.at > now() - ${WINDOW}), 0) as spent
         from users u where u.id = any(?::uuid[])`,
      [pgArray(userIds.filter(isUuid))],
    );
    const byId = new Map(rows.map((row) => [row.id, this.summary(row.id, row.budget, Number(row.spent))]));
    return userIds.map((id) => byId.get(id) ?? this.summary(id, null, 0));
  }

  /** ADMIN: sets a user's daily budget (null: back to the default; 0: unlimited). */
  async setBudget(em: EntityManager, userId: string, dailyUsd: number | null): Promise<UserView> {
    if (dailyUsd !== null && !(Number.isFinite(dailyUsd) && dailyUsd >= 0))
      throw badInput('dailyUsd must be a number >= 0, or null for the default', 'dailyUsd');
    if (!isUuid(userId)) throw notFound('User');
    const user = await em.findOne(User, { id: userId });
    if (!user) throw notFound('User');
    user.dailyBudgetUsd = dailyUsd;
    await em.flush();
    // The target's cached reads (`me`) are theirs, not the admin's: the mutation pipeline bumps only the caller.
    await this.deps.invalidation.invalidateUser(userId);
    return { id: user.id, createdAt: user.createdAt, email: user.email, role: user.role, dailyBudgetUsd: user.dailyBudgetUsd };
  }

  private summary(userId: string, own: number | null, spentUsd: number): SpendSummary {
    const budget = this.effectiveBudget(own);
    return { userId, spentUsd, budgetUsd: budget, remainingUsd: budget === null ? null : Math.max(0, budget - spentUsd) };
  }

  /** The user's own budget, else the default; null when unlimited (0). */
  private effectiveBudget(own: number | null | undefined): number | null {
    const budget = own ?? this.deps.defaultDailyBudgetUsd;
    return budget > 0 ? budget : null;
  }

  /** Runs `task` after this process's earlier admissions of the user have finished. */
  private oneAtATime<T>(userId: string, task: () => Promise<T>): Promise<T> {
    const run = (this.queues.get(userId) ?? Promise.resolve()).then(task);
    const tail = run.catch(() => undefined);
    this.queues.set(userId, tail);
    void tail.then(() => {
      if (this.queues.get(userId) === tail) this.queues.delete(userId);
    });
    return run;
  }

  private async reserve(principal: Principal, calls: readonly PlannedCall[]): Promise<Release> {
    const em = this.deps.orm.em.fork();
    const userId = principal.userId;
    // Without a budget (the common case) one read answers; the lock is only taken when a budget applies.
    const [own] = await em
      .getConnection()
      .execute<Array<{ budget: number | null }>>(`select daily_budget_usd as budget from users where id = ?`, [userId]);
    if (this.effectiveBudget(own?.budget) === null && !tokenCap(principal)) return this.noop;
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.reserveLocked(em, principal, calls);
      } catch (error) {
        if (error !== LOCK_BUSY) throw error;
        if (Date.now() >= deadline)
          throw new AppError('SERVICE_UNAVAILABLE', 'Another admission of your model calls is taking too long: retry in a moment');
        await new Promise((resolve) => setTimeout(resolve, Math.min(200, 5 * 2 ** attempt) * (0.5 + Math.random())));
      }
    }
  }

  /**
   * The reservation, under the user's advisory lock; throws LOCK_BUSY (rolled
   * back, connection given back) when another instance holds it.
   */
  private async reserveLocked(em: EntityManager, principal: Principal, calls: readonly PlannedCall[]): Promise<Release> {
    const userId = principal.userId;
    const reservationId = await em.transactional(async (tx) => {
      const sql = <T>(text: string, params: unknown[]) =>
        tx.getConnection().execute(text, params, 'all', tx.getTransactionContext()) as Promise<T>;
      const [lock] = await sql<Array<{ locked: boolean }>>(`select pg_try_advisory_xact_lock(hashtextextended(?, 0)) as locked`, [
        `llmselect:budget:${userId}`,
      ]);
      if (!lock?.locked) throw LOCK_BUSY;
      // Read again under the lock: an admin may have changed it meanwhile.
      const [user] = await sql<Array<{ budget: number | null }>>(`select daily_budget_usd as budget from users where id = ?`, [userId]);
      const budgets: Budget[] = [];
      const own = this.effectiveBudget(user?.budget);
      if (own !== null) {
        budgets.push({
          usd: own,
          rows: SPEND_ROWS,
          column: 'user_id',
          id: userId,
          refusal: (spent) => `Daily budget of $${own} reached ($${spent.toFixed(4)} spent in the last 24 h)`,
          extensions: {},
        });
      }
      const token = tokenCap(principal);
      if (token) {
        budgets.push({
          usd: token.usd,
          rows: TOKEN_SPEND_ROWS,
          column: 'api_token_id',
          id: token.id,
          refusal: (spent) =>
            `This API token's daily budget of $${token.usd} is reached ($${spent.toFixed(4)} spent through it in the last 24 h)`,
          extensions: { apiTokenId: token.id },
        });
      }
      if (budgets.length === 0) return undefined;
      const worstCase = this.worstCase(calls);
      for (const budget of budgets) await this.fits(sql, budget, worstCase);
      await sql(`delete from spend_reservations where user_id = ? and expires_at <= now()`, [userId]);
      const id = randomUUID();
      await sql(
        `insert into spend_reservations (id, created_at, user_id, reserved_usd, expires_at, api_token_id)
         values (?, now(), ?, ?, now() + make_interval(secs => ?), ?)`,
        [id, userId, worstCase, this.deps.reservationTtlMs / 1000, principal.token?.id ?? null],
      );
      return id;
    });
    if (!reservationId) return this.noop;
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      await this.deps.orm.em
        .fork()
        .getConnection()
        .execute(`delete from spend_reservations where id = ?`, [reservationId])
        .catch((err: unknown) =>
          this.deps.logger.warn(
            { error: (err as Error)?.name, reservationId },
            'could not release a spend reservation (it expires by itself)',
          ),
        );
    };
  }

  /**
   * Throws BUDGET_EXCEEDED unless calls of `worstCase` fit `budget`: its
   * recorded spend is under it and either nothing else runs against it or
   * everything running plus this fits (see the file's comment).
   */
  private async fits(sql: <T>(text: string, params: unknown[]) => Promise<T>, budget: Budget, worstCase: number | null): Promise<void> {
    const [state] = await sql<Array<{ spent: number; reserved: number; running: string; unbounded: boolean }>>(
      `select coalesce((select sum(cost) from (${budget.rows}) s), 0) as spent,
              coalesce(sum(reserved_usd), 0) as reserved, count(*) as running, coalesce(bool_or(reserved_usd is null), false) as unbounded
         from spend_reservations where ${budget.column} = ? and expires_at > now()`,
      [...ids(budget.id), budget.id],
    );
    const spent = Number(state!.spent);
    const running = Number(state!.running);
    if (spent >= budget.usd) throw await this.exceeded(sql, budget, spent, budget.refusal(spent));
    if (running > 0 && (state!.unbounded || worstCase === null || spent + Number(state!.reserved) + worstCase > budget.usd)) {
      const whose = budget.column === 'user_id' ? 'your daily budget' : "this API token's daily budget";
      const message = `Your running model calls may use the rest of ${whose} ($${budget.usd}): retry when they have finished`;
      throw await this.exceeded(sql, budget, spent, message, running);
    }
  }

  /** USD, or null when a model's price is unknown. */
  private worstCase(calls: readonly PlannedCall[]): number | null {
    let total = 0;
    for (const call of calls) {
      const entry = findCatalogEntry(call.provider, call.name);
      if (entry?.inputCostPerMTok == null || entry.outputCostPerMTok == null) return null;
      total += (call.inputBytes * entry.inputCostPerMTok + this.deps.maxOutputBytes * entry.outputCostPerMTok) / 1e6;
    }
    return total;
  }

  /**
   * BUDGET_EXCEEDED with the spend, the budget and `resetsAt`: when enough of
   * the window's spend ages out for the total to fall under the budget (null
   * when the refusal is about running calls, not recorded spend).
   */
  private async exceeded(
    sql: <T>(text: string, params: unknown[]) => Promise<T>,
    budget: Budget,
    spent: number,
    message: string,
    running = 0,
  ): Promise<AppError> {
    let resetsAt: string | null = null;
    if (spent >= budget.usd) {
      const [row] = await sql<Array<{ resets_at: number | null }>>(
        `select (extract(epoch from min(at) + ${WINDOW}) * 1000)::float8 as resets_at
           from (select at, sum(cost) over (order by at rows unbounded preceding) as cum from (${budget.rows}) s) w
          where ? - cum < ?`,
        [...ids(budget.id), spent, budget.usd],
      );
      resetsAt = row?.resets_at != null ? new Date(Number(row.resets_at)).toISOString() : null;
    }
    this.deps.onRefused?.('budget');
    return new AppError('BUDGET_EXCEEDED', message, {
      spentUsd: round(spent),
      budgetUsd: budget.usd,
      resetsAt,
      ...(running ? { runningCalls: running } : {}),
      ...budget.extensions,
    });
  }
}

/** The personal token's own cap, when the request came with one that has a cap. */
function tokenCap(principal: Principal): { id: string; usd: number } | null {
  const token = principal.token;
  return token && token.dailyBudgetUsd !== null && token.dailyBudgetUsd > 0 ? { id: token.id, usd: token.dailyBudgetUsd } : null;
}

/** Micro-dollars: enough for per-call costs, no float noise in answers. */
function round(usd: number): number {
  return Math.round(usd * 1e6) / 1e6;
}
