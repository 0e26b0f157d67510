/**
 * What the eval results functions (`eval-results.ts`, `eval-export.ts`) take
 * and answer: plain rows in, plain objects out. No entity, no GraphQL type: the
 * engine maps its tables to these rows and these results to its GraphQL types.
 */

export type EvalCellStatus = 'QUEUED' | 'RUNNING' | 'COMPLETED' | 'FAILED' | 'CANCELLED';

export interface AssertionResultRow {
  kind: string;
  passed: boolean;
  reason: string | null;
}

/** One cell of a run (item × model × repeat), as the engine stores it. */
export interface CellRow {
  itemId: string;
  /** The item's position in its prompt set (order of the export). */
  position: number;
  model: string;
  repeat: number;
  status: EvalCellStatus;
  /** All assertions passed; null when not scored (not completed, or no assertion). */
  passed: boolean | null;
  assertionResults: AssertionResultRow[];
  latencyMs: number | null;
  ttftMs: number | null;
  inputTokens: number | null;
  outputTokens: number | null;
  /** What the call cost; ignored (counted 0) when `reused`. */
  costUsd: number | null;
  /** Served from an earlier identical cell: no provider call, no spend. */
  reused: boolean;
  error: string | null;
  content: string | null;
  /** The prompt as sent (the diff compares it to tell an edited item from a changed answer). */
  prompt: string;
}

/**
 * One judged pair on one item and repeat, already combined over both orders
 * (disagreement = TIE). `outcome` null: not judged or the judge failed.
 */
export interface VerdictRow {
  itemId: string;
  repeat: number;
  modelA: string;
  modelB: string;
  outcome: 'A' | 'B' | 'TIE' | null;
}

export interface AssertionCount {
  kind: string;
  passed: number;
  total: number;
}

/** One model's results in one run (`EvalModelResult` in the API, with extra fields). */
export interface EvalModelResult {
  model: string;
  /** Every cell of the model in the run, whatever its status. */
  cells: number;
  completed: number;
  /** Cells that FAILED (provider or engine error). */
  errors: number;
  /** Completed cells with a verdict (`passed` not null): the pass rate's denominator. */
  scored: number;
  passes: number;
  /** passes / scored; 0 when nothing is scored (then the interval is [0, 1]). */
  passRate: number;
  /** 95% Wilson score interval. */
  passRateLow: number;
  passRateHigh: number;
  /** Per assertion kind over the completed cells, kinds sorted by name. */
  assertions: AssertionCount[];
  /** Nearest-rank percentiles over completed cells with a measurement; null without any. */
  latencyP50Ms: number | null;
  latencyP95Ms: number | null;
  ttftP50Ms: number | null;
  inputTokens: number;
  outputTokens: number;
  /** Spend: every cell's cost, reused cells counted 0. */
  costUsd: number;
  /** costUsd / passes; null with no pass. */
  costPerPassUsd: number | null;
  reusedCells: number;
  /** Pairwise judge rating (arena scale, mean of the rated models 1000); null without verdicts for ≥ 2 models. */
  rating: number | null;
  /** Bootstrap 95% percentile interval of the rating. */
  ratingLow: number | null;
  ratingHigh: number | null;
  rank: number | null;
  rankLow: number | null;
  rankHigh: number | null;
  /** Judged pairs this model took part in (0 without a rating). */
  battles: number;
  wins: number;
  losses: number;
  ties: number;
}

export interface EvalRatingFit {
  /** Verdicts used (outcome not null, both models in the run). */
  battles: number;
  bootstrapSamples: number;
  seed: number;
  /** Each rated model's rating in every bootstrap resample (for the diff); not exported. */
  samples: Record<string, number[]>;
}

export interface EvalResults {
  /** In the run's model order. */
  perModel: EvalModelResult[];
  /** Null without verdicts for ≥ 2 models. */
  rating: EvalRatingFit | null;
}

export interface ComputeResultsOptions {
  /** Bootstrap resamples of the rating. Default 1000. */
  bootstrapSamples?: number;
  /** Seed of the bootstrap (uint32). Default 1: a run's results are reproducible. */
  seed?: number;
}

/** A run as the diff needs it. */
export interface EvalRunData {
  models: string[];
  cells: CellRow[];
  results: EvalResults;
}

/** A cell whose verdict changed between the baseline and the current run. */
export interface EvalItemChange {
  model: string;
  itemId: string;
  position: number;
  repeat: number;
}

export interface EvalModelDelta {
  model: string;
  /** current − baseline pass rate. */
  passRateDelta: number;
  /** Newcombe's hybrid score 95% interval of the difference. */
  passRateDeltaLow: number;
  passRateDeltaHigh: number;
  /** The interval excludes 0 (and both runs have scored cells). */
  passRateSignificant: boolean;
  /** current − baseline rating; null when either run has no rating for the model. */
  ratingDelta: number | null;
  ratingDeltaLow: number | null;
  ratingDeltaHigh: number | null;
  ratingSignificant: boolean | null;
  /** Cells matched in both runs (same item, repeat and prompt, both scored). */
  matched: number;
  regressions: number;
  improvements: number;
}

export interface EvalRunDiffResult {
  /** pass → fail, over the models in both runs. */
  regressions: number;
  /** fail → pass. */
  improvements: number;
  /** Ordered by position, then model (run order), then repeat. */
  regressed: EvalItemChange[];
  improved: EvalItemChange[];
  /** Cells skipped because the item's prompt changed between the runs. */
  promptChanged: number;
  /** Models in both runs, in the current run's order. */
  perModel: EvalModelDelta[];
}

export interface DiffRunsOptions {
  /** Seed pairing the two runs' bootstrap draws. Default 1. */
  seed?: number;
}

/** The run's own fields, for the export. Dates as Date or ISO strings. */
export interface EvalRunMeta {
  id: string;
  status: string;
  promptSetId: string;
  promptSetName?: string | null;
  models: string[];
  judgeModel?: string | null;
  repeats: number;
  temperature?: number | null;
  maxOutputTokens?: number | null;
  baselineRunId?: string | null;
  createdAt: Date | string;
  startedAt?: Date | string | null;
  finishedAt?: Date | string | null;
}
