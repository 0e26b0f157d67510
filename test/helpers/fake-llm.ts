/**
 * A real HTTP server on 127.0.0.1 that speaks the wire format of every LLM
 * provider LLMSelect supports, so tests exercise the real AI SDK clients
 * (URL building, headers, JSON/SSE parsing, error handling) end to end.
 *
 * Routes (relative to `url`; hand `baseUrls.*` to the SDK):
 *
 * | provider   | base URL               | chat                                                         | model list     |
 * |------------|------------------------|--------------------------------------------------------------|----------------|
 * | openai     | /openai/v1             | POST /chat/completions (JSON or SSE)                         | GET /models    |
 * | anthropic  | /anthropic/v1          | POST /messages (JSON or SSE with named events)               | GET /models    |
 * | google     | /google/v1beta         | POST /models/<m>:generateContent, :streamGenerateContent?alt=sse | GET /models |
 * | mistral    | /mistral/v1            | POST /chat/completions                                       | GET /models    |
 * | compatible | /compatible/v1         | POST /chat/completions (Ollama / vLLM style)                 | GET /models    |
 * | azure      | /azure/openai/v1       | POST /chat/completions (v1 API, deployment in body.model)    | GET /models    |
 * | azure      | /azure/openai          | POST /deployments/<d>/chat/completions?api-version=…         |                |
 *
 * Behaviour per model: `setBehavior(model, …)`, or encoded in the model name so
 * tests that only talk GraphQL can trigger it: `slow-<ms>` (delay before the
 * first byte), `stream-<ms>` (delay between SSE events), `fail-<status>`
 * (answer that HTTP error in the provider's error shape), `hang` (never answer).
 * Judge prompts (MT-Bench pairwise, as `judgeComparison` sends them) get a
 * deterministic verdict from a model whose name says how it judges:
 * `judge-longer` (the longer answer wins, "[[C]]" when equally long: the
 * same verdict in both orders), `judge-first` (always "[[A]]": pure position
 * bias, so the two orders disagree), `judge-refuse` (a refusal),
 * `judge-garbled` (no verdict token), `judge-both` ("[[A]]" and "[[B]]").
 * An explicit `setBehavior(model, { judge })` picks the verdict in code.
 * An explicit `setBehavior` replaces the name-encoded one. Model-list requests look up the
 * behaviour key `"<provider>:models"`.
 *
 * Authentication: a missing key or the key `bad-key` gets 401 in the provider's
 * error shape (its message quotes the key, like OpenAI does, so tests can check
 * that nothing downstream leaks it).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type FakeProvider = 'openai' | 'anthropic' | 'google' | 'mistral' | 'compatible' | 'azure';
export type FakeRequestKind = 'chat' | 'models';
export type FakeErrorStatus = 400 | 401 | 403 | 404 | 408 | 429 | 500 | 502 | 503 | 504;

export const FAKE_PROVIDERS: readonly FakeProvider[] = ['openai', 'anthropic', 'google', 'mistral', 'compatible', 'azure'];

/** The API key the fake always rejects with 401. */
export const BAD_API_KEY = 'bad-key';

/** Time between SSE events when no `chunkDelayMs` is set: small, but enough to interleave streams. */
const DEFAULT_CHUNK_DELAY_MS = 2;
/** Fixed `created` timestamp so responses are byte-for-byte deterministic. */
const CREATED = 1_700_000_000;

export interface FakeBehavior {
  /** Wait before sending headers / the first byte. */
  delayMs?: number;
  /** Wait between streamed SSE events (default 2 ms). */
  chunkDelayMs?: number;
  /** Answer this HTTP error, in the provider's own error JSON shape. */
  status?: FakeErrorStatus;
  /** Never answer; released when the client aborts or the server closes. */
  hang?: boolean;
  /** Reply text (default `"Reply from <model>: <last user message text>"`). */
  text?: string;
  /** How many SSE deltas to split the text into (default: one per word). */
  chunks?: number;
  /** Streaming only: send this many deltas, then the provider's in-stream error event, then end. */
  errorAfterChunks?: number;
  /** Answers a judge prompt (see `parseJudgePrompt`): the reply text given the question and the answers shown as A and B. */
  judge?: (shown: JudgePrompt) => string;
  /** Streaming only: awaited before each SSE event is written (index from 0), so a test can hold a stream mid-answer. */
  beforeEvent?: (index: number) => Promise<void>;
  /** Awaited before anything is answered (headers included), so a test holds a request until it says so. */
  beforeAnswer?: () => Promise<void>;
}

/** A judge prompt as the fake reads it back out of the request. */
export interface JudgePrompt {
  question: string;
  answerA: string;
  answerB: string;
}

/** The question and the two answers of an MT-Bench pairwise judge prompt, or null when the text is not one. */
export function parseJudgePrompt(text: string): JudgePrompt | null {
  const m = new RegExp(
    String.raw`^\[User Question\]\n([\s\S]*?)\n\n` +
      String.raw`\[The Start of Assistant A's Answer\]\n([\s\S]*?)\n\[The End of Assistant A's Answer\]\n\n` +
      String.raw`\[The Start of Assistant B's Answer\]\n([\s\S]*?)\n\[The End of Assistant B's Answer\]$`,
  ).exec(text);
  return m ? { question: m[1]!, answerA: m[2]!, answerB: m[3]! } : null;
}

/** The name-encoded judges (see the header). */
const NAMED_JUDGES: Record<string, (shown: JudgePrompt) => string> = {
  'judge-longer': ({ answerA, answerB }) =>
    'Comparing both answers for helpfulness. Final verdict: ' +
    `${answerA.length > answerB.length ? '[[A]]' : answerA.length < answerB.length ? '[[B]]' : '[[C]]'}`,
  'judge-first': () => 'Assistant A is clearly better. [[A]]',
  'judge-refuse': () => "I'm sorry, but I can't help with evaluating these responses.",
  'judge-garbled': () => 'Both answers have merits; it is hard to say which one is better.',
  'judge-both': () => 'At first I thought [[A]], but on reflection [[B]].',
};

/** A message as the model saw it, normalised across wire formats (`developer` → `system`, Gemini `model` → `assistant`). */
export interface FakeMessage {
  role: string;
  text: string;
}

export interface FakeRequest {
  provider: FakeProvider;
  kind: FakeRequestKind;
  /** Model / deployment name (from the body, or the URL for Gemini and Azure deployment URLs). */
  model?: string;
  /** The credential as sent (bearer token, `x-api-key`, `x-goog-api-key` or `api-key`). */
  apiKey?: string;
  stream: boolean;
  /** The parsed JSON body exactly as received (undefined for GETs). */
  body: any;
  /** Path and query string, e.g. `/google/v1beta/models/x:streamGenerateContent?alt=sse`. */
  path: string;
  /** Full message history sent, system prompt first; empty for model lists. */
  messages: FakeMessage[];
  /** `performance.now()` when the request was received, and when its response ended (or the connection closed). */
  receivedAt: number;
  finishedAt?: number;
  /** The `Idempotency-Key` header (eval cells send one per cell). */
  idempotencyKey?: string;
  /** True once the whole answer was written (a client that went away mid-answer leaves it false). */
  completed: boolean;
  /** `performance.now()` when the whole answer was handed to the socket (`completed`). */
  completedAt?: number;
}

interface FakeModelEntry {
  id: string;
  /** False for embedding / audio models that a chat model list should filter out. */
  chat: boolean;
}

interface ModelCatalog {
  entries: FakeModelEntry[];
  /** Server-side page size cap (Anthropic and Gemini paginate). */
  maxPageSize: number;
}

const DEFAULT_CATALOGS: Record<FakeProvider, FakeModelEntry[]> = {
  openai: [
    { id: 'gpt-4o', chat: true },
    { id: 'gpt-4o-mini', chat: true },
    { id: 'text-embedding-3-small', chat: false },
    { id: 'whisper-1', chat: false },
  ],
  anthropic: [
    { id: 'claude-sonnet-4-5', chat: true },
    { id: 'claude-haiku-4-5', chat: true },
  ],
  google: [
    { id: 'gemini-2.5-pro', chat: true },
    { id: 'gemini-2.5-flash', chat: true },
    { id: 'text-embedding-004', chat: false },
  ],
  mistral: [
    { id: 'mistral-large-latest', chat: true },
    { id: 'mistral-small-latest', chat: true },
    { id: 'mistral-embed', chat: false },
  ],
  compatible: [
    { id: 'llama3.2', chat: true },
    { id: 'qwen2.5:7b', chat: true },
  ],
  azure: [
    { id: 'gpt-4o', chat: true },
    { id: 'text-embedding-3-large', chat: false },
  ],
};

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

const ROOTS: Record<FakeProvider, string> = {
  openai: '/openai/v1',
  anthropic: '/anthropic/v1',
  google: '/google/v1beta',
  mistral: '/mistral/v1',
  compatible: '/compatible/v1',
  azure: '/azure/openai/v1',
};

interface Route {
  provider: FakeProvider;
  kind: FakeRequestKind;
  /** Model named by the URL (Gemini, Azure deployment URLs). */
  model?: string;
  /** Gemini decides streaming by URL, not body. */
  urlStream?: boolean;
}

function matchRoute(method: string, pathname: string): Route | undefined {
  const deployment = /^\/azure\/openai\/deployments\/([^/]+)\/chat\/completions$/.exec(pathname);
  if (deployment && method === 'POST') {
    return { provider: 'azure', kind: 'chat', model: decodeURIComponent(deployment[1]!) };
  }
  for (const provider of FAKE_PROVIDERS) {
    const root = ROOTS[provider];
    if (!pathname.startsWith(`${root}/`)) continue;
    return matchProviderRoute(provider, method, pathname.slice(root.length));
  }
  return undefined;
}

function matchProviderRoute(provider: FakeProvider, method: string, rest: string): Route | undefined {
  if (method === 'GET') return rest === '/models' ? { provider, kind: 'models' } : undefined;
  if (method !== 'POST') return undefined;
  if (provider === 'anthropic') return rest === '/messages' ? { provider, kind: 'chat' } : undefined;
  if (provider === 'google') {
    const m = /^\/models\/(.+):(generateContent|streamGenerateContent)$/.exec(rest);
    if (!m) return undefined;
    return { provider, kind: 'chat', model: decodeURIComponent(m[1]!), urlStream: m[2] === 'streamGenerateContent' };
  }
  return rest === '/chat/completions' ? { provider, kind: 'chat' } : undefined;
}

// ---------------------------------------------------------------------------
// Text helpers
// ---------------------------------------------------------------------------

function countWords(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}

/** Text of a message `content`: a string, or an array of `{ type: 'text', text }` / `{ text }` parts. */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((part) => (part && typeof part === 'object' && typeof part.text === 'string' ? part.text : '')).join('');
}

function normaliseRole(role: unknown): string {
  if (role === 'developer') return 'system';
  if (role === 'model') return 'assistant';
  return typeof role === 'string' ? role : 'unknown';
}

/** Splits text into `count` contiguous pieces (by words; by characters when there are fewer words). */
export function splitText(text: string, count?: number): string[] {
  if (text === '') return [];
  const words = text.match(/\s*\S+\s*/g) ?? [text];
  const pieces = count ?? words.length;
  if (pieces <= 1) return [text];
  if (pieces <= words.length) return groupEvenly(words, pieces).map((g) => g.join(''));
  return groupEvenly([...text], Math.min(pieces, text.length)).map((g) => g.join(''));
}

function groupEvenly<T>(items: T[], groups: number): T[][] {
  const result: T[][] = [];
  for (let g = 0; g < groups; g++) {
    result.push(items.slice(Math.floor((g * items.length) / groups), Math.floor(((g + 1) * items.length) / groups)));
  }
  return result;
}

/** Behaviour encoded in a model name: `slow-<ms>`, `stream-<ms>`, `fail-<status>`, `hang`. */
export function behaviorFromModelName(model: string): FakeBehavior {
  const behavior: FakeBehavior = {};
  const slow = /slow-(\d+)/.exec(model);
  if (slow) behavior.delayMs = Number(slow[1]);
  const stream = /stream-(\d+)/.exec(model);
  if (stream) behavior.chunkDelayMs = Number(stream[1]);
  const fail = /fail-(\d{3})/.exec(model);
  if (fail) behavior.status = Number(fail[1]) as FakeErrorStatus;
  if (/(?:^|[^a-z])hang(?:$|[^a-z])/i.test(model)) behavior.hang = true;
  const judge = /judge-[a-z]+/.exec(model);
  if (judge && NAMED_JUDGES[judge[0]]) behavior.judge = NAMED_JUDGES[judge[0]];
  return behavior;
}

// ---------------------------------------------------------------------------
// Dialects: one per wire format
// ---------------------------------------------------------------------------

interface ChatRequest {
  model: string;
  stream: boolean;
  /** OpenAI `stream_options.include_usage`: only then is a usage chunk streamed. */
  includeUsage: boolean;
  messages: FakeMessage[];
}

interface Reply {
  id: string;
  model: string;
  text: string;
  pieces: string[];
  promptTokens: number;
  completionTokens: number;
}

interface SseEvent {
  event?: string;
  data: unknown;
}

/** A streamed answer: `errorAfterChunks` cuts `deltas` and replaces `tail` with an error event. */
interface StreamPlan {
  head: SseEvent[];
  deltas: SseEvent[];
  tail: SseEvent[];
}

interface Dialect {
  apiKey(req: IncomingMessage, url: URL): string | undefined;
  parseChat(body: any, route: Route): ChatRequest;
  /** Extra request checks a real server makes (returns a 400 message, or undefined). */
  validate?(req: IncomingMessage): string | undefined;
  error(status: number, message: string): unknown;
  completion(reply: Reply): unknown;
  stream(reply: Reply, includeUsage: boolean): StreamPlan;
  streamError(status: number, message: string): SseEvent;
  models(catalog: ModelCatalog, url: URL): unknown;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function bearer(req: IncomingMessage): string | undefined {
  const auth = header(req, 'authorization');
  const m = auth ? /^Bearer\s*(.*)$/i.exec(auth) : null;
  return m ? m[1] : undefined;
}

function usageOpenAI(reply: Reply) {
  return {
    prompt_tokens: reply.promptTokens,
    completion_tokens: reply.completionTokens,
    total_tokens: reply.promptTokens + reply.completionTokens,
  };
}

function openAIMessages(body: any): FakeMessage[] {
  const messages: unknown[] = Array.isArray(body?.messages) ? body.messages : [];
  return messages.map((m: any) => ({ role: normaliseRole(m?.role), text: textOf(m?.content) }));
}

const OPENAI_ERROR_TYPES: Record<number, { type: string; code: string | null }> = {
  400: { type: 'invalid_request_error', code: null },
  401: { type: 'invalid_request_error', code: 'invalid_api_key' },
  403: { type: 'invalid_request_error', code: 'unsupported_country_region_territory' },
  404: { type: 'invalid_request_error', code: 'model_not_found' },
  429: { type: 'requests', code: 'rate_limit_exceeded' },
};

function openAIDialect(options: { authHeader: 'bearer' | 'api-key'; withCapabilities: boolean }): Dialect {
  return {
    apiKey: (req) => (options.authHeader === 'bearer' ? bearer(req) : (header(req, 'api-key') ?? bearer(req))),
    parseChat: (body, route) => ({
      model: route.model ?? String(body?.model ?? ''),
      stream: body?.stream === true,
      includeUsage: body?.stream_options?.include_usage === true,
      messages: openAIMessages(body),
    }),
    error: (status, message) => {
      const t = OPENAI_ERROR_TYPES[status] ?? { type: 'server_error', code: null };
      return { error: { message, type: t.type, param: null, code: t.code } };
    },
    completion: (reply) => ({
      id: reply.id,
      object: 'chat.completion',
      created: CREATED,
      model: reply.model,
      choices: [{ index: 0, message: { role: 'assistant', content: reply.text, refusal: null }, logprobs: null, finish_reason: 'stop' }],
      usage: usageOpenAI(reply),
      system_fingerprint: null,
    }),
    stream: (reply, includeUsage) => {
      const base = { id: reply.id, object: 'chat.completion.chunk', created: CREATED, model: reply.model };
      const usageNull = includeUsage ? { usage: null } : {};
      const chunk = (delta: object, finish: string | null) => ({
        data: { ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...usageNull },
      });
      return {
        head: [chunk({ role: 'assistant', content: '' }, null)],
        deltas: reply.pieces.map((p) => chunk({ content: p }, null)),
        tail: [
          chunk({}, 'stop'),
          ...(includeUsage ? [{ data: { ...base, choices: [], usage: usageOpenAI(reply) } }] : []),
          { data: '[DONE]' },
        ],
      };
    },
    streamError: (status, message) => {
      const t = OPENAI_ERROR_TYPES[status] ?? { type: 'server_error', code: null };
      return { data: { error: { message, type: t.type, param: null, code: t.code } } };
    },
    models: (catalog) => ({
      object: 'list',
      data: catalog.entries.map((e) => ({
        id: e.id,
        object: 'model',
        created: CREATED,
        owned_by: 'fake',
        ...(options.withCapabilities
          ? { capabilities: { chat_completion: e.chat, completion: false, embeddings: !e.chat }, status: 'succeeded' }
          : {}),
      })),
    }),
  };
}

const mistralDialect: Dialect = {
  apiKey: bearer,
  parseChat: (body) => ({
    model: String(body?.model ?? ''),
    stream: body?.stream === true,
    includeUsage: true,
    messages: openAIMessages(body),
  }),
  error: (status, message) => ({
    object: 'error',
    message,
    type:
      status === 401
        ? 'authentication_error'
        : status === 429
          ? 'rate_limited'
          : status >= 500
            ? 'internal_error'
            : 'invalid_request_error',
    param: null,
    code: String(status),
  }),
  completion: (reply) => ({
    id: reply.id,
    object: 'chat.completion',
    created: CREATED,
    model: reply.model,
    choices: [{ index: 0, message: { role: 'assistant', content: reply.text, tool_calls: null }, finish_reason: 'stop' }],
    usage: usageOpenAI(reply),
  }),
  stream: (reply) => {
    const base = { id: reply.id, object: 'chat.completion.chunk', created: CREATED, model: reply.model };
    const chunk = (delta: object, finish: string | null, extra: object = {}) => ({
      data: { ...base, choices: [{ index: 0, delta, finish_reason: finish }], ...extra },
    });
    // Mistral puts usage on the last choice chunk (it never sends an empty `choices` chunk).
    return {
      head: [chunk({ role: 'assistant', content: '' }, null)],
      deltas: reply.pieces.map((p) => chunk({ content: p }, null)),
      tail: [chunk({ content: '' }, 'stop', { usage: usageOpenAI(reply) }), { data: '[DONE]' }],
    };
  },
  streamError: (status, message) => ({ data: mistralDialect.error(status, message) }),
  models: (catalog) => ({
    object: 'list',
    data: catalog.entries.map((e) => ({
      id: e.id,
      object: 'model',
      created: CREATED,
      owned_by: 'mistralai',
      capabilities: { completion_chat: e.chat, completion_fim: false, function_calling: e.chat, fine_tuning: false, vision: false },
      aliases: [],
    })),
  }),
};

const ANTHROPIC_ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  408: 'timeout_error',
  429: 'rate_limit_error',
  500: 'api_error',
  502: 'api_error',
  503: 'overloaded_error',
  504: 'timeout_error',
};

function anthropicError(status: number, message: string) {
  return { type: 'error', error: { type: ANTHROPIC_ERROR_TYPES[status] ?? 'api_error', message } };
}

const anthropicDialect: Dialect = {
  apiKey: (req) => header(req, 'x-api-key'),
  validate: (req) => (header(req, 'anthropic-version') ? undefined : 'anthropic-version: header is required'),
  parseChat: (body) => {
    const system = body?.system === undefined ? [] : [{ role: 'system', text: textOf(body.system) }];
    const messages: unknown[] = Array.isArray(body?.messages) ? body.messages : [];
    return {
      model: String(body?.model ?? ''),
      stream: body?.stream === true,
      includeUsage: true,
      messages: [...system, ...messages.map((m: any) => ({ role: normaliseRole(m?.role), text: textOf(m?.content) }))],
    };
  },
  error: anthropicError,
  completion: (reply) => ({
    id: reply.id,
    type: 'message',
    role: 'assistant',
    model: reply.model,
    content: [{ type: 'text', text: reply.text }],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: reply.promptTokens, output_tokens: reply.completionTokens },
  }),
  stream: (reply) => {
    const named = (data: { type: string; [key: string]: unknown }): SseEvent => ({ event: data.type, data });
    return {
      head: [
        named({
          type: 'message_start',
          message: {
            id: reply.id,
            type: 'message',
            role: 'assistant',
            model: reply.model,
            content: [],
            stop_reason: null,
            stop_sequence: null,
            usage: { input_tokens: reply.promptTokens, output_tokens: 1 },
          },
        }),
        named({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
        named({ type: 'ping' }),
      ],
      deltas: reply.pieces.map((text) => named({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } })),
      tail: [
        named({ type: 'content_block_stop', index: 0 }),
        named({
          type: 'message_delta',
          delta: { stop_reason: 'end_turn', stop_sequence: null },
          usage: { output_tokens: reply.completionTokens },
        }),
        named({ type: 'message_stop' }),
      ],
    };
  },
  streamError: (status, message) => ({ event: 'error', data: anthropicError(status, message) }),
  models: (catalog, url) => {
    const after = url.searchParams.get('after_id');
    const start = after ? catalog.entries.findIndex((e) => e.id === after) + 1 : 0;
    const limit = Math.min(Number(url.searchParams.get('limit') ?? 20) || 20, 1000, catalog.maxPageSize);
    const page = catalog.entries.slice(start, start + limit);
    return {
      data: page.map((e) => ({ type: 'model', id: e.id, display_name: e.id, created_at: '2025-01-01T00:00:00Z' })),
      has_more: start + limit < catalog.entries.length,
      first_id: page[0]?.id ?? null,
      last_id: page[page.length - 1]?.id ?? null,
    };
  },
};

const GOOGLE_STATUSES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  408: 'DEADLINE_EXCEEDED',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  502: 'UNAVAILABLE',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

function googleError(status: number, message: string) {
  return { error: { code: status, message, status: GOOGLE_STATUSES[status] ?? 'UNKNOWN' } };
}

function googleUsage(reply: Reply, completionTokens = reply.completionTokens) {
  return {
    promptTokenCount: reply.promptTokens,
    candidatesTokenCount: completionTokens,
    totalTokenCount: reply.promptTokens + completionTokens,
  };
}

const googleDialect: Dialect = {
  apiKey: (req, url) => header(req, 'x-goog-api-key') ?? url.searchParams.get('key') ?? undefined,
  parseChat: (body, route) => {
    const system = body?.systemInstruction ? [{ role: 'system', text: textOf(body.systemInstruction.parts) }] : [];
    const contents: unknown[] = Array.isArray(body?.contents) ? body.contents : [];
    return {
      model: (route.model ?? '').replace(/^models\//, ''),
      stream: route.urlStream === true,
      includeUsage: true,
      messages: [...system, ...contents.map((c: any) => ({ role: normaliseRole(c?.role), text: textOf(c?.parts) }))],
    };
  },
  error: googleError,
  completion: (reply) => ({
    candidates: [{ content: { parts: [{ text: reply.text }], role: 'model' }, finishReason: 'STOP', index: 0 }],
    usageMetadata: googleUsage(reply),
    modelVersion: reply.model,
    responseId: reply.id,
  }),
  stream: (reply) => {
    // Gemini sends cumulative usage on every chunk and finishReason on the last one.
    let words = 0;
    const chunk = (text: string, last: boolean): SseEvent => {
      words += countWords(text);
      return {
        data: {
          candidates: [{ content: { parts: [{ text }], role: 'model' }, index: 0, ...(last ? { finishReason: 'STOP' } : {}) }],
          usageMetadata: googleUsage(reply, last ? reply.completionTokens : words),
          modelVersion: reply.model,
          responseId: reply.id,
        },
      };
    };
    const pieces = reply.pieces.length > 0 ? reply.pieces : [''];
    return {
      head: [],
      deltas: pieces.slice(0, -1).map((p) => chunk(p, false)),
      tail: [chunk(pieces[pieces.length - 1]!, true)],
    };
  },
  streamError: (status, message) => ({ data: googleError(status, message) }),
  models: (catalog, url) => {
    const start = Number(url.searchParams.get('pageToken') ?? 0) || 0;
    const size = Math.min(Number(url.searchParams.get('pageSize') ?? 50) || 50, 1000, catalog.maxPageSize);
    const page = catalog.entries.slice(start, start + size);
    const next = start + size < catalog.entries.length ? String(start + size) : undefined;
    return {
      models: page.map((e) => ({
        name: `models/${e.id}`,
        displayName: e.id,
        supportedGenerationMethods: e.chat ? ['generateContent', 'countTokens'] : ['embedContent'],
      })),
      ...(next ? { nextPageToken: next } : {}),
    };
  },
};

const DIALECTS: Record<FakeProvider, Dialect> = {
  openai: openAIDialect({ authHeader: 'bearer', withCapabilities: false }),
  compatible: openAIDialect({ authHeader: 'bearer', withCapabilities: false }),
  azure: openAIDialect({ authHeader: 'api-key', withCapabilities: true }),
  mistral: mistralDialect,
  anthropic: anthropicDialect,
  google: googleDialect,
};

function errorMessage(status: number, apiKey: string | undefined): string {
  switch (status) {
    case 401:
      return `Incorrect API key provided: ${apiKey || '<missing>'}.`;
    case 429:
      return 'Rate limit reached for requests. Please try again in 1s.';
    case 404:
      return 'The model does not exist or you do not have access to it.';
    case 400:
      return 'Invalid request.';
    default:
      return status >= 500 ? 'The server had an error while processing your request.' : `Request failed with status ${status}.`;
  }
}

// ---------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------

/** Resolves after `ms`, or as soon as `signal` aborts (never rejects; callers check `signal.aborted`). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const json = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(json),
    ...headers,
  });
  res.end(json);
}

function formatSse(event: SseEvent): string {
  const data = typeof event.data === 'string' ? event.data : JSON.stringify(event.data);
  return `${event.event ? `event: ${event.event}\n` : ''}data: ${data}\n\n`;
}

interface Waiter {
  done: () => boolean;
  resolve: () => void;
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

export class FakeLlmServer {
  /** e.g. `http://127.0.0.1:PORT` */
  readonly url: string;
  /** Base URLs to hand to the AI SDK, version segment included. */
  readonly baseUrls: Record<FakeProvider, string>;
  /** Every request received, in order (also rejected ones). */
  readonly requests: FakeRequest[] = [];

  private readonly behaviors = new Map<string, FakeBehavior>();
  private readonly catalogs = new Map<FakeProvider, ModelCatalog>();
  private readonly inflight = new Set<AbortController>();
  /** Chat requests being answered, per API key, and the most there ever were at once. */
  private readonly concurrentByKey = new Map<string, number>();
  private readonly maxConcurrentByKey = new Map<string, number>();
  private waiters: Waiter[] = [];
  private nextId = 1;

  private constructor(private readonly server: Server) {
    const { port } = server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    this.baseUrls = Object.fromEntries(FAKE_PROVIDERS.map((p) => [p, `${this.url}${ROOTS[p]}`])) as Record<FakeProvider, string>;
  }

  /** `OPENAI_BASE_URL`, `ANTHROPIC_BASE_URL`, `GOOGLE_BASE_URL`, `MISTRAL_BASE_URL`: the app's providers pointed here. */
  providerEnv(): Record<string, string> {
    return {
      OPENAI_BASE_URL: this.baseUrls.openai,
      ANTHROPIC_BASE_URL: this.baseUrls.anthropic,
      GOOGLE_BASE_URL: this.baseUrls.google,
      MISTRAL_BASE_URL: this.baseUrls.mistral,
    };
  }

  /** Listens on an ephemeral port on 127.0.0.1. */
  static async start(): Promise<FakeLlmServer> {
    let fake: FakeLlmServer | undefined;
    const server = createServer((req, res) => void fake!.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    fake = new FakeLlmServer(server);
    return fake;
  }

  /** Behaviour for an exact model name (or `"<provider>:models"` for model lists); replaces name-encoded behaviour. */
  setBehavior(model: string, behavior: FakeBehavior): void {
    this.behaviors.set(model, behavior);
  }

  /** Replaces a provider's model list (all entries chat-capable). `maxPageSize` forces pagination. */
  setModels(provider: FakeProvider, ids: string[], options: { maxPageSize?: number } = {}): void {
    this.catalogs.set(provider, {
      entries: ids.map((id) => ({ id, chat: true })),
      maxPageSize: options.maxPageSize ?? 1000,
    });
  }

  /** The most chat requests with this API key that were being answered at the same time. */
  maxConcurrent(apiKey: string): number {
    return this.maxConcurrentByKey.get(apiKey) ?? 0;
  }

  /** Requests per `Idempotency-Key`: all of them, or only those answered in full (`completed`); with `apiKey`, that key's only. */
  countsByIdempotencyKey(which: 'all' | 'completed' = 'all', apiKey?: string): Map<string, number> {
    const counts = new Map<string, number>();
    for (const r of this.requests) {
      if (!r.idempotencyKey || (which === 'completed' && !r.completed) || (apiKey !== undefined && r.apiKey !== apiKey)) continue;
      counts.set(r.idempotencyKey, (counts.get(r.idempotencyKey) ?? 0) + 1);
    }
    return counts;
  }

  /** Number of requests received, optionally for one provider and/or kind. */
  count(provider?: string, kind?: FakeRequestKind): number {
    return this.requests.filter((r) => (!provider || r.provider === provider) && (!kind || r.kind === kind)).length;
  }

  /** Resolves once `count(provider, kind) >= n`, e.g. to know a hanging request has arrived. */
  waitForRequests(n: number, provider?: FakeProvider, kind?: FakeRequestKind): Promise<void> {
    return new Promise((resolve) => {
      const waiter = { done: () => this.count(provider, kind) >= n, resolve };
      if (waiter.done()) resolve();
      else this.waiters.push(waiter);
    });
  }

  /** Clears behaviours, model lists and recorded requests. */
  reset(): void {
    this.behaviors.clear();
    this.catalogs.clear();
    this.requests.length = 0;
    this.maxConcurrentByKey.clear();
  }

  /** Stops listening and drops every connection, hanging ones included. */
  async close(): Promise<void> {
    for (const controller of this.inflight) controller.abort();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private behaviorFor(key: string): FakeBehavior {
    return this.behaviors.get(key) ?? behaviorFromModelName(key);
  }

  private catalog(provider: FakeProvider): ModelCatalog {
    return this.catalogs.get(provider) ?? { entries: DEFAULT_CATALOGS[provider], maxPageSize: 1000 };
  }

  private record(request: FakeRequest): void {
    this.requests.push(request);
    const ready = this.waiters.filter((w) => w.done());
    this.waiters = this.waiters.filter((w) => !w.done());
    for (const w of ready) w.resolve();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const controller = new AbortController();
    this.inflight.add(controller);
    res.on('close', () => {
      controller.abort();
      this.inflight.delete(controller);
    });
    try {
      await this.dispatch(req, res, controller.signal);
    } catch (error) {
      if (res.headersSent || res.destroyed) res.destroy();
      else sendJson(res, 500, { error: { message: `fake-llm crashed: ${String(error)}` } });
    }
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const rawBody = await readBody(req);
    const route = matchRoute(req.method ?? 'GET', url.pathname);
    if (!route) {
      sendJson(res, 404, { error: { message: `No such route: ${req.method} ${url.pathname}`, type: 'not_found' } });
      return;
    }
    const dialect = DIALECTS[route.provider];
    const apiKey = dialect.apiKey(req, url);
    const parsed = route.kind === 'chat' ? parseJson(rawBody) : { ok: true as const, value: undefined };
    const chat = route.kind === 'chat' && parsed.ok ? dialect.parseChat(parsed.value, route) : undefined;
    const request: FakeRequest = {
      receivedAt: performance.now(),
      provider: route.provider,
      kind: route.kind,
      model: chat?.model ?? route.model,
      apiKey,
      stream: chat?.stream ?? false,
      body: parsed.ok ? parsed.value : rawBody,
      path: req.url ?? '/',
      messages: chat?.messages ?? [],
      idempotencyKey: header(req, 'idempotency-key'),
      completed: false,
    };
    res.on('finish', () => {
      request.completed = true;
      request.completedAt = performance.now();
    });
    res.on('close', () => (request.finishedAt = performance.now()));
    if (route.kind === 'chat' && apiKey) {
      const now = (this.concurrentByKey.get(apiKey) ?? 0) + 1;
      this.concurrentByKey.set(apiKey, now);
      this.maxConcurrentByKey.set(apiKey, Math.max(now, this.maxConcurrentByKey.get(apiKey) ?? 0));
      res.on('close', () => this.concurrentByKey.set(apiKey, (this.concurrentByKey.get(apiKey) ?? 1) - 1));
    }
    this.record(request);

    if (!apiKey || apiKey === BAD_API_KEY) {
      sendJson(res, 401, dialect.error(401, errorMessage(401, apiKey)));
      return;
    }
    const invalid = !parsed.ok ? 'Request body is not valid JSON.' : dialect.validate?.(req);
    if (invalid) {
      sendJson(res, 400, dialect.error(400, invalid));
      return;
    }
    await this.respond(res, url, route, dialect, apiKey, chat, signal);
  }

  private async respond(
    res: ServerResponse,
    url: URL,
    route: Route,
    dialect: Dialect,
    apiKey: string,
    chat: ChatRequest | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    const behavior = this.behaviorFor(chat ? chat.model : `${route.provider}:models`);
    if (behavior.hang) {
      await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve())));
      return;
    }
    if (behavior.delayMs) await sleep(behavior.delayMs, signal);
    if (behavior.beforeAnswer) {
      let aborted = () => {};
      const abort = new Promise<void>((resolve) => signal.addEventListener('abort', (aborted = () => resolve()), { once: true }));
      await Promise.race([behavior.beforeAnswer(), abort]);
      signal.removeEventListener('abort', aborted);
    }
    if (signal.aborted) return;
    if (behavior.status) {
      const headers: Record<string, string> = behavior.status === 429 ? { 'retry-after': '1' } : {};
      sendJson(res, behavior.status, dialect.error(behavior.status, errorMessage(behavior.status, apiKey)), headers);
      return;
    }
    if (!chat) {
      sendJson(res, 200, dialect.models(this.catalog(route.provider), url));
      return;
    }
    const reply = this.buildReply(chat, behavior);
    if (!chat.stream) sendJson(res, 200, dialect.completion(reply));
    else if (route.provider === 'google' && url.searchParams.get('alt') !== 'sse') {
      sendJson(
        res,
        200,
        this.plannedEvents(dialect, reply, chat, behavior).map((e) => e.data),
      );
    } else await this.stream(res, this.plannedEvents(dialect, reply, chat, behavior), behavior, signal);
  }

  private buildReply(chat: ChatRequest, behavior: FakeBehavior): Reply {
    const lastUser = [...chat.messages].reverse().find((m) => m.role === 'user');
    const judgePrompt = behavior.judge && lastUser ? parseJudgePrompt(lastUser.text) : null;
    const text = judgePrompt ? behavior.judge!(judgePrompt) : (behavior.text ?? `Reply from ${chat.model}: ${lastUser?.text ?? ''}`);
    return {
      id: `fake-${this.nextId++}`,
      model: chat.model,
      text,
      pieces: splitText(text, behavior.chunks),
      promptTokens: chat.messages.reduce((sum, m) => sum + countWords(m.text), 0),
      completionTokens: countWords(text),
    };
  }

  private plannedEvents(dialect: Dialect, reply: Reply, chat: ChatRequest, behavior: FakeBehavior): SseEvent[] {
    const plan = dialect.stream(reply, chat.includeUsage);
    if (behavior.errorAfterChunks === undefined) return [...plan.head, ...plan.deltas, ...plan.tail];
    const error = dialect.streamError(500, errorMessage(500, undefined));
    return [...plan.head, ...plan.deltas.slice(0, behavior.errorAfterChunks), error];
  }

  private async stream(res: ServerResponse, events: SseEvent[], behavior: FakeBehavior, signal: AbortSignal): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const delay = behavior.chunkDelayMs ?? DEFAULT_CHUNK_DELAY_MS;
    for (const [i, event] of events.entries()) {
      if (i > 0 && delay > 0) await sleep(delay, signal);
      if (behavior.beforeEvent) {
        let aborted!: () => void;
        await Promise.race([
          behavior.beforeEvent(i),
          new Promise<void>((resolve) => signal.addEventListener('abort', (aborted = () => resolve()), { once: true })),
        ]);
        signal.removeEventListener('abort', aborted);
      }
      if (signal.aborted) return;
      res.write(formatSse(event));
    }
    res.end();
  }
}

function parseJson(text: string): { ok: true; value: any } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}
