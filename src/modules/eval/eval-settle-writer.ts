/**
 * The final write of eval cells, batched: every settle requested in one turn
 * of the event loop goes out as one statement (`UPDATE … FROM unnest(…)`),
 * which writes each cell (only while it is still RUNNING under this
 * instance's lease and attempt), takes each cell's worst case off its run's
 * reservation and adds the cells to their runs' counters, summed per run.
 * One statement per cell handed the CPU to a PostgreSQL backend per cell: on
 * a 2-core machine a run of short answers was bound by those round trips.
 *
 * The same statement claims each cell's successor, when the worker has one
 * claimed ahead (QUEUED under this instance's lease, `eval-worker.ts`): it
 * becomes RUNNING as the settled cell stops being so, so the user's count of
 * cells in flight moves from one to the other in one commit, and the
 * successor's call starts when the statement returns (a QUEUED row cancelled
 * meanwhile is not claimed, and is never called).
 *
 * Batching and the split of a refused batch: `db/turn-batch.ts`.
 */
import type { Orm } from '../../db/orm';
import { columnOf, TurnBatch } from '../../db/turn-batch';
import type { EvalCellStatus, EvalRunStatus } from './eval.entity';

export interface CellSettle {
  id: string;
  /** The claim this write belongs to: written only while the row is still RUNNING with this attempt. */
  attempts: number;
  status: EvalCellStatus;
  content: string | null;
  latencyMs: number | null;
  ttftMs: number | null;
  inputTokens: number | null;
  outputTokens: number | null;
  costUsd: number | null;
  judgeCostUsd: number | null;
  reused: boolean;
  passed: boolean | null;
  /** JSON text of the assertion results, or null. */
  assertionResults: string | null;
  error: string | null;
  /** What the settle takes off the run's reservation. */
  worstCaseUsd: number;
  /** Whether the cell counts in `cells_done` (a cancelled one does not). */
  counts: boolean;
  /** A cell reserved here (QUEUED, this instance's lease) to be claimed in the same statement, and its attempt once claimed. */
  successor: string | null;
  successorAttempts: number | null;
}

/** The run as the batch left it (null when the cell was not ours any more: lease lost, run deleted). */
export interface SettledCell {
  runStatus: EvalRunStatus;
  /** The statement saw every cell and judge call of the run done. */
  settled: boolean;
}

/** What one settle did: the cell (null when not written) and whether its successor was claimed. */
export interface SettleResult {
  cell: SettledCell | null;
  successorClaimed: boolean;
}

const SETTLE_SQL = `with v as (
    select * from unnest(?::uuid[], ?::int[], ?::text[], ?::text[], ?::int[], ?::int[], ?::int[], ?::int[], ?::float8[], ?::float8[],
                         ?::boolean[], ?::boolean[], ?::text[], ?::text[], ?::float8[], ?::boolean[], ?::uuid[], ?::int[])
      as v(id, attempts, status, content, latency_ms, ttft_ms, input_tokens, output_tokens, cost_usd, judge_cost_usd,
           reused, passed, assertion_results, error, worst_case, counts, successor, successor_attempts)),
  c as (
    update eval_cells e
       set status = v.status, content = v.content, latency_ms = v.latency_ms, ttft_ms = v.ttft_ms,
           input_tokens = v.input_tokens, output_tokens = v.output_tokens, cost_usd = v.cost_usd, judge_cost_usd = v.judge_cost_usd,
           reused = v.reused, passed = v.passed, assertion_results = v.assertion_results::jsonb, error = v.error,
           finished_at = now(), lease_owner = null, heartbeat_at = null
      from v
     where e.id = v.id and e.status = 'RUNNING' and e.lease_owner = ? and e.attempts = v.attempts
    returning e.id, e.run_id, e.status, coalesce(e.cost_usd, 0) + coalesce(e.judge_cost_usd, 0) as cost, v.worst_case, v.counts),
  f as (
    update eval_cells e set status = 'RUNNING', attempts = e.attempts + 1, started_at = coalesce(e.started_at, now()), heartbeat_at = now()
      from v
     where e.id = v.successor and e.status = 'QUEUED' and e.lease_owner = ? and e.attempts = v.successor_attempts - 1
    returning e.id, e.run_id),
  fr as (
    update eval_runs r set status = 'RUNNING', started_at = coalesce(r.started_at, now())
     where r.id in (select run_id from f) and r.status = 'QUEUED'),
  per_run as (
    select run_id, sum(worst_case) as worst_case, count(*) filter (where counts) as done,
           count(*) filter (where status = 'FAILED') as failed, sum(cost) as cost
      from c group by run_id),
  s as (
    update spend_reservations sr set reserved_usd = greatest(0, sr.reserved_usd - p.worst_case)
      from per_run p where sr.eval_run_id = p.run_id),
  r as (
    update eval_runs r
       set cells_done = r.cells_done + p.done, cells_failed = r.cells_failed + p.failed, spent_usd = r.spent_usd + p.cost
      from per_run p where r.id = p.run_id
    returning r.id, r.status, r.cells_done >= r.cells_total and r.judge_calls_done >= r.judge_calls_total as settled)
  select 'cell' as kind, c.id, c.run_id, r.status, r.settled from c join r on r.id = c.run_id
  union all select 'claimed', f.id, f.run_id, null, null from f`;

export class EvalSettleWriter {
  private readonly batch = new TurnBatch<CellSettle, SettleResult>((rows) => this.execute(rows));

  constructor(
    private readonly orm: Orm,
    /** This instance's `lease_owner`. */
    private readonly leaseOwner: string,
  ) {}

  /** The run's state after the write (`cell` null when the cell was not ours) and the successor's claim; rejects with the error. */
  async write(row: CellSettle): Promise<SettleResult> {
    return (await this.batch.write(row)) ?? { cell: null, successorClaimed: false };
  }

  private async execute(rows: CellSettle[]): Promise<Map<string, SettleResult>> {
    const column = (pick: (r: CellSettle) => string | number | boolean | null) => columnOf(rows, pick);
    const out: Array<{ kind: 'cell' | 'claimed'; id: string; run_id: string; status: EvalRunStatus; settled: boolean }> = await this.orm.em
      .getConnection()
      .execute(SETTLE_SQL, [
        column((r) => r.id),
        column((r) => r.attempts),
        column((r) => r.status),
        column((r) => r.content),
        column((r) => r.latencyMs),
        column((r) => r.ttftMs),
        column((r) => r.inputTokens),
        column((r) => r.outputTokens),
        column((r) => r.costUsd),
        column((r) => r.judgeCostUsd),
        column((r) => r.reused),
        column((r) => r.passed),
        column((r) => r.assertionResults),
        column((r) => r.error),
        column((r) => r.worstCaseUsd),
        column((r) => r.counts),
        column((r) => r.successor),
        column((r) => r.successorAttempts),
        this.leaseOwner,
        this.leaseOwner,
      ]);
    // Of a run's cells in the batch, only the last is told the run is settled: it alone tries to complete the run, after the
    // others' progress events (a subscriber stops at the COMPLETED one).
    const byId = new Map(out.filter((r) => r.kind === 'cell').map((r) => [r.id, r]));
    const claimed = new Set(out.filter((r) => r.kind === 'claimed').map((r) => r.id));
    const written = new Map<string, SettleResult>();
    const told = new Set<string>();
    for (const row of [...rows].reverse()) {
      const r = byId.get(row.id);
      const successorClaimed = row.successor !== null && claimed.has(row.successor);
      written.set(row.id, {
        cell: r ? { runStatus: r.status, settled: r.settled === true && !told.has(r.run_id) } : null,
        successorClaimed,
      });
      if (r) told.add(r.run_id);
    }
    return written;
  }
}
