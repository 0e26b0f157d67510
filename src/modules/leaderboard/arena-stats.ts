/**
 * Arena statistics on PRE-AGGREGATED battle counts: Bradley–Terry with ties,
 * optional style covariates, Fisher and bootstrap 95% intervals, rank
 * intervals. Pure and deterministic for a given seed; no I/O. Runs in the
 * leaderboard worker thread (see `fit-worker.ts`). The likelihood and its
 * Newton steps are `arena-likelihood.ts`'s, the seeded resampling
 * `resampling.ts`'s, the linear algebra `numeric.ts`'s.
 *
 * Input: one row per (model a, model b, outcome, style bin) with its number of
 * battles, so the cost grows with models, pairs and bins, never with votes.
 *
 * Model: P(a beats b) = σ(θ_a − θ_b + β·x), σ the logistic function, x the
 * row's style differences (empty without style control). A tie scores ½ for
 * each side (the same convention as the reference fit, `bradleyTerry` in
 * `test/helpers/bradley-terry.ts`), so the fit maximises
 *   Σ_rows n · [y · ln σ(z) + (1 − y) · ln σ(−z)]  +  prior · Σ_i ½ (ln σ(θ_i) + ln σ(−θ_i))  −  ½ λ |β|²
 * with y = 1 (a won), 0 (b won) or ½ (tie), by Newton–Raphson with step
 * halving. The prior (default 1, as `bradleyTerry`): one virtual tie per model
 * against a fixed average opponent (θ = 0). Without style covariates and with
 * the same prior the result equals `bradleyTerry` on the expanded battles.
 *
 * Intervals:
 * - Closed form (`closedForm`): rating ± 1.96 · se, θ centred. `sandwich`
 *   (default, LMArena's since 2025 in `arena-rank`): se from H⁻¹ G H⁻¹, H the
 *   observed information of (θ, β) and G the covariance of the per-battle
 *   scores (`scoreCovariance`), robust to a misspecified model (ties scored
 *   ½, voters who disagree); `fisher`: from H⁻¹ alone (as `bradleyTerry`).
 *   One fit and a P × P product: under a second at 1,000,000 votes.
 * - Bootstrap: `bootstrapSamples` resamples of the battles, drawn
 *   multinomially from the aggregated counts (total unchanged), each refitted;
 *   the interval is the 2.5 % – 97.5 % percentile range of the centred
 *   ratings (linear interpolation, as numpy's default quantile). Seeded
 *   (xoroshiro128+, exact binomial inversion), so a board is reproducible. Each refit starts at the
 *   full-data estimate and iterates with the information matrix frozen there
 *   (chord Newton: one factorisation for all resamples, then O(rows + P²) per
 *   step); a resample that does not converge that way gets a full Newton fit.
 * - Ranks (LMArena's definition): rank = 1 + number of models whose lower
 *   bound is above this model's upper bound (models better with confidence),
 *   so models with overlapping intervals share a rank; rankLow (best
 *   plausible) is the same number; rankHigh (worst plausible) = number of
 *   models − number of models whose upper bound is below this model's lower
 *   bound. Bootstrap intervals are used when there are resamples, closed-form
 *   ones otherwise.
 *
 * Style features are scaled by their root mean square over the battles (not
 * centred: the sign of a difference carries the meaning), so a coefficient is
 * the change in log-odds per typical difference; a feature that never varies
 * is left out of the fit and reported with coefficient 0.
 */
import type { ArenaFit, ArenaFitOptions, ArenaRating, BattleCounts, StyleCoefficientData } from './arena.types';
import { buildProblem, centredVariances, chordFit, information, newtonFit, scoreCovariance, solvable, tallies } from './arena-likelihood';
import { cholesky, invertSpd, mean, sandwich, sumArray } from './numeric';
import { multinomial, percentiles, seededBinomial } from './resampling';

export const ARENA_DEFAULTS = Object.freeze({
  prior: 1,
  bootstrapSamples: 1000,
  seed: 1,
  scale: 400,
  base: 1000,
  styleRidge: 0.01,
  closedForm: 'sandwich' as 'sandwich' | 'fisher',
});
const Z_95 = 1.96;

/**
 * Fits the board. Rows with a zero count are ignored; models appear when they
 * have at least one battle. Sorted by rating descending, then name.
 * @throws RangeError for malformed rows or options.
 */
export function fitArena(counts: BattleCounts, opts: ArenaFitOptions = {}): ArenaFit {
  const o = { ...ARENA_DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) };
  if (!(o.prior >= 0) || !Number.isFinite(o.prior)) throw new RangeError(`prior must be >= 0, got ${o.prior}`);
  if (!Number.isInteger(o.bootstrapSamples) || o.bootstrapSamples < 0) throw new RangeError('bootstrapSamples must be an integer >= 0');
  if (!(o.scale > 0)) throw new RangeError('scale must be > 0');
  if (!(o.styleRidge >= 0)) throw new RangeError('styleRidge must be >= 0');
  const p = buildProblem(counts, o.prior, o.styleRidge);
  const M = p.models.length;
  if (M === 0) {
    return {
      ratings: [],
      styleCoefficients: counts.features.map((feature) => ({ feature, coefficient: 0, low: 0, high: 0 })),
      bootstrapSamples: 0,
      battles: 0,
    };
  }
  const F = p.active.length;
  const P = M + F;
  const pointsPerNat = o.scale / Math.LN10;

  const phi = newtonFit(p, p.n, new Float64Array(P));
  const info = information(p, p.n, phi);
  const inverse = invertSpd(solvable(info, M, P, o.prior), P);
  // The closed-form covariance: the sandwich H⁻¹ G H⁻¹ (default, as LMArena's arena-rank) or the Fisher H⁻¹.
  const cov = o.closedForm === 'fisher' ? inverse : sandwich(inverse, scoreCovariance(p, p.n, phi), P);
  const centredVar = centredVariances(cov, M, P);
  const theta = phi.subarray(0, M);
  const meanTheta = mean(theta);
  const ratingOf = (t: number, m: number) => o.base + pointsPerNat * (t - m);

  // Bootstrap.
  const B = o.bootstrapSamples;
  const samples = Array.from({ length: M }, () => new Float64Array(B));
  const betaSamples = Array.from({ length: F }, () => new Float64Array(B));
  if (B > 0) {
    const chol = cholesky(solvable(info, M, P, o.prior), P);
    const draw = seededBinomial(o.seed);
    const total = sumArray(p.n);
    const resampled = new Float64Array(p.n.length);
    for (let s = 0; s < B; s++) {
      multinomial(p.n, total, resampled, draw);
      const fit = chordFit(p, resampled, phi, chol) ?? newtonFit(p, resampled, Float64Array.from(phi));
      const m = mean(fit.subarray(0, M));
      for (let i = 0; i < M; i++) samples[i][s] = ratingOf(fit[i], m);
      for (let f = 0; f < F; f++) betaSamples[f][s] = fit[M + f];
    }
  }

  const records = tallies(p);
  const ratings: ArenaRating[] = p.models.map((model, i) => {
    const rating = ratingOf(theta[i], meanTheta);
    const half = Z_95 * Math.sqrt(Math.max(centredVar[i], 0)) * pointsPerNat;
    const [bLow, bHigh] = B > 0 ? percentiles(samples[i]) : [rating - half, rating + half];
    const r = records[i];
    return {
      model,
      rating,
      ratingLow: rating - half,
      ratingHigh: rating + half,
      bootstrapLow: bLow,
      bootstrapHigh: bHigh,
      rank: 0,
      rankLow: 0,
      rankHigh: 0,
      ...r,
      winRate: r.battles === 0 ? 0 : (r.wins + 0.5 * r.ties) / r.battles,
    };
  });
  assignRanks(ratings, B > 0);

  const styleCoefficients = counts.features.map((feature, k): StyleCoefficientData => {
    const f = p.active.indexOf(k);
    if (f < 0) return { feature, coefficient: 0, low: 0, high: 0 };
    const coefficient = phi[M + f];
    if (B > 0) {
      const [low, high] = percentiles(betaSamples[f]);
      return { feature, coefficient, low, high };
    }
    const se = Math.sqrt(Math.max(cov[(M + f) * P + M + f], 0));
    return { feature, coefficient, low: coefficient - Z_95 * se, high: coefficient + Z_95 * se };
  });

  const kept = opts.keepSamples && B > 0 ? { samples: Object.fromEntries(p.models.map((m, i) => [m, Array.from(samples[i])])) } : {};
  ratings.sort((x, y) => Math.round(y.rating * 1e6) - Math.round(x.rating * 1e6) || (x.model < y.model ? -1 : x.model > y.model ? 1 : 0));
  return { ratings, styleCoefficients, bootstrapSamples: B, battles: sumArray(p.n), ...kept };
}

/**
 * LMArena's rank: 1 + #models confidently better (lower bound above my upper
 * bound); worst plausible rank: #models − #models confidently worse.
 */
export function assignRanks(ratings: ArenaRating[], useBootstrap: boolean): void {
  const low = (r: ArenaRating) => (useBootstrap ? r.bootstrapLow : r.ratingLow);
  const high = (r: ArenaRating) => (useBootstrap ? r.bootstrapHigh : r.ratingHigh);
  for (const r of ratings) {
    let better = 0;
    let worse = 0;
    for (const other of ratings) {
      if (other === r) continue;
      if (low(other) > high(r)) better++;
      if (high(other) < low(r)) worse++;
    }
    r.rank = 1 + better;
    r.rankLow = 1 + better;
    r.rankHigh = ratings.length - worse;
  }
}
