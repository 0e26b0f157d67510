/**
 * What every subscription transport does before and while a stream runs, one
 * implementation for SSE (`sse.ts`) and WebSocket (`ws.ts`): the document
 * parsed and validated with the document limits (kept per query text for
 * signed-in callers), subscriptions only, the operation's cost with its
 * variables, the personal token's scopes; then executed with the compiled
 * subscription (graphql-jit, kept per document for signed-in callers) or
 * graphql-js, and its errors formatted like every other answer's.
 */
import {
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type FormattedExecutionResult,
  getOperationAST,
  GraphQLError,
  type GraphQLSchema,
  subscribe,
} from 'graphql';
import type { Principal } from '../auth/principal';
import type { TokenAccessPolicy } from '../auth/token-scopes';
import { AppError } from '../errors';
import { LruMap } from '../lru-map';
import { documentWeight } from './document-cache';
import type { DocumentGuard } from './document-limits';
import { classifyError, QueryTooComplexError } from './format-error';
import { jitSubscribe } from './jit-executor';
import { type PersistedDocuments, sha256Hex } from './plugins/persisted-documents';

export interface SubscriptionDeps {
  schema: GraphQLSchema;
  production: boolean;
  guard: DocumentGuard;
  /** Personal tokens' scopes (`auth/token-scopes.ts`): checked before a stream opens. */
  tokenScopes: TokenAccessPolicy;
  /** `jit`: each event is completed by code compiled once per document; `graphql-js`: the reference executor. */
  executor: 'jit' | 'graphql-js';
  /** Bytes (estimated) of subscription documents kept: their share of `DOCUMENT_CACHE_MB` (3/4 compiled, 1/4 parsed). */
  compiledSubscriptionBytes: number;
  /** `TRUSTED_DOCUMENTS_ONLY`: only the manifest's documents run, here as on `/graphql` (`persistedDocumentsPlugin`). */
  trusted?: { documents: PersistedDocuments; trustedOnly: boolean };
}

export interface SubscriptionRequest {
  query: string | DocumentNode;
  operationName?: string | null;
  variables?: Record<string, unknown> | null;
}

/** A document ready to run, or why not (`status`: what an HTTP transport answers). */
export type Prepared =
  | { ok: true; document: DocumentNode; operationName: string | undefined }
  | { ok: false; errors: readonly GraphQLError[]; status: 400 | 403 };

/** graphql-js errors without a code are the client's document errors. */
function asRequestError(error: unknown, code: 'GRAPHQL_PARSE_FAILED' | 'GRAPHQL_VALIDATION_FAILED'): GraphQLError {
  if (error instanceof AppError || error instanceof QueryTooComplexError) return error;
  if (error instanceof GraphQLError && error.extensions.code === undefined) {
    return new GraphQLError(error.message, {
      nodes: error.nodes,
      source: error.source,
      positions: error.positions,
      originalError: error.originalError,
      extensions: { ...error.extensions, code },
    });
  }
  return error instanceof GraphQLError ? error : new GraphQLError('Bad request', { extensions: { code: 'BAD_REQUEST' } });
}

export class Subscriptions {
  private readonly compiled: ReturnType<typeof jitSubscribe> | undefined;
  /** Signed-in callers' documents that parsed and validated, by query text: a burst of subscriptions validates each once. */
  private readonly validated: LruMap<string, DocumentNode>;
  /**
   * The query text of each signed-in caller's prepared document. The compiled subscription's key is this text with
   * the operation name of the run (`subscribe`'s args), never a name stored on the document: one document object is
   * shared by every request with that text (`validated`), so a name stored here would be the last one prepared.
   */
  private readonly texts = new WeakMap<DocumentNode, string>();

  constructor(private readonly deps: SubscriptionDeps) {
    this.compiled = deps.executor === 'jit' ? jitSubscribe(Math.floor((deps.compiledSubscriptionBytes * 3) / 4)) : undefined;
    this.validated = new LruMap<string, DocumentNode>(Number.MAX_SAFE_INTEGER, {
      maxWeight: Math.floor(deps.compiledSubscriptionBytes / 4),
      weigh: (_document, query) => documentWeight(query.length),
    });
  }

  get schema(): GraphQLSchema {
    return this.deps.schema;
  }

  /** Compiled subscription documents kept and their estimated bytes. */
  kept(): { documents: number; bytes: number } {
    return this.compiled?.kept() ?? { documents: 0, bytes: 0 };
  }

  /** Checks a subscription request (`where`: the transport, named in the error for queries and mutations). */
  prepare(request: SubscriptionRequest, principal: Principal | null, where: string): Prepared {
    const { deps } = this;
    if (deps.trusted?.trustedOnly && (typeof request.query !== 'string' || !deps.trusted.documents.has(sha256Hex(request.query)))) {
      const message = 'This server only runs trusted documents: send an operation from the persisted documents manifest';
      return { ok: false, errors: [new AppError('FORBIDDEN', message)], status: 403 };
    }
    const text = typeof request.query === 'string' && principal ? request.query : undefined;
    let document = text === undefined ? undefined : this.validated.get(text);
    if (!document) {
      try {
        document = typeof request.query === 'string' ? deps.guard.parse(request.query) : request.query;
      } catch (error) {
        return { ok: false, errors: [asRequestError(error, 'GRAPHQL_PARSE_FAILED')], status: 400 };
      }
      const invalid = deps.guard.validate(deps.schema, document);
      if (invalid.length) return { ok: false, errors: invalid.map((e) => asRequestError(e, 'GRAPHQL_VALIDATION_FAILED')), status: 400 };
      if (text !== undefined) this.validated.set(text, document);
    }
    const operationName = request.operationName ?? undefined;
    const operation = getOperationAST(document, operationName);
    if (operation?.operation !== 'subscription') {
      const message = `Only subscriptions are served at ${where}; send queries and mutations to /graphql`;
      return { ok: false, errors: [new AppError('BAD_USER_INPUT', message)], status: 400 };
    }
    try {
      deps.guard.checkOperation(deps.schema, document, operationName, request.variables ?? undefined);
    } catch (error) {
      return { ok: false, errors: [asRequestError(error, 'GRAPHQL_VALIDATION_FAILED')], status: 400 };
    }
    // A missing token is reported by the resolver as UNAUTHENTICATED; a token's scopes are checked here.
    try {
      deps.tokenScopes.check(principal, undefined, document, operation);
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      return { ok: false, errors: [error], status: 403 };
    }
    // Compiled (and kept) for signed-in callers only: anonymous documents cost no compiled code.
    if (text !== undefined) this.texts.set(document, text);
    return { ok: true, document, operationName };
  }

  /** Runs a prepared document. */
  subscribe(args: ExecutionArgs): ReturnType<ReturnType<typeof jitSubscribe>> | ReturnType<typeof subscribe> {
    if (!this.compiled) return subscribe(args);
    const text = this.texts.get(args.document);
    return this.compiled(args, text === undefined ? undefined : `${args.operationName ?? ''}\n${text}`);
  }

  /** An event's errors formatted like every other answer's (codes, masking in production). */
  format(result: ExecutionResult): ExecutionResult | FormattedExecutionResult {
    if (!result.errors?.length) return result;
    const errors = result.errors.map((e) => classifyError(e.toJSON(), e, this.deps.production).formatted);
    return { ...result, errors };
  }

  /** Errors of a refused request, formatted. */
  formatErrors(errors: readonly GraphQLError[]) {
    return errors.map((e) => classifyError(e.toJSON(), e, this.deps.production).formatted);
  }
}

/** Longest delay a timer takes (about 24.8 days); a credential living longer outlives any stream. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Calls `end` when the principal's credential expires (a timer), unless that is beyond any stream's life. */
export function untilExpiry(principal: Principal | null, end: () => void): NodeJS.Timeout | undefined {
  if (principal?.expiresAt === undefined) return undefined;
  const delay = principal.expiresAt - Date.now();
  return delay > MAX_TIMER_MS ? undefined : setTimeout(end, Math.max(0, delay));
}
