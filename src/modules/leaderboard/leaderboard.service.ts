import type { EntityManager } from '@mikro-orm/postgresql';
import type { CachePort } from '../../cache/cache.port';
import type { GenerationInvalidator } from '../../cache/generations';
import { pgArray } from '../../db/sql';
import { DEFAULT_LABEL } from '../../llm/model-id';
import type { Provider } from '../api-key/api-key.entity';
import { bradleyTerry, type Rating, type VoteRecord, votesToBattles } from './bradley-terry';

/** One leaderboard line: the Bradley–Terry rating plus the models' average cost and speed. */
export interface ModelRankingData extends Rating {
  /** `Rating.model`: the endpoint (`endpointKey`): the model id, plus `@label` when the label is not `default`. */
  provider: Provider;
  avgLatencyMs: number | null;
  avgCostUsd: number | null;
}

/** One (vote, participating response) pair from the battles statement. */
interface ParticipantRow {
  vote_id: string;
  outcome: VoteRecord['outcome'];
  model: string;
  provider: Provider;
  is_winner: boolean;
}

interface AverageRow {
  model: string;
  avg_latency_ms: number | null;
  avg_cost_usd: number | null;
}

/** The endpoint key in SQL (as `endpointKey` builds it): each label of a model is ranked apart. */
const ENDPOINT_SQL = `case when r.key_label = '${DEFAULT_LABEL}' then r.model else r.model || '@' || r.key_label end`;

/** Generation scope bumped by every vote; the GLOBAL leaderboard is cached under its current value. */
const GLOBAL_SCOPE = 'leaderboard-global';

/**
 * Leaderboards from votes, in at most two SQL statements (one for the votes
 * with their participating responses, one for the averages; none when there
 * are no votes), then a Bradley–Terry fit with the default prior.
 *
 * Decisions:
 * - Battle participants of a vote are the comparison's models whose response
 *   is COMPLETED, plus the winner's model. FAILED / TIMED_OUT responses take no
 *   part (no answer was judged), so ALL_BAD is a tie among the completed
 *   responses only. Models are ranked per endpoint (model id plus `@label`
 *   when the key label is not `default`): the same model through two labels
 *   (`…@ollama`, `…@vllm`) is two participants, and two rows.
 * - The ranking lists models that took part in at least one battle; a model
 *   with responses but no battles is left out (it has no rating).
 * - avgLatencyMs / avgCostUsd average the COMPLETED responses of the listed
 *   models in scope (MINE: the user's comparisons, voted or not; GLOBAL:
 *   everyone's), ignoring NULLs; null when there is nothing to average.
 * - MINE is cached per user by the operation cache (see
 *   `graphql/plugins/operation-cache.ts`). GLOBAL is cached here in the shared
 *   cache (namespace `resp`, so `flushCaches(RESPONSES)` clears it too) under
 *   a global generation counter that every vote bumps
 *   (`invalidateGlobal`), so a vote is visible to the next read on any instance.
 */
export class LeaderboardService {
  constructor(
    private readonly cache: CachePort,
    private readonly generations: GenerationInvalidator,
    private readonly globalTtlMs: number,
  ) {}

  /** The viewer's own votes. */
  mine(em: EntityManager, userId: string): Promise<ModelRankingData[]> {
    return this.compute(em, userId);
  }

  /** Every user's votes; read through the cache. */
  async global(em: EntityManager): Promise<ModelRankingData[]> {
    const generation = await this.generations.generation(GLOBAL_SCOPE);
    return this.cache.wrap(`resp:${GLOBAL_SCOPE}:${generation}`, this.globalTtlMs, () => this.compute(em, null));
  }

  /** Called after every vote. */
  async invalidateGlobal(): Promise<void> {
    await this.generations.bump(GLOBAL_SCOPE);
  }

  /** `userId` null = every user's votes and comparisons. */
  private async compute(em: EntityManager, userId: string | null): Promise<ModelRankingData[]> {
    const connection = em.getConnection();
    const participants = await connection.execute<ParticipantRow[]>(
      `select v.id as vote_id, v.outcome, ${ENDPOINT_SQL} as model, r.provider, (r.id = v.winner_id) is true as is_winner
         from votes v
         join comparison_responses r
           on r.comparison_id = v.comparison_id and (r.status = 'COMPLETED' or r.id = v.winner_id)
        where ${userId === null ? 'true' : 'v.user_id = ?'}
        order by v.id, r.position`,
      userId === null ? [] : [userId],
    );

    const providers = new Map<string, Provider>();
    for (const row of participants) if (!providers.has(row.model)) providers.set(row.model, row.provider);
    const ratings = bradleyTerry(votesToBattles(toVoteRecords(participants)));
    if (ratings.length === 0) return [];

    const averages = await connection.execute<AverageRow[]>(
      `select ${ENDPOINT_SQL} as model, avg(r.latency_ms)::float8 as avg_latency_ms, avg(r.cost_usd)::float8 as avg_cost_usd
         from comparison_responses r
         ${userId === null ? '' : 'join comparison_results c on c.id = r.comparison_id and c.owner_id = ?'}
        where r.status = 'COMPLETED' and ${ENDPOINT_SQL} = any(?::text[])
        group by 1`,
      [...(userId === null ? [] : [userId]), pgArray(ratings.map((r) => r.model))],
    );
    const averageOf = new Map(averages.map((a) => [a.model, a]));

    return ratings.map((r) => ({
      ...r,
      provider: providers.get(r.model)!,
      avgLatencyMs: averageOf.get(r.model)?.avg_latency_ms ?? null,
      avgCostUsd: averageOf.get(r.model)?.avg_cost_usd ?? null,
    }));
  }
}

/**
 * Groups the participant rows (ordered by vote) into one `VoteRecord` per
 * vote, each model once. A WINNER vote whose winner is not among the rows (not
 * possible through `vote`, only through hand-edited data) is skipped rather
 * than failing the whole leaderboard.
 */
function toVoteRecords(rows: readonly ParticipantRow[]): VoteRecord[] {
  const records: VoteRecord[] = [];
  let current: (VoteRecord & { id: string }) | undefined;
  for (const row of rows) {
    if (current?.id !== row.vote_id) {
      current = { id: row.vote_id, outcome: row.outcome, models: [], winner: null };
      records.push(current);
    }
    if (!current.models.includes(row.model)) current.models.push(row.model);
    if (row.is_winner) current.winner = row.model;
  }
  return records
    .filter((v) => v.outcome !== 'WINNER' || v.winner != null)
    .map(({ models, outcome, winner }) => ({ models, outcome, winner }));
}
