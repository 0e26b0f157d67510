/**
 * Where comparison answers are streamed from the provider: in-process
 * (`PROVIDER_THREADS=0`, the default) or in worker threads, so the main event
 * loop only receives the text. Reading a provider's stream through the AI SDK is a pipeline of web
 * streams (HTTP body → text decoder → SSE parser → JSON parse → the
 * provider's transform) costing tens of microseconds and several promises
 * per delta, each promise also paying Node 20's async-hook cost on a loop
 * that uses AsyncLocalStorage; at 20 comparisons × 4 models that is half the
 * main loop's time (profile in docs/BENCHMARKS.md "Streaming benchmark").
 * A thread posts the deltas that arrived in one turn of its loop as one
 * message, so the main loop pays one message per turn instead.
 *
 * The thread builds the model from a serialisable {@link ModelSpec} (the key
 * travels between threads of this process only) with its own egress-guarded
 * fetch built from the same policy, and runs `streamCompletionDirect`: the
 * same limits, cleaning and error classification as in-process. Errors come
 * back as the same classes (`ProviderCallError`, `OutputLimitError` with its
 * partial text, `CancelledError`). A thread that dies fails its streams as
 * UNAVAILABLE; the next call starts a new one. `threads: 0` streams
 * in-process: on a 2-core machine that had the lower latency (a thread makes
 * starts faster and the streams then pile up on two cores; docs/CONFIGURATION.md
 * has the measurements), so it is the default.
 */
import { extname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { ProviderErrorReason } from '../errors';
import { excludedFromDeadline } from '../db/request-deadline';
import type { EgressPolicy } from './egress';
import { createLanguageModel, type ProviderBaseUrls, type ProviderCredentials, type ProviderTransport } from './language-models';
import type { ProviderName } from './model-id';
import { classifyProviderError, ProviderCallError } from './provider-errors';
import {
  CancelledError,
  type ChatTurn,
  type CompletionResult,
  OutputLimitError,
  streamCompletion,
  traceProviderCall,
} from './stream-completion';
import { bindToActive, tracingOn } from '../observability/tracing';

/** Everything needed to build the model in another thread. */
export interface ModelSpec {
  provider: ProviderName;
  name: string;
  creds: ProviderCredentials;
  baseUrls: ProviderBaseUrls;
}

export interface ProviderStreamOptions {
  spec: ModelSpec;
  messages: readonly ChatTurn[];
  system?: string;
  timeoutMs: number;
  maxOutputTokens?: number;
  maxOutputBytes?: number;
  /** Aborting it cancels the call (CancelledError). */
  signal?: AbortSignal;
  /** Called for every text delta, in order. */
  onDelta?: (delta: string) => void;
}

// ─── The messages between the threads (also used by provider-thread.entry.ts) ──

export interface StartMessage extends Omit<ProviderStreamOptions, 'signal' | 'onDelta'> {
  t: 'start';
  id: number;
}
export type ToThread = StartMessage | { t: 'cancel'; id: number };
export interface FailureMessage {
  t: 'fail';
  id: number;
  error:
    | { k: 'provider'; provider: ProviderName; reason: ProviderErrorReason; message: string; statusCode?: number }
    | { k: 'limit'; provider: ProviderName; limitBytes: number; partialText: string }
    | { k: 'cancelled' }
    | { k: 'error'; name: string; message: string; stack?: string };
}
export type ThreadMessage = { t: 'd'; b: Array<number | string> } | { t: 'end'; id: number; result: CompletionResult } | FailureMessage;

interface Pending {
  provider: ProviderName;
  thread: Thread;
  onDelta?: (delta: string) => void;
  resolve: (result: CompletionResult) => void;
  reject: (error: Error) => void;
}

interface Thread {
  worker: Worker;
  active: number;
}

export interface ProviderThreadsOptions {
  /** Worker threads; 0 streams in-process. */
  threads: number;
  egress: EgressPolicy;
  /** The in-process transport (threads: 0). */
  transport: ProviderTransport;
  /** How long a thread gathers deltas before posting them (`PROVIDER_THREAD_BATCH_MS`, default 2). */
  batchMs?: number;
  /** A thread that died with calls running (its error, the calls it failed): logged by the app. */
  onThreadLost?: (error: unknown, calls: number) => void;
}

/** A thread's heap: an answer is text, so a thread that grows past this has gone wrong (its calls fail, a new one starts). */
const THREAD_HEAP = { maxOldGenerationSizeMb: 512 };

/**
 * How long past its own timeout a call waits for its thread's answer before the main thread ends it (TIMEOUT): the
 * thread's timer bounds the call only while that thread's loop runs and its messages arrive.
 */
const THREAD_ANSWER_GRACE_MS = 5_000;

export class ProviderThreads {
  private readonly threads: Thread[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: ProviderThreadsOptions) {}

  /** Streams one answer; resolves like `streamCompletion`, whichever thread runs it. */
  stream(o: ProviderStreamOptions): Promise<CompletionResult> {
    if (this.opts.threads <= 0) {
      const { spec, ...rest } = o;
      return excludedFromDeadline(() =>
        streamCompletion({
          ...rest,
          provider: spec.provider,
          model: createLanguageModel(spec.provider, spec.name, spec.creds, spec.baseUrls, this.opts.transport),
        }),
      );
    }
    // The call's span is the main thread's (the thread only streams): provider, model, tokens, cost, first token.
    return excludedFromDeadline(() =>
      tracingOn() ? traceProviderCall(o.spec.provider, o.spec.name, () => this.inThread(o)) : this.inThread(o),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    const threads = this.threads.splice(0);
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }

  private inThread(o: ProviderStreamOptions): Promise<CompletionResult> {
    if (this.closed) return Promise.reject(new ProviderCallError(o.spec.provider, 'UNAVAILABLE', 'The server is shutting down'));
    if (o.signal?.aborted) return Promise.reject(new CancelledError());
    const thread = this.pick();
    const id = this.nextId++;
    const { signal, onDelta, ...rest } = o;
    return new Promise<CompletionResult>((resolve, reject) => {
      const onAbort = () => thread.worker.postMessage({ t: 'cancel', id } satisfies ToThread);
      const watchdog = setTimeout(() => {
        onAbort();
        this.pending.get(id)?.reject(classifyProviderError(o.spec.provider, new Error('timeout'), { timedOut: true }));
      }, o.timeoutMs + THREAD_ANSWER_GRACE_MS);
      watchdog.unref();
      const done = () => {
        clearTimeout(watchdog);
        signal?.removeEventListener('abort', onAbort);
        this.pending.delete(id);
        if (--thread.active === 0) thread.worker.unref();
      };
      this.pending.set(id, {
        provider: o.spec.provider,
        thread,
        // Deltas arrive in the thread's message events: run them in this call's trace context, not the port's.
        onDelta: onDelta && bindToActive(onDelta),
        resolve: (result) => {
          done();
          resolve(result);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      });
      if (thread.active++ === 0) thread.worker.ref();
      signal?.addEventListener('abort', onAbort, { once: true });
      thread.worker.postMessage({ t: 'start', id, ...rest } satisfies ToThread);
    });
  }

  /** The thread with the fewest streams, starting threads up to the configured number. */
  private pick(): Thread {
    let best: Thread | undefined;
    for (const t of this.threads) if (!best || t.active < best.active) best = t;
    if (best && (best.active === 0 || this.threads.length >= this.opts.threads)) return best;
    return this.spawn();
  }

  private spawn(): Thread {
    const ext = extname(__filename);
    const entry = join(__dirname, `provider-thread.entry${ext}`);
    const workerData = { egress: this.opts.egress, batchMs: this.opts.batchMs };
    const worker =
      ext === '.ts'
        ? new Worker(
            `require('ts-node').register({ transpileOnly: true, swc: true, compilerOptions: { module: 'commonjs', target: 'es2022' } }); ` +
              `require(${JSON.stringify(entry)});`,
            { eval: true, workerData, resourceLimits: THREAD_HEAP },
          )
        : new Worker(entry, { workerData, resourceLimits: THREAD_HEAP });
    worker.unref();
    const thread: Thread = { worker, active: 0 };
    worker.on('message', (m: ThreadMessage) => this.receive(m));
    const lost = (error?: unknown) => {
      const at = this.threads.indexOf(thread);
      if (at >= 0) this.threads.splice(at, 1);
      let failed = 0;
      for (const p of [...this.pending.values()]) {
        if (p.thread !== thread) continue;
        failed++;
        p.reject(new ProviderCallError(p.provider, 'UNAVAILABLE', 'The provider call was interrupted: retry'));
      }
      if (error !== undefined || (failed > 0 && !this.closed))
        this.opts.onThreadLost?.(error ?? new Error('provider thread exited'), failed);
    };
    worker.on('error', (error) => lost(error));
    worker.on('exit', () => lost());
    this.threads.push(thread);
    return thread;
  }

  private receive(m: ThreadMessage): void {
    if (m.t === 'd') {
      const b = m.b;
      for (let i = 0; i < b.length; i += 2) {
        const p = this.pending.get(b[i] as number);
        try {
          p?.onDelta?.(b[i + 1] as string);
        } catch (error) {
          // As in-process (the callback runs inside streamCompletion's try): that call fails, not the process.
          p!.thread.worker.postMessage({ t: 'cancel', id: b[i] as number } satisfies ToThread);
          p!.reject(classifyProviderError(p!.provider, error));
        }
      }
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.t === 'end') {
      p.resolve(m.result);
      return;
    }
    const e = m.error;
    if (e.k === 'provider') p.reject(new ProviderCallError(e.provider, e.reason, e.message, { statusCode: e.statusCode }));
    else if (e.k === 'limit') p.reject(new OutputLimitError(e.provider, e.limitBytes, e.partialText));
    else if (e.k === 'cancelled') p.reject(new CancelledError());
    else {
      // Not a provider's failure: as in-process, the caller logs it and shows no text of it ("Internal error").
      const error = new Error(e.message);
      error.name = e.name;
      if (e.stack) error.stack = e.stack;
      p.reject(error);
    }
  }
}
