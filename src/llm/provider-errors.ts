/**
 * What a failed provider call means: `ProviderCallError` with a small, closed
 * set of reasons (`ProviderErrorReason` in src/errors.ts) whose messages are
 * safe to show to users, and `classifyProviderError`, which turns whatever a
 * provider call throws into one.
 */
import type * as Ai from 'ai';
import type { ProviderErrorReason } from '../errors';
import { isEgressDenied } from './egress';
import type { ProviderName } from './model-id';

/** How messages name each provider. */
export const PROVIDER_LABELS: Record<ProviderName, string> = {
  openai: 'OpenAI',
  anthropic: 'Anthropic',
  google: 'Google Gemini',
  mistral: 'Mistral',
  azure: 'Azure OpenAI',
  openai_compatible: 'The OpenAI-compatible endpoint',
};

/**
 * A provider call failed. `message` is short, human readable and safe to show
 * to users: it never contains the API key nor the provider's response body.
 * The original error is kept as `cause` for server-side logs only (it can hold
 * the prompt in `requestBodyValues`).
 */
export class ProviderCallError extends Error {
  override name = 'ProviderCallError';
  /** HTTP status the provider answered, when there was one. */
  readonly statusCode?: number;
  /** A 429's `Retry-After`, in milliseconds, when the provider sent one (seconds or an HTTP date). */
  readonly retryAfterMs?: number;

  constructor(
    readonly provider: ProviderName,
    readonly reason: ProviderErrorReason,
    message: string,
    options?: { cause?: unknown; statusCode?: number; retryAfterMs?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.statusCode = options?.statusCode;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/**
 * Maps anything a provider call can throw (or put in a stream `error` part) to
 * a `ProviderCallError`:
 * - a connection the egress policy refused (the user's baseUrl points at a
 *   private, loopback, link-local or metadata address) → BAD_REQUEST
 * - `opts.timedOut` (the caller's own timer fired), AbortError / TimeoutError,
 *   HTTP 408 / 504 / 524, socket timeouts → TIMEOUT
 * - HTTP 401 / 403, missing key (LoadAPIKeyError), Gemini's 400 API_KEY_INVALID → AUTH
 * - HTTP 429 → RATE_LIMIT
 * - HTTP 5xx, connection refused / reset, unparseable responses → UNAVAILABLE
 * - other HTTP 4xx → BAD_REQUEST
 * `RetryError` is unwrapped to its `lastError`, `NoOutputGeneratedError` to its cause.
 * In-stream error frames (plain objects such as Anthropic's `{ type: 'overloaded_error' }`)
 * are classified by their type / code. A `ProviderCallError` is returned unchanged.
 *
 * `streamCompletion` classifies what the provider model's `doStream` throws (an
 * HTTP error: `APICallError`) and the `error` parts of its stream. (With
 * `streamText`, classify the `error` part of `fullStream`: on an HTTP error
 * `result.text` rejects with a `NoOutputGeneratedError` that has no cause, →
 * UNAVAILABLE here.)
 */
export function classifyProviderError(provider: ProviderName, error: unknown, opts: { timedOut?: boolean } = {}): ProviderCallError {
  if (error instanceof ProviderCallError) return error;
  // Required on the first failure, not imported: `ai` (with zod) is a large part of the app's module-load CPU.
  const { APICallError, LoadAPIKeyError } = require('ai') as typeof Ai;
  const root = unwrap(error);
  const retryAfterMs = APICallError.isInstance(root) ? parseRetryAfter(root.responseHeaders?.['retry-after']) : undefined;
  const make = (reason: ProviderErrorReason, statusCode?: number, detail?: string) =>
    new ProviderCallError(provider, reason, describeFailure(provider, reason, statusCode, detail), {
      cause: error,
      statusCode,
      retryAfterMs,
    });

  if (isEgressDenied(root)) {
    return make(
      'BAD_REQUEST',
      undefined,
      'base URL points to a private, loopback, link-local or metadata address, which this server does not call',
    );
  }
  if (opts.timedOut || isTimeoutError(root)) return make('TIMEOUT');
  if (APICallError.isInstance(root)) {
    if (root.statusCode === undefined) return make('UNAVAILABLE', undefined, 'could not be reached');
    return make(reasonForApiCallError(provider, root), root.statusCode);
  }
  if (LoadAPIKeyError.isInstance(root)) return make('AUTH', undefined, 'no API key was provided');
  if (isConnectionError(root)) return make('UNAVAILABLE', undefined, 'could not be reached');
  const frameReason = reasonForErrorFrame(root);
  if (frameReason) return make(frameReason);
  return make('UNAVAILABLE', undefined, 'returned an unexpected response');
}

/** `Retry-After` as milliseconds from now: delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Reason for an HTTP status alone (used for plain-fetch calls too). */
export function reasonForStatus(status: number): ProviderErrorReason {
  if (status === 401 || status === 403) return 'AUTH';
  if (status === 429) return 'RATE_LIMIT';
  if (status === 408 || status === 504 || status === 524) return 'TIMEOUT';
  if (status >= 500) return 'UNAVAILABLE';
  return 'BAD_REQUEST';
}

function reasonForApiCallError(provider: ProviderName, error: Ai.APICallError): ProviderErrorReason {
  // Gemini answers an invalid key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
  if (provider === 'google' && error.statusCode === 400 && /API_KEY_INVALID|API key not valid/i.test(JSON.stringify(error.data ?? ''))) {
    return 'AUTH';
  }
  return reasonForStatus(error.statusCode!);
}

function unwrap(error: unknown): unknown {
  const { NoOutputGeneratedError, RetryError } = require('ai') as typeof Ai;
  let current = error;
  for (let depth = 0; depth < 5; depth++) {
    if (RetryError.isInstance(current)) current = current.lastError;
    else if (NoOutputGeneratedError.isInstance(current) && current.cause !== undefined) current = current.cause;
    else break;
  }
  return current;
}

const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'EHOSTUNREACH', 'UND_ERR_SOCKET']);

// Checked by name, not `instanceof`: fetch's DOMException / TypeError can come from another realm (e.g. Jest's VM).
function isTimeoutError(error: unknown): boolean {
  if (['AbortError', 'TimeoutError', 'ResponseAborted'].includes(stringProp(error, 'name') ?? '')) return true;
  return causeChain(error).some((e) => TIMEOUT_CODES.has(stringProp(e, 'code') ?? ''));
}

function isConnectionError(error: unknown): boolean {
  if (stringProp(error, 'name') === 'TypeError' && /fetch failed|failed to fetch|terminated/i.test(stringProp(error, 'message') ?? '')) {
    return true;
  }
  return causeChain(error).some((e) => CONNECTION_CODES.has(stringProp(e, 'code') ?? ''));
}

function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = error; e != null && chain.length < 8 && !chain.includes(e); e = (e as { cause?: unknown }).cause) {
    chain.push(e);
  }
  return chain;
}

function stringProp(value: unknown, key: 'name' | 'code' | 'message'): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const prop = (value as Record<string, unknown>)[key];
  return typeof prop === 'string' ? prop : undefined;
}

const FRAME_PATTERNS: Array<[RegExp, ProviderErrorReason]> = [
  [/auth|permission|invalid_api_key|unauthenticated/i, 'AUTH'],
  [/rate_limit|rate-limit|quota|resource_exhausted|too_many/i, 'RATE_LIMIT'],
  [/timeout|deadline/i, 'TIMEOUT'],
  [/overloaded|server_error|api_error|internal|unavailable/i, 'UNAVAILABLE'],
  [/invalid_request|not_found|invalid_argument|context_length/i, 'BAD_REQUEST'],
];

/** Classifies a streamed error frame such as `{ type: 'overloaded_error', message }` or `{ error: { type, code } }`. */
function reasonForErrorFrame(error: unknown): ProviderErrorReason | undefined {
  if (error === null || typeof error !== 'object' || 'stack' in error) return undefined;
  const frame = error as Record<string, unknown>;
  const inner = (frame.error && typeof frame.error === 'object' ? frame.error : frame) as Record<string, unknown>;
  const status = [inner.code, inner.status].find((v) => typeof v === 'number' && v >= 400) as number | undefined;
  if (status !== undefined) return reasonForStatus(status);
  const tags = [inner.type, inner.code, inner.status].filter((v) => typeof v === 'string').join(' ');
  return FRAME_PATTERNS.find(([pattern]) => pattern.test(tags))?.[1];
}

/** A user-safe message for a failed call: `detail`, else one per reason; the HTTP status when there was one. */
export function describeFailure(provider: ProviderName, reason: ProviderErrorReason, statusCode?: number, detail?: string): string {
  const label = PROVIDER_LABELS[provider];
  const suffix = statusCode === undefined ? '' : ` (HTTP ${statusCode})`;
  if (detail) return `${label} ${detail}${suffix}`;
  switch (reason) {
    case 'AUTH':
      return `${label} rejected the API key${suffix}`;
    case 'RATE_LIMIT':
      return `${label} rate limit or quota exceeded${suffix}`;
    case 'TIMEOUT':
      return `${label} did not respond in time${suffix}`;
    case 'UNAVAILABLE':
      return `${label} is unavailable${suffix}`;
    case 'BAD_REQUEST':
      return `${label} rejected the request${suffix}`;
  }
}
