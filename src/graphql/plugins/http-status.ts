/**
 * HTTP status of GraphQL responses, for clients and proxies that look at the
 * status before the body (decision table; the body always carries the codes):
 *
 * | the request                                         | status | headers                      |
 * | --------------------------------------------------- | ------ | ---------------------------- |
 * | an invalid, forged or expired token (context)       | 401    | `WWW-Authenticate: Bearer …` |
 * | failed as a whole, every error UNAUTHENTICATED      | 401    | `WWW-Authenticate: Bearer`   |
 * | failed as a whole, every error FORBIDDEN            | 403    |                              |
 * | failed as a whole, every error SERVICE_UNAVAILABLE  | 503    | `Retry-After`                |
 * | failed as a whole, every error RATE_LIMITED         | 429    | `Retry-After` (the longest `retryAfterSeconds`) |
 * | failed as a whole, every error BUDGET_EXCEEDED      | 429    | `Retry-After` until `resetsAt`, when known |
 * | a subscription sent to /graphql                     | 400    |                              |
 * | anything else, partial results included             | Apollo's (200 when executed)  |
 *
 * "Failed as a whole": no root field produced a value (`data` absent, null,
 * or every root field null). A partial result stays 200: the client has data
 * to show, and the errors name the fields that failed.
 *
 * The token row is decided where the token is read (`auth/tokens.ts` puts the
 * status on the error through Apollo's `extensions.http`); this plugin does
 * the rest after execution.
 */
import type { ApolloServerPlugin, GraphQLRequestContextWillSendResponse } from '@apollo/server';
import type { GraphQLFormattedError } from 'graphql';
import { BEARER_CHALLENGE } from '../../auth/tokens';
import type { GraphqlContext } from '../context';
import { AppError, type ErrorCode } from '../../errors';

/** Seconds a client should wait before retrying a request that failed with SERVICE_UNAVAILABLE. */
export const RETRY_AFTER_SECONDS = 2;

type Headers = Array<[string, string]>;

const WHOLE_REQUEST_STATUS: Partial<
  Record<ErrorCode, { status: number; headers: Headers | ((errors: readonly GraphQLFormattedError[]) => Headers) }>
> = {
  UNAUTHENTICATED: { status: 401, headers: [['www-authenticate', BEARER_CHALLENGE]] },
  FORBIDDEN: { status: 403, headers: [] },
  SERVICE_UNAVAILABLE: { status: 503, headers: [['retry-after', String(RETRY_AFTER_SECONDS)]] },
  RATE_LIMITED: { status: 429, headers: (errors) => retryAfter(errors.map((e) => Number(e.extensions?.retryAfterSeconds))) },
  VOTE_LIMIT_REACHED: { status: 429, headers: (errors) => retryAfter(errors.map((e) => Number(e.extensions?.retryAfterSeconds))) },
  BUDGET_EXCEEDED: {
    status: 429,
    headers: (errors) => retryAfter(errors.map((e) => Math.ceil((Date.parse(String(e.extensions?.resetsAt)) - Date.now()) / 1000))),
  },
};

/** `Retry-After` with the longest of the known waits (at least 1 s); none when no wait is known. */
function retryAfter(seconds: number[]): Headers {
  const known = seconds.filter((s) => Number.isFinite(s));
  return known.length ? [['retry-after', String(Math.max(1, ...known))]] : [];
}

export function httpStatusPlugin(): ApolloServerPlugin<GraphqlContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation(rc) {
          if (rc.operation?.operation === 'subscription') {
            throw new AppError(
              'BAD_USER_INPUT',
              'Subscriptions are served over Server-Sent Events at /graphql/stream: send this operation there',
              {
                http: { status: 400 },
              },
            );
          }
        },
        async willSendResponse(rc) {
          applyWholeRequestStatus(rc);
        },
      };
    },
  };
}

function applyWholeRequestStatus(rc: GraphQLRequestContextWillSendResponse<GraphqlContext>): void {
  const body = rc.response.body;
  if (body.kind !== 'single') return;
  const { data, errors } = body.singleResult;
  if (!errors?.length || !failedAsAWhole(data)) return;
  const code = commonCode(errors);
  const mapping = code ? WHOLE_REQUEST_STATUS[code] : undefined;
  if (!mapping) return;
  rc.response.http.status = mapping.status;
  const headers = typeof mapping.headers === 'function' ? mapping.headers(errors) : mapping.headers;
  for (const [name, value] of headers) rc.response.http.headers.set(name, value);
}

function failedAsAWhole(data: Record<string, unknown> | null | undefined): boolean {
  return data == null || Object.values(data).every((value) => value === null);
}

function commonCode(errors: readonly GraphQLFormattedError[]): ErrorCode | undefined {
  const codes = new Set(errors.map((e) => e.extensions?.code));
  return codes.size === 1 ? ([...codes][0] as ErrorCode) : undefined;
}
