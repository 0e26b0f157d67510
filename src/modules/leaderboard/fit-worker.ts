import { extname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { ArenaFit, ArenaFitOptions, BattleCounts } from './arena.types';
import { packCounts, transferablesOf } from './packed-counts';

/**
 * One worker thread that fits boards (`fit-worker.entry`), started on first use and
 * reused; fits queue inside it (one at a time), so a burst of refits uses one
 * core and the event loop only pays for posting the counts and receiving the
 * board (structured clone of a few thousand rows).
 *
 * Works from TypeScript sources (ts-node, jest/swc: this file ends in `.ts`,
 * the worker registers ts-node with its swc transpiler before loading the
 * `.ts` entry) and from `dist/` (plain `.js`).
 */
/** A young generation the size of the main thread's: a big board's fit allocates briskly (1.5× slower with the worker default). */
const FIT_HEAP = { maxYoungGenerationSizeMb: 64 };

export class FitWorker {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (f: ArenaFit) => void; reject: (e: Error) => void }>();

  private closed = false;

  fit(counts: BattleCounts, options: ArenaFitOptions): Promise<ArenaFit> {
    if (this.closed) return Promise.reject(new Error('leaderboard worker closed'));
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    return new Promise<ArenaFit>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.ref();
      // Columns in transferred buffers: a structured clone of 578,776 row objects took seconds and blocked this loop.
      const packed = packCounts(counts);
      worker.postMessage({ id, counts: packed, options }, transferablesOf(packed));
    });
  }

  /** Stops the thread; pending fits reject. */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = null;
    if (worker) await worker.terminate();
    this.failAll(new Error('leaderboard worker closed'));
  }

  private start(): Worker {
    const ext = extname(__filename);
    const entry = join(__dirname, `fit-worker.entry${ext}`);
    const worker =
      ext === '.ts'
        ? new Worker(
            `require('ts-node').register({ transpileOnly: true, swc: true, compilerOptions: { module: 'commonjs', target: 'es2022' } }); ` +
              `require(${JSON.stringify(entry)});`,
            { eval: true, resourceLimits: FIT_HEAP },
          )
        : new Worker(entry, { resourceLimits: FIT_HEAP });
    worker.unref();
    worker.on('message', (msg: { id: number; fit?: ArenaFit; error?: string }) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (this.pending.size === 0) worker.unref();
      if (msg.error !== undefined) p.reject(new Error(msg.error));
      else p.resolve(msg.fit!);
    });
    worker.on('error', (err) => {
      if (this.worker === worker) this.worker = null;
      this.failAll(err);
    });
    worker.on('exit', () => {
      if (this.worker === worker) this.worker = null;
      this.failAll(new Error('leaderboard worker exited'));
    });
    this.worker = worker;
    return worker;
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
