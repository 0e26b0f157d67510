/**
 * One streamed completion through the AI SDK, with its own timeout and an
 * external AbortSignal (cancel). Reads `fullStream` part by part because that
 * is where v6 reports errors (`error` parts; an HTTP error does not throw) and
 * aborts (`abort` parts). Resolves with the text and measurements, or rejects
 * with a `ProviderCallError` (TIMEOUT when the timer fired) or `CancelledError`.
 */
import { type LanguageModel, type ModelMessage, streamText } from 'ai';
import { classifyProviderError, LLM_MAX_RETRIES, type ProviderCallError, type ProviderName } from './providers';

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
  timeoutMs: number;
  /** Aborting it cancels the call (CancelledError). */
  signal?: AbortSignal;
  maxOutputTokens?: number;
  /** Called for every text delta, in order. */
  onDelta?: (delta: string) => void;
}

const DEFAULT_MAX_OUTPUT_TOKENS = 4096;

export async function streamCompletion(opts: StreamCompletionOptions): Promise<CompletionResult> {
  const started = performance.now();
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new Error('timeout'));
  }, opts.timeoutMs);
  const onCancel = () => controller.abort(new CancelledError());
  if (opts.signal?.aborted) onCancel();
  else opts.signal?.addEventListener('abort', onCancel, { once: true });

  let text = '';
  let firstTokenAt: number | null = null;
  let usage: { inputTokens?: number; outputTokens?: number } | undefined;
  let failure: ProviderCallError | undefined;
  try {
    const result = streamText({
      model: opts.model,
      messages: opts.messages.map((m) => ({ role: m.role, content: m.content }) as ModelMessage),
      maxRetries: LLM_MAX_RETRIES,
      maxOutputTokens: opts.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS,
      abortSignal: controller.signal,
      // The default handler logs the whole request (the user's prompt) to the console.
      onError: () => undefined,
    });
    for await (const part of result.fullStream) {
      if (part.type === 'text-delta' && part.text) {
        firstTokenAt ??= performance.now();
        text += part.text;
        opts.onDelta?.(part.text);
      } else if (part.type === 'error') {
        failure ??= classifyProviderError(opts.provider, part.error, { timedOut });
      } else if (part.type === 'finish') {
        usage = part.totalUsage;
      }
    }
  } catch (error) {
    if (!controller.signal.aborted) failure ??= classifyProviderError(opts.provider, error);
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onCancel);
  }
  if (controller.signal.aborted) {
    if (timedOut) throw classifyProviderError(opts.provider, new Error('timeout'), { timedOut: true });
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
