/**
 * Every error a client sees carries one of the contract's codes. AppErrors
 * pass through; GraphQL/Apollo request errors are mapped; anything else is an
 * internal error whose message, stack and SQL never leave the server in
 * production (it is logged with the request id by `plugins/observability.ts`).
 */
import type { GraphQLFormattedError } from 'graphql';
import { GraphQLError } from 'graphql';
import { isBusyError, isConnectionError } from '../db/connection-errors';
import { DEADLINE_MESSAGE, isDeadlineError } from '../db/request-deadline';
import { AppError, type ErrorCode } from '../errors';

/** A validation-rule error that should reach the client as QUERY_TOO_COMPLEX. */
export class QueryTooComplexError extends GraphQLError {
  constructor(message: string) {
    super(message, { extensions: { code: 'QUERY_TOO_COMPLEX' } });
  }
}

/** Errors from the pool or the driver that mean "retry later", not "bug" (see `db/connection-errors.ts`). */
export const isUnavailableError = isConnectionError;

function rootCause(error: unknown): unknown {
  let current = error;
  for (let i = 0; i < 5; i++) {
    if (current instanceof AppError || current instanceof QueryTooComplexError) return current;
    const next = (current as { originalError?: unknown } | null)?.originalError;
    if (!next || next === current) break;
    current = next;
  }
  return current;
}

/** Codes Apollo/type-graphql produce for a bad request, mapped into the contract's closed set. */
function requestErrorCode(code: unknown): ErrorCode | null {
  switch (code) {
    case 'GRAPHQL_PARSE_FAILED':
    case 'GRAPHQL_VALIDATION_FAILED':
      return 'GRAPHQL_VALIDATION_FAILED';
    case 'BAD_USER_INPUT':
    case 'BAD_REQUEST':
    case 'OPERATION_RESOLUTION_FAILURE':
    case 'PERSISTED_QUERY_NOT_SUPPORTED':
      return 'BAD_USER_INPUT';
    case 'PERSISTED_QUERY_NOT_FOUND':
      return 'PERSISTED_QUERY_NOT_FOUND';
    default:
      return null;
  }
}

/**
 * Apollo rejects some requests with a code-less GraphQLError that carries an
 * HTTP 4xx (e.g. APQ's "provided sha does not match query", an unsupported
 * persisted-query version): the client's mistake, not an internal error.
 */
function isCodelessClientError(error: unknown): boolean {
  if (!(error instanceof GraphQLError) || error.extensions.code !== undefined) return false;
  const status = (error.extensions.http as { status?: unknown } | undefined)?.status;
  return typeof status === 'number' && status >= 400 && status < 500;
}

export interface ClassifiedError {
  formatted: GraphQLFormattedError;
  /** True when the error is a bug/outage the server must log with the request id. */
  internal: boolean;
}

/**
 * graphql-js's own work limits: the parser's token and comment limits
 * ("more that" is graphql 16.15's spelling), and the validation work budgets
 * (overlapping fields, fragment expansion) that abort with "Validation
 * aborted." — limits, not syntax or schema errors.
 */
const PARSE_LIMIT = /^Syntax Error: (Document contains more th(?:an|at) \d+ (tokens|comments)\. Parsing aborted\.)$/;
const VALIDATION_BUDGET = 'Validation aborted.';

/** graphql-js / Apollo suggestions name fields, types and enum values: the schema, mapped without introspection. */
export function withoutSuggestions(message: string): string {
  return message.replace(/ ?Did you mean .+\?$/s, '');
}

export function classifyError(formatted: GraphQLFormattedError, error: unknown, production: boolean): ClassifiedError {
  const cause = rootCause(error);
  const message = production ? withoutSuggestions(formatted.message) : formatted.message;
  const base = { message, locations: formatted.locations, path: formatted.path };
  const parseLimit = PARSE_LIMIT.exec(formatted.message);
  if (parseLimit || formatted.message === VALIDATION_BUDGET) {
    const reason = parseLimit
      ? parseLimit[1]!.replace('more that', 'more than')
      : 'Validation stopped: the document is over a limit or too complex to validate';
    return { formatted: { ...base, message: reason, extensions: { code: 'QUERY_TOO_COMPLEX' } }, internal: false };
  }
  if (cause instanceof AppError || cause instanceof QueryTooComplexError) {
    const code = cause.extensions.code as ErrorCode;
    // `http` is Apollo's instruction for the response status and headers, not something to show.
    const { code: _c, http: _h, ...rest } = cause.extensions;
    return { formatted: { ...base, message: cause.message, extensions: { ...rest, code } }, internal: false };
  }
  const mapped = requestErrorCode(formatted.extensions?.code) ?? (isCodelessClientError(cause) ? 'BAD_USER_INPUT' : null);
  if (mapped) return { formatted: { ...base, extensions: { code: mapped } }, internal: false };
  if (isDeadlineError(cause)) {
    // REQUEST_DEADLINE_MS: the request's statements together ran out of time (a statement cancelled at it, or not sent).
    return { formatted: { ...base, message: DEADLINE_MESSAGE, extensions: { code: 'SERVICE_UNAVAILABLE' } }, internal: true };
  }
  if (isBusyError(cause)) {
    // A lock held elsewhere (lock_timeout) or a statement over statement_timeout: busy, not broken.
    return {
      formatted: {
        ...base,
        message: 'The database is busy (a lock or statement timeout), retry later',
        extensions: { code: 'SERVICE_UNAVAILABLE' },
      },
      internal: true,
    };
  }
  if (isUnavailableError(cause)) {
    return {
      formatted: { ...base, message: 'The database is unavailable, retry later', extensions: { code: 'SERVICE_UNAVAILABLE' } },
      internal: true,
    };
  }
  return {
    formatted: {
      ...base,
      message: production ? 'Internal server error' : formatted.message,
      extensions: { code: 'INTERNAL_SERVER_ERROR' },
    },
    internal: true,
  };
}
