/**
 * The arena statistics (`fitArena`): Bradley–Terry with ties on aggregated
 * counts, style covariates, bootstrap and rank intervals, checked against hand
 * computations, a straightforward maximum-likelihood reference (plain gradient
 * ascent on the log-likelihood) and synthetic battles drawn from known
 * strengths. Plus the worker thread: same board, event loop never blocked.
 */
import { packCounts, transferablesOf, unpackCounts } from '../src/modules/leaderboard/packed-counts';
import { bradleyTerry, votesToBattles, type VoteRecord } from './helpers/bradley-terry';
import { fitArena } from '../src/modules/leaderboard/arena-stats';
import type { ArenaRating, BattleCountRow, BattleCounts } from '../src/modules/leaderboard/arena.types';
import { FitWorker } from '../src/modules/leaderboard/fit-worker';

const POINTS_PER_NAT = 400 / Math.LN10;
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** mulberry32: seeded uniform [0, 1) for synthetic data. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function byModel(ratings: ArenaRating[]): Record<string, ArenaRating> {
  return Object.fromEntries(ratings.map((r) => [r.model, r]));
}

/**
 * Synthetic battles: uniformly random pairs of `strengths.length` models
 * (names m0, m1, …), outcome drawn from P(a beats b) = σ(θ_a − θ_b + β·x) with
 * a tie probability `tieRate` (split evenly: a tie carries the same information
 * as the ½ score); style x drawn from {−1, 0, 1} per feature when `beta` given.
 */
function synthetic(
  rand: () => number,
  strengths: number[],
  battles: number,
  opts: { beta?: number[]; tieRate?: number } = {},
): BattleCounts {
  const beta = opts.beta ?? [];
  const cells = new Map<string, BattleCountRow>();
  for (let k = 0; k < battles; k++) {
    const i = Math.floor(rand() * strengths.length);
    let j = Math.floor(rand() * (strengths.length - 1));
    if (j >= i) j++;
    const x = beta.map(() => Math.floor(rand() * 3) - 1);
    const z = strengths[i]! - strengths[j]! + beta.reduce((s, b, f) => s + b * x[f]!, 0);
    const outcome = rand() < (opts.tieRate ?? 0) ? 'TIE' : rand() < sigmoid(z) ? 'A' : 'B';
    const key = `${i}|${j}|${outcome}|${x.join(',')}`;
    const cell = cells.get(key);
    if (cell) cell.count++;
    else cells.set(key, { a: `m${i}`, b: `m${j}`, outcome, x, count: 1 });
  }
  return { features: beta.map((_, f) => `f${f}`), rows: [...cells.values()] };
}

/**
 * The reference: maximum likelihood by plain gradient ascent (no Newton, no
 * aggregation tricks), θ centred, style x unscaled; many small steps.
 */
function referenceMle(counts: BattleCounts, iterations = 30_000): { theta: Record<string, number>; beta: number[] } {
  const models = [...new Set(counts.rows.flatMap((r) => [r.a, r.b]))].sort();
  const idx = new Map(models.map((m, i) => [m, i]));
  const F = counts.features.length;
  const theta = new Array<number>(models.length).fill(0);
  const beta = new Array<number>(F).fill(0);
  // 1 / Lipschitz constant of the gradient (Σ n · ¼ · |design row|², |row|² ≤ 2 + Σ x²): guaranteed ascent.
  const lipschitz = counts.rows.reduce((s, r) => s + 0.25 * r.count * (2 + (r.x ?? []).reduce((q, v) => q + v * v, 0)), 0);
  const step = 1 / lipschitz;
  for (let it = 0; it < iterations; it++) {
    const gt = new Array<number>(models.length).fill(0);
    const gb = new Array<number>(F).fill(0);
    for (const r of counts.rows) {
      const y = r.outcome === 'A' ? 1 : r.outcome === 'B' ? 0 : 0.5;
      const x = r.x ?? [];
      const z = theta[idx.get(r.a)!]! - theta[idx.get(r.b)!]! + x.reduce((s, v, f) => s + v * beta[f]!, 0);
      const g = r.count * (y - sigmoid(z));
      gt[idx.get(r.a)!]! += g;
      gt[idx.get(r.b)!]! -= g;
      x.forEach((v, f) => {
        gb[f]! += g * v;
      });
    }
    for (let i = 0; i < theta.length; i++) theta[i]! += step * gt[i]!;
    for (let f = 0; f < beta.length; f++) beta[f]! += step * gb[f]!;
    const m = theta.reduce((s, t) => s + t, 0) / theta.length;
    for (let i = 0; i < theta.length; i++) theta[i]! -= m;
  }
  return { theta: Object.fromEntries(models.map((m, i) => [m, theta[i]!])), beta };
}

function lnChoose(n: number, k: number): number {
  let s = 0;
  for (let i = 1; i <= k; i++) s += Math.log((n - k + i) / i);
  return s;
}

function rowsFromVotes(votes: VoteRecord[]): BattleCountRow[] {
  return votesToBattles(votes).map((b) => ({ a: b.a, b: b.b, outcome: b.scoreA === 1 ? 'A' : b.scoreA === 0 ? 'B' : 'TIE', count: 1 }));
}

describe('fitArena: point estimates and closed-form (Fisher, sandwich) intervals', () => {
  it('3–1 between two models, pure MLE: 1095.42 / 904.58 and Fisher half-width 196.580 (hand computed, as bradleyTerry)', () => {
    const fit = fitArena(
      {
        features: [],
        rows: [
          { a: 'A', b: 'B', outcome: 'A', count: 3 },
          { a: 'B', b: 'A', outcome: 'A', count: 1 },
        ],
      },
      { prior: 0, bootstrapSamples: 0 },
    );
    const { A, B } = byModel(fit.ratings);
    expect(A!.rating).toBeCloseTo(1095.4243, 3);
    expect(B!.rating).toBeCloseTo(904.5757, 3);
    expect((A!.ratingHigh - A!.ratingLow) / 2).toBeCloseTo(196.58, 2);
    expect(A).toMatchObject({ battles: 4, wins: 3, losses: 1, ties: 0, winRate: 0.75 });
    expect(fit.battles).toBe(4);
  });

  it('aggregated counts give exactly what bradleyTerry gives on the expanded battles (default prior, ties, 3 models)', () => {
    const votes: VoteRecord[] = [
      { models: ['a', 'b'], outcome: 'WINNER', winner: 'a' },
      { models: ['a', 'b', 'c'], outcome: 'WINNER', winner: 'c' },
      { models: ['a', 'b', 'c'], outcome: 'ALL_BAD' },
      { models: ['a', 'b'], outcome: 'WINNER', winner: 'b' },
      { models: ['a', 'b', 'c'], outcome: 'WINNER', winner: 'a' },
    ];
    // Fisher (H⁻¹) and the default sandwich (H⁻¹ G H⁻¹, G summed over individual battles in the reference).
    const fisher = bradleyTerry(votesToBattles(votes));
    const fisherFit = fitArena({ features: [], rows: rowsFromVotes(votes) }, { bootstrapSamples: 0, closedForm: 'fisher' });
    fisherFit.ratings.forEach((r, i) => {
      expect(r.ratingLow).toBeCloseTo(fisher[i]!.ratingLow, 8);
      expect(r.ratingHigh).toBeCloseTo(fisher[i]!.ratingHigh, 8);
    });
    const expected = bradleyTerry(votesToBattles(votes), { interval: 'sandwich' });
    const fit = fitArena({ features: [], rows: rowsFromVotes(votes) }, { bootstrapSamples: 0 });
    // The two differ here (ties and a prior): the test tells them apart.
    expect(Math.abs(fit.ratings[0]!.ratingLow - fisherFit.ratings[0]!.ratingLow)).toBeGreaterThan(1);
    expect(fit.ratings.map((r) => r.model)).toEqual(expected.map((r) => r.model));
    fit.ratings.forEach((r, i) => {
      expect(r.rating).toBeCloseTo(expected[i]!.rating, 8);
      expect(r.ratingLow).toBeCloseTo(expected[i]!.ratingLow, 8);
      expect(r.ratingHigh).toBeCloseTo(expected[i]!.ratingHigh, 8);
      expect(r).toMatchObject({
        battles: expected[i]!.battles,
        wins: expected[i]!.wins,
        losses: expected[i]!.losses,
        ties: expected[i]!.ties,
      });
    });
  });

  it('matches the plain gradient-ascent maximum-likelihood reference on 3,000 synthetic battles', () => {
    const counts = synthetic(rng(11), [0.8, 0.3, 0, -0.4, -0.9], 3000, { tieRate: 0.2 });
    const ref = referenceMle(counts);
    const fit = fitArena(counts, { prior: 0, bootstrapSamples: 0 });
    for (const r of fit.ratings) expect(r.rating).toBeCloseTo(1000 + POINTS_PER_NAT * ref.theta[r.model]!, 2);
  });

  it('recovers ranks and ratings of known strengths from 4,000 battles', () => {
    const truth = [1.2, 0.6, 0, -0.6, -1.2];
    const fit = fitArena(synthetic(rng(5), truth, 4000), { bootstrapSamples: 200 });
    expect(fit.ratings.map((r) => r.model)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    const ratings = byModel(fit.ratings);
    for (const [i, t] of truth.entries()) expect(Math.abs(ratings[`m${i}`]!.rating - (1000 + POINTS_PER_NAT * t))).toBeLessThan(30);
    // 0.6 nats ≈ 104 points apart with intervals of about ±25: every model is ranked apart.
    expect(fit.ratings.map((r) => r.rank)).toEqual([1, 2, 3, 4, 5]);
  });

  it('rejects malformed rows and options', () => {
    expect(() => fitArena({ features: [], rows: [{ a: 'A', b: 'A', outcome: 'A', count: 1 }] })).toThrow(RangeError);
    expect(() => fitArena({ features: [], rows: [{ a: 'A', b: 'B', outcome: 'X' as never, count: 1 }] })).toThrow(RangeError);
    expect(() => fitArena({ features: ['f'], rows: [{ a: 'A', b: 'B', outcome: 'A', x: [1, 2], count: 1 }] })).toThrow(RangeError);
    expect(() => fitArena({ features: [], rows: [] }, { bootstrapSamples: -1 })).toThrow(RangeError);
    expect(() => fitArena({ features: [], rows: [{ a: 'A', b: 'B', outcome: 'A', count: 3 }] }, { prior: 0 })).toThrow(
      /strongly connected/,
    );
    expect(fitArena({ features: [], rows: [] }).ratings).toEqual([]);
  });
});

describe('fitArena: bootstrap', () => {
  /**
   * Two models, 100 battles, A wins 70, prior 0: rating_A = 1000 + 200·log10(w / (100 − w)).
   * A multinomial resample of the 100 battles gives w ~ Binomial(100, 0.7), so the bootstrap
   * interval of A is that function of the binomial's 2.5 % / 97.5 % quantiles (computed below
   * from its exact CDF: 61 and 79, each well inside its CDF step), i.e. about [1038.9, 1115.1].
   */
  it('two models, 70–30: the percentile interval follows the binomial quantiles (hand computed)', () => {
    const fit = fitArena(
      {
        features: [],
        rows: [
          { a: 'A', b: 'B', outcome: 'A', count: 70 },
          { a: 'A', b: 'B', outcome: 'B', count: 30 },
        ],
      },
      { prior: 0, bootstrapSamples: 4000, seed: 3 },
    );
    const { A } = byModel(fit.ratings);
    expect(A!.rating).toBeCloseTo(1000 + 200 * Math.log10(70 / 30), 6);
    const pmf = (w: number) => Math.exp(lnChoose(100, w) + w * Math.log(0.7) + (100 - w) * Math.log(0.3));
    const quantile = (q: number) => {
      let cdf = 0;
      for (let w = 0; w <= 100; w++) if ((cdf += pmf(w)) >= q) return w;
      return 100;
    };
    expect([quantile(0.025), quantile(0.975)]).toEqual([61, 79]);
    expect(Math.abs(A!.bootstrapLow - (1000 + 200 * Math.log10(61 / 39)))).toBeLessThan(3);
    expect(Math.abs(A!.bootstrapHigh - (1000 + 200 * Math.log10(79 / 21)))).toBeLessThan(3);
    expect(fit.bootstrapSamples).toBe(4000);
  });

  it('only ties: every resample is all ties, so the interval collapses to 1000', () => {
    const fit = fitArena({ features: [], rows: [{ a: 'A', b: 'B', outcome: 'TIE', count: 10 }] }, { bootstrapSamples: 100 });
    for (const r of fit.ratings)
      expect([r.rating, r.bootstrapLow, r.bootstrapHigh].map((v) => Math.round(v * 1e6) / 1e6)).toEqual([1000, 1000, 1000]);
  });

  it('is reproducible for a seed, and another seed moves the bounds', () => {
    const counts = synthetic(rng(2), [0.5, 0, -0.5], 300);
    const one = fitArena(counts, { seed: 7, bootstrapSamples: 300 });
    expect(fitArena({ ...counts, rows: [...counts.rows].reverse() }, { seed: 7, bootstrapSamples: 300 })).toEqual(one);
    const other = fitArena(counts, { seed: 8, bootstrapSamples: 300 });
    expect(other.ratings.map((r) => r.rating)).toEqual(one.ratings.map((r) => r.rating));
    expect(other.ratings.map((r) => r.bootstrapLow)).not.toEqual(one.ratings.map((r) => r.bootstrapLow));
  });

  it('covers the true centred ratings about 95% of the time over 100 synthetic boards', () => {
    const truth = [0.6, 0.2, -0.1, -0.7];
    const mean = truth.reduce((s, t) => s + t, 0) / truth.length;
    const rand = rng(99);
    let bootstrapHits = 0;
    let fisherHits = 0;
    let checks = 0;
    for (let draw = 0; draw < 100; draw++) {
      // No ties here: ties drawn independently of strength would shrink the true score differences.
      const fit = fitArena(synthetic(rand, truth, 600), { prior: 0, bootstrapSamples: 200, seed: draw + 1 });
      for (const r of fit.ratings) {
        const t = 1000 + POINTS_PER_NAT * (truth[Number(r.model.slice(1))]! - mean);
        checks++;
        if (r.bootstrapLow <= t && t <= r.bootstrapHigh) bootstrapHits++;
        if (r.ratingLow <= t && t <= r.ratingHigh) fisherHits++;
      }
    }
    expect(checks).toBe(400);
    expect(bootstrapHits / checks).toBeGreaterThan(0.89);
    expect(bootstrapHits / checks).toBeLessThan(0.99);
    expect(fisherHits / checks).toBeGreaterThan(0.89);
    expect(fisherHits / checks).toBeLessThan(0.99);
  });
});

describe('fitArena: ranks', () => {
  it('rank = 1 + models better with confidence; overlapping intervals share a rank; rankHigh = worst plausible', () => {
    // A clearly ahead; B and C indistinguishable; D clearly behind.
    const rows: BattleCountRow[] = [];
    const pair = (a: string, b: string, winsA: number, winsB: number) =>
      rows.push({ a, b, outcome: 'A', count: winsA }, { a, b, outcome: 'B', count: winsB });
    pair('A', 'B', 900, 100);
    pair('A', 'C', 900, 100);
    pair('B', 'C', 500, 500);
    pair('B', 'D', 900, 100);
    pair('C', 'D', 900, 100);
    pair('A', 'D', 990, 10);
    const fit = fitArena({ features: [], rows }, { bootstrapSamples: 300 });
    const r = byModel(fit.ratings);
    expect([r.A, r.B, r.C, r.D].map((x) => [x!.rank, x!.rankLow, x!.rankHigh])).toEqual([
      [1, 1, 1],
      [2, 2, 3],
      [2, 2, 3],
      [4, 4, 4],
    ]);
  });
});

describe('fitArena: style control', () => {
  /**
   * Two equally strong models; the longer answer (x = +1 for A, −1 for B) wins 3:1.
   * By symmetry θ_A = θ_B; the β score equation 60 − 80·σ(β) = 0 gives σ(β) = 3/4, β = ln 3
   * (x already has root-mean-square 1, so the reported coefficient is β itself).
   */
  it('hand computed: equal strengths, length explains the wins: β = ln 3, both models at 1000', () => {
    const rows: BattleCountRow[] = [
      { a: 'A', b: 'B', outcome: 'A', x: [1], count: 30 },
      { a: 'A', b: 'B', outcome: 'B', x: [1], count: 10 },
      { a: 'A', b: 'B', outcome: 'A', x: [-1], count: 10 },
      { a: 'A', b: 'B', outcome: 'B', x: [-1], count: 30 },
    ];
    const fit = fitArena({ features: ['length'], rows }, { bootstrapSamples: 200, styleRidge: 0 });
    for (const r of fit.ratings) expect(r.rating).toBeCloseTo(1000, 6);
    const [length] = fit.styleCoefficients;
    expect(length!.feature).toBe('length');
    expect(length!.coefficient).toBeCloseTo(Math.log(3), 8);
    expect(length!.low).toBeLessThan(length!.coefficient);
    expect(length!.high).toBeGreaterThan(length!.coefficient);
  });

  it('the default ridge keeps perfectly separating, collinear features finite', () => {
    const fit = fitArena(
      {
        features: ['length', 'bold'],
        rows: [
          { a: 'A', b: 'B', outcome: 'A', x: [1, 1], count: 1 },
          { a: 'A', b: 'B', outcome: 'B', x: [-1, -1], count: 1 },
        ],
      },
      { bootstrapSamples: 50 },
    );
    const [length, bold] = fit.styleCoefficients;
    expect(length!.coefficient).toBeGreaterThan(0);
    expect(Number.isFinite(length!.coefficient)).toBe(true);
    expect(bold!.coefficient).toBeCloseTo(length!.coefficient, 9);
  });

  it('a feature that never varies is left out and reported as 0', () => {
    const fit = fitArena(
      {
        features: ['length', 'bold'],
        rows: [
          { a: 'A', b: 'B', outcome: 'A', x: [0.5, 0], count: 3 },
          { a: 'A', b: 'B', outcome: 'B', x: [-0.5, 0], count: 1 },
        ],
      },
      { bootstrapSamples: 0 },
    );
    expect(fit.styleCoefficients[1]).toEqual({ feature: 'bold', coefficient: 0, low: 0, high: 0 });
  });

  it('matches the reference MLE and recovers strengths and a style effect from 5,000 synthetic battles', () => {
    const truth = [0.5, 0, -0.5];
    const beta = [0.8, 0];
    const counts = synthetic(rng(21), truth, 5000, { beta });
    const fit = fitArena(counts, { prior: 0, bootstrapSamples: 200, styleRidge: 0 });
    const ref = referenceMle(counts);
    for (const r of fit.ratings) expect(r.rating).toBeCloseTo(1000 + POINTS_PER_NAT * ref.theta[r.model]!, 1);
    // x ∈ {−1, 0, 1} uniformly: rms √(2/3), so the reported coefficient is β·√(2/3).
    const scale = Math.sqrt(2 / 3);
    expect(fit.styleCoefficients[0]!.coefficient).toBeCloseTo(ref.beta[0]! * scale, 2);
    expect(Math.abs(fit.styleCoefficients[0]!.coefficient - 0.8 * scale)).toBeLessThan(0.1);
    expect(fit.styleCoefficients[1]!.low).toBeLessThan(0);
    expect(fit.styleCoefficients[1]!.high).toBeGreaterThan(0);
    expect(fit.ratings.map((r) => r.model)).toEqual(['m0', 'm1', 'm2']);
  });
});

describe('FitWorker', () => {
  const worker = new FitWorker();
  afterAll(() => worker.close());

  it('computes the same board as fitArena in this thread', async () => {
    const counts = synthetic(rng(4), [0.3, 0, -0.3], 500);
    expect(await worker.fit(counts, { bootstrapSamples: 100, seed: 5 })).toEqual(fitArena(counts, { bootstrapSamples: 100, seed: 5 }));
  });

  it('does not block the event loop: timers keep firing while a fit runs', async () => {
    const counts = synthetic(
      rng(8),
      Array.from({ length: 40 }, (_, i) => i / 20),
      100_000,
    );
    await worker.fit({ features: [], rows: [{ a: 'x', b: 'y', outcome: 'A', count: 1 }] }, { bootstrapSamples: 0 }); // thread started
    let ticks = 0;
    let done = false;
    const fit = worker.fit(counts, { bootstrapSamples: 1000 }).finally(() => (done = true));
    // Each tick waits for a macrotask turn; a fit on this thread would let none run before it finishes.
    while (!done && ticks < 5) {
      await new Promise((resolve) => setImmediate(resolve));
      if (!done) ticks++;
    }
    expect(ticks).toBe(5);
    expect((await fit).ratings).toHaveLength(40);
  });

  it('reports a fit error as a rejection and keeps working', async () => {
    await expect(worker.fit({ features: [], rows: [{ a: 'A', b: 'A', outcome: 'A', count: 1 }] }, {})).rejects.toThrow(/distinct/);
    expect(
      (await worker.fit({ features: [], rows: [{ a: 'A', b: 'B', outcome: 'A', count: 1 }] }, { bootstrapSamples: 0 })).ratings,
    ).toHaveLength(2);
  });
});

describe('packed counts (what the fit worker receives)', () => {
  it('round-trips rows, style values and outcomes through typed columns; an unknown outcome is still refused', () => {
    const counts = {
      features: ['length', 'bold'],
      rows: [
        { a: 'm1', b: 'm2', outcome: 'A' as const, x: [0.5, -0.1], count: 3 },
        { a: 'm2', b: 'm3', outcome: 'TIE' as const, x: [] as number[], count: 1 },
        { a: 'm3', b: 'm1', outcome: 'B' as const, x: [-0.5, 0], count: 7 },
      ],
    };
    const packed = packCounts(counts);
    expect(transferablesOf(packed)).toHaveLength(5);
    expect(unpackCounts(packed)).toEqual({ ...counts, rows: counts.rows.map((r) => ({ ...r, x: r.x.length ? r.x : [0, 0] })) });
    expect(fitArena(unpackCounts(packed), { bootstrapSamples: 0 }).ratings.map((r) => r.rating)).toEqual(
      fitArena(counts, { bootstrapSamples: 0 }).ratings.map((r) => r.rating),
    );
    const bad = packCounts({ features: [], rows: [{ a: 'x', b: 'y', outcome: 'WIN' as never, count: 1 }] });
    expect(() => fitArena(unpackCounts(bad), { bootstrapSamples: 0 })).toThrow(RangeError);
  });
});
