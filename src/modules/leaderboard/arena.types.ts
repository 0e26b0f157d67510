/** What the arena fit (`arena-stats.ts`) takes and answers: pre-aggregated battle counts in, ratings out. */

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
  /** Bootstrap resamples; 0 = closed-form intervals only. Default 1000. */
  bootstrapSamples?: number;
  /** The closed-form intervals (`ratingLow`/`ratingHigh`): `sandwich` (default, robust) or `fisher`. */
  closedForm?: 'sandwich' | 'fisher';
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
  /**
   * Also answer each model's bootstrap draws (`ArenaFit.samples`), so a caller
   * can form intervals of a function of the ratings (the eval diff: the change
   * of a model's rating between two runs). Default false.
   */
  keepSamples?: boolean;
}

export interface ArenaRating {
  model: string;
  rating: number;
  /** Closed-form 95% interval (sandwich by default, or Fisher: `closedForm`). */
  ratingLow: number;
  ratingHigh: number;
  /** Bootstrap 95% percentile interval (equal to the closed-form one when there are no resamples). */
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
  /** With `keepSamples` and resamples: each model's centred rating in every resample, in resample order. */
  samples?: Record<string, number[]>;
}
