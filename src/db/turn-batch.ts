/**
 * Writes requested within one turn of the event loop, sent as one statement
 * (the settle writers of comparisons and eval cells: a burst settles hundreds
 * of rows a second, one statement each would hold the pool for all of them).
 *
 * A batch PostgreSQL refuses as a statement (not a connection error, which the
 * callers retry whole) is split and each row written alone, so one unstorable
 * row cannot fail the others.
 */
import { isRetryableDatabaseError } from './connection-errors';
import { pgArray } from './sql';

interface Pending<Row, Result> {
  row: Row;
  resolve: (result: Result | undefined) => void;
  reject: (error: unknown) => void;
}

export class TurnBatch<Row extends { id: string }, Result> {
  private queue: Array<Pending<Row, Result>> = [];

  /** `execute` writes the rows in one statement and answers, by row id, what each write did (absent: not written). */
  constructor(private readonly execute: (rows: Row[]) => Promise<Map<string, Result>>) {}

  /** Resolves with the row's result (undefined when it was not written); rejects with the statement's error. */
  write(row: Row): Promise<Result | undefined> {
    return new Promise<Result | undefined>((resolve, reject) => {
      if (!this.queue.length) setImmediate(() => void this.flush());
      this.queue.push({ row, resolve, reject });
    });
  }

  private async flush(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    try {
      const written = await this.execute(batch.map((p) => p.row));
      for (const p of batch) p.resolve(written.get(p.row.id));
    } catch (error) {
      // Alone, or a connection error, lock or statement timeout (the caller retries it whole): passed on as it is.
      if (batch.length === 1 || isRetryableDatabaseError(error)) {
        for (const p of batch) p.reject(error);
        return;
      }
      // Refused as a statement: find which row by writing each alone.
      await Promise.all(batch.map((p) => this.execute([p.row]).then((w) => p.resolve(w.get(p.row.id)), p.reject)));
    }
  }
}

/** One column of a batch as a PostgreSQL array literal (knex would spread a JS array into placeholders; booleans as text). */
export function columnOf<Row>(rows: readonly Row[], pick: (row: Row) => string | number | boolean | null): string {
  return pgArray(
    rows.map((r) => {
      const v = pick(r);
      return typeof v === 'boolean' ? String(v) : v;
    }),
  );
}
