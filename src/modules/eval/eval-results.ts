/**
 * An eval run's results and its diff against a baseline run, from plain rows
 * (`eval-results.types.ts`). Pure and deterministic (seeded bootstrap); no I/O.
 * The formulas and choices are written out in NOTES-eval-results.md.
 *
 * - Pass rate: passes / scored, over the COMPLETED cells with a verdict
 *   (`passed` not null); FAILED cells are `errors`, not failures. 95% Wilson
 *   interval (`eval-stats.ts`); nothing scored: rate 0, interval [0, 1].
 * - Latency and TTFT: nearest-rank p50 / p95 over completed cells with a value.
 * - Money: `costUsd` sums every cell's cost (FAILED ones too: they were paid
 *   for), reused cells counted 0; `costPerPassUsd` = costUsd / passes, null
 *   with no pass. Tokens: completed cells, reused ones included (they describe
 *   the answers; the spend is in costUsd).
 * - Rating: the verdicts, aggregated per (A, B, outcome), fitted by the
 *   leaderboard's arena fit (`fitArena`: Bradley–Terry, a tie half a win each
 *   side, one virtual tie per model as prior), bootstrap 95% interval and
 *   LMArena rank interval. Needs verdicts between ≥ 2 of the run's models.
 */
import { fitArena } from '../leaderboard/arena-stats';
import type { BattleCountRow } from '../leaderboard/arena.types';
import type {
  AssertionCount,
  CellRow,
  ComputeResultsOptions,
  DiffRunsOptions,
  EvalItemChange,
  EvalModelDelta,
  EvalModelResult,
  EvalRatingFit,
  EvalResults,
  EvalRunData,
  EvalRunDiffResult,
  VerdictRow,
} from './eval-results.types';
import { bootstrapDifference, nearestRank, newcombeDifference, wilson, Z_95 } from './eval-stats';

export const EVAL_RESULTS_DEFAULTS = Object.freeze({ bootstrapSamples: 1000, seed: 1 });

interface RatingOf {
  rating: number;
  low: number;
  high: number;
  rank: number;
  rankLow: number;
  rankHigh: number;
  battles: number;
  wins: number;
  losses: number;
  ties: number;
}

/**
 * Per model, in `models` order. Cells and verdicts naming a model not in
 * `models` are ignored.
 */
export function computeResults(
  models: readonly string[],
  cells: readonly CellRow[],
  verdicts: readonly VerdictRow[],
  opts: ComputeResultsOptions = {},
): EvalResults {
  const bootstrapSamples = opts.bootstrapSamples ?? EVAL_RESULTS_DEFAULTS.bootstrapSamples;
  const seed = opts.seed ?? EVAL_RESULTS_DEFAULTS.seed;
  const byModel = new Map<string, CellRow[]>(models.map((m) => [m, []]));
  for (const c of cells) byModel.get(c.model)?.push(c);

  const { fit, ratings } = rate(models, verdicts, bootstrapSamples, seed);
  const perModel = models.map((model) => modelResult(model, byModel.get(model) ?? [], ratings.get(model) ?? null));
  return { perModel, rating: fit };
}

function modelResult(model: string, cells: CellRow[], r: RatingOf | null): EvalModelResult {
  const completed = cells.filter((c) => c.status === 'COMPLETED');
  const scored = completed.filter((c) => c.passed !== null);
  const passes = scored.filter((c) => c.passed === true).length;
  const [passRateLow, passRateHigh] = wilson(passes, scored.length);
  const costUsd = cells.reduce((s, c) => s + (c.reused ? 0 : (c.costUsd ?? 0)), 0);
  const latencies = values(completed, (c) => c.latencyMs);
  return {
    model,
    cells: cells.length,
    completed: completed.length,
    errors: cells.filter((c) => c.status === 'FAILED').length,
    scored: scored.length,
    passes,
    passRate: scored.length === 0 ? 0 : passes / scored.length,
    passRateLow,
    passRateHigh,
    assertions: assertionCounts(completed),
    latencyP50Ms: rounded(nearestRank(latencies, 50)),
    latencyP95Ms: rounded(nearestRank(latencies, 95)),
    ttftP50Ms: rounded(
      nearestRank(
        values(completed, (c) => c.ttftMs),
        50,
      ),
    ),
    inputTokens: completed.reduce((s, c) => s + (c.inputTokens ?? 0), 0),
    outputTokens: completed.reduce((s, c) => s + (c.outputTokens ?? 0), 0),
    costUsd,
    costPerPassUsd: passes === 0 ? null : costUsd / passes,
    reusedCells: cells.filter((c) => c.reused).length,
    rating: r?.rating ?? null,
    ratingLow: r?.low ?? null,
    ratingHigh: r?.high ?? null,
    rank: r?.rank ?? null,
    rankLow: r?.rankLow ?? null,
    rankHigh: r?.rankHigh ?? null,
    battles: r?.battles ?? 0,
    wins: r?.wins ?? 0,
    losses: r?.losses ?? 0,
    ties: r?.ties ?? 0,
  };
}

function values(cells: CellRow[], pick: (c: CellRow) => number | null): number[] {
  return cells.map(pick).filter((v): v is number => v !== null && Number.isFinite(v));
}

function rounded(v: number | null): number | null {
  return v === null ? null : Math.round(v);
}

function assertionCounts(completed: CellRow[]): AssertionCount[] {
  const counts = new Map<string, AssertionCount>();
  for (const c of completed) {
    for (const a of c.assertionResults) {
      let k = counts.get(a.kind);
      if (!k) counts.set(a.kind, (k = { kind: a.kind, passed: 0, total: 0 }));
      k.total++;
      if (a.passed) k.passed++;
    }
  }
  return [...counts.values()].sort((x, y) => (x.kind < y.kind ? -1 : x.kind > y.kind ? 1 : 0));
}

function rate(
  models: readonly string[],
  verdicts: readonly VerdictRow[],
  bootstrapSamples: number,
  seed: number,
): { fit: EvalRatingFit | null; ratings: Map<string, RatingOf> } {
  const inRun = new Set(models);
  const rows = new Map<string, BattleCountRow>();
  for (const v of verdicts) {
    if (v.outcome === null || v.modelA === v.modelB || !inRun.has(v.modelA) || !inRun.has(v.modelB)) continue;
    const key = JSON.stringify([v.modelA, v.modelB, v.outcome]);
    const row = rows.get(key);
    if (row) row.count++;
    else rows.set(key, { a: v.modelA, b: v.modelB, outcome: v.outcome, count: 1 });
  }
  const ratings = new Map<string, RatingOf>();
  const rated = new Set([...rows.values()].flatMap((r) => [r.a, r.b]));
  if (rated.size < 2) return { fit: null, ratings };
  const fit = fitArena({ features: [], rows: [...rows.values()] }, { bootstrapSamples, seed, keepSamples: true });
  for (const r of fit.ratings) {
    ratings.set(r.model, {
      rating: r.rating,
      low: r.bootstrapLow,
      high: r.bootstrapHigh,
      rank: r.rank,
      rankLow: r.rankLow,
      rankHigh: r.rankHigh,
      battles: r.battles,
      wins: r.wins,
      losses: r.losses,
      ties: r.ties,
    });
  }
  return { fit: { battles: fit.battles, bootstrapSamples: fit.bootstrapSamples, seed, samples: fit.samples ?? {} }, ratings };
}

/**
 * The current run against a baseline of the same prompt set. Cells are matched
 * by (model, itemId, repeat) when both are COMPLETED and scored and the prompt
 * is the same (an edited item is counted in `promptChanged`, not as a change
 * of the model). Models in only one run are left out of `perModel` and of the
 * counts: there is nothing to compare them with.
 *
 * Pass-rate significance: Newcombe's hybrid score 95% interval of the
 * difference excludes 0. Rating significance: the 95% bootstrap interval of
 * the difference (independent draws of the two runs) excludes 0; with no
 * bootstrap draws, a normal approximation from the two intervals' widths.
 */
export function diffRuns(current: EvalRunData, baseline: EvalRunData, opts: DiffRunsOptions = {}): EvalRunDiffResult {
  const seed = opts.seed ?? 1;
  const baseModels = new Set(baseline.models);
  const common = current.models.filter((m) => baseModels.has(m));
  const commonSet = new Set(common);
  const order = new Map(common.map((m, i) => [m, i]));
  const key = (c: CellRow) => JSON.stringify([c.model, c.itemId, c.repeat]);
  const scored = (c: CellRow) => c.status === 'COMPLETED' && c.passed !== null;

  const before = new Map<string, CellRow>();
  for (const c of baseline.cells) if (commonSet.has(c.model) && scored(c)) before.set(key(c), c);

  const regressed: EvalItemChange[] = [];
  const improved: EvalItemChange[] = [];
  const tally = new Map(common.map((m) => [m, { matched: 0, regressions: 0, improvements: 0 }]));
  let promptChanged = 0;
  for (const c of current.cells) {
    if (!commonSet.has(c.model) || !scored(c)) continue;
    const b = before.get(key(c));
    if (!b) continue;
    if (b.prompt !== c.prompt) {
      promptChanged++;
      continue;
    }
    const t = tally.get(c.model)!;
    t.matched++;
    const change = { model: c.model, itemId: c.itemId, position: c.position, repeat: c.repeat };
    if (b.passed && !c.passed) {
      regressed.push(change);
      t.regressions++;
    } else if (!b.passed && c.passed) {
      improved.push(change);
      t.improvements++;
    }
  }
  const byPosition = (x: EvalItemChange, y: EvalItemChange) =>
    x.position - y.position || order.get(x.model)! - order.get(y.model)! || x.repeat - y.repeat;
  regressed.sort(byPosition);
  improved.sort(byPosition);

  const resultOf = (run: EvalRunData) => new Map(run.results.perModel.map((r) => [r.model, r]));
  const cur = resultOf(current);
  const base = resultOf(baseline);
  const perModel = common.flatMap((model): EvalModelDelta[] => {
    const c = cur.get(model);
    const b = base.get(model);
    if (!c || !b) return [];
    const p = newcombeDifference(c.passes, c.scored, b.passes, b.scored);
    const rating = ratingDelta(model, current, baseline, seed);
    return [
      {
        model,
        passRateDelta: p.delta,
        passRateDeltaLow: p.low,
        passRateDeltaHigh: p.high,
        passRateSignificant: c.scored > 0 && b.scored > 0 && (p.low > 0 || p.high < 0),
        ...rating,
        ...tally.get(model)!,
      },
    ];
  });
  return { regressions: regressed.length, improvements: improved.length, regressed, improved, promptChanged, perModel };
}

function ratingDelta(
  model: string,
  current: EvalRunData,
  baseline: EvalRunData,
  seed: number,
): Pick<EvalModelDelta, 'ratingDelta' | 'ratingDeltaLow' | 'ratingDeltaHigh' | 'ratingSignificant'> {
  const c = current.results.perModel.find((r) => r.model === model);
  const b = baseline.results.perModel.find((r) => r.model === model);
  if (c?.rating == null || b?.rating == null)
    return { ratingDelta: null, ratingDeltaLow: null, ratingDeltaHigh: null, ratingSignificant: null };
  const delta = c.rating - b.rating;
  const draws = bootstrapDifference(current.results.rating?.samples[model] ?? [], baseline.results.rating?.samples[model] ?? [], seed);
  let low: number;
  let high: number;
  if (draws) {
    [low, high] = draws;
  } else {
    // No draws: each interval taken as ± Z·se, the difference's se = √(se₁² + se₂²).
    const se = (r: EvalModelResult) => (r.ratingHigh! - r.ratingLow!) / (2 * Z_95);
    const half = Z_95 * Math.sqrt(se(c) ** 2 + se(b) ** 2);
    low = delta - half;
    high = delta + half;
  }
  return { ratingDelta: delta, ratingDeltaLow: low, ratingDeltaHigh: high, ratingSignificant: low > 0 || high < 0 };
}
