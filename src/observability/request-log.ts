/**
 * One log line per HTTP request, for a person reading the logs:
 *
 *   POST /graphql History 200 12.4ms sql=5 cache=MISS user=3f2c…
 *
 * with the same facts as fields (method, path, operation, status, durationMs,
 * sql, cache, userId, requestId). Never variables, headers or bodies.
 *
 * The facts are gathered while the request runs through its request-scope slot
 * record: `countStatement` (fed by the query observer) counts the SQL sent on
 * the request's behalf, `noteOperation` / `noteUser` are called where the
 * operation name and the principal become known. `cache` is the `x-cache`
 * response header (HIT / MISS), absent when the response cache was not asked.
 * /health and /metrics (probes and scrapes) log at debug level.
 */
import { ScopeSlot } from '../request-scope';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import type { Logger } from './logger';

interface RequestRecord {
  /** Order in which requests started (tests tell a request's SQL from an earlier request's trailing work). */
  seq: number;
  sql: number;
  operation?: string;
  userId?: string;
}

const storage = new ScopeSlot<RequestRecord>('request log');
let requests = 0;

/** Runs `fn` (the request's handling) with a fresh record, and logs the line when the response ends. */
export function withRequestLog<T>(logger: Logger, req: IncomingMessage, res: ServerResponse, requestId: string, fn: () => T): T {
  const record: RequestRecord = { seq: ++requests, sql: 0 };
  const start = process.hrtime.bigint();
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  let logged = false;
  const log = () => {
    if (logged) return;
    logged = true;
    const durationMs = Math.round(Number(process.hrtime.bigint() - start) / 1e5) / 10;
    const cache = res.getHeader('x-cache');
    const fields = {
      requestId,
      method: req.method,
      path,
      ...(record.operation ? { operation: record.operation } : {}),
      status: res.statusCode,
      durationMs,
      sql: record.sql,
      ...(typeof cache === 'string' ? { cache } : {}),
      ...(record.userId ? { userId: record.userId } : {}),
      ...(res.writableFinished ? {} : { aborted: true }),
    };
    const message = [
      req.method,
      path,
      record.operation,
      res.statusCode,
      `${durationMs}ms`,
      `sql=${record.sql}`,
      typeof cache === 'string' ? `cache=${cache}` : undefined,
      record.userId ? `user=${record.userId}` : undefined,
      res.writableFinished ? undefined : '(client went away)',
    ]
      .filter((part) => part !== undefined && part !== '')
      .join(' ');
    if (path === '/health' || path === '/metrics') logger.debug(fields, message);
    else logger.info(fields, message);
  };
  res.once('finish', log);
  res.once('close', log);
  return storage.run(record, fn);
}

/** Counts one SQL statement for the request running now (none outside a request). */
export function countStatement(): void {
  const record = storage.get();
  if (record) record.sql++;
}

/**
 * Where the code running now stands in the order of requests: the sequence number of
 * the request it runs for (work a request left running keeps its request's number),
 * undefined outside any request. `requestsStarted()` is the number of the latest.
 */
export function currentRequestSeq(): number | undefined {
  return storage.get()?.seq;
}

export function requestsStarted(): number {
  return requests;
}

/** The GraphQL operation name of the request running now (the first one named wins). */
export function noteOperation(name: string | null | undefined): void {
  const record = storage.get();
  if (record && name && !record.operation) record.operation = name.slice(0, 100);
}

/** The signed-in user of the request running now. */
export function noteUser(userId: string | null | undefined): void {
  const record = storage.get();
  if (record && userId) record.userId = userId;
}

/** Notes the operation name Apollo resolved (also for documents sent without `operationName`). */
export function requestLogPlugin(): ApolloServerPlugin<BaseContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation(rc) {
          noteOperation(rc.operationName ?? rc.operation?.operation);
        },
      };
    },
  };
}
