/**
 * The one place that knows how to talk to each LLM provider: building an AI SDK
 * model from a user's key, listing a provider's models, and turning whatever a
 * provider call throws into a `ProviderCallError` with a small, closed set of
 * reasons whose messages are safe to show to users.
 *
 * URLs the SDK calls (base URL = user's key base URL, else config, else the default):
 * - openai            POST {base}/chat/completions            (`Authorization: Bearer`)
 * - anthropic         POST {base}/messages                    (`x-api-key`, `anthropic-version: 2023-06-01`)
 * - google            POST {base}/models/{m}:generateContent, :streamGenerateContent?alt=sse (`x-goog-api-key`)
 * - mistral           POST {base}/chat/completions            (`Authorization: Bearer`)
 * - openai_compatible POST {base}/chat/completions            (`Authorization: Bearer`, omitted when the key is empty)
 * - azure             POST {base}/chat/completions, deployment name in `body.model` (`api-key`); for
 *                     `*.openai.azure.com/openai` the SDK itself inserts `/v1` and adds `?api-version=v1`.
 */
import { createAnthropic } from '@ai-sdk/anthropic';
import { createAzure } from '@ai-sdk/azure';
import { createGoogleGenerativeAI } from '@ai-sdk/google';
import { createMistral } from '@ai-sdk/mistral';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { APICallError, LoadAPIKeyError, NoOutputGeneratedError, RetryError, type LanguageModel } from 'ai';
import type { ProviderErrorReason } from '../errors';
import { isEgressDenied } from './egress';
import { isSafeModelName, type ProviderName } from './model-id';

// Re-exported so callers need one import; the definitions live in model-id.ts and src/errors.ts.
export type { ProviderErrorReason, ProviderName };

export interface ProviderCredentials {
  apiKey: string;
  /** Per-key endpoint; required for azure and openai_compatible, overrides the configured base URL otherwise. */
  baseUrl?: string | null;
}

/** Operator-configured base URLs (e.g. a proxy, or the fake server in tests). */
export interface ProviderBaseUrls {
  openai?: string;
  anthropic?: string;
  google?: string;
  mistral?: string;
}

/**
 * How calls reach the network. `userFetch` carries every call to an endpoint a
 * user chose (their key's `baseUrl`): the egress-guarded fetch of `egress.ts`.
 * Operator-configured and public endpoints use the global fetch.
 */
export interface ProviderTransport {
  userFetch?: typeof fetch;
}

export const DEFAULT_BASE_URLS: Readonly<Required<ProviderBaseUrls>> = Object.freeze({
  openai: 'https://api.openai.com/v1',
  anthropic: 'https://api.anthropic.com/v1',
  google: 'https://generativelanguage.googleapis.com/v1beta',
  mistral: 'https://api.mistral.ai/v1',
});

/**
 * Pass as `maxRetries` to `streamText` / `generateText`. The SDK's default (2
 * retries, 2 s then 4 s backoff, honouring `retry-after`) would spend most of a
 * comparison's own timeout sleeping, and a retry after a partially streamed
 * answer would duplicate text. A comparison reports a failed model instead;
 * the user can re-run it.
 */
export const LLM_MAX_RETRIES = 0;

const LABELS: Record<ProviderName, string> = {
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

  constructor(
    readonly provider: ProviderName,
    readonly reason: ProviderErrorReason,
    message: string,
    options?: { cause?: unknown; statusCode?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.statusCode = options?.statusCode;
  }
}

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

/**
 * Builds a fresh provider instance per call: keys belong to users, so nothing
 * is cached across calls. OpenAI and Azure use `.chat()` (chat completions, the
 * dialect Ollama / vLLM / Azure also speak), not the Responses API. A base URL
 * is always passed explicitly so the SDK never falls back to `*_BASE_URL` env
 * variables. Throws `ProviderCallError` (BAD_REQUEST) when azure or
 * openai_compatible has no base URL, or a base URL is not http(s).
 */
export function createLanguageModel(
  provider: ProviderName,
  modelName: string,
  creds: ProviderCredentials,
  baseUrls: ProviderBaseUrls,
  transport: ProviderTransport = {},
): LanguageModel {
  const baseURL = resolveBaseUrl(provider, creds, baseUrls);
  const apiKey = creds.apiKey;
  const fetch = fetchFor(creds, transport);
  switch (provider) {
    case 'openai':
      return createOpenAI({ apiKey, baseURL, fetch }).chat(modelName);
    case 'anthropic':
      return createAnthropic({ apiKey, baseURL, fetch })(modelName);
    case 'google':
      return createGoogleGenerativeAI({ apiKey, baseURL, fetch })(modelName);
    case 'mistral':
      return createMistral({ apiKey, baseURL, fetch })(modelName);
    case 'azure':
      return createAzure({ apiKey, baseURL, fetch }).chat(modelName);
    case 'openai_compatible':
      // includeUsage: ask for the final usage chunk when streaming (OpenAI `stream_options.include_usage`).
      return createOpenAICompatible({ name: 'openai_compatible', apiKey, baseURL, includeUsage: true, fetch })(modelName);
    default:
      return assertNever(provider);
  }
}

/** The guarded fetch when the call goes to the user's own endpoint; undefined (global fetch) otherwise. */
function fetchFor(creds: ProviderCredentials, transport: ProviderTransport): typeof fetch | undefined {
  return creds.baseUrl?.trim() ? transport.userFetch : undefined;
}

function resolveBaseUrl(provider: ProviderName, creds: ProviderCredentials, baseUrls: ProviderBaseUrls): string {
  const own = creds.baseUrl?.trim();
  if (own) return validBaseUrl(provider, own);
  if (provider === 'azure' || provider === 'openai_compatible') {
    throw new ProviderCallError(provider, 'BAD_REQUEST', `${LABELS[provider]} key has no base URL`);
  }
  return validBaseUrl(provider, baseUrls[provider] || DEFAULT_BASE_URLS[provider]);
}

function validBaseUrl(provider: ProviderName, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ProviderCallError(provider, 'BAD_REQUEST', `${LABELS[provider]} base URL is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ProviderCallError(provider, 'BAD_REQUEST', `${LABELS[provider]} base URL must use http or https`);
  }
  return raw.replace(/\/+$/, '');
}

function assertNever(value: never): never {
  throw new Error(`Unknown provider: ${String(value)}`);
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

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
 * With `streamText`, classify the `error` part of `fullStream` (or `onError`'s
 * error): on an HTTP error `result.text` rejects with a `NoOutputGeneratedError`
 * that has no cause (→ UNAVAILABLE here), and an error after some output does
 * not reject at all. An abort produces an `abort` part, no `error` part.
 */
export function classifyProviderError(
  provider: ProviderName,
  error: unknown,
  opts: { timedOut?: boolean } = {},
): ProviderCallError {
  if (error instanceof ProviderCallError) return error;
  const root = unwrap(error);
  const make = (reason: ProviderErrorReason, statusCode?: number, detail?: string) =>
    new ProviderCallError(provider, reason, describe(provider, reason, statusCode, detail), { cause: error, statusCode });

  if (isEgressDenied(root)) {
    return make('BAD_REQUEST', undefined, 'base URL points to a private, loopback, link-local or metadata address, which this server does not call');
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

/** Reason for an HTTP status alone (used for plain-fetch calls too). */
export function reasonForStatus(status: number): ProviderErrorReason {
  if (status === 401 || status === 403) return 'AUTH';
  if (status === 429) return 'RATE_LIMIT';
  if (status === 408 || status === 504 || status === 524) return 'TIMEOUT';
  if (status >= 500) return 'UNAVAILABLE';
  return 'BAD_REQUEST';
}

function reasonForApiCallError(provider: ProviderName, error: APICallError): ProviderErrorReason {
  // Gemini answers an invalid key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
  if (provider === 'google' && error.statusCode === 400 && /API_KEY_INVALID|API key not valid/i.test(JSON.stringify(error.data ?? ''))) {
    return 'AUTH';
  }
  return reasonForStatus(error.statusCode!);
}

function unwrap(error: unknown): unknown {
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

function describe(provider: ProviderName, reason: ProviderErrorReason, statusCode?: number, detail?: string): string {
  const label = LABELS[provider];
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

// ---------------------------------------------------------------------------
// Model lists
// ---------------------------------------------------------------------------

/** Safety net against a provider that keeps returning "has more". */
const MAX_PAGES = 20;
/** A model-list page larger than this is refused (OpenRouter's rich list is ~2 MB; 300,000 entries are ~25 MB). */
const MAX_LIST_PAGE_BYTES = 8 * 1024 * 1024;
/** Default for `ListOptions.maxModels`. */
const DEFAULT_MAX_LISTED_MODELS = 1_000;

export interface ListOptions extends ProviderTransport {
  /** Names kept from the list, in the provider's order (`LLM_MAX_LISTED_MODELS`). */
  maxModels?: number;
}

type GetJson = (url: string, headers: Record<string, string>) => Promise<unknown>;

/**
 * Lists the model names a key can use, from the provider's own model-list
 * endpoint (plain `fetch`, one `AbortSignal.timeout(timeoutMs)` for all pages).
 * Returns bare names, as accepted by `createLanguageModel` (Gemini's `models/`
 * prefix stripped), de-duplicated, in the provider's order; entries that are
 * clearly not chat models (embeddings, audio, images) are dropped where the
 * provider says so or, for OpenAI, by name. Names that could not be used in a
 * model id (`isSafeModelName`) are dropped too, and at most `maxModels` are
 * kept; a page over 8 MB is refused (UNAVAILABLE). Throws `ProviderCallError`.
 *
 * - openai / openai_compatible  GET {base}/models                (data[].id)
 * - anthropic                   GET {base}/models?limit=1000     (data[].id; has_more / after_id)
 * - google                      GET {base}/models?pageSize=1000  (models[].name; nextPageToken)
 * - mistral                     GET {base}/models                (data[].id; capabilities.completion_chat)
 * - azure                       GET {v1 base}/models             (data[].id; capabilities.chat_completion).
 *   These are the resource's *models*, not its deployments: the v1 API takes a
 *   deployment name as `model`, and listing deployments needs the ARM API.
 */
export async function listProviderModels(
  provider: ProviderName,
  creds: ProviderCredentials,
  baseUrls: ProviderBaseUrls,
  timeoutMs: number,
  options: ListOptions = {},
): Promise<string[]> {
  const base = resolveBaseUrl(provider, creds, baseUrls);
  const signal = AbortSignal.timeout(timeoutMs);
  const fetchFn = fetchFor(creds, options) ?? fetch;
  const getJson: GetJson = (url, headers) => fetchJson(provider, fetchFn, url, headers, signal);
  const names = await LISTERS[provider](base, creds.apiKey, getJson);
  const safe = names.filter((name) => isSafeModelName(provider, name));
  return [...new Set(safe)].slice(0, options.maxModels ?? DEFAULT_MAX_LISTED_MODELS);
}

async function fetchJson(
  provider: ProviderName,
  fetchFn: typeof fetch,
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<unknown> {
  try {
    const response = await fetchFn(url, { headers: { accept: 'application/json', ...headers }, signal });
    if (!response.ok) {
      await response.body?.cancel().catch(() => undefined);
      const reason = reasonForStatus(response.status);
      throw new ProviderCallError(provider, reason, describe(provider, reason, response.status), {
        statusCode: response.status,
      });
    }
    return JSON.parse(await readTextLimited(provider, response, MAX_LIST_PAGE_BYTES));
  } catch (error) {
    throw classifyProviderError(provider, error, { timedOut: signal.aborted });
  }
}

/** The body as text, refusing (and cancelling) one larger than `maxBytes`. */
async function readTextLimited(provider: ProviderName, response: Response, maxBytes: number): Promise<string> {
  const tooLarge = () =>
    new ProviderCallError(provider, 'UNAVAILABLE', describe(provider, 'UNAVAILABLE', undefined, `returned a model list larger than ${maxBytes / 1024 / 1024} MB`));
  if (Number(response.headers.get('content-length')) > maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw tooLarge();
  }
  if (!response.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > maxBytes) {
      await response.body.cancel().catch(() => undefined);
      throw tooLarge();
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

type Lister = (base: string, apiKey: string, getJson: GetJson) => Promise<string[]>;

const LISTERS: Record<ProviderName, Lister> = {
  openai: async (base, apiKey, getJson) =>
    ids(await getJson(`${base}/models`, bearer(apiKey)), 'data').filter((id) => !NON_CHAT_OPENAI.test(id)),
  openai_compatible: async (base, apiKey, getJson) => ids(await getJson(`${base}/models`, bearer(apiKey)), 'data'),
  mistral: async (base, apiKey, getJson) =>
    items(await getJson(`${base}/models`, bearer(apiKey)), 'data')
      .filter((m) => (m.capabilities as { completion_chat?: unknown } | undefined)?.completion_chat !== false)
      .map((m) => m.id)
      .filter(isString),
  azure: async (base, apiKey, getJson) =>
    items(await getJson(azureV1Url(base, '/models'), { 'api-key': apiKey }), 'data')
      .filter((m) => (m.capabilities as { chat_completion?: unknown } | undefined)?.chat_completion !== false)
      .map((m) => m.id)
      .filter(isString),
  anthropic: listAnthropicModels,
  google: listGoogleModels,
};

/** Embedding, audio, image and moderation models that `/v1/models` mixes in with chat models. */
const NON_CHAT_OPENAI = /embedding|whisper|tts|dall-e|gpt-image|moderation|transcribe|realtime|^davinci|^babbage|^sora/i;

async function listAnthropicModels(base: string, apiKey: string, getJson: GetJson): Promise<string[]> {
  const names: string[] = [];
  let afterId: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const query = new URLSearchParams({ limit: '1000', ...(afterId ? { after_id: afterId } : {}) });
    const body = await getJson(`${base}/models?${query}`, { 'x-api-key': apiKey, 'anthropic-version': '2023-06-01' });
    names.push(...ids(body, 'data'));
    const { has_more: hasMore, last_id: lastId } = (body ?? {}) as { has_more?: unknown; last_id?: unknown };
    if (hasMore !== true || typeof lastId !== 'string') break;
    afterId = lastId;
  }
  return names;
}

async function listGoogleModels(base: string, apiKey: string, getJson: GetJson): Promise<string[]> {
  const names: string[] = [];
  let pageToken: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const query = new URLSearchParams({ pageSize: '1000', ...(pageToken ? { pageToken } : {}) });
    const body = await getJson(`${base}/models?${query}`, { 'x-goog-api-key': apiKey });
    for (const model of items(body, 'models')) {
      const methods = Array.isArray(model.supportedGenerationMethods) ? model.supportedGenerationMethods : [];
      if (typeof model.name === 'string' && methods.includes('generateContent')) {
        names.push(model.name.replace(/^models\//, ''));
      }
    }
    const next = (body as { nextPageToken?: unknown } | null)?.nextPageToken;
    if (typeof next !== 'string' || next === '') break;
    pageToken = next;
  }
  return names;
}

/**
 * Mirrors @ai-sdk/azure's URL rule for its default v1 API: on an Azure host
 * whose path does not already end in `/openai/v1`, insert `/v1` and (except
 * for Foundry projects) add `api-version=v1`; any other host is used as is.
 */
export function azureV1Url(base: string, path: string): string {
  const parsed = new URL(base);
  const host = parsed.hostname;
  const pathname = parsed.pathname.replace(/\/+$/, '');
  const isAzureHost = /\.(openai\.azure\.com|services\.ai\.azure\.com|cognitiveservices\.azure\.com)$/.test(host);
  const isFoundryProject = host.endsWith('.services.ai.azure.com') && pathname.startsWith('/api/projects/');
  const isVersioned = isAzureHost && pathname.toLowerCase().endsWith('/openai/v1');
  const url = new URL(isAzureHost && !isVersioned ? `${base}/v1${path}` : `${base}${path}`);
  if (isAzureHost && !isVersioned && !isFoundryProject) url.searchParams.set('api-version', 'v1');
  return url.toString();
}

function bearer(apiKey: string): Record<string, string> {
  return apiKey ? { authorization: `Bearer ${apiKey}` } : {};
}

function items(body: unknown, field: string): Array<Record<string, unknown>> {
  const list = (body as Record<string, unknown> | null)?.[field];
  return Array.isArray(list) ? list.filter((x): x is Record<string, unknown> => x !== null && typeof x === 'object') : [];
}

function ids(body: unknown, field: string): string[] {
  return items(body, field)
    .map((m) => m.id)
    .filter(isString);
}

function isString(value: unknown): value is string {
  return typeof value === 'string' && value !== '';
}
