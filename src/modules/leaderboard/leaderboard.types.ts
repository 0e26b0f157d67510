/** What the leaderboard answers and takes: boards, their lines and info, scopes and filters. */
import type { Provider } from '../api-key/api-key.entity';
import type { ArenaRating, StyleCoefficientData } from './arena.types';

/** One leaderboard line: the Bradley–Terry rating plus the models' average cost and speed. */
export interface ModelRankingData extends ArenaRating {
  /** `ArenaRating.model`: the endpoint (`endpointKey`): the model id, plus `@label` when the label is not `default`. */
  provider: Provider;
  avgLatencyMs: number | null;
  avgCostUsd: number | null;
}

export interface LeaderboardInfoData {
  votesUsed: number;
  votesExcluded: number;
  models: number;
  computedAt: Date;
  bootstrapSamples: number;
  styleCoefficients: StyleCoefficientData[];
  /** JUDGE scope: share of (verdict, human vote) pairs on the same comparisons that agree; null elsewhere or without overlap. */
  judgeHumanAgreement: number | null;
  /** How many pairs `judgeHumanAgreement` is computed on (0 outside JUDGE). */
  judgeHumanPairs: number;
}

export interface LeaderboardBoard {
  rankings: ModelRankingData[];
  info: LeaderboardInfoData;
}

export type LeaderboardScopeName = 'GLOBAL' | 'MINE' | 'JUDGE';

/** The filter as the resolver passes it; missing fields take the API defaults. */
export interface LeaderboardFilterInput {
  blindOnly?: boolean | null;
  styleControl?: boolean | null;
  category?: string | null;
  since?: Date | null;
}

export interface NormalisedFilter {
  blindOnly: boolean;
  styleControl: boolean;
  category: string | null;
  since: string | null;
}

export interface LeaderboardOptions {
  bootstrapSamples: number;
  seed: number;
  refreshWaitMs: number;
  maxAgeMs: number;
}

/** The filter with the API defaults filled in (and `since` as an ISO string): what a board is keyed and computed by. */
export function normalise(filter: LeaderboardFilterInput | null | undefined): NormalisedFilter {
  return {
    blindOnly: filter?.blindOnly ?? true,
    styleControl: filter?.styleControl ?? false,
    category: filter?.category ?? null,
    since: filter?.since ? new Date(filter.since).toISOString() : null,
  };
}
