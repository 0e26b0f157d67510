/**
 * The closed set of error codes clients rely on (`extensions.code`), and the
 * one error class services throw. `formatError` (see `graphql/format-error.ts`)
 * passes an `AppError` through and masks everything else in production.
 */
import { GraphQLError } from 'graphql';

export const ERROR_CODES = [
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'BAD_USER_INPUT',
  'GRAPHQL_VALIDATION_FAILED',
  'PERSISTED_QUERY_NOT_FOUND',
  'QUERY_TOO_COMPLEX',
  'RESPONSE_TOO_LARGE',
  'RATE_LIMITED',
  'BUDGET_EXCEEDED',
  'VOTE_LIMIT_REACHED',
  'VOTE_CHANGE_WINDOW_CLOSED',
  'COMPARISON_NOT_SETTLED',
  'JUDGE_FAILED',
  'SERVICE_UNAVAILABLE',
  'CACHE_UNAVAILABLE',
  'PROVIDER_ERROR',
  'INTERNAL_SERVER_ERROR',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export type ProviderErrorReason = 'AUTH' | 'RATE_LIMIT' | 'TIMEOUT' | 'UNAVAILABLE' | 'BAD_REQUEST';

export class AppError extends GraphQLError {
  constructor(
    readonly code: ErrorCode,
    message: string,
    extensions: Record<string, unknown> = {},
  ) {
    super(message, { extensions: { ...extensions, code } });
    this.name = 'AppError';
  }
}

export const notFound = (what: string) => new AppError('NOT_FOUND', `${what} not found`);
export const badInput = (message: string, field?: string) => new AppError('BAD_USER_INPUT', message, field ? { field } : {});

/** RATE_LIMITED with `extensions.retryAfterSeconds` (whole requests answer 429 with `Retry-After`). */
export const rateLimited = (retryAfterSeconds: number, message: string) => new AppError('RATE_LIMITED', message, { retryAfterSeconds });
