/**
 * Errors from the pool or the driver that mean "the database cannot be
 * reached right now, retry later" rather than "this statement is wrong":
 * pool acquire timeouts, refused / reset / terminated connections, and the
 * server's own "shutting down" / "too many connections" refusals, and knex's
 * "Transaction query already complete" (a statement sent on a transaction its
 * broken connection already ended). They answer SERVICE_UNAVAILABLE, and the
 * comparison runner retries its final writes on them.
 */
const MESSAGES = new RegExp(
  'Timeout acquiring a connection|Transaction query already complete|Client was closed and is not queryable|pool is probably full|' +
    'Connection terminated|connection timeout|Client has encountered a connection error|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|' +
    'the database system is (starting up|shutting down|in recovery mode)|terminating connection due to administrator command',
  'i',
);

/** SQLSTATE class 08 (connection exception), 57P01..03 (shutdown / cannot connect now), 53300 (too many connections). */
const SQLSTATES = /^(08\d{3}|57P0[1-3]|53300)$/;
const ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

/**
 * "Busy", not broken: 55P03 lock_not_available (`lock_timeout`: a row or table
 * held by another session), 57014 query_canceled (`statement_timeout`), and the
 * transaction rolled back for another's sake: 40P01 deadlock_detected (two
 * batched settles adding to the same usage rollup rows in opposite orders) and
 * 40001 serialization_failure. Nothing of the statement was kept, so it is
 * retried like connection errors by the runner's final write (never stored as a
 * failure); SERVICE_UNAVAILABLE to clients.
 */
const BUSY_SQLSTATES = new Set(['55P03', '57014', '40P01', '40001']);

export function isBusyError(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 4; depth++) {
    if (BUSY_SQLSTATES.has(String((current as { code?: unknown }).code ?? ''))) return true;
    current = (current as { cause?: unknown; previous?: unknown }).cause ?? (current as { previous?: unknown }).previous;
  }
  return false;
}

/** Retry later: the connection failed, or a lock / statement timeout cancelled the statement. */
export function isRetryableDatabaseError(error: unknown): boolean {
  return isConnectionError(error) || isBusyError(error);
}

export function isConnectionError(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 4; depth++) {
    const message = current instanceof Error ? current.message : '';
    const code = String((current as { code?: unknown }).code ?? '');
    if (MESSAGES.test(message) || SQLSTATES.test(code) || ERRNOS.has(code)) return true;
    if (current instanceof AggregateError && current.errors.some((e) => isConnectionError(e))) return true;
    current = (current as { cause?: unknown; previous?: unknown }).cause ?? (current as { previous?: unknown }).previous;
  }
  return false;
}
