/**
 * One streamed completion through the AI SDK's provider interface, with its
 * own timeout and an external AbortSignal (cancel). It calls the provider
 * model's `doStream` and reads its parts directly: `streamText` wraps that
 * same stream in half a dozen more web-stream stages (tool handling, step
 * stitching, output transforms, a tee for `textStream`/`fullStream`), which we
 * use none of and which cost 2.3× the CPU per delta (0.85 against 0.37 ms per
 * chunk, measured; a delta is what 20 comparisons × 4 models stream 4,000
 * times a second). HTTP errors throw from `doStream`, in-stream ones come as
 * `error` parts; both are classified as before. Retries: none
 * (`LLM_MAX_RETRIES` is 0: a comparison reports the failure instead).
 * Resolves with the text and measurements, or rejects with a
 * `ProviderCallError` (TIMEOUT when the timer fired) or `CancelledError`.
 *
 * What a provider sends is not trusted: NUL characters are dropped (PostgreSQL
 * cannot store them, and the final write would fail) and unpaired surrogates
 * become U+FFFD, in every delta; past `maxOutputBytes` (UTF-8) the call is
 * aborted and rejects with `OutputLimitError`, which keeps the text up to the
 * limit.
 */
import type { LanguageModel } from 'ai';
import { excludedFromDeadline } from '../db/request-deadline';
import type { ProviderName } from './model-id';
import { classifyProviderError, ProviderCallError } from './provider-errors';
import { costUsd, findCatalogEntry } from './catalog';
import { type Attributes, SpanKind, tracingOn, withSpan } from '../observability/tracing';

export interface ChatTurn {
  role: 'user' | 'assistant' | 'system';
  content: string;
}

export interface CompletionResult {
  text: string;
  promptTokens: number | null;
  completionTokens: number | null;
  latencyMs: number;
  timeToFirstTokenMs: number | null;
}

/** The answer passed the output limit and was cut (an UNAVAILABLE provider error that keeps the text so far). */
export class OutputLimitError extends ProviderCallError {
  override name = 'OutputLimitError';
  constructor(
    provider: ProviderName,
    readonly limitBytes: number,
    readonly partialText: string,
  ) {
    super(provider, 'UNAVAILABLE', `The answer exceeded the ${formatBytes(limitBytes)} output limit and was cut off`);
  }
}

function formatBytes(bytes: number): string {
  return bytes % 1024 === 0 ? `${bytes / 1024} KB` : `${bytes} bytes`;
}

/** Provider text made storable: no NUL, no unpaired surrogate. */
export function cleanProviderText(text: string): string {
  const noNul = text.includes('\u0000') ? text.replace(/\u0000/g, '') : text;
  return /\p{Cs}/u.test(noNul) ? noNul.replace(/\p{Cs}/gu, '\uFFFD') : noNul;
}

/** The longest prefix of `text` that fits in `maxBytes` of UTF-8, cut between code points. */
function fitUtf8(text: string, maxBytes: number): string {
  let bytes = 0;
  let end = 0;
  for (const point of text) {
    const size = Buffer.byteLength(point);
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += point.length;
  }
  return text.slice(0, end);
}

export class CancelledError extends Error {
  override name = 'CancelledError';
  constructor() {
    super('Cancelled');
  }
}

export interface StreamCompletionOptions {
  provider: ProviderName;
  model: LanguageModel;
  messages: readonly ChatTurn[];
  /** Instructions sent as the provider's system prompt (not as a message). */
  system?: string;
  timeoutMs: number;
  /** Aborting it cancels the call (CancelledError). */
  signal?: AbortSignal;
  maxOutputTokens?: number;
  /** Sampling temperature (the provider's default when absent). */
  temperature?: number;
  /** Extra HTTP headers of the call (an eval cell's `Idempotency-Key`). */
  headers?: Record<string, string>;
  /** The answer's UTF-8 size limit (default 256 KB): past it the call is aborted with `OutputLimitError`. */
  maxOutputBytes?: number;
  /** Called for every text delta, in order. */
  onDelta?: (delta: string) => void;
}

/** What a call may answer when the caller sets no `maxOutputTokens` (also an eval estimate's output bound). */
export const DEFAULT_MAX_OUTPUT_TOKENS = 4096;

/** The provider-level model behind an AI SDK `LanguageModel` (ours are always objects of the v3 specification). */
type ProviderModel = Extract<LanguageModel, { specificationVersion: 'v3' }>;
type StreamPart = Awaited<ReturnType<ProviderModel['doStream']>>['stream'] extends ReadableStream<infer P> ? P : never;
type ProviderPrompt = Parameters<ProviderModel['doStream']>[0]['prompt'];

function providerModel(model: LanguageModel): ProviderModel {
  if (typeof model === 'string' || model.specificationVersion !== 'v3')
    throw new TypeError('streamCompletion needs a provider model of the v3 specification');
  return model;
}

/** Plain text turns as the provider interface takes them (what `streamText` would have built from them). */
function providerPrompt(messages: readonly ChatTurn[], system: string | undefined): ProviderPrompt {
  const prompt: ProviderPrompt = system !== undefined ? [{ role: 'system', content: system }] : [];
  for (const m of messages) {
    prompt.push(
      m.role === 'system' ? { role: 'system', content: m.content } : { role: m.role, content: [{ type: 'text', text: m.content }] },
    );
  }
  return prompt;
}
const DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024;

/**
 * Calls the model and streams its answer (see {@link StreamCompletionOptions}).
 * Its time does not count against the request's deadline (`../db/request-deadline.ts`):
 * `timeoutMs` bounds it instead.
 */
export function streamCompletion(opts: StreamCompletionOptions): Promise<CompletionResult> {
  return excludedFromDeadline(() =>
    tracingOn()
      ? traceProviderCall(opts.provider, modelName(opts.model), () => streamCompletionDirect(opts))
      : streamCompletionDirect(opts),
  );
}

function modelName(model: LanguageModel): string {
  return typeof model === 'string' ? model : model.modelId;
}

/**
 * One provider call's span (a child of the active one): provider and model, and once it settles its tokens,
 * cost (catalog prices), time to first token and outcome. Never the prompt or the answer.
 */
export function traceProviderCall(provider: ProviderName, model: string, call: () => Promise<CompletionResult>): Promise<CompletionResult> {
  return withSpan(
    `chat ${model}`,
    {
      kind: SpanKind.CLIENT,
      attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': provider, 'gen_ai.request.model': model },
    },
    async (span) => {
      try {
        const result = await call();
        if (span) {
          const attributes: Attributes = { 'llmselect.outcome': 'ok', 'llmselect.latency_ms': result.latencyMs };
          if (result.promptTokens !== null) attributes['gen_ai.usage.input_tokens'] = result.promptTokens;
          if (result.completionTokens !== null) attributes['gen_ai.usage.output_tokens'] = result.completionTokens;
          if (result.timeToFirstTokenMs !== null) attributes['llmselect.time_to_first_token_ms'] = result.timeToFirstTokenMs;
          const cost = costUsd(findCatalogEntry(provider, model), result.promptTokens, result.completionTokens);
          if (cost !== null) attributes['llmselect.cost_usd'] = cost;
          span.setAttributes(attributes);
        }
        return result;
      } catch (error) {
        span?.setAttribute(
          'llmselect.outcome',
          error instanceof ProviderCallError ? error.reason : error instanceof CancelledError ? 'CANCELLED' : 'ERROR',
        );
        throw error;
      }
    },
  );
}

/** A call's own abort: after `timeoutMs` (`timedOut()`), or when the caller's `signal` fires (CancelledError); `end()` once it is over. */
function callControl(opts: Pick<StreamCompletionOptions, 'timeoutMs' | 'signal'>) {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new Error('timeout'));
  }, opts.timeoutMs);
  const onCancel = () => controller.abort(new CancelledError());
  if (opts.signal?.aborted) onCancel();
  else opts.signal?.addEventListener('abort', onCancel, { once: true });
  return {
    controller,
    timedOut: () => timedOut,
    end() {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onCancel);
    },
  };
}

/** {@link streamCompletion} without the deadline exclusion (a provider thread has no request). */
export async function streamCompletionDirect(opts: StreamCompletionOptions): Promise<CompletionResult> {
  const started = performance.now();
  const call = callControl(opts);
  const { controller } = call;

  const maxBytes = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  let text = '';
  let bytes = 0;
  let cut = false;
  let firstTokenAt: number | null = null;
  let usage: { inputTokens?: number; outputTokens?: number } | undefined;
  let failure: ProviderCallError | undefined;
  let reader: ReadableStreamDefaultReader<StreamPart> | undefined;
  try {
    const { stream } = await providerModel(opts.model).doStream({
      prompt: providerPrompt(opts.messages, opts.system),
      maxOutputTokens: opts.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS,
      abortSignal: controller.signal,
      ...(opts.temperature !== undefined ? { temperature: opts.temperature } : {}),
      ...(opts.headers ? { headers: opts.headers } : {}),
    });
    reader = stream.getReader();
    for (;;) {
      const { done, value: part } = await reader.read();
      if (done) break;
      if (part.type === 'text-delta' && part.delta) {
        let delta = cleanProviderText(part.delta);
        if (!delta) continue;
        firstTokenAt ??= performance.now();
        const size = Buffer.byteLength(delta);
        if (bytes + size > maxBytes) {
          delta = fitUtf8(delta, maxBytes - bytes);
          cut = true;
        }
        bytes += Buffer.byteLength(delta);
        text += delta;
        if (delta) opts.onDelta?.(delta);
        if (cut) {
          controller.abort(new Error('output limit'));
          break;
        }
      } else if (part.type === 'error') {
        failure ??= classifyProviderError(opts.provider, part.error, { timedOut: call.timedOut() });
      } else if (part.type === 'finish') {
        usage = { inputTokens: part.usage.inputTokens.total, outputTokens: part.usage.outputTokens.total };
      }
    }
  } catch (error) {
    if (!controller.signal.aborted) failure ??= classifyProviderError(opts.provider, error);
  } finally {
    // After a cut (or a failure) nothing more is read: let the provider's stream go.
    reader?.cancel().catch(() => undefined);
    call.end();
  }
  if (cut) throw new OutputLimitError(opts.provider, maxBytes, text);
  if (controller.signal.aborted) {
    if (call.timedOut()) throw classifyProviderError(opts.provider, new Error('timeout'), { timedOut: true });
    throw new CancelledError();
  }
  if (failure) throw failure;
  return {
    text,
    promptTokens: usage?.inputTokens ?? null,
    completionTokens: usage?.outputTokens ?? null,
    latencyMs: Math.round(performance.now() - started),
    timeToFirstTokenMs: firstTokenAt === null ? null : Math.round(firstTokenAt - started),
  };
}

/**
 * One completion WITHOUT streaming (the provider model's `doGenerate`: one
 * JSON answer, parsed once), for callers that watch no token: an eval cell.
 * The same limits and outcomes as {@link streamCompletion}: `timeoutMs`
 * (TIMEOUT), `signal` (CancelledError), `maxOutputBytes` (OutputLimitError
 * with the text cut to the limit, checked once the answer is in: the answer's
 * size is bounded by `maxOutputTokens`), the same error classification and
 * text cleaning. `onDelta` is not called. `timeToFirstTokenMs` is the time to
 * the whole answer: a call that does not stream has its first token then.
 *
 * Why: a streamed answer goes through half a dozen web-stream stages per call
 * and a schema validation per event; for a cell of a few events that was
 * about a third of an eval worker's CPU (`npm run bench:eval`, profiled).
 */
export function generateCompletion(opts: StreamCompletionOptions): Promise<CompletionResult> {
  return excludedFromDeadline(() => generateCompletionDirect(opts));
}

async function generateCompletionDirect(opts: StreamCompletionOptions): Promise<CompletionResult> {
  const started = performance.now();
  const call = callControl(opts);
  const { controller } = call;
  let result: Awaited<ReturnType<ProviderModel['doGenerate']>> | undefined;
  let failure: ProviderCallError | undefined;
  try {
    result = await providerModel(opts.model).doGenerate({
      prompt: providerPrompt(opts.messages, opts.system),
      maxOutputTokens: opts.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS,
      abortSignal: controller.signal,
      ...(opts.temperature !== undefined ? { temperature: opts.temperature } : {}),
      ...(opts.headers ? { headers: opts.headers } : {}),
    });
  } catch (error) {
    if (!controller.signal.aborted) failure = classifyProviderError(opts.provider, error);
  } finally {
    call.end();
  }
  if (controller.signal.aborted) {
    if (call.timedOut()) throw classifyProviderError(opts.provider, new Error('timeout'), { timedOut: true });
    throw new CancelledError();
  }
  if (failure || !result) throw failure ?? classifyProviderError(opts.provider, new Error('no answer'));
  const maxBytes = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  const text = cleanProviderText(
    result.content
      .filter((part) => part.type === 'text')
      .map((part) => part.text)
      .join(''),
  );
  if (Buffer.byteLength(text) > maxBytes) throw new OutputLimitError(opts.provider, maxBytes, fitUtf8(text, maxBytes));
  const latencyMs = Math.round(performance.now() - started);
  return {
    text,
    promptTokens: result.usage.inputTokens.total ?? null,
    completionTokens: result.usage.outputTokens.total ?? null,
    latencyMs,
    timeToFirstTokenMs: text ? latencyMs : null,
  };
}
