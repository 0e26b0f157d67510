/**
 * The final write of comparison responses, batched: every settle requested in
 * one turn of the event loop goes out as one conditional UPDATE (first writer
 * wins: only rows still PENDING or STREAMING are written). A burst of
 * comparisons settles hundreds of responses within a second; one statement
 * each would hold the pool (and the ORM) for all of them.
 * Batching and the split of a refused batch: `db/turn-batch.ts`.
 */
import type { Orm } from '../../db/orm';
import { columnOf, TurnBatch } from '../../db/turn-batch';
import type { ResponseStatus } from './comparison.entity';

export interface SettleRow {
  id: string;
  status: ResponseStatus;
  content: string;
  error: string | null;
  latencyMs?: number | null;
  timeToFirstTokenMs?: number | null;
  promptTokens?: number | null;
  completionTokens?: number | null;
  costUsd?: number | null;
  customEndpoint?: boolean;
}

/** One statement for many rows: `unnest` of one array per column (the statement text is the same for any batch size). */
const SETTLE_SQL = `update comparison_responses r
    set status = v.status::response_status, content = v.content, error = v.error,
        latency_ms = v.latency_ms, time_to_first_token_ms = v.ttft_ms,
        prompt_tokens = v.prompt_tokens, completion_tokens = v.completion_tokens, cost_usd = v.cost_usd,
        custom_endpoint = coalesce(v.custom_endpoint, r.custom_endpoint), settled_at = now()
   from unnest(?::uuid[], ?::text[], ?::text[], ?::text[], ?::int[], ?::int[], ?::int[], ?::int[], ?::float8[], ?::boolean[])
        as v(id, status, content, error, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cost_usd, custom_endpoint)
  where r.id = v.id and r.status in ('PENDING', 'STREAMING')
  returning r.id`;

export class SettleWriter {
  private readonly batch = new TurnBatch<SettleRow, true>((rows) => this.execute(rows));

  constructor(private readonly orm: Orm) {}

  /** Resolves true when this write settled the row, false when it was already settled; rejects with the statement's error. */
  async write(row: SettleRow): Promise<boolean> {
    return (await this.batch.write(row)) === true;
  }

  private async execute(rows: SettleRow[]): Promise<Map<string, true>> {
    const column = (pick: (r: SettleRow) => string | number | boolean | null) => columnOf(rows, pick);
    const result: Array<{ id: string }> = await this.orm.em
      .getConnection()
      .execute(SETTLE_SQL, [
        column((r) => r.id),
        column((r) => r.status),
        column((r) => r.content),
        column((r) => r.error),
        column((r) => r.latencyMs ?? null),
        column((r) => r.timeToFirstTokenMs ?? null),
        column((r) => r.promptTokens ?? null),
        column((r) => r.completionTokens ?? null),
        column((r) => r.costUsd ?? null),
        column((r) => r.customEndpoint ?? null),
      ]);
    return new Map(result.map((r) => [r.id, true as const]));
  }
}
