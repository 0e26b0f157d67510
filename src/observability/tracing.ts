/**
 * OpenTelemetry traces, off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
 *
 * No auto-instrumentation: spans are made at our few choke points, with the
 * helpers below:
 *  - the HTTP request (`http/server.ts`): the root span, or the continuation of
 *    a caller's W3C `traceparent`;
 *  - the GraphQL operation (`graphql/http.ts` makes it active, `graphqlTracingPlugin` names it);
 *  - each SQL statement (`db/query-observer.ts` hears every statement after the
 *    fact with its duration: the span gets explicit start and end times);
 *  - the cache's Redis commands and pub/sub publishes;
 *  - each provider call (`llm/stream-completion.ts`, `llm/provider-threads.ts`):
 *    model, provider, tokens, cost, time to first token, outcome;
 *  - the comparison runner's and the eval worker's background work continue
 *    the trace of the request that started it (the eval's through a
 *    `traceparent` in its pg-boss job data).
 *
 * Never in an attribute: secrets, prompts, answers, SQL parameter values (SQL
 * text has placeholders, and its string literals are masked).
 *
 * Off: {@link tracer} is undefined and every helper runs its work directly
 * (one variable read), nothing is registered with the OpenTelemetry API.
 * On: one process-wide provider (a batch processor to the OTLP/HTTP exporter,
 * or a test's exporter) and an AsyncLocalStorage context manager;
 * {@link TracingHandle.shutdown} flushes and unregisters both.
 */
import {
  type Attributes,
  type Context,
  context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  type SpanOptions,
  SpanStatusCode,
  type TextMapGetter,
  TraceFlags,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';

export { SpanKind, SpanStatusCode, type Span, type Attributes, type SpanExporter };

export interface TracingConfig {
  /** `OTEL_EXPORTER_OTLP_ENDPOINT` (traces go to `<endpoint>/v1/traces`); undefined: tracing off. */
  endpoint?: string;
  /** `OTEL_SERVICE_NAME`. */
  serviceName: string;
  /** The share of new traces kept (`OTEL_TRACES_SAMPLER_ARG`); a caller's `traceparent` decides for its own. */
  sampleRatio: number;
}

export interface TracingHandle {
  readonly enabled: boolean;
  /** Exports what is buffered (tests poll it). */
  forceFlush(): Promise<void>;
  /** Flushes the exporter and unregisters the provider and context manager. Idempotent. */
  shutdown(): Promise<void>;
}

/** The process's tracer while tracing is on. */
let tracer: Tracer | undefined;
const propagator = new W3CTraceContextPropagator();

const OFF: TracingHandle = { enabled: false, forceFlush: async () => {}, shutdown: async () => {} };

/**
 * Turns tracing on when `config.endpoint` is set (`exporter` replaces the
 * OTLP/HTTP one: tests pass an in-memory exporter). One app at a time per
 * process may trace; a second start while one is on throws.
 */
export async function startTracing(config: TracingConfig, version: string, exporter?: SpanExporter): Promise<TracingHandle> {
  if (!config.endpoint) return OFF;
  if (tracer) throw new Error('tracing is already on in this process');
  // The SDK and the exporter are loaded only when tracing is on: off, none of their modules is.
  const [{ AsyncLocalStorageContextManager }, { OTLPTraceExporter }, { resourceFromAttributes }, sdk] = await Promise.all([
    import('@opentelemetry/context-async-hooks'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/sdk-trace-base'),
  ]);
  const { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } = sdk;
  if (tracer) throw new Error('tracing is already on in this process');
  const contextManager = new AsyncLocalStorageContextManager().enable();
  if (!context.setGlobalContextManager(contextManager)) {
    contextManager.disable();
    throw new Error('another OpenTelemetry context manager is registered');
  }
  const provider = new BasicTracerProvider({
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) }),
    resource: resourceFromAttributes({ 'service.name': config.serviceName, 'service.version': version }),
    spanProcessors: [
      new BatchSpanProcessor(exporter ?? new OTLPTraceExporter({ url: `${config.endpoint.replace(/\/+$/, '')}/v1/traces` }), {
        // A full queue drops spans rather than growing: tracing never holds the app's memory hostage.
        maxQueueSize: 8192,
        maxExportBatchSize: 512,
        scheduledDelayMillis: 1000,
      }),
    ],
  });
  const own = provider.getTracer('llmselect', version);
  tracer = own;
  let stopped: Promise<void> | undefined;
  return {
    enabled: true,
    forceFlush: () => provider.forceFlush(),
    shutdown: () =>
      (stopped ??= (async () => {
        try {
          await provider.shutdown();
        } finally {
          if (tracer === own) tracer = undefined;
          context.disable();
        }
      })()),
  };
}

/** Whether spans are being made (callers skip building attributes otherwise). */
export function tracingOn(): boolean {
  return tracer !== undefined;
}

/**
 * Whether a span made now would be recorded: tracing is on and the active trace (if any) is sampled.
 * Callers skip building attributes (a SQL text masked) for traces the sampler dropped.
 */
export function recordingSpans(): boolean {
  if (!tracer) return false;
  return !droppedTrace();
}

/**
 * Whether the active trace was dropped by the sampler (its flags say not sampled): the parent-based sampler records
 * no child of it, so none is made. A remote parent (a job's `traceparent`) is not recording yet sampled: it counts.
 */
function droppedTrace(): boolean {
  const active = trace.getActiveSpan();
  return active !== undefined && (active.spanContext().traceFlags & TraceFlags.SAMPLED) === 0;
}

/**
 * Runs `work` inside a new span (a child of the active one), ended when `work`
 * settles; a rejection marks it an error (its class name only: messages may
 * quote user input). `work` gets the span to add attributes.
 */
export function withSpan<T>(name: string, options: SpanOptions, work: (span: Span | undefined) => Promise<T>): Promise<T> {
  const t = tracer;
  // Off, or inside a trace the sampler dropped (its children would not be recorded either).
  if (!t || droppedTrace()) return work(undefined);
  return t.startActiveSpan(name, options, (span) =>
    work(span).then(
      (value) => {
        span.end();
        return value;
      },
      (error: unknown) => {
        failSpan(span, error);
        span.end();
        throw error;
      },
    ),
  );
}

/** Marks a span failed with the error's class (and code, when it has one), never its message. */
export function failSpan(span: Span, error: unknown): void {
  const type = error instanceof Error ? error.name : typeof error;
  span.setStatus({ code: SpanStatusCode.ERROR });
  span.setAttribute('error.type', (error as { code?: unknown })?.code ? `${type}:${String((error as { code: unknown }).code)}` : type);
}

/** A span that already happened (a SQL statement heard after the fact): `tookMs` ending now, under the active span. */
export function recordSpan(name: string, tookMs: number, attributes: Attributes, failed: boolean): void {
  const t = tracer;
  if (!t || droppedTrace()) return;
  const end = Date.now();
  const span = t.startSpan(name, { kind: SpanKind.CLIENT, startTime: end - tookMs, attributes });
  if (failed) span.setStatus({ code: SpanStatusCode.ERROR });
  span.end(end);
}

const headerGetter: TextMapGetter<Record<string, string | string[] | undefined>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

/** The context a request's `traceparent` (and `tracestate`) header continues; the root context without one. */
export function contextFromHeaders(headers: Record<string, string | string[] | undefined>): Context {
  return propagator.extract(ROOT_CONTEXT, headers, headerGetter);
}

/** The active span's context as a `traceparent` value (stored in a job's data); undefined when off or outside a span. */
export function currentTraceparent(): string | undefined {
  if (!tracer) return undefined;
  const carrier: Record<string, string> = {};
  propagator.inject(context.active(), carrier, { set: (c, k, v) => (c[k] = v) });
  return carrier.traceparent;
}

/** Runs `work` with the trace of `traceparent` (a job started by a request) as its parent; as is without one. */
export function withTraceparent<T>(traceparent: string | undefined, work: () => T): T {
  if (!tracer || !traceparent) return work();
  return context.with(contextFromHeaders({ traceparent }), work);
}

/**
 * `fn` bound to the active context, for callbacks an event source calls later in its own context (a provider
 * thread's message events); `fn` itself when tracing is off.
 */
export function bindToActive<F extends (...args: never[]) => unknown>(fn: F): F {
  return tracer ? context.bind(context.active(), fn) : fn;
}

/** Runs `work` with `ctx` active (the HTTP span's). */
export function withContext<T>(ctx: Context, work: () => T): T {
  return tracer ? context.with(ctx, work) : work();
}

/** Starts a span (not active) under `parent`; undefined when off. */
export function startSpan(name: string, options: SpanOptions, parent?: Context): Span | undefined {
  return tracer?.startSpan(name, options, parent);
}

/** The context with `span` active under `parent`. */
export function contextWithSpan(parent: Context, span: Span): Context {
  return trace.setSpan(parent, span);
}

/** The active span, if any (the GraphQL plugin names the operation's). */
export function activeSpan(): Span | undefined {
  return tracer ? trace.getActiveSpan() : undefined;
}
