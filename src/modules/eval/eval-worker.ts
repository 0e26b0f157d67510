/**
 * Runs eval cells (and pairwise judge verdicts) from the pg-boss queues, in
 * every instance whose workers are on (`EVAL_WORKERS`).
 *
 * Job flow: a job names a cell. The worker fetches jobs (up to its free
 * slots, `EVAL_CONCURRENCY`), CLAIMS the cells of the fetch in one
 * transaction, reads each user's keys once for the batch, runs the claimed
 * cells and acknowledges every job once the cell's outcome is written (the
 * settles and acknowledgements of one turn of the event loop go out as one
 * statement each: PostgreSQL round trips were most of a short cell's CPU).
 * A queue found empty is asked again after a poll interval, or at once when
 * this instance queued jobs (a run that has no judge fetches no judge jobs
 * at every freed slot).
 *
 * The claim is the one guard, whatever pg-boss delivers (a job twice after an
 * expiry, an old job after a sweep re-queued the cell):
 * - a cell that is COMPLETED, FAILED or CANCELLED, or RUNNING under a live
 *   lease, is not run: its job is acknowledged (a completed cell is never
 *   called again: the idempotency key `(run, item, model, repeat)` names one
 *   row, and only a QUEUED row can be claimed);
 * - otherwise, in one transaction under the users' advisory locks
 *   (`llmselect:eval:<user>`, taken in one order), the cells and verdicts
 *   RUNNING under a live lease are counted across every instance, and each
 *   user's claimable rows are claimed in the jobs' order up to
 *   `EVAL_CONCURRENCY_PER_USER`; a job past it is released (back to the queue at once: the worker tries others
 *   and comes back when one of that user's cells here finishes, or after a
 *   short pause when some of that user's slots are held elsewhere); below it
 *   the row becomes RUNNING with `attempts + 1`, this instance as
 *   `lease_owner` and `heartbeat_at = now()`. The jobs of a user whose every
 *   slot is held here are released without a claim transaction, and the
 *   worker waits for a settle here (or a poll interval) before fetching again.
 *
 * Claimed ahead (`EVAL_PREFETCH`, default EVAL_CONCURRENCY): past its free
 * slots the worker reserves more cells in the same claim: they stay QUEUED,
 * with this instance as `lease_owner` and a heartbeat (not in flight, so not
 * in the user's count; other instances skip them while the lease lives;
 * `cancelEvalRun` cancels them with the other queued cells). When a cell's
 * provider work is done, its settle statement also claims the first cell its
 * user has reserved here (QUEUED → RUNNING, `attempts + 1`, only while still
 * QUEUED under this lease): the user's count moves from one cell to the other
 * in one commit, and the successor's call starts as that statement returns,
 * not after a fetch, a claim transaction and a key read. Reserved cells of
 * other users start through a claim transaction when a slot frees. Their
 * leases are renewed with the running ones; a cancelled run's are dropped (the
 * control message, or the heartbeat that reads the run); a `kill -9`ed
 * instance's come back through the sweep (reservation cleared, new job) and
 * pg-boss expiry; a shutdown gives them back at once.
 *
 * Leases: the worker renews the heartbeat of everything it runs every quarter
 * of `EVAL_LEASE_MS` (one statement, which also reads each run's status: a
 * cancel reaches every instance within a quarter lease even without pub/sub).
 * Every instance sweeps, every quarter lease, the RUNNING rows whose heartbeat
 * is older than the lease: they become QUEUED again with a new job, in one
 * transaction. A `kill -9`ed instance's cells are so picked up after one lease
 * plus at most a quarter (15 s + 3.75 s by default). A worker that finds its
 * heartbeat refused (the row is no longer its own) aborts the call and drops
 * its result.
 *
 * Calling twice: the provider call carries the cell's `Idempotency-Key`. The
 * result is written by a conditional UPDATE (`status = 'RUNNING' and
 * lease_owner = me and attempts = my attempt`). A cell is called again only
 * when no result was written for it: its instance died (or lost its lease)
 * between sending the request and writing the answer. A call that completed
 * and was written is never repeated; a call in flight when its instance died
 * is repeated once by the instance that takes the cell over (no provider
 * honours an idempotency key for chat completions, so the repeat is billed).
 * An answer RUBRIC sends to the judge is written before the judge's call (the
 * cell stays RUNNING): an instance that takes the cell over scores it
 * without calling the model again; only the judge's call is repeated.
 *
 * Outcomes: an answer (or one reused from an identical earlier cell, $0) is
 * scored (`evaluate-assertions.ts`; RUBRIC through the run's judge model) and
 * written COMPLETED; a provider 429 or a rate-limit refusal re-queues the cell
 * with `startAfter` = Retry-After; a timeout or an unavailable provider is
 * retried up to three attempts; other errors write FAILED. Each write updates
 * the run's counters in the same statement; when an item's cells have all
 * settled its pairwise verdicts are queued (both orders in one job); the run
 * becomes COMPLETED by one conditional UPDATE (exactly once, whoever settles
 * last). Every settle is announced on the run's channel.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Principal } from '../../auth/principal';
import type { FetchedJob, JobQueue } from '../../db/job-queue';
import type { Orm } from '../../db/orm';
import { isRetryableDatabaseError } from '../../db/connection-errors';
import { pgArray } from '../../db/sql';
import { AppError } from '../../errors';
import { costUsd, findCatalogEntry } from '../../llm/catalog';
import { parseModelId } from '../../llm/model-id';
import { ProviderCallError } from '../../llm/provider-errors';
import { CancelledError, generateCompletion, OutputLimitError, streamCompletion } from '../../llm/stream-completion';
import type { Logger } from '../../observability/logger';
import type { PubSub } from '../../pubsub/pubsub.port';
import type { ReadCacheInvalidation } from '../../read-cache/invalidation';
import { sleep } from '../../timeout';
import type { ModelAccess, ResolvedModel } from '../api-key/model-access';
import { combineSwapped, JUDGE_SYSTEM_PROMPT, judgeUserPrompt, parseJudgeVerdict } from '../judge/judge.service';
import { AssertionKind, type AssertionSpec } from '../prompt-set/assertions';
import { evaluateAssertions, type JudgeVerdict } from '../prompt-set/evaluate-assertions';
import type { UsageService } from '../usage/usage.service';
import {
  type CellJob,
  EVAL_CELL_QUEUE,
  EVAL_CONTROL_CHANNEL,
  EVAL_JUDGE_QUEUE,
  type EvalControlMessage,
  type PairJob,
  type RunEventMessage,
  runChannel,
} from './eval-events';
import { cellWorstCaseUsd, PAIR_MAX_OUTPUT_TOKENS, RUBRIC_MAX_OUTPUT_TOKENS, RUBRIC_SYSTEM_PROMPT, rubricUserPrompt } from './eval-plan';
import { EvalSettleWriter } from './eval-settle-writer';
import { EvalCellStatus, EvalRunStatus, type StoredAssertionResult } from './eval.entity';
import { currentTraceparent, tracingOn, withSpan, withTraceparent } from '../../observability/tracing';

export interface EvalWorkerDeps {
  orm: Orm;
  queue: JobQueue;
  usage: UsageService;
  models: ModelAccess;
  pubsub: PubSub;
  invalidation: ReadCacheInvalidation;
  logger: Logger;
  /** EVAL_CONCURRENCY: cells in flight here. */
  concurrency: number;
  /** EVAL_PREFETCH: cells claimed ahead here (reserved, not in flight), started the moment a slot of their user frees. */
  prefetch?: number;
  /** EVAL_CONCURRENCY_PER_USER: cells of one user in flight across every instance. */
  concurrencyPerUser: number;
  /** EVAL_LEASE_MS. */
  leaseMs: number;
  /** EVAL_POLL_MS: how often an idle worker looks for jobs. */
  pollMs: number;
  requestTimeoutMs: number;
  maxOutputBytes: number;
}

/** A cell is given up (FAILED) after this many claims. */
const MAX_ATTEMPTS = 10;
/** Timeouts and unavailable providers: retried while attempts are below this. */
const TRANSIENT_ATTEMPTS = 3;
/** How long a worker waits before fetching again when every job it fetched belonged to users at their limit. */
const BUSY_PAUSE_MS = 50;
/** How long a settle is retried on connection errors (a database restart) before the lease is left to expire. */
const WRITE_RETRY_MS = 10_000;
const BACKGROUND = '/* background */';

/** A raw row of one of the statements below (columns as PostgreSQL names them). */
// biome-ignore lint/suspicious/noExplicitAny: rows of hand-written SQL, read column by column
type SqlRow = Record<string, any>;

const REFUSAL = /\b(I\s+(can(?:not|'t|’t)|won(?:'t|’t)|will\s+not|am\s+unable|am\s+not\s+able)|I['’]m\s+(unable|not\s+able|sorry))\b/i;

/** A RUBRIC grader's verdict: exactly one kind of `VERDICT: PASS|FAIL`; none with a refusal's wording: refused. */
export function parseRubricVerdict(text: string): { verdict: JudgeVerdict; reason: string } {
  const kinds = new Set([...text.matchAll(/VERDICT:\s*(PASS|FAIL)\b/gi)].map((m) => m[1]!.toUpperCase()));
  const reason =
    text
      .replace(/VERDICT:\s*(PASS|FAIL)\b/gi, '')
      .trim()
      .slice(0, 500) || 'no explanation given';
  if (kinds.size === 1) return { verdict: kinds.has('PASS') ? 'pass' : 'fail', reason };
  if (kinds.size === 0 && REFUSAL.test(text)) return { verdict: 'refused', reason };
  return { verdict: 'unparseable', reason: kinds.size ? 'both PASS and FAIL' : 'no "VERDICT: PASS" or "VERDICT: FAIL" line' };
}

/** A model's answer to a cell and what it cost. */
interface AnswerMeasured {
  content: string;
  latencyMs: number | null;
  ttftMs: number | null;
  inputTokens: number | null;
  outputTokens: number | null;
  costUsd: number | null;
}

interface ClaimedCell {
  kind: 'cell';
  id: string;
  runId: string;
  ownerId: string;
  attempts: number;
  itemId: string;
  repeat: number;
  prompt: string;
  system: string | null;
  reference: string | null;
  assertions: AssertionSpec[];
  model: string;
  idempotencyKey: string;
  reuseKey: string | null;
  run: RunSettings;
  /** The answer an earlier attempt recorded before its judge's call (`recordAnswer`): scored, not asked again. */
  recorded: AnswerMeasured | null;
  /** The user's key for `model`, read with the other cells of its batch (`resolveKeys`). */
  key?: Promise<ResolvedModel>;
}

interface ClaimedPair {
  kind: 'pair';
  id: string;
  runId: string;
  ownerId: string;
  attempts: number;
  itemId: string;
  repeat: number;
  modelA: string;
  modelB: string;
  run: RunSettings;
}

interface RunSettings {
  judgeModel: string | null;
  temperature: number;
  maxOutputTokens: number | null;
  reuseAnswers: boolean;
  apiTokenId: string | null;
  modelCount: number;
}

type Claim =
  | { kind: 'run'; unit: ClaimedCell | ClaimedPair }
  | { kind: 'reserved'; unit: ClaimedCell }
  | { kind: 'skip' }
  | { kind: 'busy'; ownerId: string };

interface Running {
  runId: string;
  ownerId: string;
  table: 'eval_cells' | 'eval_pair_verdicts';
  controller: AbortController;
  reason?: 'cancelled' | 'lease' | 'shutdown';
  /** Its slot was passed to a successor claimed in its settle: it no longer counts against EVAL_CONCURRENCY. */
  slotFreed?: boolean;
}

/** A cell claimed ahead: QUEUED under this instance's lease (not in flight, not in the user's count), its job held. */
interface Reserved {
  jobId: string;
  data: CellJob;
  /** `attempts` as reserved: the claim that starts it makes it `attempts + 1`. */
  unit: ClaimedCell;
}

/** What a dispatch of fetched jobs did. */
interface Dispatched {
  released: number;
  allReleased: boolean;
  /** Every released job was of a user whose allowed slots are all held here. */
  releasedFullHere: boolean;
}

/** What one cell's work came to. */
type CellOutcome =
  | ({ kind: 'answer'; reused: boolean } & AnswerMeasured)
  | { kind: 'failed'; error: string; latencyMs?: number | null; content?: string | null }
  | { kind: 'retry'; afterMs: number; error: string }
  | { kind: 'stopped' };

export class EvalWorker {
  /** This process, as `lease_owner` (host/pid/random: unique across restarts). */
  readonly instanceId = `${hostname()}/${process.pid}/${randomBytes(3).toString('hex')}`;
  private readonly running = new Map<string, Running>();
  /** Cells claimed ahead, in the jobs' order (`Reserved`). */
  private readonly prefetched = new Map<string, Reserved>();
  /** Slots (EVAL_CONCURRENCY) held by running cells and verdicts. */
  private slotsUsed = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly acks = new Map<string, { ids: string[]; done: Promise<void> }>();
  private wakeUp: (() => void) | undefined;
  /** Until when a queue found empty is not asked again, unless this instance queued jobs meanwhile (`wake`). */
  private readonly emptyUntil = new Map<string, number>();
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => Promise<void>) | undefined;
  private sweeping: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private readonly settles: EvalSettleWriter;

  constructor(private readonly deps: EvalWorkerDeps) {
    this.settles = new EvalSettleWriter(deps.orm, this.instanceId);
  }

  async start(): Promise<void> {
    this.unsubscribe = await this.deps.pubsub.subscribe<EvalControlMessage>(EVAL_CONTROL_CHANNEL, (m) => {
      if (typeof m?.cancel === 'string') this.abortRun(m.cancel, 'cancelled');
    });
    const every = Math.max(50, Math.floor(this.deps.leaseMs / 4));
    this.timers.push(setInterval(() => void this.heartbeat(), every).unref());
    this.timers.push(setInterval(() => void this.sweep(), every).unref());
    void this.sweep();
    this.loopDone = this.loop();
  }

  /** Jobs were queued (a run started here, pairs queued, expired leases swept): ask every queue again now. */
  wake(): void {
    this.emptyUntil.clear();
    this.resume();
  }

  /** A slot freed: look for jobs now (a queue found empty within the last poll interval is not asked again). */
  private resume(): void {
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    wake?.();
  }

  /** Stops taking jobs; running cells get `graceMs` to finish, the rest are queued again for another instance. */
  close(graceMs = 0): Promise<void> {
    return (this.closing ??= this.shutdown(graceMs));
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    this.wake();
    await this.loopDone;
    await this.releaseReserved();
    if (this.inFlight.size) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
    }
    for (const run of this.running.values()) {
      run.reason = 'shutdown';
      run.controller.abort();
    }
    await Promise.allSettled([...this.inFlight]);
    for (const t of this.timers) clearInterval(t);
    await this.sweeping;
    await this.unsubscribe?.();
  }

  // ─── The loop ──────────────────────────────────────────────────────────────

  private async loop(): Promise<void> {
    let judgeTurn = false;
    const prefetch = this.deps.prefetch ?? 0;
    while (!this.stopping) {
      const free = this.deps.concurrency - this.slotsUsed;
      if (free <= 0 && this.prefetched.size >= prefetch) {
        await this.idle(this.deps.pollMs);
        continue;
      }
      // Cells and judge verdicts share the slots; each fetch alternates which queue is asked first.
      judgeTurn = !judgeTurn;
      const order = judgeTurn ? [EVAL_JUDGE_QUEUE, EVAL_CELL_QUEUE] : [EVAL_CELL_QUEUE, EVAL_JUDGE_QUEUE];
      let fetched = 0;
      let allBusy = true;
      let released = false;
      let busyHereOnly = true;
      try {
        // Cells claimed ahead that no settle of their user took over (their user had no slot here): started now if it has one.
        if (free > 0 && this.prefetched.size) {
          const promoted = await this.promote(free);
          fetched += promoted.tried;
          if (promoted.started) allBusy = false;
        }
        for (const queue of order) {
          const slots = Math.max(0, this.deps.concurrency - this.slotsUsed);
          // Only cells are claimed ahead (a judge verdict waits for a slot).
          const ahead = queue === EVAL_CELL_QUEUE ? Math.max(0, prefetch - this.prefetched.size) : 0;
          if (slots + ahead <= 0) continue;
          // A run without a judge leaves its queue empty: not asked again at every freed slot, but once a poll interval.
          if ((this.emptyUntil.get(queue) ?? 0) > Date.now()) continue;
          const jobs = await this.deps.queue.fetch<CellJob | PairJob>(queue, Math.min(slots + ahead, 16));
          if (!jobs.length) this.emptyUntil.set(queue, Date.now() + this.deps.pollMs);
          fetched += jobs.length;
          if (!jobs.length) continue;
          const dispatched = await this.dispatch(queue, jobs, slots, ahead);
          if (!dispatched.allReleased) allBusy = false;
          if (dispatched.released) released = true;
          if (!dispatched.releasedFullHere) busyHereOnly = false;
        }
      } catch (err) {
        this.deps.logger.warn(failure(err), 'eval worker could not fetch or claim jobs (will retry)');
        await this.idle(this.deps.pollMs);
        continue;
      }
      if (fetched === 0) await this.idle(this.deps.pollMs);
      // Jobs released only for users at their limit with every slot here: fetching again would hand back the same
      // jobs (pg-boss gives the oldest first) until a settle here frees a slot, which wakes the loop.
      else if (released && busyHereOnly) await this.idle(this.deps.pollMs);
      else if (allBusy) await this.idle(BUSY_PAUSE_MS);
    }
  }

  private idle(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = undefined;
        resolve();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /**
   * Claims the jobs' rows (one transaction): up to `slots` start now, up to `ahead` more cells are reserved (claimed
   * ahead), the rest of the claimable ones are released (their user at the limit).
   */
  private async dispatch(queue: string, jobs: Array<FetchedJob<CellJob | PairJob>>, slots: number, ahead: number): Promise<Dispatched> {
    // A second delivery of a row that runs or waits here (its first job's fetch expired): the row is ours, the job is done.
    const here = jobs.filter((job) => this.holds(job.data));
    // Jobs of a user whose every allowed slot is held here are released without a claim when none can be claimed ahead:
    // none of them could run before one of those cells settles (which wakes this loop).
    const full = ahead > 0 ? new Set<string>() : this.fullHere();
    const held = jobs.filter((job) => !this.holds(job.data) && full.has(job.data.runId));
    const rest = jobs.filter((job) => !this.holds(job.data) && !full.has(job.data.runId));
    const claims = rest.length
      ? await this.claimAll(
          queue,
          rest.map((job) => job.data),
          slots,
          ahead,
        )
      : [];
    const units = claims.flatMap((c) => (c.kind === 'run' || c.kind === 'reserved' ? [c.unit] : []));
    this.resolveKeys(units.filter((u): u is ClaimedCell => u.kind === 'cell'));
    const done: string[] = here.map((job) => job.id);
    const released = held.map((job) => job.id);
    for (const [i, job] of rest.entries()) {
      const claim = claims[i]!;
      // Under the trace of the request that queued it (its `traceparent`), when tracing is on.
      if (claim.kind === 'run') withTraceparent(job.data.traceparent, () => this.execute(queue, job.id, claim.unit));
      else if (claim.kind === 'reserved')
        this.prefetched.set(claim.unit.id, { jobId: job.id, data: job.data as CellJob, unit: claim.unit });
      else if (claim.kind === 'busy') released.push(job.id);
      else done.push(job.id);
    }
    await this.deps.queue.complete(queue, done);
    await this.deps.queue.release(queue, released);
    // A released job of a user at the limit with all its slots here can only run after a settle here.
    const fullNow = this.fullHere();
    const releasedIds = new Set(released);
    return {
      released: released.length,
      allReleased: released.length === jobs.length,
      releasedFullHere: jobs.filter((job) => releasedIds.has(job.id)).every((job) => fullNow.has(job.data.runId)),
    };
  }

  /** The job's row runs here or is claimed ahead here. */
  private holds(data: CellJob | PairJob): boolean {
    const id = 'cellId' in data ? data.cellId : data.verdictId;
    return this.running.has(id) || this.prefetched.has(id);
  }

  /**
   * Starts cells claimed ahead whose user may have another cell in flight (one claim transaction, as for fetched jobs):
   * those of users whose every slot is held here are left for a settle of that user to take over (no statement).
   */
  private async promote(free: number): Promise<{ tried: number; started: number }> {
    const full = this.fullHere();
    const candidates = [...this.prefetched.values()].filter((r) => !full.has(r.unit.runId)).slice(0, 16);
    if (!candidates.length) return { tried: 0, started: 0 };
    const claims = await this.claimAll(
      EVAL_CELL_QUEUE,
      candidates.map((r) => r.data),
      free,
      0,
    );
    let started = 0;
    const done: string[] = [];
    for (const [i, reserved] of candidates.entries()) {
      const claim = claims[i]!;
      if (claim.kind === 'busy') continue; // still claimed ahead
      this.prefetched.delete(reserved.unit.id);
      if (claim.kind === 'run' && claim.unit.kind === 'cell') {
        claim.unit.key = reserved.unit.key;
        started++;
        withTraceparent(reserved.data.traceparent, () => this.execute(EVAL_CELL_QUEUE, reserved.jobId, claim.unit));
      } else done.push(reserved.jobId);
    }
    await this.deps.queue.complete(EVAL_CELL_QUEUE, done);
    return { tried: candidates.length, started };
  }

  /**
   * The successor of a cell whose provider work is done: the first cell claimed ahead of the same user. Its claim rides
   * in the settle's statement (the user's count moves from one to the other), and it starts when that returns.
   */
  private takeSuccessor(cell: ClaimedCell): Reserved | null {
    if (this.stopping) return null;
    for (const reserved of this.prefetched.values()) {
      if (reserved.unit.ownerId !== cell.ownerId) continue;
      this.prefetched.delete(reserved.unit.id);
      this.resume(); // room to claim another ahead
      return reserved;
    }
    return null;
  }

  /** After the settle: the successor runs in the settled cell's slot, or (not claimed: cancelled, lease lost) is let go. */
  private startSuccessor(from: ClaimedCell, reserved: Reserved, claimed: boolean | undefined): void {
    if (claimed === undefined) {
      // The settle never landed (database away): still claimed ahead; its lease is renewed or expires as the others'.
      if (!this.stopping) this.prefetched.set(reserved.unit.id, reserved);
      return;
    }
    if (!claimed) {
      void this.acknowledge(EVAL_CELL_QUEUE, reserved.jobId).catch(() => undefined);
      return;
    }
    const entry = this.running.get(from.id);
    if (entry && !entry.slotFreed) {
      entry.slotFreed = true;
      this.slotsUsed--;
    }
    const unit: ClaimedCell = { ...reserved.unit, attempts: reserved.unit.attempts + 1 };
    withTraceparent(reserved.data.traceparent, () => this.execute(EVAL_CELL_QUEUE, reserved.jobId, unit));
  }

  /** Shutdown: the cells claimed ahead go back to the queue at once (reservation cleared, job released). */
  private async releaseReserved(): Promise<void> {
    const reserved = [...this.prefetched.values()];
    this.prefetched.clear();
    if (!reserved.length) return;
    await this.withRetry(() =>
      this.deps.orm.em
        .fork()
        .getConnection()
        .execute(
          `${BACKGROUND} update eval_cells set lease_owner = null, heartbeat_at = null
            where id = any(?::uuid[]) and status = 'QUEUED' and lease_owner = ?`,
          [pgArray(reserved.map((r) => r.unit.id)), this.instanceId],
        ),
    );
    await this.deps.queue
      .release(
        EVAL_CELL_QUEUE,
        reserved.map((r) => r.jobId),
      )
      .catch((err) => this.deps.logger.warn(failure(err), 'could not release eval jobs claimed ahead (they expire)'));
  }

  /** Drops the cells claimed ahead of a run (cancelled, or no longer ours) and acknowledges their jobs. */
  private dropReserved(ids: Iterable<string>): void {
    let dropped = 0;
    for (const id of ids) {
      const reserved = this.prefetched.get(id);
      if (!reserved) continue;
      this.prefetched.delete(id);
      dropped++;
      void this.acknowledge(EVAL_CELL_QUEUE, reserved.jobId).catch(() => undefined);
    }
    if (dropped) this.resume();
  }

  /** The runs of the users whose EVAL_CONCURRENCY_PER_USER slots are all held by this instance. */
  private fullHere(): Set<string> {
    const perOwner = new Map<string, { count: number; runs: Set<string> }>();
    for (const r of this.running.values()) {
      if (r.slotFreed) continue;
      const owner = perOwner.get(r.ownerId) ?? { count: 0, runs: new Set<string>() };
      owner.count++;
      owner.runs.add(r.runId);
      perOwner.set(r.ownerId, owner);
    }
    const runs = new Set<string>();
    for (const owner of perOwner.values()) if (owner.count >= this.deps.concurrencyPerUser) for (const run of owner.runs) runs.add(run);
    return runs;
  }

  /** The API keys of a batch's cells: one read per user and batch (not one per cell), decrypted once per model. */
  private resolveKeys(cells: ClaimedCell[]): void {
    const byOwner = new Map<string, ClaimedCell[]>();
    for (const cell of cells) byOwner.set(cell.ownerId, [...(byOwner.get(cell.ownerId) ?? []), cell]);
    for (const [ownerId, owned] of byOwner) {
      const models = [...new Set(owned.map((c) => c.model))];
      // The key's lastUsedAt was set when the run started (not once per cell).
      const resolved = this.deps.models.resolveModels(this.deps.orm.em.fork(), ownerId, models.map(parseModelId), false);
      // Awaited by each cell when it calls (a missing key fails that cell as before); handled here so an early rejection is not reported.
      for (const r of resolved) r.catch(() => undefined);
      for (const cell of owned) cell.key = resolved[models.indexOf(cell.model)];
    }
  }

  // ─── Claims ────────────────────────────────────────────────────────────────

  /**
   * One claim per job, in order, in one transaction: the rows are read after their owners' advisory locks
   * (`llmselect:eval:<user>`, taken in one order), rows of cancelled runs become CANCELLED, and one statement counts
   * each owner's rows RUNNING under a live lease on every instance and claims, per owner, as many of the claimable
   * rows as fit under EVAL_CONCURRENCY_PER_USER (in the jobs' order, at most `slots`), marking their runs RUNNING.
   * Up to `ahead` of the other claimable cells are reserved (claimed ahead): they stay QUEUED, with this instance's
   * lease, out of the user's count (they are not in flight) and out of other instances' claims while the lease lives.
   */
  private async claimAll(queue: string, jobs: ReadonlyArray<CellJob | PairJob>, slots: number, ahead: number): Promise<Claim[]> {
    const table = queue === EVAL_CELL_QUEUE ? 'eval_cells' : 'eval_pair_verdicts';
    const ids = jobs.map((data) => ('cellId' in data ? data.cellId : data.verdictId));
    const unique = pgArray([...new Set(ids)]);
    const lease = this.deps.leaseMs / 1000;
    const me = this.instanceId;
    // A QUEUED row is claimable unless another instance holds it claimed ahead under a live lease.
    const open = (t: string) =>
      `(${t}.status = 'QUEUED' and (${t}.lease_owner is null or ${t}.lease_owner = ?
                                    or ${t}.heartbeat_at <= now() - make_interval(secs => ?)))
       or (${t}.status = 'RUNNING' and ${t}.heartbeat_at <= now() - make_interval(secs => ?))`;
    const { rows, claimed, running } = await this.deps.orm.em.fork().transactional(async (tx) => {
      // What is read here is re-checked by the conditional update below (whose snapshot is taken after the locks).
      const rows = await tx.execute<Array<SqlRow>>(
        `${BACKGROUND} with l as materialized (
           select count(pg_advisory_xact_lock(hashtextextended('llmselect:eval:' || o.owner_id::text, 0))) as n
             from (select distinct owner_id from ${table} where id = any(?::uuid[]) order by owner_id) o)
         select u.id, u.owner_id, u.status, coalesce(u.heartbeat_at > now() - make_interval(secs => ?), false) as live,
                coalesce(u.lease_owner <> ?, false) as elsewhere, r.status as run_status, (select n from l) as locked
           from ${table} u join eval_runs r on r.id = u.run_id where u.id = any(?::uuid[])`,
        [unique, lease, me, unique],
      );
      const stopped = (r: SqlRow) => r.run_status === EvalRunStatus.CANCELLED || r.run_status === EvalRunStatus.FAILED;
      const cancelled = rows.filter(stopped).map((r) => String(r.id));
      if (cancelled.length) {
        await tx.execute(
          `update ${table} set status = 'CANCELLED', error = 'Cancelled', finished_at = now()
            where id = any(?::uuid[]) and status = 'QUEUED'`,
          [pgArray(cancelled)],
        );
      }
      const wanted = rows.filter(
        (r) => !stopped(r) && ((r.status === 'QUEUED' && !(r.elsewhere && r.live)) || (r.status === 'RUNNING' && !r.live)),
      );
      if (!wanted.length) return { rows, claimed: [] as SqlRow[], running: new Map<string, number>() };
      const order = pgArray(ids.filter((id) => wanted.some((r) => r.id === id)));
      const out = await tx.execute<Array<SqlRow>>(
        `${BACKGROUND} with want as (
           select distinct on (w.id) w.id, w.ord from unnest(?::uuid[]) with ordinality as w(id, ord) order by w.id, w.ord),
         n as (
           select o.owner_id,
                  (select count(*) from eval_cells where owner_id = o.owner_id and status = 'RUNNING'
                      and heartbeat_at > now() - make_interval(secs => ?))
                + (select count(*) from eval_pair_verdicts where owner_id = o.owner_id and status = 'RUNNING'
                      and heartbeat_at > now() - make_interval(secs => ?)) as running
             from (select distinct t.owner_id from ${table} t join want on want.id = t.id) o),
         c as (
           select t.id, want.ord, n.running + row_number() over (partition by t.owner_id order by want.ord) <= ? as fits
             from ${table} t join want on want.id = t.id join n on n.owner_id = t.owner_id
            where ${open('t')}),
         g as (
           select c.id, c.ord, c.fits and row_number() over (partition by c.fits order by c.ord) <= ? as run from c),
         h as (
           select g.id, g.run, row_number() over (partition by g.run order by g.ord) as rank from g),
         u as (
           update ${table} u set status = 'RUNNING', attempts = u.attempts + 1, lease_owner = ?, heartbeat_at = now()
                  ${table === 'eval_cells' ? ', started_at = coalesce(u.started_at, now())' : ''}
             from h
            where u.id = h.id and h.run and (${open('u')})
           returning u.*),
         p as (
           update ${table} p set lease_owner = ?, heartbeat_at = now()
             from h
            where p.id = h.id and not h.run and h.rank <= ? and p.status = 'QUEUED'
              and (p.lease_owner is null or p.lease_owner = ? or p.heartbeat_at <= now() - make_interval(secs => ?))
           returning p.*),
         ru as (
           update eval_runs r set status = case when r.status = 'QUEUED' then 'RUNNING' else r.status end,
                  started_at = coalesce(r.started_at, now())
            where r.id in (select run_id from u)),
         x as (select u.*, true as run_now from u union all select p.*, false as run_now from p),
         r as (
           select r.id as run_ref, r.judge_model, r.temperature, r.max_output_tokens, r.reuse_answers, r.api_token_id,
                  cardinality(r.models) as model_count
             from eval_runs r where r.id in (select run_id from x))
         select n.owner_id as counted_owner, n.running as running_now, x.*, r.*
           from n left join x on x.owner_id = n.owner_id left join r on r.run_ref = x.run_id`,
        [
          order,
          lease,
          lease,
          this.deps.concurrencyPerUser,
          me,
          lease,
          lease,
          slots,
          me,
          me,
          lease,
          lease,
          me,
          table === 'eval_cells' ? ahead : 0,
          me,
          lease,
        ],
      );
      const running = new Map(out.map((r) => [String(r.counted_owner), Number(r.running_now)]));
      return { rows, claimed: out.filter((r) => r.id), running };
    });
    const read = new Map(rows.map((r) => [String(r.id), r]));
    const won = new Map(claimed.map((r) => [String(r.id), r]));
    const settings = new Map<string, RunSettings>();
    const held = new Map<string, number>();
    for (const r of claimed) if (r.run_now) held.set(String(r.owner_id), (held.get(String(r.owner_id)) ?? 0) + 1);
    const seen = new Set<string>();
    return ids.map((id): Claim => {
      const row = read.get(id);
      if (!row || seen.has(id)) return { kind: 'skip' }; // deleted with its run (or set), or a second job of the same row
      seen.add(id);
      const mine = won.get(id);
      if (mine) {
        const runId = String(mine.run_id);
        if (!settings.has(runId)) settings.set(runId, runSettings(mine));
        const unit = claimedUnit(table, mine, settings.get(runId)!);
        if (mine.run_now) return { kind: 'run', unit };
        if (unit.kind === 'cell') return { kind: 'reserved', unit };
      }
      if (row.status === 'QUEUED' && row.elsewhere && row.live) return { kind: 'skip' }; // claimed ahead by a live instance
      const ownerId = String(row.owner_id);
      const counted = running.get(ownerId);
      if (counted !== undefined && counted + (held.get(ownerId) ?? 0) >= this.deps.concurrencyPerUser) return { kind: 'busy', ownerId };
      // Claimable and within the user's limit but past this fetch's slots (a promotion of cells claimed ahead): kept.
      const stopped = row.run_status === EvalRunStatus.CANCELLED || row.run_status === EvalRunStatus.FAILED;
      if (counted !== undefined && !stopped && (row.status === 'QUEUED' || (row.status === 'RUNNING' && !row.live)))
        return { kind: 'busy', ownerId };
      return { kind: 'skip' };
    });
  }

  // ─── Running a claimed row ─────────────────────────────────────────────────

  private execute(queue: string, jobId: string, unit: ClaimedCell | ClaimedPair): void {
    const controller = new AbortController();
    const table = unit.kind === 'cell' ? 'eval_cells' : 'eval_pair_verdicts';
    const entry: Running = { runId: unit.runId, ownerId: unit.ownerId, table, controller };
    this.running.set(unit.id, entry);
    this.slotsUsed++;
    const freeSlot = () => {
      if (entry.slotFreed) return;
      entry.slotFreed = true;
      this.slotsUsed--;
    };
    const run = () => (unit.kind === 'cell' ? this.runCell(unit, entry) : this.runPair(unit, entry));
    const attributes = { 'llmselect.eval_run_id': unit.runId, [`llmselect.eval_${unit.kind}_id`]: unit.id };
    const work = (tracingOn() ? withSpan(`eval.${unit.kind}`, { attributes }, run) : run())
      .catch((err) => this.deps.logger.error({ ...failure(err), id: unit.id }, 'eval job failed unexpectedly (its lease will expire)'))
      .then(() => {
        // The slot is free once the outcome is written: the acknowledgement (a round trip) is not waited for.
        this.running.delete(unit.id);
        freeSlot();
        this.resume();
        return this.acknowledge(queue, jobId);
      })
      .catch((err) => this.deps.logger.warn(failure(err), 'could not acknowledge an eval job (it will come back and be skipped)'))
      .finally(() => {
        this.running.delete(unit.id);
        freeSlot();
        this.inFlight.delete(work);
      });
    this.inFlight.add(work);
  }

  /**
   * Acknowledges a job with the others of the same turn of the event loop, in one statement per queue (a settle
   * is already written: a lost acknowledgement only brings the job back, and the claim skips it).
   */
  private acknowledge(queue: string, jobId: string): Promise<void> {
    let batch = this.acks.get(queue);
    if (!batch) {
      const ids: string[] = [];
      const done = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        this.acks.delete(queue);
        return this.deps.queue.complete(queue, ids);
      });
      batch = { ids, done };
      this.acks.set(queue, batch);
    }
    batch.ids.push(jobId);
    return batch.done;
  }

  private principal(unit: ClaimedCell | ClaimedPair): Principal {
    return {
      userId: unit.ownerId,
      role: 'USER',
      ...(unit.run.apiTokenId ? { token: { id: unit.run.apiTokenId, scopes: [], dailyBudgetUsd: null } } : {}),
    };
  }

  private async runCell(cell: ClaimedCell, entry: Running): Promise<void> {
    if (cell.attempts > MAX_ATTEMPTS) {
      await this.settleCell(cell, { kind: 'failed', error: `Gave up after ${MAX_ATTEMPTS} attempts` }, null, null);
      return;
    }
    const outcome = await this.answer(cell, entry);
    if (outcome.kind === 'stopped') {
      if (entry.reason === 'cancelled')
        await this.settleCell(cell, { kind: 'failed', error: 'Cancelled' }, null, null, EvalCellStatus.CANCELLED);
      else if (entry.reason === 'shutdown') await this.requeue(cell, 0, 'Interrupted by shutdown');
      // 'lease': another instance owns the cell now; nothing of ours is written.
      return;
    }
    if (outcome.kind === 'retry') {
      await this.requeue(cell, outcome.afterMs, outcome.error);
      return;
    }
    if (outcome.kind === 'failed') {
      await this.settleCell(cell, outcome, null, null);
      return;
    }
    // An answer RUBRIC sends on to the judge is written first: if this instance dies during the judge's call,
    // the instance that takes the cell over scores that answer instead of calling the model again.
    if (!outcome.reused && !cell.recorded && cell.run.judgeModel && cell.assertions.some((a) => a.kind === AssertionKind.RUBRIC))
      await this.recordAnswer(cell, outcome);
    const scored = await this.score(cell, outcome, entry.controller.signal);
    if (entry.controller.signal.aborted && entry.reason === 'lease') return;
    await this.settleCell(cell, outcome, scored.results, scored.passed, undefined, scored.judgeCostUsd);
  }

  /** The answer, before the judge's call (only while the cell is ours); the settle writes it again with the scores. */
  private async recordAnswer(cell: ClaimedCell, answer: Extract<CellOutcome, { kind: 'answer' }>): Promise<void> {
    await this.withRetry(() =>
      this.deps.orm.em
        .fork()
        .getConnection()
        .execute(
          `update eval_cells set content = ?, latency_ms = ?, ttft_ms = ?, input_tokens = ?, output_tokens = ?, cost_usd = ?
            where id = ? and status = 'RUNNING' and lease_owner = ? and attempts = ?`,
          [
            answer.content,
            answer.latencyMs,
            answer.ttftMs,
            answer.inputTokens,
            answer.outputTokens,
            answer.costUsd,
            cell.id,
            this.instanceId,
            cell.attempts,
          ],
        ),
    );
  }

  /** The cell's answer: recorded by an earlier attempt, reused, or from the provider (admitted first). */
  private async answer(cell: ClaimedCell, entry: Running): Promise<CellOutcome> {
    if (cell.recorded) return { kind: 'answer', ...cell.recorded, reused: false };
    const em = this.deps.orm.em.fork();
    if (cell.run.reuseAnswers && cell.reuseKey) {
      const [earlier] = await em.getConnection().execute<Array<SqlRow>>(
        `select content, latency_ms, ttft_ms, input_tokens, output_tokens from eval_cells
          where owner_id = ? and reuse_key = ? and status = 'COMPLETED' and id <> ? and content is not null
          order by finished_at desc limit 1`,
        [cell.ownerId, cell.reuseKey, cell.id],
      );
      if (earlier) {
        return {
          kind: 'answer',
          content: earlier.content,
          latencyMs: earlier.latency_ms ?? null,
          ttftMs: earlier.ttft_ms ?? null,
          inputTokens: earlier.input_tokens ?? null,
          outputTokens: earlier.output_tokens ?? null,
          costUsd: 0,
          reused: true,
        };
      }
    }
    const model = parseModelId(cell.model);
    try {
      await this.deps.usage.admitEvalCall(this.principal(cell));
    } catch (error) {
      if (error instanceof AppError && error.code === 'RATE_LIMITED') {
        const seconds = Number(error.extensions.retryAfterSeconds ?? 1);
        return { kind: 'retry', afterMs: seconds * 1000, error: error.message };
      }
      throw error;
    }
    const started = performance.now();
    try {
      // The key's lastUsedAt was set when the run started (not once per cell).
      const key = cell.key ?? this.deps.models.resolveModels(em, cell.ownerId, [model], false)[0]!;
      const languageModel = this.deps.models.build((await key).spec);
      // Streamed although nobody watches the tokens: results report each model's time to first token (issue 18's
      // results), which only a stream shows. `generateCompletion` (one JSON answer) would save about a third of a
      // cell's CPU; the judge's calls use it.
      const result = await streamCompletion({
        provider: model.provider,
        model: languageModel,
        messages: [{ role: 'user', content: cell.prompt }],
        ...(cell.system ? { system: cell.system } : {}),
        timeoutMs: this.deps.requestTimeoutMs,
        maxOutputBytes: this.deps.maxOutputBytes,
        ...(cell.run.maxOutputTokens ? { maxOutputTokens: cell.run.maxOutputTokens } : {}),
        temperature: cell.run.temperature,
        signal: entry.controller.signal,
        headers: { 'Idempotency-Key': cell.idempotencyKey },
      });
      return {
        kind: 'answer',
        content: result.text,
        latencyMs: result.latencyMs,
        ttftMs: result.timeToFirstTokenMs,
        inputTokens: result.promptTokens,
        outputTokens: result.completionTokens,
        costUsd: costUsd(findCatalogEntry(model.provider, model.name), result.promptTokens, result.completionTokens),
        reused: false,
      };
    } catch (error) {
      const latencyMs = Math.round(performance.now() - started);
      if (error instanceof CancelledError) return { kind: 'stopped' };
      if (error instanceof ProviderCallError) {
        if (error.reason === 'RATE_LIMIT' && cell.attempts < MAX_ATTEMPTS) {
          const afterMs = error.retryAfterMs ?? Math.min(60_000, 1000 * 2 ** cell.attempts);
          return { kind: 'retry', afterMs, error: `${error.reason}: ${error.message}` };
        }
        if (
          (error.reason === 'TIMEOUT' || error.reason === 'UNAVAILABLE') &&
          !(error instanceof OutputLimitError) &&
          cell.attempts < TRANSIENT_ATTEMPTS
        ) {
          return { kind: 'retry', afterMs: 1000 * 2 ** (cell.attempts - 1), error: `${error.reason}: ${error.message}` };
        }
        const kept = error instanceof OutputLimitError ? { content: error.partialText } : {};
        return { kind: 'failed', error: `${error.reason}: ${error.message}`, latencyMs, ...kept };
      }
      throw error;
    }
  }

  /** Scores the answer; RUBRIC through the judge model (its cost kept apart; a failed judge call is that assertion's `error`). */
  private async score(
    cell: ClaimedCell,
    answer: Extract<CellOutcome, { kind: 'answer' }>,
    signal: AbortSignal,
  ): Promise<{ results: StoredAssertionResult[]; passed: boolean | null; judgeCostUsd: number | null }> {
    let judgeCostUsd: number | null = null;
    const failedCalls = new Map<string, string>();
    let call = 0;
    const judge = cell.run.judgeModel ? parseModelId(cell.run.judgeModel) : null;
    const grader = judge
      ? async (rubric: string, content: string) => {
          const index = call++;
          try {
            const resolved = await this.deps.models.resolveModels(this.deps.orm.em.fork(), cell.ownerId, [judge])[0]!;
            const model = this.deps.models.build(resolved.spec);
            // A verdict's first token is nobody's measure: one JSON answer, no stream.
            const result = await generateCompletion({
              provider: judge.provider,
              model,
              system: RUBRIC_SYSTEM_PROMPT,
              messages: [{ role: 'user', content: rubricUserPrompt(rubric, content) }],
              timeoutMs: this.deps.requestTimeoutMs,
              maxOutputBytes: this.deps.maxOutputBytes,
              maxOutputTokens: RUBRIC_MAX_OUTPUT_TOKENS,
              temperature: 0,
              signal,
              headers: { 'Idempotency-Key': `${cell.idempotencyKey}.rubric${index}` },
            });
            const cost = costUsd(findCatalogEntry(judge.provider, judge.name), result.promptTokens, result.completionTokens);
            if (cost !== null) judgeCostUsd = (judgeCostUsd ?? 0) + cost;
            return parseRubricVerdict(result.text);
          } catch (error) {
            if (!(error instanceof ProviderCallError) && !(error instanceof CancelledError)) throw error;
            const marker = `judge-call-failed-${index}`;
            failedCalls.set(marker, error instanceof ProviderCallError ? `${error.reason}: ${error.message}` : 'Cancelled');
            return { verdict: 'unparseable' as const, reason: marker };
          }
        }
      : undefined;
    const evaluation = await evaluateAssertions(
      cell.assertions,
      { content: answer.content, latencyMs: answer.latencyMs, costUsd: answer.costUsd },
      { reference: cell.reference },
      grader,
    );
    const results = evaluation.results.map((r) => {
      const marker = [...failedCalls.keys()].find((m) => r.reason.includes(m));
      return marker
        ? { kind: r.kind, passed: false, outcome: 'error', reason: `the judge call failed: ${failedCalls.get(marker)}` }
        : { kind: r.kind, passed: r.passed, outcome: r.outcome, reason: r.reason };
    });
    return { results, passed: evaluation.passed, judgeCostUsd };
  }

  /** Back to QUEUED with a new job not before `afterMs`, in one transaction (only while the cell is still ours). */
  private async requeue(cell: ClaimedCell, afterMs: number, reason: string): Promise<void> {
    await this.withRetry(() =>
      this.deps.orm.em.fork().transactional(async (tx) => {
        const rows = await tx.execute<Array<{ id: string }>>(
          `update eval_cells set status = 'QUEUED', lease_owner = null, heartbeat_at = null, error = ?
            where id = ? and status = 'RUNNING' and lease_owner = ? and attempts = ? returning id`,
          [reason, cell.id, this.instanceId, cell.attempts],
        );
        if (!rows.length) return;
        await this.deps.queue.send(tx, EVAL_CELL_QUEUE, [
          {
            data: { cellId: cell.id, runId: cell.runId, traceparent: currentTraceparent() } satisfies CellJob,
            startAfterSeconds: afterMs / 1000,
          },
        ]);
      }),
    );
  }

  /**
   * Writes the cell's outcome and the run's counters (only while the cell is ours), then what follows from it: one
   * statement for every cell settled in the same turn of the event loop (`eval-settle-writer.ts`).
   */
  private async settleCell(
    cell: ClaimedCell,
    outcome: Extract<CellOutcome, { kind: 'answer' } | { kind: 'failed' }>,
    results: StoredAssertionResult[] | null,
    passed: boolean | null,
    status?: EvalCellStatus,
    judgeCostUsd: number | null = null,
  ): Promise<void> {
    const answer = outcome.kind === 'answer' ? outcome : null;
    const finalStatus = status ?? (answer ? EvalCellStatus.COMPLETED : EvalCellStatus.FAILED);
    const counts = finalStatus !== EvalCellStatus.CANCELLED;
    // What this cell's settle takes off the run's reservation (its worst case; the judge's share stays until the run ends).
    const sent = Buffer.byteLength(cell.prompt) + Buffer.byteLength(cell.system ?? '');
    const worstCase = cellWorstCaseUsd(parseModelId(cell.model), sent, cell.run.maxOutputTokens);
    // The next cell of the same user claimed ahead here takes this one's place: claimed by this settle's statement.
    const successor = counts ? this.takeSuccessor(cell) : null;
    const result = await this.withRetry(() =>
      this.settles.write({
        id: cell.id,
        attempts: cell.attempts,
        status: finalStatus,
        content: answer?.content ?? (outcome.kind === 'failed' ? (outcome.content ?? null) : null),
        latencyMs: answer?.latencyMs ?? (outcome.kind === 'failed' ? (outcome.latencyMs ?? null) : null),
        ttftMs: answer?.ttftMs ?? null,
        inputTokens: answer?.inputTokens ?? null,
        outputTokens: answer?.outputTokens ?? null,
        costUsd: answer?.costUsd ?? null,
        judgeCostUsd,
        reused: answer?.reused ?? false,
        passed,
        assertionResults: results ? JSON.stringify(results) : null,
        error: outcome.kind === 'failed' ? outcome.error : null,
        worstCaseUsd: worstCase,
        counts,
        successor: successor?.unit.id ?? null,
        successorAttempts: successor ? successor.unit.attempts + 1 : null,
      }),
    );
    if (successor) this.startSuccessor(cell, successor, result?.successorClaimed);
    const settled = result?.cell;
    if (!settled) return; // not ours any more (lease lost, run deleted), or the write never landed
    const judged = counts && cell.run.judgeModel !== null && cell.run.modelCount >= 2;
    if (judged) await this.queuePairs(cell);
    // Pairs queued as FAILED (a model of the pair has no answer) count as done at once: then the run may be complete.
    await this.afterSettle(cell.runId, cell.ownerId, cell.id, settled.runStatus, settled.settled || judged);
  }

  /** When every model's cell of this item and repeat has settled: its pairwise verdicts (both orders in one job each). */
  private async queuePairs(cell: ClaimedCell): Promise<void> {
    await this.withRetry(() =>
      this.deps.orm.em.fork().transactional(async (tx) => {
        const cells = await tx.execute<Array<{ model: string; status: string }>>(
          `select model, status from eval_cells where run_id = ? and item_id = ? and repeat = ?`,
          [cell.runId, cell.itemId, cell.repeat],
        );
        if (cells.some((c) => c.status === 'QUEUED' || c.status === 'RUNNING')) return;
        const completed = new Set(cells.filter((c) => c.status === 'COMPLETED').map((c) => c.model));
        const models = cells.map((c) => c.model).sort();
        const pairs: Array<{ a: string; b: string; ok: boolean }> = [];
        for (let i = 0; i < models.length; i++)
          for (let j = i + 1; j < models.length; j++)
            pairs.push({ a: models[i]!, b: models[j]!, ok: completed.has(models[i]!) && completed.has(models[j]!) });
        const inserted = await tx.execute<Array<{ id: string; status: string }>>(
          `insert into eval_pair_verdicts (id, created_at, run_id, owner_id, item_id, repeat, model_a, model_b, status, error, finished_at)
           select gen_random_uuid(), now(), ?, ?, ?, ?, p.a, p.b,
                  case when p.ok then 'QUEUED' else 'FAILED' end,
                  case when p.ok then null else 'Not judged: a model of the pair has no answer' end,
                  case when p.ok then null else now() end
             from jsonb_to_recordset(?::jsonb) as p(a text, b text, ok boolean)
           on conflict (run_id, item_id, repeat, model_a, model_b) do nothing
           returning id, status`,
          [cell.runId, cell.ownerId, cell.itemId, cell.repeat, JSON.stringify(pairs)],
        );
        const skipped = inserted.filter((r) => r.status === 'FAILED').length;
        if (skipped)
          await tx.execute(`update eval_runs set judge_calls_done = judge_calls_done + ? where id = ?`, [2 * skipped, cell.runId]);
        const queued = inserted.filter((r) => r.status === 'QUEUED');
        const traceparent = currentTraceparent();
        await this.deps.queue.send(
          tx,
          EVAL_JUDGE_QUEUE,
          queued.map((r) => ({ data: { verdictId: r.id, runId: cell.runId, traceparent } satisfies PairJob, priority: 1 })),
        );
      }),
    );
    this.wake();
  }

  /** Both orders, one call after the other; agreement gives the winner, disagreement a tie; a refusal or no verdict: FAILED. */
  private async runPair(pair: ClaimedPair, entry: Running): Promise<void> {
    const em = this.deps.orm.em.fork();
    const [row] = await em.getConnection().execute<Array<{ prompt: string; a: string | null; b: string | null }>>(
      `select min(prompt) as prompt, max(content) filter (where model = ?) as a, max(content) filter (where model = ?) as b
         from eval_cells where run_id = ? and item_id = ? and repeat = ?`,
      [pair.modelA, pair.modelB, pair.runId, pair.itemId, pair.repeat],
    );
    const judge = parseModelId(pair.run.judgeModel!);
    let cost: number | null = null;
    const verdicts: Array<'A' | 'B' | 'TIE' | null> = [];
    let error: string | null = null;
    try {
      const model = this.deps.models.build((await this.deps.models.resolveModels(em, pair.ownerId, [judge])[0]!).spec);
      const shown: Array<[string, string]> = [
        [row!.a ?? '', row!.b ?? ''],
        [row!.b ?? '', row!.a ?? ''],
      ];
      for (const [i, [first, second]] of shown.entries()) {
        const result = await generateCompletion({
          provider: judge.provider,
          model,
          system: JUDGE_SYSTEM_PROMPT,
          messages: [{ role: 'user', content: judgeUserPrompt(row!.prompt, first, second) }],
          timeoutMs: this.deps.requestTimeoutMs,
          maxOutputBytes: this.deps.maxOutputBytes,
          maxOutputTokens: PAIR_MAX_OUTPUT_TOKENS,
          temperature: 0,
          signal: entry.controller.signal,
          headers: { 'Idempotency-Key': `evp_${pair.id}.${i === 0 ? 'ab' : 'ba'}` },
        });
        const c = costUsd(findCatalogEntry(judge.provider, judge.name), result.promptTokens, result.completionTokens);
        if (c !== null) cost = (cost ?? 0) + c;
        const parsed = parseJudgeVerdict(result.text);
        if ('failure' in parsed) {
          error =
            parsed.failure === 'REFUSED' ? 'The judge refused to give a verdict' : 'The judge gave no verdict ([[A]], [[B]] or [[C]])';
          verdicts.push(null);
        } else verdicts.push(parsed.verdict);
      }
    } catch (e) {
      if (e instanceof CancelledError) {
        if (entry.reason === 'lease') return;
        error = 'Cancelled';
      } else if (e instanceof ProviderCallError) error = `${e.reason}: ${e.message}`;
      else throw e;
    }
    const [ab, ba] = verdicts;
    const pairVerdict = ab && ba && !error ? combineSwapped(ab, ba) : null;
    const outcome = pairVerdict === 'FIRST' ? 'A' : pairVerdict === 'SECOND' ? 'B' : pairVerdict === 'TIE' ? 'TIE' : null;
    const rows = await this.withRetry(() =>
      this.deps.orm.em
        .fork()
        .getConnection()
        .execute<Array<SqlRow>>(
          `with v as (
           update eval_pair_verdicts set status = ?, verdict_ab = ?, verdict_ba = ?, outcome = ?, error = ?, cost_usd = ?,
                  finished_at = now(), lease_owner = null, heartbeat_at = null
            where id = ? and status = 'RUNNING' and lease_owner = ? and attempts = ?
           returning run_id, coalesce(cost_usd, 0) as cost)
         update eval_runs r set judge_calls_done = r.judge_calls_done + 2, spent_usd = r.spent_usd + v.cost
           from v where r.id = v.run_id
         returning r.id, r.status, r.cells_done >= r.cells_total and r.judge_calls_done >= r.judge_calls_total as settled`,
          [
            outcome ? 'COMPLETED' : 'FAILED',
            ab ?? null,
            ba ?? null,
            outcome,
            outcome ? null : error,
            cost,
            pair.id,
            this.instanceId,
            pair.attempts,
          ],
        ),
    );
    if (rows?.length) await this.afterSettle(pair.runId, pair.ownerId, null, rows[0]!.status, rows[0]!.settled === true);
  }

  /** The run's completion (exactly once: a conditional update), its cache generation and its channel's event. */
  private async afterSettle(
    runId: string,
    ownerId: string,
    cellId: string | null,
    runStatus: EvalRunStatus,
    /** The settle's own statement saw every cell and judge call done (a queued pair may still add to the totals' dones). */
    allDone: boolean,
  ): Promise<void> {
    // Only a settle that saw everything done tries to complete the run; concurrent ones race on the conditional update.
    const finished = !allDone
      ? []
      : await this.withRetry(() =>
          this.deps.orm.em
            .fork()
            .getConnection()
            .execute<Array<{ status: string }>>(
              `update eval_runs set status = 'COMPLETED', finished_at = now()
          where id = ? and status = 'RUNNING' and cells_done >= cells_total and judge_calls_done >= judge_calls_total
         returning status`,
              [runId],
            ),
        );
    const status = finished?.length ? EvalRunStatus.COMPLETED : runStatus;
    if (finished?.length) await this.deps.usage.releaseEvalRun(runId);
    await this.deps.invalidation.invalidateUser(ownerId).catch(() => undefined);
    const message: RunEventMessage = { runId, status, ...(cellId ? { cellId } : {}) };
    await this.deps.pubsub.publish(runChannel(runId), message);
  }

  // ─── Leases ────────────────────────────────────────────────────────────────

  /**
   * Renews every lease held here, cells claimed ahead included (one statement per table); aborts what is no longer
   * ours or whose run was cancelled, and lets go of such cells claimed ahead.
   */
  private async heartbeat(): Promise<void> {
    for (const table of ['eval_cells', 'eval_pair_verdicts'] as const) {
      const ids = [...this.running.entries()].filter(([, r]) => r.table === table).map(([id]) => id);
      const ahead = table === 'eval_cells' ? [...this.prefetched.keys()] : [];
      if (!ids.length && !ahead.length) continue;
      let rows: Array<{ id: string; run_status: string }>;
      try {
        rows = await this.deps.orm.em
          .fork()
          .getConnection()
          .execute(
            `${BACKGROUND} update ${table} u set heartbeat_at = now() from eval_runs r
            where u.id = any(?::uuid[]) and u.lease_owner = ? and u.status in ('RUNNING', 'QUEUED') and r.id = u.run_id
           returning u.id, r.status as run_status`,
            [pgArray([...ids, ...ahead]), this.instanceId],
          );
      } catch (err) {
        this.deps.logger.warn(failure(err), 'could not renew eval leases (will retry)');
        continue;
      }
      const kept = new Map(rows.map((r) => [r.id, r.run_status]));
      for (const id of ids) {
        const running = this.running.get(id);
        if (!running) continue;
        const runStatus = kept.get(id);
        if (runStatus === undefined) this.abort(running, 'lease');
        else if (runStatus === EvalRunStatus.CANCELLED) this.abort(running, 'cancelled');
      }
      this.dropReserved(ahead.filter((id) => kept.get(id) === undefined || kept.get(id) === EvalRunStatus.CANCELLED));
    }
  }

  /** Queues again (with a new job) every RUNNING row whose lease expired: its instance died. Runs on every instance. */
  sweep(): Promise<void> {
    return (this.sweeping ??= this.sweepOnce().finally(() => (this.sweeping = undefined)));
  }

  private async sweepOnce(): Promise<void> {
    try {
      for (const [table, queue] of [
        ['eval_cells', EVAL_CELL_QUEUE],
        ['eval_pair_verdicts', EVAL_JUDGE_QUEUE],
      ] as const) {
        // Cells claimed ahead (QUEUED under a lease) by an instance that died are let go too (their jobs may be gone:
        // a second delivery elsewhere was acknowledged while the lease lived).
        const held =
          table === 'eval_cells' ? `(u.status = 'RUNNING' or (u.status = 'QUEUED' and u.lease_owner is not null))` : `u.status = 'RUNNING'`;
        // One cheap read first: the transaction (and its BEGIN/COMMIT) only when a lease did expire.
        const reserved =
          table === 'eval_cells'
            ? `or exists (select 1 from eval_cells u where u.status = 'QUEUED' and u.lease_owner is not null
                                                     and u.heartbeat_at < now() - make_interval(secs => ?))`
            : '';
        const [expired] = await this.deps.orm.em
          .fork()
          .getConnection()
          .execute<Array<{ any: boolean }>>(
            `${BACKGROUND} select exists (select 1 from ${table} u where u.status = 'RUNNING'
                                           and u.heartbeat_at < now() - make_interval(secs => ?)) ${reserved} as any`,
            table === 'eval_cells' ? [this.deps.leaseMs / 1000, this.deps.leaseMs / 1000] : [this.deps.leaseMs / 1000],
          );
        if (!expired?.any) continue;
        const swept = await this.deps.orm.em.fork().transactional(async (tx) => {
          const rows = await tx.execute<Array<{ id: string; run_id: string; status: string; lease_owner: string }>>(
            `${BACKGROUND} update ${table} u
                set status = case when r.status = 'CANCELLED' then 'CANCELLED' else 'QUEUED' end,
                    lease_owner = null, heartbeat_at = null
               from eval_runs r
              where r.id = u.run_id and ${held} and u.heartbeat_at < now() - make_interval(secs => ?)
             returning u.id, u.run_id, u.status, r.id as lease_owner`,
            [this.deps.leaseMs / 1000],
          );
          const requeued = rows.filter((r) => r.status === 'QUEUED');
          await this.deps.queue.send(
            tx,
            queue,
            requeued.map((r) => ({
              data: table === 'eval_cells' ? { cellId: r.id, runId: r.run_id } : { verdictId: r.id, runId: r.run_id },
            })),
          );
          return requeued.length;
        });
        if (swept) {
          this.deps.logger.warn({ swept, table }, 'eval leases expired (their instance stopped): queued again');
          this.wake();
        }
      }
    } catch (err) {
      this.deps.logger.warn(failure(err), 'could not sweep expired eval leases (will retry)');
    }
  }

  private abortRun(runId: string, reason: Running['reason']): void {
    for (const running of this.running.values()) if (running.runId === runId) this.abort(running, reason);
    // Its cells claimed ahead are CANCELLED already (they were QUEUED): never started.
    this.dropReserved([...this.prefetched.values()].filter((r) => r.unit.runId === runId).map((r) => r.unit.id));
  }

  private abort(running: Running, reason: Running['reason']): void {
    if (running.controller.signal.aborted) return;
    running.reason = reason;
    running.controller.abort();
  }

  /** Retries `write` on connection errors (a database restart) for up to WRITE_RETRY_MS; undefined when it never landed. */
  private async withRetry<T>(write: () => Promise<T>): Promise<T | undefined> {
    const deadline = Date.now() + Math.min(WRITE_RETRY_MS, this.deps.leaseMs);
    for (let attempt = 1; ; attempt++) {
      try {
        return await write();
      } catch (err) {
        if (!isRetryableDatabaseError(err) || Date.now() >= deadline) {
          this.deps.logger.error({ ...failure(err), attempt }, 'eval write failed (the lease will expire and the row run again)');
          return undefined;
        }
        await sleep(Math.min(1_000, 50 * 2 ** attempt));
      }
    }
  }
}

/** What a failed statement is logged with: its class and SQLSTATE, never its text (it holds prompts and answers). */
function failure(err: unknown): { error: string; code?: string } {
  const code = (err as { code?: unknown } | null)?.code;
  return { error: err instanceof Error ? err.name : typeof err, ...(typeof code === 'string' ? { code } : {}) };
}

function runSettings(run: SqlRow): RunSettings {
  return {
    judgeModel: run.judge_model ?? null,
    temperature: Number(run.temperature),
    maxOutputTokens: run.max_output_tokens ?? null,
    reuseAnswers: run.reuse_answers === true,
    apiTokenId: run.api_token_id ?? null,
    modelCount: Number(run.model_count),
  };
}

/** A claimed row (the claim's `returning u.*`) as the unit the worker runs. */
function claimedUnit(table: 'eval_cells' | 'eval_pair_verdicts', row: SqlRow, run: RunSettings): ClaimedCell | ClaimedPair {
  const common = {
    id: String(row.id),
    runId: String(row.run_id),
    ownerId: String(row.owner_id),
    attempts: Number(row.attempts),
    itemId: String(row.item_id),
    repeat: Number(row.repeat),
    run,
  };
  if (table === 'eval_pair_verdicts') return { kind: 'pair', ...common, modelA: row.model_a, modelB: row.model_b };
  return {
    kind: 'cell',
    ...common,
    prompt: row.prompt,
    system: row.system ?? null,
    reference: row.reference ?? null,
    assertions: typeof row.assertions === 'string' ? JSON.parse(row.assertions) : row.assertions,
    model: row.model,
    idempotencyKey: row.idempotency_key,
    reuseKey: row.reuse_key ?? null,
    // Only an answer recorded before its judge's call leaves content on a claimable (QUEUED or expired) row.
    recorded:
      row.content === null || row.content === undefined
        ? null
        : {
            content: row.content,
            latencyMs: row.latency_ms ?? null,
            ttftMs: row.ttft_ms ?? null,
            inputTokens: row.input_tokens ?? null,
            outputTokens: row.output_tokens ?? null,
            costUsd: row.cost_usd === null || row.cost_usd === undefined ? null : Number(row.cost_usd),
          },
  };
}
