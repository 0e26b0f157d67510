/**
 * The reference fit: Bradley–Terry ratings computed from individual votes,
 * the textbook way. The server fits pre-aggregated battle counts instead
 * (`src/modules/leaderboard/arena-stats.ts`); the tests check that fit against
 * this one. Pure functions, no I/O, deterministic.
 *
 * Model: every model i has a strength p_i = e^{θ_i}; in a battle between i and
 * j, P(i beats j) = p_i / (p_i + p_j).
 *
 * Conventions (document-worthy choices, all fixed here):
 * - Votes become pairwise battles (`votesToBattles`): WINNER → the winner beats
 *   every other model of the comparison; TIE and ALL_BAD → a tie between every
 *   pair. A tie scores 0.5 for each side, i.e. counts as half a win and half a
 *   loss, the usual Chatbot-Arena convention.
 * - Fit: maximum (penalised) likelihood over θ by Newton–Raphson with step
 *   halving. (Hunter's 2004 MM iteration was tried first: it converges
 *   linearly and, on tens of thousands of battles, stopped far from the
 *   optimum while its steps were already tiny.)
 * - Prior (`prior`, default 1): every model plays `prior` virtual games against
 *   a pseudo-opponent of fixed average strength (θ = 0), all of them ties. This
 *   keeps models with only wins or only losses finite and shrinks ratings built
 *   on few votes toward the average. `prior: 0` gives the pure maximum
 *   likelihood estimate, which exists only when the battle graph is strongly
 *   connected (every model both scored against and conceded to the rest,
 *   possibly indirectly); otherwise `bradleyTerry` throws a RangeError.
 * - Scale: rating_i = base + scale · log10(p_i / geometric mean of all p), so
 *   the average rating is `base` and a gap of `scale` means 10:1 odds.
 * - Interval: 95% = rating ± 1.96 · se(θ_i − mean θ) · scale / ln 10, where the
 *   covariance is the inverse of the observed Fisher information of the
 *   log-strengths (with the prior's contribution; with `prior: 0` the
 *   sum-to-zero constrained inverse, i.e. the Moore–Penrose pseudo-inverse).
 * - winRate = (wins + 0.5 · ties) / battles: the same scoring the fit uses.
 */

/** One vote on a comparison, reduced to what the leaderboard needs. */
export interface VoteRecord {
  /** The models whose responses were shown (normally 2..8, distinct). */
  models: string[];
  outcome: 'WINNER' | 'TIE' | 'ALL_BAD';
  /** Required (and must be one of `models`) when outcome is WINNER; ignored otherwise. */
  winner?: string | null;
}

/** One pairwise result: scoreA is 1 (a won), 0.5 (tie) or 0 (b won). */
export interface PairBattle {
  a: string;
  b: string;
  scoreA: number;
}

/** A model's leaderboard line. */
export interface Rating {
  model: string;
  /** Elo-like: `base` is the geometric-mean model, +`scale` means 10:1 odds. */
  rating: number;
  /** Lower end of the 95% interval (rating − 1.96 se). */
  ratingLow: number;
  /** Upper end of the 95% interval (rating + 1.96 se). */
  ratingHigh: number;
  /** Real pairwise battles played (virtual prior games not counted). */
  battles: number;
  wins: number;
  losses: number;
  ties: number;
  /** (wins + 0.5 · ties) / battles. */
  winRate: number;
}

export interface BradleyTerryOptions {
  /** Rating points per factor 10 in strength. Default 400. */
  scale?: number;
  /** Rating of the geometric-mean model. Default 1000. */
  base?: number;
  /** Maximum Newton steps; the fit stops there even if not converged. Default 100. */
  iterations?: number;
  /** Convergence: largest change of any log-strength in one step. Default 1e-10. */
  tolerance?: number;
  /** Virtual tie games per model against an average opponent; 0 = pure MLE. Default 1. */
  prior?: number;
  /**
   * The interval's covariance: `fisher` (default here) H⁻¹, or `sandwich` H⁻¹ G H⁻¹ with G the sum over
   * individual battles of (score − P(a beats b))² d dᵀ, d = e_a − e_b (LMArena's arena-rank).
   */
  interval?: 'fisher' | 'sandwich';
}

export const BT_DEFAULTS: Readonly<Required<BradleyTerryOptions>> = Object.freeze({
  scale: 400,
  base: 1000,
  iterations: 100,
  tolerance: 1e-10,
  prior: 1,
  interval: 'fisher',
});

/** Normal quantile used for the 95% interval. */
export const Z_95 = 1.96;

// ---------------------------------------------------------------------------
// Votes → battles

/**
 * Expands votes into pairwise battles, in vote order. WINNER yields
 * `models.length − 1` battles `{ a: winner, b: other, scoreA: 1 }`; TIE and
 * ALL_BAD yield one `scoreA: 0.5` battle per unordered pair (in list order).
 * A vote with fewer than two models yields nothing.
 * @throws RangeError for duplicate models, or a WINNER vote whose winner is
 * missing or not among its models.
 */
export function votesToBattles(votes: readonly VoteRecord[]): PairBattle[] {
  return votes.flatMap(voteToBattles);
}

function voteToBattles(vote: VoteRecord): PairBattle[] {
  if (new Set(vote.models).size !== vote.models.length) {
    throw new RangeError(`vote lists a model twice: ${vote.models.join(', ')}`);
  }
  switch (vote.outcome) {
    case 'WINNER':
      return winnerBattles(vote.models, vote.winner);
    case 'TIE':
    case 'ALL_BAD':
      return tieBattles(vote.models);
    default:
      throw new RangeError(`unknown vote outcome: ${String((vote as { outcome: unknown }).outcome)}`);
  }
}

function winnerBattles(models: readonly string[], winner: string | null | undefined): PairBattle[] {
  if (winner == null || !models.includes(winner)) {
    throw new RangeError(`WINNER vote needs a winner among [${models.join(', ')}], got ${String(winner)}`);
  }
  return models.filter((m) => m !== winner).map((loser) => ({ a: winner, b: loser, scoreA: 1 }));
}

function tieBattles(models: readonly string[]): PairBattle[] {
  const battles: PairBattle[] = [];
  for (let i = 0; i < models.length; i++) {
    for (let j = i + 1; j < models.length; j++) {
      battles.push({ a: models[i], b: models[j], scoreA: 0.5 });
    }
  }
  return battles;
}

// ---------------------------------------------------------------------------
// Fit

/** Per-pair tallies, models indexed in sorted name order. */
interface Tally {
  models: string[];
  /** scored[i][j]: points i took from battles against j (win 1, tie 0.5). */
  scored: number[][];
  records: Array<Pick<Rating, 'battles' | 'wins' | 'losses' | 'ties'>>;
}

/**
 * Fits Bradley–Terry strengths to `battles` and returns one `Rating` per model
 * that appears, sorted by rating descending (then by name; ratings equal to
 * 1e-6 count as equal so the order is stable). Empty input → [].
 * See the module comment for the prior, scale, interval and winRate contracts.
 * @throws RangeError for a battle with a === b, an empty name or a score
 * other than 0, 0.5, 1; for invalid options; and, with `prior: 0`, when the
 * maximum likelihood estimate does not exist (battle graph not strongly connected).
 */
export function bradleyTerry(battles: readonly PairBattle[], opts: BradleyTerryOptions = {}): Rating[] {
  const o = resolveOptions(opts);
  battles.forEach(assertValidBattle);
  if (battles.length === 0) return [];

  const tally = tallyBattles(battles);
  if (o.prior === 0) assertMleExists(tally);

  const theta = fitLogStrengths(tally.scored, o);
  const info = informationMatrix(tally.scored, theta, o.prior);
  const variances =
    o.interval === 'sandwich'
      ? centredOf(sandwichCovariance(info, scoreCovariance(battles, tally.models, theta), o.prior))
      : centredVariances(info, o.prior);
  const meanTheta = mean(theta);
  const pointsPerNat = o.scale / Math.LN10;

  return tally.models
    .map((model, i): Rating => {
      const rating = o.base + pointsPerNat * (theta[i] - meanTheta);
      const halfWidth = Z_95 * Math.sqrt(Math.max(variances[i], 0)) * pointsPerNat;
      const r = tally.records[i];
      return {
        model,
        rating,
        ratingLow: rating - halfWidth,
        ratingHigh: rating + halfWidth,
        ...r,
        winRate: (r.wins + 0.5 * r.ties) / r.battles,
      };
    })
    .sort(byRatingThenName);
}

function resolveOptions(opts: BradleyTerryOptions): Required<BradleyTerryOptions> {
  const o = { ...BT_DEFAULTS, ...stripUndefined(opts) };
  if (!(o.scale > 0) || !Number.isFinite(o.scale)) throw new RangeError(`scale must be > 0, got ${o.scale}`);
  if (!Number.isFinite(o.base)) throw new RangeError(`base must be finite, got ${o.base}`);
  if (!Number.isInteger(o.iterations) || o.iterations < 1) {
    throw new RangeError(`iterations must be a positive integer, got ${o.iterations}`);
  }
  if (!(o.tolerance > 0)) throw new RangeError(`tolerance must be > 0, got ${o.tolerance}`);
  if (!(o.prior >= 0) || !Number.isFinite(o.prior)) throw new RangeError(`prior must be >= 0, got ${o.prior}`);
  return o;
}

function stripUndefined<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function assertValidBattle(b: PairBattle): void {
  if (!b.a || !b.b || b.a === b.b) throw new RangeError(`battle needs two distinct models, got '${b.a}' vs '${b.b}'`);
  if (b.scoreA !== 0 && b.scoreA !== 0.5 && b.scoreA !== 1) {
    throw new RangeError(`battle score must be 0, 0.5 or 1, got ${b.scoreA}`);
  }
}

function tallyBattles(battles: readonly PairBattle[]): Tally {
  const models = [...new Set(battles.flatMap((b) => [b.a, b.b]))].sort();
  const index = new Map(models.map((m, i) => [m, i]));
  const scored = squareMatrix(models.length);
  const records = models.map(() => ({ battles: 0, wins: 0, losses: 0, ties: 0 }));
  for (const { a, b, scoreA } of battles) {
    const i = index.get(a)!;
    const j = index.get(b)!;
    scored[i][j] += scoreA;
    scored[j][i] += 1 - scoreA;
    recordResult(records[i], scoreA);
    recordResult(records[j], 1 - scoreA);
  }
  return { models, scored, records };
}

function recordResult(r: Tally['records'][number], score: number): void {
  r.battles++;
  if (score === 1) r.wins++;
  else if (score === 0) r.losses++;
  else r.ties++;
}

/**
 * Without a prior the MLE exists iff the directed graph "i scored against j"
 * is strongly connected (Zermelo/Ford condition): every model reachable from
 * the first one both along and against the edges.
 */
function assertMleExists(tally: Tally): void {
  const forward = reachableFrom0(tally.scored, (i, j) => tally.scored[i][j] > 0);
  const backward = reachableFrom0(tally.scored, (i, j) => tally.scored[j][i] > 0);
  if (forward.size < tally.models.length || backward.size < tally.models.length) {
    throw new RangeError(
      'prior: 0 needs a strongly connected battle graph (no model with only wins or only losses ' + 'against the rest); use a prior > 0',
    );
  }
}

function reachableFrom0(m: number[][], edge: (i: number, j: number) => boolean): Set<number> {
  const seen = new Set<number>([0]);
  const queue = [0];
  while (queue.length > 0) {
    const i = queue.shift()!;
    for (let j = 0; j < m.length; j++) {
      if (!seen.has(j) && edge(i, j)) {
        seen.add(j);
        queue.push(j);
      }
    }
  }
  return seen;
}

/**
 * Maximises the penalised log-likelihood over θ = log p by Newton–Raphson
 * with step halving. The objective is concave (strictly so with a prior, or
 * on the sum-to-zero subspace when the MLE exists), so every Newton direction
 * ascends and halving until the objective does not drop converges from θ = 0.
 * Stops when the largest change of any θ_i in a step is below `tolerance`, or
 * after `iterations` steps. Without a prior the result is centred (mean 0).
 */
function fitLogStrengths(scored: number[][], o: Required<BradleyTerryOptions>): number[] {
  const objective = (t: number[]) => logLikelihood(scored, t, o.prior);
  let theta = new Array<number>(scored.length).fill(0);
  for (let step = 0; step < o.iterations; step++) {
    const info = solvableInformation(informationMatrix(scored, theta, o.prior), o.prior);
    const direction = multiply(invertMatrix(info), gradient(scored, theta, o.prior));
    const next = halveUntilNoWorse(theta, direction, objective);
    const change = Math.max(...next.map((t, i) => Math.abs(t - theta[i])));
    theta = o.prior === 0 ? centre(next) : next;
    if (change < o.tolerance) break;
  }
  return theta;
}

/** θ + s·direction for the largest s in 1, 1/2, 1/4, … (down to 2⁻³⁰) that does not lower the objective. */
function halveUntilNoWorse(theta: number[], direction: number[], objective: (t: number[]) => number): number[] {
  const current = objective(theta);
  for (let s = 1; s >= 2 ** -30; s /= 2) {
    const candidate = theta.map((t, i) => t + s * direction[i]);
    if (objective(candidate) >= current) return candidate;
  }
  return theta;
}

/**
 * Σ over pairs of s_ij·ln σ(θ_i − θ_j) + s_ji·ln σ(θ_j − θ_i), where s_ij is the
 * score i took from j (ties give 0.5 to each side), plus for each model
 * `prior` virtual ties against θ = 0: prior·½·(ln σ(θ_i) + ln σ(−θ_i)).
 */
function logLikelihood(scored: number[][], theta: number[], prior: number): number {
  let total = 0;
  for (let i = 0; i < theta.length; i++) {
    for (let j = i + 1; j < theta.length; j++) {
      const d = theta[i] - theta[j];
      total += scored[i][j] * logSigmoid(d) + scored[j][i] * logSigmoid(-d);
    }
    total += (prior / 2) * (logSigmoid(theta[i]) + logSigmoid(-theta[i]));
  }
  return total;
}

/** ∂/∂θ_i: i's actual score minus its expected score (prior games included). */
function gradient(scored: number[][], theta: number[], prior: number): number[] {
  return theta.map((ti, i) => {
    let g = prior * (0.5 - sigmoid(ti));
    for (let j = 0; j < theta.length; j++) {
      if (j !== i) g += scored[i][j] - (scored[i][j] + scored[j][i]) * sigmoid(ti - theta[j]);
    }
    return g;
  });
}

// ---------------------------------------------------------------------------
// Uncertainty

/**
 * Observed Fisher information of θ (negative Hessian of the log-likelihood;
 * it does not depend on the outcomes, so ties change nothing here): each pair
 * adds w = n_ij · σ(θ_i − θ_j) · σ(θ_j − θ_i) on both diagonals and −w
 * off-diagonal, n_ij being their number of games. The prior adds
 * prior · σ(θ_i) · σ(−θ_i) on the diagonal.
 */
function informationMatrix(scored: number[][], theta: number[], prior: number): number[][] {
  const n = theta.length;
  const info = squareMatrix(n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const d = theta[i] - theta[j];
      const w = (scored[i][j] + scored[j][i]) * sigmoid(d) * sigmoid(-d);
      info[i][i] += w;
      info[j][j] += w;
      info[i][j] -= w;
      info[j][i] -= w;
    }
    info[i][i] += prior * sigmoid(theta[i]) * sigmoid(-theta[i]);
  }
  return info;
}

/**
 * With a prior the information is invertible as is. Without one it is
 * singular along 1 (θ is only defined up to a shift); adding 11ᵀ/n makes it
 * invertible, and for vectors summing to zero (gradients, centring) the
 * inverse then acts as the pseudo-inverse, i.e. the sum-to-zero constrained
 * solution.
 */
function solvableInformation(info: number[][], prior: number): number[][] {
  const n = info.length;
  return prior === 0 ? info.map((row) => row.map((x) => x + 1 / n)) : info;
}

/**
 * Variances of the centred log-strengths θ_i − mean θ: diag(P Σ P) with
 * P = I − 11ᵀ/n and Σ the inverse of `solvableInformation` (with a prior the
 * posterior covariance; without, P Σ P is the Moore–Penrose pseudo-inverse of
 * the information, the sum-to-zero covariance).
 */
function centredVariances(info: number[][], prior: number): number[] {
  return centredOf(invertMatrix(solvableInformation(info, prior)));
}

function centredOf(cov: number[][]): number[] {
  const rowMeans = cov.map(mean);
  const grandMean = mean(rowMeans);
  return cov.map((row, i) => row[i] - 2 * rowMeans[i] + grandMean);
}

/** Σ over battles of (score − P(a beats b))² d dᵀ, d = e_a − e_b: one battle at a time. */
function scoreCovariance(battles: readonly PairBattle[], models: readonly string[], theta: readonly number[]): number[][] {
  const index = new Map(models.map((m, i) => [m, i]));
  const g = squareMatrix(models.length);
  for (const { a, b, scoreA } of battles) {
    const i = index.get(a)!;
    const j = index.get(b)!;
    const r = (scoreA - sigmoid(theta[i] - theta[j])) ** 2;
    g[i][i] += r;
    g[j][j] += r;
    g[i][j] -= r;
    g[j][i] -= r;
  }
  return g;
}

/** H⁻¹ G H⁻¹ with H the (solvable) information. */
function sandwichCovariance(info: number[][], g: number[][], prior: number): number[][] {
  const inv = invertMatrix(solvableInformation(info, prior));
  const times = (x: number[][], y: number[][]) => x.map((row) => y[0].map((_, c) => row.reduce((s, v, k) => s + v * y[k][c], 0)));
  return times(times(inv, g), inv);
}

/**
 * Gauss–Jordan inverse with partial pivoting. Matrices here are small
 * (one row per model).
 * @throws Error if the matrix is singular to working precision.
 */
export function invertMatrix(m: readonly (readonly number[])[]): number[][] {
  const n = m.length;
  const a = m.map((row, i) => [...row, ...identityRow(n, i)]);
  const largest = Math.max(...m.flatMap((row) => row.map(Math.abs)), 0);
  for (let col = 0; col < n; col++) {
    const pivotRow = argMaxAbs(a, col);
    if (Math.abs(a[pivotRow][col]) <= 1e-14 * largest || largest === 0) throw new Error('matrix is singular');
    [a[col], a[pivotRow]] = [a[pivotRow], a[col]];
    const pivot = a[col][col];
    a[col] = a[col].map((x) => x / pivot);
    for (let r = 0; r < n; r++) {
      const factor = a[r][col];
      if (r !== col && factor !== 0) a[r] = a[r].map((x, k) => x - factor * a[col][k]);
    }
  }
  return a.map((row) => row.slice(n));
}

function argMaxAbs(a: number[][], col: number): number {
  let best = col;
  for (let r = col + 1; r < a.length; r++) {
    if (Math.abs(a[r][col]) > Math.abs(a[best][col])) best = r;
  }
  return best;
}

// ---------------------------------------------------------------------------
// Small helpers

function byRatingThenName(x: Rating, y: Rating): number {
  const dx = Math.round(x.rating * 1e6);
  const dy = Math.round(y.rating * 1e6);
  return dy - dx || (x.model < y.model ? -1 : x.model > y.model ? 1 : 0);
}

function squareMatrix(n: number): number[][] {
  return Array.from({ length: n }, () => new Array<number>(n).fill(0));
}

function multiply(m: readonly (readonly number[])[], v: readonly number[]): number[] {
  return m.map((row) => row.reduce((s, x, k) => s + x * v[k], 0));
}

function centre(xs: readonly number[]): number[] {
  const m = mean(xs);
  return xs.map((x) => x - m);
}

function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/** ln σ(x) without overflow. */
function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

function identityRow(n: number, i: number): number[] {
  return Array.from({ length: n }, (_, k) => (k === i ? 1 : 0));
}

function sum(xs: readonly number[]): number {
  return xs.reduce((s, x) => s + x, 0);
}

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? 0 : sum(xs) / xs.length;
}
