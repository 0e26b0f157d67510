/**
 * The arena model's likelihood (`arena-stats.ts` has the model and the fit):
 * the flattened problem, its log-likelihood, gradient and observed
 * information, and the Newton and chord-Newton steps that maximise it.
 */
import type { BattleCounts } from './arena.types';
import { cholesky, choleskySolve, cmp, cmpVec, logSigmoid, mean, sigmoid } from './numeric';

const MAX_NEWTON = 100;
const MAX_CHORD = 60;

/** Flattened problem: models indexed in sorted order, rows sorted, features scaled. */
export interface Problem {
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

export function buildProblem(counts: BattleCounts, prior: number, ridge: number): Problem {
  const F0 = counts.features.length;
  const rows = counts.rows.filter((r) => r.count > 0);
  for (const r of rows) {
    if (!r.a || !r.b || r.a === r.b) throw new RangeError(`battle needs two distinct models, got '${r.a}' vs '${r.b}'`);
    if (r.outcome !== 'A' && r.outcome !== 'B' && r.outcome !== 'TIE') throw new RangeError(`unknown outcome ${String(r.outcome)}`);
    if (!Number.isFinite(r.count) || r.count < 0) throw new RangeError(`count must be a finite number >= 0, got ${r.count}`);
    if ((r.x?.length ?? 0) !== F0 && !(F0 > 0 && (r.x?.length ?? 0) === 0))
      throw new RangeError(`row has ${r.x?.length ?? 0} style values, expected ${F0}`);
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

export function tallies(p: Problem): Array<{ battles: number; wins: number; losses: number; ties: number }> {
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

/** Σ_rows w(k, σ(z_k)) · d dᵀ, d = e_a − e_b (+ the row's style values): row-major P × P. */
function outerSum(p: Problem, n: Float64Array, phi: Float64Array, weight: (k: number, s: number) => number): Float64Array {
  const M = p.models.length;
  const F = p.active.length;
  const P = M + F;
  const H = new Float64Array(P * P);
  const idx = new Int32Array(2 + F);
  const val = new Float64Array(2 + F);
  for (let k = 0; k < n.length; k++) {
    if (n[k] === 0) continue;
    const w = weight(k, sigmoid(linear(p, phi, k)));
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
  return H;
}

/** Observed information (negative Hessian), row-major P × P. */
export function information(p: Problem, n: Float64Array, phi: Float64Array): Float64Array {
  const M = p.models.length;
  const P = M + p.active.length;
  const H = outerSum(p, n, phi, (k, s) => n[k] * s * (1 - s));
  for (let i = 0; i < M; i++) {
    const s = sigmoid(phi[i]);
    H[i * P + i] += p.prior * s * (1 - s);
  }
  for (let f = M; f < P; f++) H[f * P + f] += p.ridge;
  return H;
}

/**
 * The sandwich's meat: the covariance of the per-battle scores, Σ_rows n · (y − σ(z))² · d dᵀ
 * (arena-rank's `compute_hessian_and_covariance`). With the information H, H⁻¹ G H⁻¹ is the robust
 * ("sandwich") covariance of the estimate.
 */
export function scoreCovariance(p: Problem, n: Float64Array, phi: Float64Array): Float64Array {
  return outerSum(p, n, phi, (k, s) => n[k] * (p.y[k] - s) ** 2);
}

/** Without a prior θ is defined up to a shift: adding 11ᵀ/M on the θ block makes the information invertible. */
export function solvable(info: Float64Array, M: number, P: number, prior: number): Float64Array {
  if (prior > 0) return info;
  const out = Float64Array.from(info);
  for (let i = 0; i < M; i++) for (let j = 0; j < M; j++) out[i * P + j] += 1 / M;
  return out;
}

/** var(θ_i − mean θ) from the covariance: diag(C Σ Cᵀ) on the θ block, C = I − 11ᵀ/M. */
export function centredVariances(cov: Float64Array, M: number, P: number): Float64Array {
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
export function newtonFit(p: Problem, n: Float64Array, start: Float64Array): Float64Array {
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
export function chordFit(p: Problem, n: Float64Array, start: Float64Array, L: Float64Array): Float64Array | null {
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
