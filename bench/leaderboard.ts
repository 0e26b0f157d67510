/**
 * `npm run bench:leaderboard`: 1,000,000 votes across 100 models, as the
 * service hands them to the worker (aggregated battle counts: pair × outcome),
 * → fit + 1,000 bootstrap resamples in the worker thread, while the main
 * thread's event-loop delay is sampled (perf_hooks.monitorEventLoopDelay).
 * Targets: < 10 s wall, p99 event-loop lag < 20 ms.
 * Options: --votes N --models M --samples B --style (adds 4 style features, 3 bins each).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { BattleCountRow, BattleCounts } from '../src/modules/leaderboard/arena.types';
import { FitWorker } from '../src/modules/leaderboard/fit-worker';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

/** mulberry32: a tiny seeded PRNG for the synthetic data only. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function synthesise(votes: number, models: number, style: boolean): BattleCounts {
  const rand = rng(7);
  const strength = Array.from({ length: models }, (_, i) => (i - models / 2) / 20);
  const names = strength.map((_, i) => `bench:model-${String(i).padStart(3, '0')}`);
  const bins = style ? [-0.5, 0, 0.5] : [0];
  const cells = new Map<string, BattleCountRow>();
  for (let v = 0; v < votes; v++) {
    const i = Math.floor(rand() * models);
    let j = Math.floor(rand() * (models - 1));
    if (j >= i) j++;
    const [a, b] = i < j ? [i, j] : [j, i];
    const x = style ? [0, 1, 2, 3].map(() => bins[Math.floor(rand() * bins.length)]!) : [];
    const pa = 1 / (1 + Math.exp(-(strength[a]! - strength[b]! + (style ? 0.3 * x[0]! : 0))));
    const u = rand();
    const outcome = u < 0.15 ? 'TIE' : rand() < pa ? 'A' : 'B';
    const key = `${a}|${b}|${outcome}|${x.join(',')}`;
    const cell = cells.get(key);
    if (cell) cell.count++;
    else cells.set(key, { a: names[a]!, b: names[b]!, outcome, x, count: 1 });
  }
  return { features: style ? ['length', 'headers', 'lists', 'bold'] : [], rows: [...cells.values()] };
}

async function main(): Promise<void> {
  const votes = arg('votes', 1_000_000);
  const models = arg('models', 100);
  const samples = arg('samples', 1000);
  const style = process.argv.includes('--style');
  const counts = synthesise(votes, models, style);
  console.log(`${votes} votes, ${models} models → ${counts.rows.length} aggregated cells${style ? ' (style control)' : ''}`);

  const worker = new FitWorker();
  await worker.fit({ features: [], rows: [{ a: 'x', b: 'y', outcome: 'A', count: 1 }] }, { bootstrapSamples: 0 }); // warm the thread
  const lag = monitorEventLoopDelay({ resolution: 1 });
  lag.enable();
  const start = performance.now();
  const fit = await worker.fit(counts, { bootstrapSamples: samples, seed: 1 });
  const wallMs = performance.now() - start;
  lag.disable();
  await worker.close();

  const p99 = lag.percentile(99) / 1e6;
  console.log(`leaderboard fit + ${fit.bootstrapSamples} bootstrap resamples: ${(wallMs / 1000).toFixed(2)} s (target < 10 s)`);
  console.log(`event loop p99 lag during the fit: ${p99.toFixed(2)} ms, max ${(lag.max / 1e6).toFixed(2)} ms (target < 20 ms)`);
  console.log(
    `top: ${fit.ratings
      .slice(0, 3)
      .map((r) => `${r.model} ${r.rating.toFixed(1)} [${r.bootstrapLow.toFixed(1)}, ${r.bootstrapHigh.toFixed(1)}] rank ${r.rank}`)
      .join('; ')}`,
  );
  if (style)
    console.log(
      `style: ${fit.styleCoefficients.map((c) => `${c.feature} ${c.coefficient.toFixed(3)} [${c.low.toFixed(3)}, ${c.high.toFixed(3)}]`).join('; ')}`,
    );
  if (wallMs > 10_000 || p99 > 20) process.exitCode = 1;
}

void main();
