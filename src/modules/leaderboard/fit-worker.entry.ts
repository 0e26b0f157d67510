/**
 * Worker-thread entry: fits boards off the main event loop. Receives
 * `{ id, counts (packed columns: packed-counts.ts), options }`, answers `{ id, fit }` or `{ id, error }`.
 * Loaded by `FitWorker` (`fit-worker.ts`), never imported by the app.
 */
import { parentPort } from 'node:worker_threads';
import { fitArena } from './arena-stats';
import type { ArenaFitOptions } from './arena.types';
import { type PackedCounts, unpackCounts } from './packed-counts';

export interface FitRequest {
  id: number;
  counts: PackedCounts;
  options: ArenaFitOptions;
}

parentPort?.on('message', (msg: FitRequest) => {
  try {
    parentPort!.postMessage({ id: msg.id, fit: fitArena(unpackCounts(msg.counts), msg.options) });
  } catch (err) {
    parentPort!.postMessage({ id: msg.id, error: err instanceof Error ? err.message : String(err) });
  }
});
