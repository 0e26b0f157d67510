/**
 * `npm run bench:leaderboard`: 1,000,000 votes across 100 models, as the
 * service hands them to the worker (aggregated battle counts: pair × outcome),
 * → in the worker thread, the default board (one fit + closed-form "sandwich" intervals) and then the
 * same fit with 1,000 bootstrap resamples (the option), while the main thread's event-loop delay is
 * sampled (perf_hooks.monitorEventLoopDelay).
 * Targets: sandwich board < 1 s (< 5 s with --style), the two interval methods within 10% of each other
 * (half-widths, every model), p99 event-loop lag < 20 ms.
 * Options: --votes N --models M --samples B (0: the sandwich only) --style (adds 4 style features, 3 bins each).
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
  // The default board: one fit and the closed-form (sandwich) intervals.
  let start = performance.now();
  const closed = await worker.fit(counts, { bootstrapSamples: 0 });
  const closedMs = performance.now() - start;
  // The option: the same fit with bootstrap resamples (LEADERBOARD_BOOTSTRAP_SAMPLES).
  start = performance.now();
  const fit = samples > 0 ? await worker.fit(counts, { bootstrapSamples: samples, seed: 1 }) : closed;
  const bootMs = performance.now() - start;
  lag.disable();
  await worker.close();

  // How far the two interval methods are apart: per model, |sandwich half-width / bootstrap half-width − 1|.
  const boot = new Map(fit.ratings.map((r) => [r.model, (r.bootstrapHigh - r.bootstrapLow) / 2]));
  const ratios = closed.ratings.map((r) => (r.ratingHigh - r.ratingLow) / 2 / boot.get(r.model)!).sort((x, y) => x - y);
  const worst = Math.max(...ratios.map((x) => Math.abs(x - 1)));
  const median = ratios[Math.floor(ratios.length / 2)]!;
  const closedGoal = style ? 5_000 : 1_000;

  const p99 = lag.percentile(99) / 1e6;
  console.log(`fit + sandwich intervals: ${(closedMs / 1000).toFixed(3)} s (target < ${closedGoal / 1000} s)`);
  if (samples > 0) {
    console.log(
      `fit + ${fit.bootstrapSamples} bootstrap resamples: ${(bootMs / 1000).toFixed(2)} s (${(bootMs / closedMs).toFixed(0)}× the sandwich)`,
    );
    console.log(
      `sandwich / bootstrap half-width: median ${median.toFixed(3)}, range ${ratios[0]!.toFixed(3)}–${ratios.at(-1)!.toFixed(3)}, ` +
        `worst |ratio − 1| ${(100 * worst).toFixed(1)}% (target within 10%)`,
    );
  }
  console.log(`event loop p99 lag during the fits: ${p99.toFixed(2)} ms, max ${(lag.max / 1e6).toFixed(2)} ms (target < 20 ms)`);
  console.log(
    `top: ${closed.ratings
      .slice(0, 3)
      .map((r) => `${r.model} ${r.rating.toFixed(1)} [${r.ratingLow.toFixed(1)}, ${r.ratingHigh.toFixed(1)}] rank ${r.rank}–${r.rankHigh}`)
      .join('; ')}`,
  );
  if (style)
    console.log(
      `style: ${closed.styleCoefficients.map((c) => `${c.feature} ${c.coefficient.toFixed(3)} [${c.low.toFixed(3)}, ${c.high.toFixed(3)}]`).join('; ')}`,
    );
  if (closedMs > closedGoal || p99 > 20 || (samples > 0 && worst > 0.1)) process.exitCode = 1;
}

void main();
