/**
 * Arena statistics on PRE-AGGREGATED battle counts: Bradley–Terry with ties,
 * optional style covariates, Fisher and bootstrap 95% intervals, rank
 * intervals. Pure and deterministic for a given seed; no I/O. Runs in the
 * leaderboard worker thread (see `fit-worker.ts`).
 *
 * Input: one row per (model a, model b, outcome, style bin) with its number of
 * battles, so the cost grows with models, pairs and bins, never with votes.
 *
 * Model: P(a beats b) = σ(θ_a − θ_b + β·x), σ the logistic function, x the
 * row's style differences (empty without style control). A tie scores ½ for
 * each side (the same convention as `bradleyTerry`), so the fit maximises
 *   Σ_rows n · [y · ln σ(z) + (1 − y) · ln σ(−z)]  +  prior · Σ_i ½ (ln σ(θ_i) + ln σ(−θ_i))  −  ½ λ |β|²
 * with y = 1 (a won), 0 (b won) or ½ (tie), by Newton–Raphson with step
 * halving. The prior (default 1, as `bradleyTerry`): one virtual tie per model
 * against a fixed average opponent (θ = 0). Without style covariates and with
 * the same prior the result equals `bradleyTerry` on the expanded battles.
 *
 * Intervals:
 * - Fisher: rating ± 1.96 · se, se from the inverse observed information of
 *   (θ, β), θ centred (as `bradleyTerry`).
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
 *   bound. Bootstrap intervals are used when there are resamples, Fisher ones
 *   otherwise.
 *
 * Style features are scaled by their root mean square over the battles (not
 * centred: the sign of a difference carries the meaning), so a coefficient is
 * the change in log-odds per typical difference; a feature that never varies
 * is left out of the fit and reported with coefficient 0.
 */
import { xoroshiro128plus } from 'pure-rand';

export type BattleOutcome = 'A' | 'B' | 'TIE';

/** One aggregated cell: `count` battles between `a` and `b` with this outcome and these style differences. */
export interface BattleCountRow {
  a: string;
  b: string;
  outcome: BattleOutcome;
  /** Style differences (a − b, normalised), one per `features` entry; omit or [] without style control. */
  x?: number[];
  count: number;
}

export interface BattleCounts {
  /** Style feature names, in the order of `x`. */
  features: string[];
  rows: BattleCountRow[];
}

export interface ArenaFitOptions {
  /** Virtual ties per model against an average opponent (see module comment). Default 1. */
  prior?: number;
  /** Bootstrap resamples; 0 = Fisher intervals only. Default 1000. */
  bootstrapSamples?: number;
  /** Seed of the resampling PRNG (uint32). Default 1. */
  seed?: number;
  /** Rating points per factor 10 in strength. Default 400. */
  scale?: number;
  /** Rating of the geometric-mean model. Default 1000. */
  base?: number;
  /**
   * Ridge penalty ½·λ·β² on the (scaled) style coefficients. Default 0.01:
   * negligible against real data (each battle adds about ¼ to the information)
   * but keeps the fit finite when a few battles separate perfectly or two
   * features move together.
   */
  styleRidge?: number;
}

export interface ArenaRating {
  model: string;
  rating: number;
  /** Fisher 95% interval. */
  ratingLow: number;
  ratingHigh: number;
  /** Bootstrap 95% percentile interval (equal to the Fisher one when there are no resamples). */
  bootstrapLow: number;
  bootstrapHigh: number;
  rank: number;
  rankLow: number;
  rankHigh: number;
  battles: number;
  wins: number;
  losses: number;
  ties: number;
  winRate: number;
}

export interface StyleCoefficientData {
  feature: string;
  coefficient: number;
  low: number;
  high: number;
}

export interface ArenaFit {
  ratings: ArenaRating[];
  styleCoefficients: StyleCoefficientData[];
  bootstrapSamples: number;
  /** Pairwise battles used (sum of the counts). */
  battles: number;
}

export const ARENA_DEFAULTS = Object.freeze({ prior: 1, bootstrapSamples: 1000, seed: 1, scale: 400, base: 1000, styleRidge: 0.01 });
const Z_95 = 1.96;
const MAX_NEWTON = 100;
const MAX_CHORD = 60;

/** Flattened problem: models indexed in sorted order, rows sorted, features scaled. */
interface Problem {
  models: string[];
  features: string[];
  /** Features kept in the fit (non-zero variance): indexes into `features`. */
  active: number[];
  a: Int32Array;
  b: Int32Array;
  y: Float64Array;
  /** rows × active.length, scaled. */
  x: Float64Array;
  /** RMS scale of each active feature (raw = scaled · rms). */
  rms: number[];
  n: Float64Array;
  prior: number;
  ridge: number;
}

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
    return { ratings: [], styleCoefficients: counts.features.map((feature) => ({ feature, coefficient: 0, low: 0, high: 0 })), bootstrapSamples: 0, battles: 0 };
  }
  const F = p.active.length;
  const P = M + F;
  const pointsPerNat = o.scale / Math.LN10;

  const phi = newtonFit(p, p.n, new Float64Array(P));
  const info = information(p, p.n, phi);
  const cov = invertSpd(solvable(info, M, P, o.prior), P);
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

  ratings.sort((x, y) => Math.round(y.rating * 1e6) - Math.round(x.rating * 1e6) || (x.model < y.model ? -1 : x.model > y.model ? 1 : 0));
  return { ratings, styleCoefficients, bootstrapSamples: B, battles: sumArray(p.n) };
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

// ---------------------------------------------------------------------------
// Problem setup

function buildProblem(counts: BattleCounts, prior: number, ridge: number): Problem {
  const F0 = counts.features.length;
  const rows = counts.rows.filter((r) => r.count > 0);
  for (const r of rows) {
    if (!r.a || !r.b || r.a === r.b) throw new RangeError(`battle needs two distinct models, got '${r.a}' vs '${r.b}'`);
    if (r.outcome !== 'A' && r.outcome !== 'B' && r.outcome !== 'TIE') throw new RangeError(`unknown outcome ${String(r.outcome)}`);
    if (!Number.isFinite(r.count) || r.count < 0) throw new RangeError(`count must be a finite number >= 0, got ${r.count}`);
    if ((r.x?.length ?? 0) !== F0 && !(F0 > 0 && (r.x?.length ?? 0) === 0)) throw new RangeError(`row has ${r.x?.length ?? 0} style values, expected ${F0}`);
  }
  // Canonical order (a < b by name) so the result does not depend on the input order.
  const canon = rows
    .map((r) => {
      const x = r.x && r.x.length > 0 ? r.x : new Array<number>(F0).fill(0);
      return r.a < r.b
        ? { a: r.a, b: r.b, y: r.outcome === 'A' ? 1 : r.outcome === 'B' ? 0 : 0.5, x, n: r.count }
        : { a: r.b, b: r.a, y: r.outcome === 'A' ? 0 : r.outcome === 'B' ? 1 : 0.5, x: x.map((v) => -v), n: r.count };
    })
    .sort((p, q) => cmp(p.a, q.a) || cmp(p.b, q.b) || p.y - q.y || cmpVec(p.x, q.x) || p.n - q.n);
  const models = [...new Set(canon.flatMap((r) => [r.a, r.b]))].sort();
  const index = new Map(models.map((m, i) => [m, i]));

  const total = canon.reduce((s, r) => s + r.n, 0);
  const rms: number[] = [];
  const active: number[] = [];
  for (let f = 0; f < F0; f++) {
    const ms = total === 0 ? 0 : canon.reduce((s, r) => s + r.n * r.x[f] * r.x[f], 0) / total;
    if (ms > 1e-12) {
      active.push(f);
      rms.push(Math.sqrt(ms));
    }
  }
  const R = canon.length;
  const F = active.length;
  const p: Problem = {
    models,
    features: counts.features,
    active,
    a: new Int32Array(R),
    b: new Int32Array(R),
    y: new Float64Array(R),
    x: new Float64Array(R * F),
    rms,
    n: new Float64Array(R),
    prior,
    ridge,
  };
  canon.forEach((r, k) => {
    p.a[k] = index.get(r.a)!;
    p.b[k] = index.get(r.b)!;
    p.y[k] = r.y;
    p.n[k] = r.n;
    active.forEach((f, j) => (p.x[k * F + j] = r.x[f] / rms[j]));
  });
  if (prior === 0) assertMleExists(p);
  return p;
}

function tallies(p: Problem): Array<{ battles: number; wins: number; losses: number; ties: number }> {
  const t = p.models.map(() => ({ battles: 0, wins: 0, losses: 0, ties: 0 }));
  for (let k = 0; k < p.n.length; k++) {
    const n = p.n[k];
    const A = t[p.a[k]];
    const Bm = t[p.b[k]];
    A.battles += n;
    Bm.battles += n;
    if (p.y[k] === 1) {
      A.wins += n;
      Bm.losses += n;
    } else if (p.y[k] === 0) {
      A.losses += n;
      Bm.wins += n;
    } else {
      A.ties += n;
      Bm.ties += n;
    }
  }
  return t;
}

/** Zermelo/Ford: without a prior the MLE exists iff "i scored against j" is strongly connected. */
function assertMleExists(p: Problem): void {
  const M = p.models.length;
  const scored = Array.from({ length: M }, () => new Set<number>());
  const conceded = Array.from({ length: M }, () => new Set<number>());
  for (let k = 0; k < p.n.length; k++) {
    if (p.y[k] > 0) scored[p.a[k]].add(p.b[k]), conceded[p.b[k]].add(p.a[k]);
    if (p.y[k] < 1) scored[p.b[k]].add(p.a[k]), conceded[p.a[k]].add(p.b[k]);
  }
  for (const edges of [scored, conceded]) {
    const seen = new Set([0]);
    const queue = [0];
    while (queue.length > 0) for (const j of edges[queue.shift()!]) if (!seen.has(j)) seen.add(j), queue.push(j);
    if (seen.size < M) throw new RangeError('prior: 0 needs a strongly connected battle graph; use a prior > 0');
  }
}

// ---------------------------------------------------------------------------
// Likelihood, gradient, information

function linear(p: Problem, phi: Float64Array, k: number): number {
  const M = p.models.length;
  const F = p.active.length;
  let z = phi[p.a[k]] - phi[p.b[k]];
  for (let f = 0; f < F; f++) z += phi[M + f] * p.x[k * F + f];
  return z;
}

function logLikelihood(p: Problem, n: Float64Array, phi: Float64Array): number {
  let total = 0;
  for (let k = 0; k < n.length; k++) {
    if (n[k] === 0) continue;
    const z = linear(p, phi, k);
    total += n[k] * (p.y[k] * logSigmoid(z) + (1 - p.y[k]) * logSigmoid(-z));
  }
  for (let i = 0; i < p.models.length; i++) total += (p.prior / 2) * (logSigmoid(phi[i]) + logSigmoid(-phi[i]));
  for (let f = 0; f < p.active.length; f++) total -= (p.ridge / 2) * phi[p.models.length + f] ** 2;
  return total;
}

function gradient(p: Problem, n: Float64Array, phi: Float64Array, out: Float64Array): Float64Array {
  const M = p.models.length;
  const F = p.active.length;
  out.fill(0);
  // Rows are sorted by pair: without style covariates consecutive rows of one pair share σ(z).
  let lastA = -1;
  let lastB = -1;
  let s = 0;
  for (let k = 0; k < n.length; k++) {
    if (n[k] === 0) continue;
    if (F > 0 || p.a[k] !== lastA || p.b[k] !== lastB) {
      s = sigmoid(linear(p, phi, k));
      lastA = p.a[k];
      lastB = p.b[k];
    }
    const g = n[k] * (p.y[k] - s);
    out[p.a[k]] += g;
    out[p.b[k]] -= g;
    for (let f = 0; f < F; f++) out[M + f] += g * p.x[k * F + f];
  }
  for (let i = 0; i < M; i++) out[i] += p.prior * (0.5 - sigmoid(phi[i]));
  for (let f = 0; f < F; f++) out[M + f] -= p.ridge * phi[M + f];
  return out;
}

/** Observed information (negative Hessian), row-major P × P. */
function information(p: Problem, n: Float64Array, phi: Float64Array): Float64Array {
  const M = p.models.length;
  const F = p.active.length;
  const P = M + F;
  const H = new Float64Array(P * P);
  const idx = new Int32Array(2 + F);
  const val = new Float64Array(2 + F);
  for (let k = 0; k < n.length; k++) {
    if (n[k] === 0) continue;
    const s = sigmoid(linear(p, phi, k));
    const w = n[k] * s * (1 - s);
    idx[0] = p.a[k];
    val[0] = 1;
    idx[1] = p.b[k];
    val[1] = -1;
    for (let f = 0; f < F; f++) {
      idx[2 + f] = M + f;
      val[2 + f] = p.x[k * F + f];
    }
    for (let u = 0; u < 2 + F; u++) {
      for (let v = 0; v < 2 + F; v++) H[idx[u] * P + idx[v]] += w * val[u] * val[v];
    }
  }
  for (let i = 0; i < M; i++) {
    const s = sigmoid(phi[i]);
    H[i * P + i] += p.prior * s * (1 - s);
  }
  for (let f = M; f < P; f++) H[f * P + f] += p.ridge;
  return H;
}

/** Without a prior θ is defined up to a shift: adding 11ᵀ/M on the θ block makes the information invertible. */
function solvable(info: Float64Array, M: number, P: number, prior: number): Float64Array {
  if (prior > 0) return info;
  const out = Float64Array.from(info);
  for (let i = 0; i < M; i++) for (let j = 0; j < M; j++) out[i * P + j] += 1 / M;
  return out;
}

/** var(θ_i − mean θ) from the covariance: diag(C Σ Cᵀ) on the θ block, C = I − 11ᵀ/M. */
function centredVariances(cov: Float64Array, M: number, P: number): Float64Array {
  const rowMeans = new Float64Array(M);
  let grand = 0;
  for (let i = 0; i < M; i++) {
    let s = 0;
    for (let j = 0; j < M; j++) s += cov[i * P + j];
    rowMeans[i] = s / M;
    grand += rowMeans[i];
  }
  grand /= M;
  const out = new Float64Array(M);
  for (let i = 0; i < M; i++) out[i] = cov[i * P + i] - 2 * rowMeans[i] + grand;
  return out;
}

// ---------------------------------------------------------------------------
// Fitting

/** Newton–Raphson with step halving from `start` (concave objective). */
function newtonFit(p: Problem, n: Float64Array, start: Float64Array): Float64Array {
  const M = p.models.length;
  const P = M + p.active.length;
  let phi = start;
  const g = new Float64Array(P);
  for (let it = 0; it < MAX_NEWTON; it++) {
    const L = cholesky(solvable(information(p, n, phi), M, P, p.prior), P);
    const dir = choleskySolve(L, gradient(p, n, phi, g), P);
    const current = logLikelihood(p, n, phi);
    let next = phi;
    for (let s = 1; s >= 2 ** -30; s /= 2) {
      const cand = new Float64Array(P);
      for (let i = 0; i < P; i++) cand[i] = phi[i] + s * dir[i];
      if (logLikelihood(p, n, cand) >= current) {
        next = cand;
        break;
      }
    }
    let change = 0;
    for (let i = 0; i < P; i++) change = Math.max(change, Math.abs(next[i] - phi[i]));
    if (p.prior === 0) centreTheta(next, M);
    phi = next;
    if (change < 1e-10) break;
  }
  return phi;
}

/** Chord Newton with a fixed factorised information; null if it does not converge. */
function chordFit(p: Problem, n: Float64Array, start: Float64Array, L: Float64Array): Float64Array | null {
  const M = p.models.length;
  const P = M + p.active.length;
  const phi = Float64Array.from(start);
  const g = new Float64Array(P);
  for (let it = 0; it < MAX_CHORD; it++) {
    const dir = choleskySolve(L, gradient(p, n, phi, g), P);
    let change = 0;
    for (let i = 0; i < P; i++) {
      phi[i] += dir[i];
      change = Math.max(change, Math.abs(dir[i]));
    }
    if (!Number.isFinite(change)) return null;
    if (p.prior === 0) centreTheta(phi, M);
    if (change < 1e-8) return phi;
  }
  return null;
}

function centreTheta(phi: Float64Array, M: number): void {
  const m = mean(phi.subarray(0, M));
  for (let i = 0; i < M; i++) phi[i] -= m;
}

// ---------------------------------------------------------------------------
// Resampling

type BinomialDraw = (n: number, p: number) => number;

/** A multinomial draw of `total` battles over the cells, probabilities counts/total, by conditional binomials. */
/**
 * Seeded binomial draws by exact inversion on a xoroshiro128+ stream
 * (pure-rand; uniforms with 53 random bits): from 0 upwards when the mean is
 * below 10, otherwise outwards from the mode (alternately one step up, one
 * down), so the expected number of steps is O(1 + sd). (@stdlib's own
 * binomial sampler was tried first: its BTRD path is biased — mean 30.47 for
 * Binomial(100, 0.3) — and its small-mean path costs O(n).)
 */
export function seededBinomial(seed: number): BinomialDraw {
  const rng = xoroshiro128plus(seed | 0);
  const uniform = () => ((rng.unsafeNext() >>> 5) * 67108864 + (rng.unsafeNext() >>> 6)) / 9007199254740992;
  const fromZero = (n: number, p: number): number => {
    const ratio = p / (1 - p);
    let prob = Math.exp(n * Math.log1p(-p));
    let u = uniform();
    let x = 0;
    while (u > prob && x < n) {
      u -= prob;
      x++;
      prob *= ((n - x + 1) / x) * ratio;
    }
    return x;
  };
  const fromMode = (n: number, p: number): number => {
    const ratio = p / (1 - p);
    const m = Math.floor((n + 1) * p);
    const pm = Math.exp(lnGamma(n + 1) - lnGamma(m + 1) - lnGamma(n - m + 1) + m * Math.log(p) + (n - m) * Math.log1p(-p));
    let u = uniform() - pm;
    if (u <= 0) return m;
    let lo = m;
    let hi = m;
    let pLo = pm;
    let pHi = pm;
    while (lo > 0 || hi < n) {
      if (hi < n) {
        pHi *= ((n - hi) / (hi + 1)) * ratio;
        hi++;
        if ((u -= pHi) <= 0) return hi;
      }
      if (lo > 0) {
        pLo *= lo / ((n - lo + 1) * ratio);
        lo--;
        if ((u -= pLo) <= 0) return lo;
      }
    }
    return m; // rounding left a sliver of probability: the mode
  };
  const draw = (n: number, p: number): number => {
    if (n <= 0 || p <= 0) return 0;
    if (p >= 1) return n;
    if (p > 0.5) return n - draw(n, 1 - p);
    return n * p < 10 ? fromZero(n, p) : fromMode(n, p);
  };
  return draw;
}

const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
  -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x ≥ 1 (Lanczos, g = 7; relative error ~1e-15). */
function lnGamma(x: number): number {
  const y = x - 1;
  let a = LANCZOS[0];
  for (let i = 1; i < LANCZOS.length; i++) a += LANCZOS[i] / (y + i);
  const t = y + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (y + 0.5) * Math.log(t) - t + Math.log(a);
}

export function multinomial(counts: Float64Array, total: number, out: Float64Array, draw: BinomialDraw): void {
  let remaining = Math.round(total);
  let mass = total;
  for (let k = 0; k < counts.length; k++) {
    if (remaining <= 0 || counts[k] === 0) {
      out[k] = 0;
    } else if (counts[k] >= mass || k === counts.length - 1) {
      out[k] = remaining;
    } else {
      const x = draw(remaining, counts[k] / mass);
      out[k] = x;
    }
    remaining -= out[k];
    mass -= counts[k];
  }
}

/** 2.5 % and 97.5 % quantiles with linear interpolation (numpy's default). */
export function percentiles(values: Float64Array): [number, number] {
  const sorted = Float64Array.from(values).sort();
  const q = (prob: number) => {
    const h = (sorted.length - 1) * prob;
    const lo = Math.floor(h);
    const hi = Math.min(lo + 1, sorted.length - 1);
    return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
  };
  return [q(0.025), q(0.975)];
}

// ---------------------------------------------------------------------------
// Linear algebra (symmetric positive definite, row-major)

function cholesky(A: Float64Array, P: number): Float64Array {
  const L = new Float64Array(P * P);
  for (let i = 0; i < P; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i * P + j];
      for (let k = 0; k < j; k++) s -= L[i * P + k] * L[j * P + k];
      if (i === j) {
        if (!(s > 0)) throw new Error('information matrix is not positive definite');
        L[i * P + i] = Math.sqrt(s);
      } else {
        L[i * P + j] = s / L[j * P + j];
      }
    }
  }
  return L;
}

function choleskySolve(L: Float64Array, b: Float64Array, P: number): Float64Array {
  const y = new Float64Array(P);
  for (let i = 0; i < P; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= L[i * P + k] * y[k];
    y[i] = s / L[i * P + i];
  }
  const x = new Float64Array(P);
  for (let i = P - 1; i >= 0; i--) {
    let s = y[i];
    for (let k = i + 1; k < P; k++) s -= L[k * P + i] * x[k];
    x[i] = s / L[i * P + i];
  }
  return x;
}

function invertSpd(A: Float64Array, P: number): Float64Array {
  const L = cholesky(A, P);
  const inv = new Float64Array(P * P);
  const e = new Float64Array(P);
  for (let j = 0; j < P; j++) {
    e.fill(0);
    e[j] = 1;
    const col = choleskySolve(L, e, P);
    for (let i = 0; i < P; i++) inv[i * P + j] = col[i];
  }
  return inv;
}

// ---------------------------------------------------------------------------
// Small helpers

function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

function sumArray(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return s;
}

function mean(xs: ArrayLike<number>): number {
  return xs.length === 0 ? 0 : sumArray(xs) / xs.length;
}

function cmp(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}

function cmpVec(x: number[], y: number[]): number {
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
}
