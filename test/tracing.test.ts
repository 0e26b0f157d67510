/**
 * OpenTelemetry traces (issue 21.4), read from an in-memory exporter: one
 * trace per request across HTTP, the GraphQL operation, its SQL statements and
 * the comparison's background work (the provider calls with model, tokens,
 * cost and time to first token; never the prompt); a caller's `traceparent`
 * is continued; with OTEL_EXPORTER_OTLP_ENDPOINT unset nothing is recorded.
 *
 * Tracing is process-wide (one traced app at a time): the traced app is
 * closed before the untraced one is built.
 */
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createSet, START as EVAL_START, waitForRun } from './helpers/evals';
import { FakeLlmServer } from './helpers/fake-llm';
import { describeRedis, redisUrlForTests } from './helpers/redis';
import { subscribe } from './helpers/sse';
import { createTestApp, type TestApp } from './helpers/test-app';

const START = 'mutation Start($input: RunComparisonInput!) { startComparison(input: $input) { id responses { id status } } }';
const EVENTS = `subscription($id: ID!) { comparisonEvents(comparisonId: $id) { comparisonId responseId status } }`;
const SAVE_KEY = `mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }`;
const ME = 'query Me { me { id } }';
const PROMPT = 'Zanzibar-otter-prompt-4417: explain tracing';
const SECRETS = ['sk-openai-trace-secret-01', 'sk-ant-trace-secret-02'];
const MODELS = ['openai:gpt-4o', 'anthropic:claude-sonnet-4-5'];

let fake: FakeLlmServer;
beforeAll(async () => {
  fake = await FakeLlmServer.start();
});
afterAll(async () => {
  await fake?.close();
});

async function signUpWithKeys(t: TestApp) {
  const user = await t.signUp('otel');
  for (const [provider, apiKey] of [
    ['OPENAI', SECRETS[0]],
    ['ANTHROPIC', SECRETS[1]],
  ]) {
    const res = await t.gql(SAVE_KEY, { input: { provider, apiKey } }, user.token);
    expect(res.errors).toBeUndefined();
  }
  return user;
}

/**
 * Flushes until `ready` holds over the finished spans: each round exports what has ended, then yields to the event
 * loop (work still running after its answer was sent, a cache write say, ends its spans meanwhile); bounded in time.
 */
async function spansWhen(t: TestApp, exporter: InMemorySpanExporter, ready: (spans: ReadableSpan[]) => boolean) {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    await t.app.tracing.forceFlush();
    const spans = exporter.getFinishedSpans();
    if (ready(spans)) return spans;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  throw new Error(`spans never ready: ${exporter.getFinishedSpans().map((s) => s.name)}`);
}

const traceOf = (s: ReadableSpan) => s.spanContext().traceId;
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

describe('with OTEL_EXPORTER_OTLP_ENDPOINT set', () => {
  const exporter = new InMemorySpanExporter();
  let t: TestApp;
  let user: { token: string };
  beforeAll(async () => {
    t = await createTestApp({
      env: {
        ...fake.providerEnv(),
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
        OTEL_SERVICE_NAME: 'llmselect-test',
        // Comparisons' answers read in a provider thread (its span is the main thread's); evals' in-process.
        PROVIDER_THREADS: '1',
        EVAL_POLL_MS: '50',
      },
      spanExporter: exporter,
    });
    user = await signUpWithKeys(t);
  });
  afterAll(async () => {
    await t?.close();
  });
  beforeEach(() => exporter.reset());

  it('makes one trace of a startComparison: HTTP, the operation, its SQL and the background provider calls', async () => {
    const started = await t.gql(START, { input: { prompt: PROMPT, models: MODELS } }, user.token, { 'x-request-id': 'otel-start-1' });
    expect(started.errors).toBeUndefined();
    const id: string = started.data.startComparison.id;
    // The comparison settles (the stream completes), then every span of its background work has ended.
    const sub = await subscribe(t.url, EVENTS, { id }, user.token);
    for await (const _ of sub.events);
    expect(sub.completed).toBe(true);
    await t.app.services.runner.settled(id);

    const spans = await spansWhen(t, exporter, (all) => {
      const root = all.find((s) => s.attributes['llmselect.request_id'] === 'otel-start-1');
      return !!root && all.filter((s) => s.name === 'comparison.response' && traceOf(s) === traceOf(root)).length === 2;
    });
    const http = spans.find((s) => s.attributes['llmselect.request_id'] === 'otel-start-1')!;
    expect(http).toMatchObject({ kind: SpanKind.SERVER, name: 'POST graphql' });
    expect(http.attributes).toMatchObject({ 'http.request.method': 'POST', 'url.path': '/graphql', 'http.response.status_code': 200 });
    expect(parentOf(http)).toBeUndefined(); // the trace's root
    const trace = spans.filter((s) => traceOf(s) === traceOf(http));

    const operation = trace.find((s) => s.attributes['graphql.operation.name'] === 'Start')!;
    expect(operation).toMatchObject({ name: 'mutation Start' });
    expect(operation.attributes['graphql.operation.type']).toBe('mutation');
    expect(parentOf(operation)).toBe(http.spanContext().spanId);

    // The start's statements, under the operation; text with placeholders, never the prompt.
    const sql = trace.filter((s) => s.attributes['db.system.name'] === 'postgresql');
    const startSql = sql.filter((s) => parentOf(s) === operation.spanContext().spanId);
    expect(startSql.length).toBeGreaterThan(0);
    expect(startSql.some((s) => /comparison/.test(String(s.attributes['db.query.text'])))).toBe(true);

    // The background work continues the trace: one span per response, each with its provider call and its settle's SQL.
    const responses = trace.filter((s) => s.name === 'comparison.response');
    expect(responses.map((s) => s.attributes['gen_ai.request.model']).sort()).toEqual(['claude-sonnet-4-5', 'gpt-4o']);
    for (const response of responses) {
      expect(parentOf(response)).toBe(operation.spanContext().spanId);
      const calls = trace.filter((s) => parentOf(s) === response.spanContext().spanId && s.attributes['gen_ai.operation.name'] === 'chat');
      expect(calls).toHaveLength(1);
      const call = calls[0]!;
      expect(call.kind).toBe(SpanKind.CLIENT);
      expect(call.attributes).toMatchObject({
        'gen_ai.provider.name': response.attributes['gen_ai.provider.name'],
        'gen_ai.request.model': response.attributes['gen_ai.request.model'],
        'llmselect.outcome': 'ok',
      });
      expect(call.attributes['gen_ai.usage.input_tokens']).toBeGreaterThan(0);
      expect(call.attributes['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
      expect(call.attributes['llmselect.cost_usd']).toBeGreaterThan(0);
      expect(call.attributes['llmselect.time_to_first_token_ms']).toBeGreaterThanOrEqual(0);
    }
    // The settles' write, in the same trace under a response's span (settles of one turn share one statement: under the
    // response whose settle started it).
    const responseIds = new Set(responses.map((r) => r.spanContext().spanId));
    expect(sql.some((s) => responseIds.has(parentOf(s)!) && /update/i.test(String(s.attributes['db.query.text'])))).toBe(true);

    // Nothing the user sent or a key: not in any attribute of any span (the fake's answers echo the prompt, too).
    const attributes = JSON.stringify(spans.map((s) => s.attributes));
    expect(attributes).not.toContain('Zanzibar');
    for (const secret of SECRETS) expect(attributes).not.toContain(secret.slice(-8));
    expect(spans.every((s) => s.resource.attributes['service.name'] === 'llmselect-test')).toBe(true);
  });

  it("continues the trace of the request that queued an eval run in its jobs' runs", async () => {
    const setId = await createSet(t.gql, user.token, [{ prompt: PROMPT }]);
    const res = await t.gql(EVAL_START, { input: { promptSetId: setId, models: ['openai:gpt-4o-mini'] } }, user.token, {
      'x-request-id': 'otel-eval-1',
    });
    expect(res.errors).toBeUndefined();
    expect((await waitForRun(t.gql, user.token, res.data.startEvalRun.id)).status).toBe('COMPLETED');

    const spans = await spansWhen(t, exporter, (all) => {
      const root = all.find((s) => s.attributes['llmselect.request_id'] === 'otel-eval-1');
      return !!root && all.some((s) => s.name === 'eval.cell' && traceOf(s) === traceOf(root));
    });
    const http = spans.find((s) => s.attributes['llmselect.request_id'] === 'otel-eval-1')!;
    const trace = spans.filter((s) => traceOf(s) === traceOf(http));
    const operation = trace.find((s) => s.attributes['graphql.operation.type'] === 'mutation')!;
    const cell = trace.find((s) => s.name === 'eval.cell')!;
    // Queued inside the operation's span: the job's traceparent names it.
    expect(parentOf(cell)).toBe(operation.spanContext().spanId);
    expect(cell.attributes['llmselect.eval_run_id']).toBe(res.data.startEvalRun.id);
    const call = trace.find((s) => parentOf(s) === cell.spanContext().spanId && s.attributes['gen_ai.operation.name'] === 'chat');
    expect(call?.attributes).toMatchObject({
      'gen_ai.provider.name': 'openai',
      'gen_ai.request.model': 'gpt-4o-mini',
      'llmselect.outcome': 'ok',
    });
    expect(call?.attributes['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
    expect(trace.some((s) => parentOf(s) === cell.spanContext().spanId && s.attributes['db.system.name'] === 'postgresql')).toBe(true);
    expect(JSON.stringify(spans.map((s) => s.attributes))).not.toContain('Zanzibar');
  });

  it("continues a caller's traceparent", async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parent = '00f067aa0ba902b7';
    const res = await t.gql(ME, {}, user.token, { traceparent: `00-${traceId}-${parent}-01`, 'x-request-id': 'otel-me-1' });
    expect(res.errors).toBeUndefined();
    const spans = await spansWhen(t, exporter, (all) => all.some((s) => s.attributes['llmselect.request_id'] === 'otel-me-1'));
    const http = spans.find((s) => s.attributes['llmselect.request_id'] === 'otel-me-1')!;
    expect(traceOf(http)).toBe(traceId);
    expect(parentOf(http)).toBe(parent);
    const operation = spans.find((s) => s.attributes['graphql.operation.name'] === 'Me' && traceOf(s) === traceId);
    expect(operation?.name).toBe('query Me');
  });

  it('starts a new trace for a malformed traceparent', async () => {
    await t.gql(ME, {}, user.token, { traceparent: '00-not-a-trace-01', 'x-request-id': 'otel-me-2' });
    const spans = await spansWhen(t, exporter, (all) => all.some((s) => s.attributes['llmselect.request_id'] === 'otel-me-2'));
    const http = spans.find((s) => s.attributes['llmselect.request_id'] === 'otel-me-2')!;
    expect(parentOf(http)).toBeUndefined();
    expect(traceOf(http)).toMatch(/^[0-9a-f]{32}$/);
  });
});

describeRedis('with Redis (cache and pub/sub) and tracing on', () => {
  const exporter = new InMemorySpanExporter();
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      env: {
        ...fake.providerEnv(),
        REDIS_URL: redisUrlForTests(),
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
        PROVIDER_THREADS: '1',
      },
      spanExporter: exporter,
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("puts the cache's commands and the answers' publishes in the request's trace, none in a trace of its own", async () => {
    const user = await signUpWithKeys(t);
    // A first comparison starts the provider thread (in its own request's context): the next one must not inherit it.
    const first = await t.gql(START, { input: { prompt: PROMPT, models: MODELS } }, user.token);
    await t.app.services.runner.settled(first.data.startComparison.id);
    await t.app.tracing.forceFlush();
    exporter.reset();
    const started = await t.gql(START, { input: { prompt: PROMPT, models: MODELS } }, user.token, { 'x-request-id': 'otel-redis-1' });
    expect(started.errors).toBeUndefined();
    await t.app.services.runner.settled(started.data.startComparison.id);
    // A read answered through the response cache (a miss, then stored): the cache's commands in its trace.
    await t.gql(ME, {}, user.token, { 'x-request-id': 'otel-redis-2' });
    const spans = await spansWhen(t, exporter, (all) => {
      const ids = new Set(all.filter((s) => String(s.attributes['llmselect.request_id']).startsWith('otel-redis')).map(traceOf));
      return ids.size === 2 && all.filter((s) => s.name === 'comparison.response' && ids.has(traceOf(s))).length === 2;
    });
    const traceOfRequest = (id: string) => traceOf(spans.find((s) => s.attributes['llmselect.request_id'] === id)!);
    const redis = spans.filter((s) => s.attributes['db.system.name'] === 'redis');
    const publishes = redis.filter((s) => s.name === 'redis PUBLISH');
    // Deltas (read in the provider thread) and statuses: published under the comparison's trace.
    // Every publish on this comparison's channel is in its trace (the first comparison's late ones are in the first's).
    const ours = publishes.filter((s) => String(s.attributes['messaging.destination.name']).endsWith(started.data.startComparison.id));
    expect(ours.length).toBeGreaterThan(2);
    expect(ours.filter((s) => traceOf(s) !== traceOfRequest('otel-redis-1')).map((s) => s.name)).toEqual([]);
    expect(publishes.every((s) => typeof s.attributes['messaging.destination.name'] === 'string')).toBe(true);
    expect(redis.filter((s) => s.name !== 'redis PUBLISH' && traceOf(s) === traceOfRequest('otel-redis-2')).length).toBeGreaterThan(0);
    // No Redis span starts a trace: every one has a parent.
    expect(redis.filter((s) => parentOf(s) === undefined).map((s) => s.name)).toEqual([]);
    expect(JSON.stringify(spans.map((s) => s.attributes))).not.toContain('Zanzibar');
  });
});

describe('with OTEL_TRACES_SAMPLER=parentbased_always_off', () => {
  const exporter = new InMemorySpanExporter();
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_TRACES_SAMPLER: 'parentbased_always_off' },
      spanExporter: exporter,
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("records no new trace, but a caller's sampled one", async () => {
    const user = await t.signUp('sampled');
    await t.gql(ME, {}, user.token, { 'x-request-id': 'otel-unsampled' });
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    await t.gql(ME, {}, user.token, { traceparent: `00-${traceId}-b7ad6b7169203331-01`, 'x-request-id': 'otel-sampled' });
    const spans = await spansWhen(t, exporter, (all) => all.some((s) => s.attributes['llmselect.request_id'] === 'otel-sampled'));
    expect(spans.some((s) => s.attributes['llmselect.request_id'] === 'otel-unsampled')).toBe(false);
    expect(new Set(spans.map(traceOf))).toEqual(new Set([traceId]));
    // The operation's span (answered from the read cache the first request filled: no SQL), under the HTTP span.
    const http = spans.find((s) => s.attributes['llmselect.request_id'] === 'otel-sampled')!;
    expect(spans.find((s) => s.attributes['graphql.operation.name'] === 'Me')?.parentSpanContext?.spanId).toBe(http.spanContext().spanId);
  });
});

describe('with OTEL_EXPORTER_OTLP_ENDPOINT unset', () => {
  const exporter = new InMemorySpanExporter();
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ env: { ...fake.providerEnv() }, spanExporter: exporter });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('records no span', async () => {
    expect(t.app.tracing.enabled).toBe(false);
    const user = await signUpWithKeys(t);
    const started = await t.gql(START, { input: { prompt: PROMPT, models: MODELS } }, user.token);
    expect(started.errors).toBeUndefined();
    await t.app.services.runner.settled(started.data.startComparison.id);
    await t.app.tracing.forceFlush();
    expect(exporter.getFinishedSpans()).toEqual([]);
  });
});
