/**
 * Parent side of the load generator: forks `load-child.ts` once and runs
 * points through it. Between the warm-up and the measured window it calls
 * `beforeMeasure` (snapshot the server) and after the window `afterMeasure`.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';

export interface LoadRequest {
  method: 'POST' | 'GET';
  path: string;
  headers: Record<string, string>;
  body?: string;
}

export interface LoadSpec {
  url: string;
  connections: number;
  warmupSeconds: number;
  seconds: number;
  /** Stop after this many responses instead of after `seconds`. */
  amount?: number;
  timeoutSeconds: number;
  /** Check every body for GraphQL errors / null data. */
  verify: boolean;
  /** One round-robin position across the warm-up and the measured window (by default each starts at the list's first request). */
  continuous?: boolean;
  requests: LoadRequest[];
}

export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  /** Latencies in ms, measured per request by the load generator. */
  p50: number;
  p90: number;
  p99: number;
  max: number;
  errors: { socket: number; timeouts: number; non2xx: number; graphql: number };
  /** Bytes read per response, headers included. */
  bytesPerResponse: number;
  firstError?: string;
}

export type ParentMessage = { type: 'run'; spec: LoadSpec } | { type: 'go' } | { type: 'exit' };
type ChildMessage = { type: 'warmed'; warmup?: LoadResult } | { type: 'result'; result: LoadResult } | { type: 'error'; message: string };

export function totalErrors(r: LoadResult): number {
  return r.errors.socket + r.errors.timeouts + r.errors.non2xx + r.errors.graphql;
}

export class LoadGenerator {
  private constructor(private readonly child: ChildProcess) {}

  static start(): LoadGenerator {
    const child = fork(join(__dirname, 'load-child.ts'), [], {
      execArgv: ['--require', 'ts-node/register'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new LoadGenerator(child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  run(
    spec: LoadSpec,
    hooks: { beforeMeasure?: () => Promise<void>; afterMeasure?: () => Promise<void> } = {},
  ): Promise<{ warmup?: LoadResult; result: LoadResult }> {
    return new Promise((resolve, reject) => {
      let warmup: LoadResult | undefined;
      const onExit = (code: number | null) => {
        cleanup();
        reject(new Error(`the load generator exited (${code})`));
      };
      const onMessage = (message: ChildMessage) => {
        if (message.type === 'warmed') {
          warmup = message.warmup;
          Promise.resolve(hooks.beforeMeasure?.()).then(
            () => this.child.send({ type: 'go' } satisfies ParentMessage),
            (error: unknown) => {
              cleanup();
              reject(error);
            },
          );
        } else if (message.type === 'result') {
          cleanup();
          Promise.resolve(hooks.afterMeasure?.()).then(() => resolve({ warmup, result: message.result }), reject);
        } else {
          cleanup();
          reject(new Error(`load generator: ${message.message}`));
        }
      };
      const cleanup = () => {
        this.child.off('message', onMessage);
        this.child.off('exit', onExit);
      };
      this.child.on('message', onMessage);
      this.child.once('exit', onExit);
      this.child.send({ type: 'run', spec } satisfies ParentMessage);
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || !this.child.connected) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.send({ type: 'exit' } satisfies ParentMessage);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
