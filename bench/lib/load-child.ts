/**
 * The load generator: autocannon in its own process (forked by `bench/run.ts`
 * through `load.ts`), never in a server's process. For each point it runs the
 * warm-up, tells the parent (which snapshots the server's CPU and counters),
 * waits for "go", runs the measured window and reports.
 *
 * Requests cycle round-robin over the given list (one entry per user) across
 * all connections. Every response body is checked (GraphQL `errors` or a null
 * `data` count as errors), and every latency is kept (autocannon's own
 * histogram has 1 ms resolution; the targets need better).
 */
import type { LoadRequest, LoadResult, LoadSpec, ParentMessage } from './load';

interface AutocannonResult {
  errors: number;
  timeouts: number;
  mismatches: number;
  non2xx: number;
  resets: number;
}
interface AutocannonInstance {
  on(event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void): void;
  on(event: 'reqMismatch', listener: (body: string) => void): void;
  on(event: 'reqError', listener: (error: Error) => void): void;
}
type Autocannon = (opts: Record<string, unknown>, done: (error: Error | null, result: AutocannonResult) => void) => AutocannonInstance;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon: Autocannon = require('autocannon');

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** A body is good when it has data and no GraphQL errors (the bench's own content never contains `"errors":`). */
function goodBody(body: string): boolean {
  return body.length > 0 && !body.startsWith('{"data":null') && !body.includes('"errors":');
}

type BuiltRequest = Omit<LoadRequest, 'body'> & { body?: Buffer };

function run(spec: LoadSpec, requests: BuiltRequest[], seconds: number, amount?: number, position = { next: 0 }): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    let count = 0;
    let latencies = new Float64Array(1 << 16);
    let statusOther = 0;
    let bytes = 0;
    let firstError: string | undefined;
    const started = performance.now();
    const instance = autocannon(
      {
        url: spec.url,
        connections: spec.connections,
        duration: seconds,
        amount,
        timeout: spec.timeoutSeconds,
        requests: [{ setupRequest: (defaults: object) => ({ ...defaults, ...requests[position.next++ % requests.length] }) }],
        verifyBody: spec.verify ? goodBody : undefined,
      },
      (error, result) => {
        if (error) return reject(error);
        const elapsed = (performance.now() - started) / 1000;
        const sorted = latencies.subarray(0, count).sort();
        resolve({
          requests: count,
          seconds: elapsed,
          rps: count / elapsed,
          p50: percentile(sorted, 50),
          p90: percentile(sorted, 90),
          p99: percentile(sorted, 99),
          max: sorted.length ? sorted[sorted.length - 1]! : NaN,
          errors: { socket: result.errors, timeouts: result.timeouts, non2xx: statusOther, graphql: result.mismatches },
          bytesPerResponse: count ? bytes / count : 0,
          firstError,
        });
      },
    );
    instance.on('response', (_client, status, resBytes, ms) => {
      if (count === latencies.length) {
        const grown = new Float64Array(latencies.length * 2);
        grown.set(latencies);
        latencies = grown;
      }
      latencies[count++] = ms;
      bytes += resBytes;
      if (status < 200 || status > 299) {
        statusOther++;
        firstError ??= `HTTP ${status}`;
      }
    });
    instance.on('reqMismatch', (body) => {
      firstError ??= `body: ${body.slice(0, 300)}`;
    });
    instance.on('reqError', (error) => {
      firstError ??= `socket: ${error.message}`;
    });
  });
}

const send = (message: object) => process.send!(message);
let waitingForGo: (() => void) | undefined;

process.on('message', (message: ParentMessage) => {
  if (message.type === 'go') {
    waitingForGo?.();
    return;
  }
  if (message.type === 'exit') {
    process.exit(0);
  }
  const { spec } = message;
  const requests = spec.requests.map((r) => ({ ...r, body: r.body === undefined ? undefined : Buffer.from(r.body) }));
  const position = { next: 0 };
  (async () => {
    const warmup = spec.warmupSeconds > 0 ? await run(spec, requests, spec.warmupSeconds, undefined, position) : undefined;
    const go = new Promise<void>((resolve) => (waitingForGo = resolve));
    send({ type: 'warmed', warmup });
    await go;
    waitingForGo = undefined;
    if (!spec.continuous) position.next = 0;
    const result = await run(spec, requests, spec.seconds, spec.amount, position);
    send({ type: 'result', result });
  })().catch((error: Error) => send({ type: 'error', message: error.stack ?? String(error) }));
});

process.on('disconnect', () => process.exit(0));
