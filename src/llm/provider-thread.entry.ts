/**
 * Worker-thread entry: streams provider answers off the main event loop (see
 * `provider-threads.ts`). Receives `start` and `cancel` messages; answers with
 * batches of deltas (`d`: what arrived within `BATCH_MS` of the first waiting
 * delta, for all its streams, one joined text per stream, as `[id, text, …]`),
 * then one `end` or `fail` per stream, always after that stream's last batch.
 * Loaded by `ProviderThreads`, never imported by the app.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { EgressPolicy } from './egress';
import { createGuardedFetch } from './egress';
import { createLanguageModel, loadProviderPackages } from './language-models';
import { ProviderCallError } from './provider-errors';
import { CancelledError, OutputLimitError, streamCompletionDirect } from './stream-completion';
import type { FailureMessage, StartMessage, ThreadMessage, ToThread } from './provider-threads';

const port = parentPort!;
loadProviderPackages();
const transport = { userFetch: createGuardedFetch((workerData as { egress: EgressPolicy }).egress) };
const running = new Map<number, AbortController>();
/** Deltas waiting to be posted, per stream, joined: consecutive deltas of one answer travel as one. */
let waiting = new Map<number, string>();
let scheduled: NodeJS.Timeout | undefined;
/**
 * How long the first waiting delta may wait for others (`PROVIDER_THREAD_BATCH_MS`, default 2 ms): one message per
 * window instead of one per delta, and under load a stream's deltas join, so the main loop has fewer events to send.
 */
const BATCH_MS = (workerData as { batchMs?: number }).batchMs ?? 2;

function flush(): void {
  if (scheduled) clearTimeout(scheduled);
  scheduled = undefined;
  if (waiting.size === 0) return;
  const b: Array<number | string> = [];
  for (const [id, text] of waiting) b.push(id, text);
  waiting = new Map();
  port.postMessage({ t: 'd', b } satisfies ThreadMessage);
}

function failure(error: unknown): FailureMessage['error'] {
  if (error instanceof OutputLimitError) {
    return { k: 'limit', provider: error.provider, limitBytes: error.limitBytes, partialText: error.partialText };
  }
  if (error instanceof ProviderCallError) {
    return { k: 'provider', provider: error.provider, reason: error.reason, message: error.message, statusCode: error.statusCode };
  }
  if (error instanceof CancelledError) return { k: 'cancelled' };
  if (error instanceof Error) return { k: 'error', name: error.name, message: error.message, stack: error.stack };
  return { k: 'error', name: 'Error', message: String(error) };
}

async function run(m: StartMessage): Promise<void> {
  const controller = new AbortController();
  running.set(m.id, controller);
  try {
    const { spec } = m;
    const result = await streamCompletionDirect({
      provider: spec.provider,
      model: createLanguageModel(spec.provider, spec.name, spec.creds, spec.baseUrls, transport),
      messages: m.messages,
      system: m.system,
      timeoutMs: m.timeoutMs,
      maxOutputTokens: m.maxOutputTokens,
      maxOutputBytes: m.maxOutputBytes,
      signal: controller.signal,
      onDelta: (delta) => {
        waiting.set(m.id, (waiting.get(m.id) ?? '') + delta);
        scheduled ??= setTimeout(flush, BATCH_MS);
      },
    });
    flush();
    port.postMessage({ t: 'end', id: m.id, result } satisfies ThreadMessage);
  } catch (error) {
    flush();
    port.postMessage({ t: 'fail', id: m.id, error: failure(error) } satisfies ThreadMessage);
  } finally {
    running.delete(m.id);
  }
}

port.on('message', (m: ToThread) => {
  if (m.t === 'start') void run(m);
  else running.get(m.id)?.abort();
});
