/**
 * `npx ts-node --transpile-only bench/tracing-overhead.ts`: what the tracing code itself costs per request, in
 * process, without a server or a load generator (so it holds on a busy machine where `npm run bench`'s req/s do
 * not). A "request" is what a history-page miss makes: the HTTP root span (from the request's headers), the
 * GraphQL operation span, three SQL statements through `traceStatement` (a 1.4 KB text) and two cache commands.
 * The exporter is a no-op: OTLP serialization and posting are not counted (the bench's `ours-miss-traced` row is).
 * Prints CPU µs per request with tracing off, and on with the sampler keeping 0, 10% and 100% of new traces.
 */
import { fork } from 'node:child_process';
import { traceStatement } from '../src/db/query-observer';
import {
  contextFromHeaders,
  contextWithSpan,
  SpanKind,
  type SpanExporter,
  startSpan,
  startTracing,
  withContext,
  withSpan,
} from '../src/observability/tracing';

const WARMUP = 20_000;
const REQUESTS = 100_000;
const SQL = `select ${'a.col, '.repeat(200)} from t where id = ?`;

const noopExporter: SpanExporter = {
  export: (_spans, done) => done({ code: 0 }),
  shutdown: async () => {},
  forceFlush: async () => {},
};

async function request(i: number, on: boolean): Promise<void> {
  const parent = on ? contextFromHeaders({ host: 'x', 'content-type': 'application/json' }) : undefined;
  const attributes = { 'http.request.method': 'POST', 'url.path': '/graphql', 'llmselect.request_id': `r${i}` };
  const span = parent && startSpan('POST', { kind: SpanKind.SERVER, attributes }, parent);
  const redis = (op: string) =>
    withSpan(
      `redis ${op}`,
      { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'redis', 'db.operation.name': op } },
      async () => null,
    );
  const work = () =>
    withSpan('graphql', {}, async () => {
      for (let k = 0; k < 3; k++) {
        await null;
        traceStatement(SQL, 0.5, false);
      }
      await redis('EVALSHA');
      await redis('SET');
    });
  await (parent && span ? withContext(contextWithSpan(parent, span), work) : work());
  span?.end();
}

/** One setting per process: tracing is process-wide. */
async function measure(ratio: number | undefined): Promise<void> {
  const tracing =
    ratio === undefined
      ? undefined
      : await startTracing({ endpoint: 'http://127.0.0.1:9', serviceName: 'bench', sampleRatio: ratio }, '0', noopExporter);
  for (let i = 0; i < WARMUP; i++) await request(i, tracing !== undefined);
  const cpu = process.cpuUsage();
  for (let i = 0; i < REQUESTS; i++) await request(i, tracing !== undefined);
  const used = process.cpuUsage(cpu);
  await tracing?.shutdown();
  const label = ratio === undefined ? 'off' : `on, ratio ${ratio}`;
  console.log(`${label.padEnd(16)} ${((used.user + used.system) / REQUESTS).toFixed(2).padStart(7)} µs CPU per request`);
}

const setting = process.argv[2];
if (setting !== undefined) {
  void measure(setting === 'off' ? undefined : Number(setting));
} else {
  (async () => {
    for (const s of ['off', '0', '0.1', '1']) {
      await new Promise<void>((resolve, reject) =>
        fork(__filename, [s], { execArgv: process.execArgv })
          .on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}`))))
          .on('error', reject),
      );
    }
  })();
}
