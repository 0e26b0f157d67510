/**
 * Eval runs through the API: estimate, start, cancel, and the plain reads
 * (runs, cell pages, and the rows the results are computed from).
 *
 * Starting a run, in order, nothing written or queued before the last step:
 * validate the input (`eval-plan.ts`), read the set's items (NOT_FOUND for
 * another user's set), check the baseline (a run of the same set and owner),
 * check every model has a key (a model without one would only fail every
 * cell), estimate; then ONE transaction inserts the run, reserves its worst
 * case from the budget under the user's lock (BUDGET_EXCEEDED rolls it all
 * back), inserts the cells and one pg-boss job per cell. The workers
 * (`eval-worker.ts`) take it from there.
 *
 * Ownership: another user's run or set answers as a missing one (null for
 * reads, NOT_FOUND for mutations).
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../auth/principal';
import { type CursorCodec, isUuid, type Page, pageSize, toPage } from '../../db/pagination';
import { selectPlain } from '../../db/plain';
import type { JobQueue } from '../../db/job-queue';
import type { Orm } from '../../db/orm';
import { pgArray } from '../../db/sql';
import { badInput, notFound } from '../../errors';
import { toProvider } from '../../llm/model-id';
import type { PubSub } from '../../pubsub/pubsub.port';
import type { ApiKeyService } from '../api-key/api-key.service';
import type { PromptSetService } from '../prompt-set/prompt-set.service';
import type { UsageService } from '../usage/usage.service';
import {
  type CellJob,
  EVAL_CELL_QUEUE,
  EVAL_CONTROL_CHANNEL,
  type EvalControlMessage,
  evalRunEventStream,
  runChannel,
} from './eval-events';
import {
  checkDraft,
  estimate,
  type EvalRunDraft,
  type EvalRunSettings,
  idempotencyKey,
  modelKey,
  type PlannedCell,
  planCells,
  reuseKey,
  type RunEstimate,
} from './eval-plan';
import { EvalCell, type EvalCellStatus, EvalRun, EvalRunStatus, type StoredAssertionResult } from './eval.entity';
import { currentTraceparent } from '../../observability/tracing';

export type EvalRunView = Pick<
  EvalRun,
  | 'id'
  | 'createdAt'
  | 'apiTokenId'
  | 'models'
  | 'judgeModel'
  | 'repeats'
  | 'temperature'
  | 'maxOutputTokens'
  | 'reuseAnswers'
  | 'status'
  | 'startedAt'
  | 'finishedAt'
  | 'cellsTotal'
  | 'cellsDone'
  | 'cellsFailed'
  | 'judgeCallsTotal'
  | 'judgeCallsDone'
  | 'spentUsd'
> & { ownerId: string; promptSetId: string; baselineRunId: string | null };

export type EvalCellView = Omit<
  Pick<
    EvalCell,
    | 'id'
    | 'createdAt'
    | 'itemId'
    | 'position'
    | 'prompt'
    | 'system'
    | 'reference'
    | 'assertions'
    | 'model'
    | 'repeat'
    | 'status'
    | 'content'
    | 'latencyMs'
    | 'ttftMs'
    | 'inputTokens'
    | 'outputTokens'
    | 'costUsd'
    | 'judgeCostUsd'
    | 'reused'
    | 'passed'
    | 'assertionResults'
    | 'error'
    | 'attempts'
    | 'startedAt'
    | 'finishedAt'
  >,
  never
> & { runId: string };

/** One cell as the results are computed from it (`eval-results.ts`). */
export interface CellRow {
  itemId: string;
  position: number;
  model: string;
  repeat: number;
  status: EvalCellStatus;
  passed: boolean | null;
  assertionResults: Array<{ kind: string; passed: boolean; reason: string }>;
  latencyMs: number | null;
  ttftMs: number | null;
  inputTokens: number | null;
  outputTokens: number | null;
  costUsd: number | null;
  reused: boolean;
  error: string | null;
  content: string | null;
  prompt: string;
}

/** One pairwise verdict as the results read it: `outcome` in model terms (A = modelA won), null when judging failed. */
export interface VerdictRow {
  itemId: string;
  repeat: number;
  modelA: string;
  modelB: string;
  outcome: 'A' | 'B' | 'TIE' | null;
}

export interface EvalProgressView {
  cellsTotal: number;
  cellsDone: number;
  cellsFailed: number;
  judgeCallsDone: number;
  judgeCallsTotal: number;
  spentUsd: number;
  etaSeconds: number | null;
}

export interface CellPageKey {
  runId: string;
  model: string | null;
  failedOnly: boolean;
  first: number;
  after: { model: string; position: number; repeat: number; id: string } | null;
}

export interface EvalServiceDeps {
  orm: Orm;
  queue: JobQueue;
  promptSets: PromptSetService;
  apiKeys: ApiKeyService;
  usage: UsageService;
  pubsub: PubSub;
  cursors: CursorCodec;
  /** After a run was queued here: wakes this instance's workers (others find it on their next poll). */
  onQueued?: () => void;
}

const RUN_PAGE_DEFAULT = 20;
const CELL_PAGE_DEFAULT = 50;
const SETTLED = [EvalRunStatus.COMPLETED, EvalRunStatus.CANCELLED, EvalRunStatus.FAILED];

export class EvalService {
  constructor(private readonly deps: EvalServiceDeps) {}

  // ─── Estimate and start ────────────────────────────────────────────────────

  async estimate(em: EntityManager, principal: Principal, draft: EvalRunDraft): Promise<RunEstimate & { budgetLeftUsd: number | null }> {
    const { estimate: est } = await this.prepare(em, principal, draft);
    return { ...est, budgetLeftUsd: await this.deps.usage.budgetLeft(em, principal) };
  }

  /** Validates, then inserts the run, its reservation, cells and jobs in one transaction (see the file's comment). */
  async start(em: EntityManager, principal: Principal, draft: EvalRunDraft): Promise<EvalRunView> {
    const { settings, cells, estimate: est } = await this.prepare(em, principal, draft, true);
    const runId = await em.transactional(async (tx) => {
      const run = tx.create(EvalRun, {
        owner: principal.userId,
        promptSet: settings.promptSetId,
        apiTokenId: principal.token?.id ?? null,
        models: settings.models.map(modelKey),
        judgeModel: settings.judge ? modelKey(settings.judge) : null,
        repeats: settings.repeats,
        temperature: settings.temperature,
        maxOutputTokens: settings.maxOutputTokens,
        baselineRun: settings.baselineRunId,
        reuseAnswers: settings.reuseAnswers,
        status: EvalRunStatus.QUEUED,
        cellsTotal: cells.length,
        judgeCallsTotal: est.pairJudgeCalls,
      });
      await tx.flush();
      await this.deps.usage.reserveEvalRun(tx, principal, run.id, est.worstCaseUsd);
      const ids = await this.insertCells(tx, principal.userId, run.id, settings, cells);
      // The cells' runs continue this request's trace (undefined when tracing is off: not stored).
      const traceparent = currentTraceparent();
      const jobs = cells.map((cell, i) => ({
        data: { cellId: ids[i]!, runId: run.id, traceparent } satisfies CellJob,
        // Runs interleave: the k-th cell of every run comes before the (k+1)-th of any (pg-boss takes priority desc, then age).
        priority: -cell.ordinal,
      }));
      await this.deps.queue.send(tx, EVAL_CELL_QUEUE, jobs);
      return run.id;
    });
    this.deps.onQueued?.();
    return this.get(em, principal, runId);
  }

  private async prepare(em: EntityManager, principal: Principal, draft: EvalRunDraft, starting = false) {
    const settings = checkDraft(draft);
    const items = await this.deps.promptSets.itemsToRun(em, principal, settings.promptSetId);
    const cells = planCells(settings, items);
    if (settings.baselineRunId) await this.checkBaseline(em, principal, settings);
    await this.checkKeys(em, principal, settings, starting);
    return { settings, cells, estimate: estimate(settings, cells) };
  }

  private async checkBaseline(em: EntityManager, principal: Principal, settings: EvalRunSettings): Promise<void> {
    const [baseline] = await this.findByIds(em, principal, [settings.baselineRunId!]);
    if (!baseline) throw notFound('Baseline run');
    if (baseline.promptSetId !== settings.promptSetId) {
      throw badInput('baselineRunId must be an earlier run of the same prompt set: pick a run of this set', 'baselineRunId');
    }
  }

  /** Every model and the judge need the user's key for their provider and label (the models could not be called otherwise). */
  private async checkKeys(em: EntityManager, principal: Principal, settings: EvalRunSettings, touch: boolean): Promise<void> {
    const wanted = settings.judge ? [...settings.models, settings.judge] : settings.models;
    const keys = await this.deps.apiKeys.credentialsFor(
      em,
      principal.userId,
      wanted.map((m) => ({ provider: toProvider(m.provider), label: m.label })),
      // Starting a run uses the keys (their lastUsedAt); an estimate does not.
      touch,
    );
    const missing = wanted.find((_, i) => !keys[i]);
    if (missing) {
      const field = settings.judge === missing ? 'judgeModel' : 'models';
      throw badInput(
        `${modelKey(missing)} cannot be called: you have no ${missing.provider} API key labelled "${missing.label}"; ` +
          'add one with saveApiKey',
        field,
      );
    }
  }

  private async insertCells(
    tx: EntityManager,
    ownerId: string,
    runId: string,
    settings: EvalRunSettings,
    cells: readonly PlannedCell[],
  ): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < cells.length; i += 1_000) {
      const batch = cells.slice(i, i + 1_000).map((cell) => ({
        item_id: cell.itemId,
        position: cell.position,
        prompt: cell.prompt,
        system: cell.system,
        reference: cell.reference,
        assertions: cell.assertions,
        model: cell.model,
        repeat: cell.repeat,
        idempotency_key: idempotencyKey(runId, cell),
        reuse_key: reuseKey(settings, cell),
        ord: cell.ordinal,
      }));
      const rows = await tx.execute<Array<{ id: string }>>(
        `insert into eval_cells (id, created_at, run_id, owner_id, item_id, position, prompt, system, reference, assertions,
                                 model, repeat, status, idempotency_key, reuse_key)
         select gen_random_uuid(), now(), ?, ?, x.item_id, x.position, x.prompt, x.system, x.reference, x.assertions,
                x.model, x.repeat, 'QUEUED', x.idempotency_key, x.reuse_key
           from jsonb_to_recordset(?::jsonb) as x(item_id uuid, position int, prompt text, system text, reference text,
                                                 assertions jsonb, model text, repeat int, idempotency_key text, reuse_key text, ord int)
          order by x.ord
         returning id`,
        [runId, ownerId, JSON.stringify(batch)],
      );
      ids.push(...rows.map((r) => r.id));
    }
    return ids;
  }

  // ─── Cancel ────────────────────────────────────────────────────────────────

  /**
   * Queued cells become CANCELLED at once (their jobs are acknowledged
   * unrun when they arrive), the run CANCELLED, its reservation released;
   * every instance aborts the run's in-flight calls (pub/sub, and each
   * worker's heartbeat reads the run's status as a fallback).
   */
  async cancel(em: EntityManager, principal: Principal, runId: string): Promise<EvalRunView> {
    const run = await this.get(em, principal, runId);
    if (!SETTLED.includes(run.status)) {
      await em.transactional(async (tx) => {
        await tx.execute(
          `update eval_runs set status = 'CANCELLED', finished_at = now() where id = ? and status in ('QUEUED', 'RUNNING')`,
          [run.id],
        );
        await tx.execute(
          `update eval_cells set status = 'CANCELLED', error = 'Cancelled', finished_at = now() where run_id = ? and status = 'QUEUED'`,
          [run.id],
        );
        await tx.execute(
          `update eval_pair_verdicts set status = 'CANCELLED', error = 'Cancelled', finished_at = now()
            where run_id = ? and status = 'QUEUED'`,
          [run.id],
        );
      });
      await this.deps.usage.releaseEvalRun(run.id);
      await this.deps.pubsub.publish(EVAL_CONTROL_CHANNEL, { cancel: run.id } satisfies EvalControlMessage);
      const after = await this.get(em, principal, run.id);
      await this.deps.pubsub.publish(runChannel(run.id), { runId: run.id, status: after.status });
      return after;
    }
    return run;
  }

  // ─── Reads (plain rows) ────────────────────────────────────────────────────

  async findByIds(em: EntityManager, principal: Principal, ids: readonly string[]): Promise<EvalRunView[]> {
    const valid = ids.filter(isUuid);
    if (!valid.length) return [];
    return selectPlain<EvalRunView>(em, EvalRun, 'r', 'r.id = any(?::uuid[]) and r.owner_id = ?', [pgArray(valid), principal.userId]);
  }

  async get(em: EntityManager, principal: Principal, id: string): Promise<EvalRunView> {
    const [run] = await this.findByIds(em, principal, [id]);
    if (!run) throw notFound('Eval run');
    return run;
  }

  /** A set's runs, newest first, keyset-paged on (created_at, id) through `eval_runs_set_created_idx`. */
  async runsOfSet(
    em: EntityManager,
    principal: Principal,
    promptSetId: string,
    first: number | null | undefined,
    after: string | null | undefined,
  ): Promise<Page<EvalRunView>> {
    const limit = pageSize(first, RUN_PAGE_DEFAULT);
    const scope = `eval-runs:${promptSetId}`;
    const cursor = after ? this.deps.cursors.decode(scope, after) : null;
    const rows = await selectPlain<EvalRunView>(
      em,
      EvalRun,
      'r',
      `r.prompt_set_id = ? and r.owner_id = ? ${cursor ? 'and (r.created_at, r.id) < (?, ?)' : ''}
       order by r.created_at desc, r.id desc limit ?`,
      [promptSetId, principal.userId, ...(cursor ? [cursor.createdAt, cursor.id] : []), limit + 1],
    );
    return toPage(rows, limit, (row) => this.deps.cursors.encode(scope, row));
  }

  /** Validates `EvalRun.cells`' arguments into a page key (for a run already owner-checked). */
  cellPageKey(
    runId: string,
    model: string | null | undefined,
    failedOnly: boolean | null | undefined,
    first?: number | null,
    after?: string | null,
  ) {
    const key: CellPageKey = {
      runId,
      model: model ?? null,
      failedOnly: failedOnly === true,
      first: pageSize(first, CELL_PAGE_DEFAULT),
      after: null,
    };
    if (after) {
      const { id, extra } = this.deps.cursors.decode(`eval-cells:${runId}`, after);
      const parsed = extra ? (JSON.parse(extra) as [string, number, number]) : null;
      if (!parsed || !Array.isArray(parsed) || parsed.length !== 3) {
        throw badInput('Invalid cursor: pass pageInfo.endCursor from the previous page of this list', 'after');
      }
      key.after = { model: String(parsed[0]), position: Number(parsed[1]), repeat: Number(parsed[2]), id };
    }
    return key;
  }

  /** A page of a run's cells in (model, position, repeat) order, through `eval_cells_page_idx` (or the failed-only one). */
  async cellPage(em: EntityManager, key: CellPageKey): Promise<Page<EvalCellView>> {
    const where: string[] = ['c.run_id = ?'];
    const params: unknown[] = [key.runId];
    if (key.model) {
      where.push('c.model = ?');
      params.push(key.model);
    }
    if (key.failedOnly) where.push(`c.status = 'FAILED'`);
    if (key.after) {
      where.push('(c.model, c.position, c.repeat, c.id) > (?, ?, ?, ?)');
      params.push(key.after.model, key.after.position, key.after.repeat, key.after.id);
    }
    const rows = await selectPlain<EvalCellView>(
      em,
      EvalCell,
      'c',
      `${where.join(' and ')} order by c.model, c.position, c.repeat, c.id limit ?`,
      [...params, key.first + 1],
    );
    return toPage(rows, key.first, (row) =>
      this.deps.cursors.encode(`eval-cells:${key.runId}`, row, JSON.stringify([row.model, row.position, row.repeat])),
    );
  }

  /** Every cell of a run as the results read them (one statement; for a run already owner-checked). */
  async cellRows(em: EntityManager, runId: string): Promise<CellRow[]> {
    const rows = await selectPlain<EvalCellView>(em, EvalCell, 'c', 'c.run_id = ? order by c.position, c.repeat, c.model', [runId]);
    return rows.map((c) => ({
      itemId: c.itemId,
      position: c.position,
      model: c.model,
      repeat: c.repeat,
      status: c.status,
      passed: c.passed ?? null,
      assertionResults: (c.assertionResults ?? []).map((a: StoredAssertionResult) => ({
        kind: a.kind,
        passed: a.passed,
        reason: a.reason,
      })),
      latencyMs: c.latencyMs ?? null,
      ttftMs: c.ttftMs ?? null,
      inputTokens: c.inputTokens ?? null,
      outputTokens: c.outputTokens ?? null,
      costUsd: c.costUsd ?? null,
      reused: c.reused,
      error: c.error ?? null,
      content: c.content ?? null,
      prompt: c.prompt,
    }));
  }

  /** Every pairwise verdict of a run (for a run already owner-checked). */
  async verdictRows(em: EntityManager, runId: string): Promise<VerdictRow[]> {
    const rows = await em
      .getConnection()
      .execute<Array<{ item_id: string; repeat: number; model_a: string; model_b: string; outcome: 'A' | 'B' | 'TIE' | null }>>(
        `select item_id, repeat, model_a, model_b, outcome from eval_pair_verdicts
          where run_id = ? order by item_id, repeat, model_a, model_b`,
        [runId],
      );
    return rows.map((r) => ({ itemId: r.item_id, repeat: r.repeat, modelA: r.model_a, modelB: r.model_b, outcome: r.outcome ?? null }));
  }

  /**
   * The `evalRunEvents` stream of a run the caller owns (already checked):
   * its own EntityManager (the request's is gone once the stream is open).
   */
  events(runId: string, principal: Principal, ready?: () => Promise<void> | void) {
    const em = this.deps.orm.em.fork();
    return evalRunEventStream<EvalProgressView, EvalCellView>({
      pubsub: this.deps.pubsub,
      runId,
      ready,
      snapshot: async () => {
        const run = await this.get(em, principal, runId);
        const progress = progressOf(run);
        return { status: run.status, progress, version: `${run.status}|${run.cellsDone}|${run.judgeCallsDone}` };
      },
      cell: async (cellId) => {
        const [cell] = await selectPlain<EvalCellView>(em, EvalCell, 'c', 'c.id = ? and c.run_id = ?', [cellId, runId]);
        return cell ?? null;
      },
    });
  }

  /** A run's cells and verdicts as plain rows, owner-checked (NOT_FOUND otherwise). */
  async resultRows(em: EntityManager, principal: Principal, runId: string) {
    const run = await this.get(em, principal, runId);
    const [cells, verdicts] = await Promise.all([this.cellRows(em, run.id), this.verdictRows(em, run.id)]);
    return { run, cells, verdicts };
  }
}

/** A run's progress; the ETA extrapolates the pace so far (null before the first settled cell and once settled). */
export function progressOf(run: EvalRunView, now = Date.now()): EvalProgressView {
  let etaSeconds: number | null = null;
  const left = run.cellsTotal - run.cellsDone + (run.judgeCallsTotal - run.judgeCallsDone) / 2;
  if (run.status === EvalRunStatus.RUNNING && run.startedAt && run.cellsDone > 0 && left > 0) {
    const elapsed = (now - run.startedAt.getTime()) / 1000;
    etaSeconds = Math.max(0, Math.round((elapsed / run.cellsDone) * left));
  } else if (SETTLED.includes(run.status)) etaSeconds = 0;
  return {
    cellsTotal: run.cellsTotal,
    cellsDone: run.cellsDone,
    cellsFailed: run.cellsFailed,
    judgeCallsDone: run.judgeCallsDone,
    judgeCallsTotal: run.judgeCallsTotal,
    spentUsd: Math.round(run.spentUsd * 1e6) / 1e6,
    etaSeconds,
  };
}
