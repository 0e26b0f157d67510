/**
 * A MikroORM `Logger` that sees every SQL statement the ORM sends (including
 * BEGIN/COMMIT), with its duration. It feeds:
 *  - the slow-query log (statements slower than `slowQueryMs`, literals masked),
 *  - the `llmselect_db_query_duration_seconds` histogram (via `onQuery` listeners),
 *  - the tests' SQL statement counter.
 * Raw SQL must go through `em.getConnection().execute()` (or `prepared.ts`,
 * which reports to {@link QueryObserver.observe}) so it is observed too.
 */
import type { LogContext, Logger as OrmLogger, LoggerNamespace } from '@mikro-orm/core';
import type { Logger } from '../observability/logger';
import { recordSpan, recordingSpans } from '../observability/tracing';
import { LruMap } from '../lru-map';

export type QueryListener = (sql: string, tookMs: number, failed: boolean) => void;

/** Replaces string literals so slow-query logs never carry user data or secrets. */
export function maskSqlLiterals(sql: string): string {
  return sql
    .replace(/'(?:[^']|'')*'/g, "'?'")
    .replace(/\s+/g, ' ')
    .slice(0, 2000);
}

/** Statement texts seen (placeholders, so few distinct ones) → their masked text and operation: masked once, not per run. */
const statementSpans = new LruMap<string, { text: string; operation: string }>(500);

/**
 * A span for one statement, heard after it ran (its start is its end minus its duration), under the
 * active span: the request's, or the background work's. The text has placeholders (the ORM's, `prepared.ts`'s)
 * and its string literals masked; never parameter values. Nothing when the active trace is not sampled.
 */
export function traceStatement(sql: string, tookMs: number, failed: boolean): void {
  if (!recordingSpans()) return;
  let known = statementSpans.get(sql);
  if (!known) {
    const text = maskSqlLiterals(sql);
    known = { text, operation: /^(?:\/\*.*?\*\/\s*)?(\w+)/.exec(text)?.[1]?.toUpperCase() ?? 'SQL' };
    statementSpans.set(sql, known);
  }
  recordSpan(
    known.operation,
    tookMs,
    { 'db.system.name': 'postgresql', 'db.operation.name': known.operation, 'db.query.text': known.text },
    failed,
  );
}

export class QueryObserver implements OrmLogger {
  private readonly listeners = new Set<QueryListener>();
  /**
   * When true, listeners receive SQL with parameter values inlined (tests use
   * it to EXPLAIN real statements). Off by default so values never reach logs.
   */
  inlineParams = false;

  constructor(
    private readonly logger: Logger,
    private readonly slowQueryMs: number,
  ) {}

  /** Adds a listener; returns a function that removes it. */
  onQuery(listener: QueryListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  logQuery(context: LogContext): void {
    this.observe(context.query ?? '', context.took ?? undefined, context.level === 'error');
  }

  /** One statement sent (by the ORM, or by `prepared.ts` outside it) and how long it took. */
  observe(sql: string, tookMs: number | undefined, failed: boolean): void {
    const took = tookMs ?? 0;
    for (const listener of this.listeners) listener(sql, took, failed);
    if (tookMs !== undefined && took >= this.slowQueryMs) {
      this.logger.warn({ tookMs: took, sql: maskSqlLiterals(sql) }, 'slow query');
    }
  }

  log(namespace: string, message: string): void {
    this.logger.debug({ namespace }, message);
  }

  error(namespace: string, message: string): void {
    this.logger.error({ namespace }, maskSqlLiterals(message));
  }

  warn(namespace: string, message: string): void {
    this.logger.warn({ namespace }, maskSqlLiterals(message));
  }

  setDebugMode(): void {}

  isEnabled(namespace: LoggerNamespace): boolean {
    return namespace !== 'query-params' || this.inlineParams;
  }
}
