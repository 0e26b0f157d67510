/**
 * Small statistics of the eval results (`eval-results.ts`): Wilson score
 * interval, Newcombe's hybrid interval for a difference of proportions,
 * nearest-rank percentiles, and the interval of a rating difference from two
 * independent sets of bootstrap draws. Pure; no I/O.
 */
import { xoroshiro128plus } from 'pure-rand';
import { percentiles } from '../leaderboard/resampling';

/** Φ⁻¹(0.975): the two-sided 95% normal quantile. */
export const Z_95 = 1.959963984540054;

/**
 * 95% Wilson score interval of `passes` successes in `n` trials:
 *   centre = (p̂ + z²/2n) / (1 + z²/n),  half = z/(1 + z²/n) · √(p̂(1 − p̂)/n + z²/4n²).
 * n = 0: no information, [0, 1]. Clamped to [0, 1]; exactly 0 at 0 passes and 1 at n passes.
 */
export function wilson(passes: number, n: number, z = Z_95): [number, number] {
  if (!(n > 0)) return [0, 1];
  if (passes < 0 || passes > n) throw new RangeError(`passes must be in [0, ${n}], got ${passes}`);
  const p = passes / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [passes === 0 ? 0 : Math.max(0, centre - half), passes === n ? 1 : Math.min(1, centre + half)];
}

/**
 * Newcombe's hybrid score interval (1998, method 10) for p1 − p2 of two
 * independent proportions, from each one's Wilson interval (l, u):
 *   low  = d − √((p1 − l1)² + (u2 − p2)²),  high = d + √((u1 − p1)² + (p2 − l2)²).
 * Either n = 0: [−1, 1] (no information).
 */
export function newcombeDifference(x1: number, n1: number, x2: number, n2: number): { delta: number; low: number; high: number } {
  const p1 = n1 > 0 ? x1 / n1 : 0;
  const p2 = n2 > 0 ? x2 / n2 : 0;
  const delta = p1 - p2;
  if (!(n1 > 0) || !(n2 > 0)) return { delta, low: -1, high: 1 };
  const [l1, u1] = wilson(x1, n1);
  const [l2, u2] = wilson(x2, n2);
  return {
    delta,
    low: delta - Math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
    high: delta + Math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
  };
}

/**
 * Nearest-rank percentile (the smallest value with at least q % of the values
 * at or below it): sorted[⌈q/100 · n⌉ − 1], the first value for q = 0. Always
 * an observed value. null for no values.
 */
export function nearestRank(values: readonly number[], q: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((q / 100) * sorted.length);
  return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1];
}

/**
 * 95% interval of (current − baseline) rating from the two runs' bootstrap
 * draws, taken as independent: draw s of the current run is paired with draw
 * π(s) of the baseline, π a seeded random permutation (the two runs use the
 * same bootstrap seed, so pairing draw s with draw s would correlate their
 * resampling streams), over the first min(B₁, B₂) draws; the interval is the
 * 2.5 % – 97.5 % percentile range of the differences (linear interpolation,
 * as the arena's). null without draws.
 */
export function bootstrapDifference(current: readonly number[], baseline: readonly number[], seed = 1): [number, number] | null {
  const B = Math.min(current.length, baseline.length);
  if (B === 0) return null;
  const perm = Array.from({ length: B }, (_, i) => i);
  const rng = xoroshiro128plus(seed | 0);
  for (let i = B - 1; i > 0; i--) {
    const j = (rng.unsafeNext() >>> 0) % (i + 1);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const diffs = new Float64Array(B);
  for (let s = 0; s < B; s++) diffs[s] = current[s] - baseline[perm[s]];
  return percentiles(diffs);
}
