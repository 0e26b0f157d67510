import type { EntityManager } from '@mikro-orm/postgresql';
import { pgArray } from '../../db/sql';
import { REVEALED } from '../../db/read-plan';
import type { Provider } from '../api-key/api-key.entity';
import type { BattleCountRow, BattleCounts } from './arena.types';
import {
  type CellRow,
  endpointSql,
  globalStatement,
  judgeHumanAgreement,
  judgeStatement,
  mineStatement,
  STYLE_BINS_PER_UNIT,
  STYLE_FEATURES,
} from './battle-sql';
import type { FitWorker } from './fit-worker';
import type { LeaderboardBoard, LeaderboardOptions, LeaderboardScopeName, NormalisedFilter } from './leaderboard.types';

interface AverageRow {
  model: string;
  avg_latency_ms: number | null;
  avg_cost_usd: number | null;
}

/**
 * One board, computed: the scope's battle cells (`battle-sql.ts`), fitted in
 * the worker thread (`fit-worker.ts`, `arena-stats.ts`), plus the models'
 * average latency and cost. `userId` null = every user's votes.
 */
export async function computeBoard(
  em: EntityManager,
  worker: FitWorker,
  options: Pick<LeaderboardOptions, 'bootstrapSamples' | 'seed'>,
  scope: LeaderboardScopeName,
  userId: string | null,
  f: NormalisedFilter,
): Promise<LeaderboardBoard> {
  const features = f.styleControl ? [...STYLE_FEATURES] : [];
  const connection = em.getConnection();
  const ctx = em.getTransactionContext();
  const { sql, params } = scope === 'JUDGE' ? judgeStatement(f) : scope === 'MINE' ? mineStatement(userId!, f) : globalStatement(f);
  const rows = await connection.execute<CellRow[]>(sql, params, 'all', ctx);
  const summary = rows.find((r) => r.kind === 'summary');
  const cells = rows.filter((r) => r.kind === 'cell');
  const votesUsed = Number(summary?.n ?? 0);
  const votesExcluded = Number(summary?.excluded ?? 0);
  const agreement = scope === 'JUDGE' ? await judgeHumanAgreement(em, f) : { judgeHumanAgreement: null, judgeHumanPairs: 0 };
  if (cells.length === 0) {
    return {
      rankings: [],
      info: {
        votesUsed: 0,
        votesExcluded,
        models: 0,
        computedAt: new Date(),
        bootstrapSamples: 0,
        styleCoefficients: features.map((feature) => ({ feature, coefficient: 0, low: 0, high: 0 })),
        ...agreement,
      },
    };
  }

  const providers = new Map<string, Provider>();
  const counts: BattleCounts = { features, rows: [] };
  for (const c of cells) {
    providers.set(c.model_a!, c.provider_a as Provider);
    providers.set(c.model_b!, c.provider_b as Provider);
    const row: BattleCountRow = { a: c.model_a!, b: c.model_b!, outcome: c.outcome!, count: Number(c.n) };
    if (f.styleControl) row.x = [c.s_length, c.s_headers, c.s_lists, c.s_bold].map((v) => Number(v) / STYLE_BINS_PER_UNIT);
    counts.rows.push(row);
  }
  const fit = await worker.fit(counts, { bootstrapSamples: options.bootstrapSamples, seed: options.seed });

  const averages = await connection.execute<AverageRow[]>(
    // Unrevealed blind responses stay out: a moving average would tell which models a battle holds. FUSED answers
    // (merged from others' text) are not the model's own: they stay out too.
    `select ${endpointSql('r')} as model, avg(r.latency_ms)::float8 as avg_latency_ms, avg(r.cost_usd)::float8 as avg_cost_usd
       from comparison_responses r
       join comparison_results c on c.id = r.comparison_id ${userId === null ? '' : 'and c.owner_id = ?'}
      where r.status = 'COMPLETED' and r.kind = 'MODEL' and ${endpointSql('r')} = any(?::text[])
        and ${REVEALED.sql('c')} ${userId === null ? 'and not r.custom_endpoint' : ''}
      group by 1`,
    [...(userId === null ? [] : [userId]), pgArray(fit.ratings.map((r) => r.model))],
    'all',
    ctx,
  );
  const averageOf = new Map(averages.map((a) => [a.model, a]));

  return {
    rankings: fit.ratings.map((r) => ({
      ...r,
      provider: providers.get(r.model)!,
      avgLatencyMs: averageOf.get(r.model)?.avg_latency_ms ?? null,
      avgCostUsd: averageOf.get(r.model)?.avg_cost_usd ?? null,
    })),
    info: {
      votesUsed,
      votesExcluded,
      models: fit.ratings.length,
      computedAt: new Date(),
      bootstrapSamples: fit.bootstrapSamples,
      styleCoefficients: fit.styleCoefficients,
      ...agreement,
    },
  };
}
