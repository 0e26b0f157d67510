/**
 * The final write of comparison responses, batched: every settle requested in
 * one turn of the event loop goes out as one conditional UPDATE (first writer
 * wins: only rows still PENDING or STREAMING are written). A burst of
 * comparisons settles hundreds of responses within a second; one statement
 * each would hold the pool (and the ORM) for all of them.
 *
 * A batch PostgreSQL refuses as a statement (not a connection error) is split
 * and each row written alone, so one unstorable answer cannot fail the others.
 */
import { isRetryableDatabaseError } from '../../db/connection-errors';
import type { Orm } from '../../db/orm';
import { pgArray } from '../../db/sql';
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

interface Pending {
  row: SettleRow;
  resolve: (written: boolean) => void;
  reject: (error: unknown) => void;
}

export class SettleWriter {
  private queue: Pending[] = [];

  constructor(private readonly orm: Orm) {}

  /** Resolves true when this write settled the row, false when it was already settled; rejects with the statement's error. */
  write(row: SettleRow): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      if (!this.queue.length) setImmediate(() => void this.flush());
      this.queue.push({ row, resolve, reject });
    });
  }

  private async flush(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    try {
      const written = await this.execute(batch.map((p) => p.row));
      for (const p of batch) p.resolve(written.has(p.row.id));
    } catch (error) {
      // Alone, or a connection error, lock or statement timeout (the caller retries it whole): passed on as it is.
      if (batch.length === 1 || isRetryableDatabaseError(error)) {
        for (const p of batch) p.reject(error);
        return;
      }
      // Refused as a statement: find which row by writing each alone.
      await Promise.all(batch.map((p) => this.execute([p.row]).then((w) => p.resolve(w.has(p.row.id)), p.reject)));
    }
  }

  private async execute(rows: SettleRow[]): Promise<Set<string>> {
    // Arrays travel as array literals: knex would spread a JS array into a list of placeholders.
    const column = (pick: (r: SettleRow) => string | number | boolean | null) =>
      pgArray(
        rows.map((r) => {
          const v = pick(r);
          return typeof v === 'boolean' ? String(v) : v;
        }),
      );
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
    return new Set(result.map((r) => r.id));
  }
}
