/**
 * Arena battles (`startArenaBattle`): the server picks two models for the
 * user, and the battle runs as a blind comparison (see `blind.ts`).
 *
 * Candidates, as endpoint keys (`provider:name[@label]`):
 * - with an operator pool (`ARENA_MODELS`), the pool's models whose key the
 *   user has saved (same provider and label);
 * - without one, the curated catalog's models of every provider the user has
 *   a key for, through that key (the `default` label when the user has one
 *   for the provider, else their first label). Azure and OpenAI-compatible
 *   endpoints have no catalog entries: the operator lists them in the pool.
 * Fewer than two candidates is BAD_USER_INPUT saying what to do.
 *
 * Choice: every unordered pair of candidates weighs 1 / (1 + n), n the number
 * of blind comparisons that pitted the pair against each other so far (any
 * user's), and one pair is drawn with a crypto RNG: pairs with few battles,
 * whose leaderboard intervals are widest, come up most. The counts are one
 * aggregation over all pairs, shared by every user and instance through the
 * cache for PAIR_COUNTS_TTL_MS, so starting a battle costs one small read at
 * any number of battles. The runner then shuffles the two into labels A and B.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import { randomInt } from 'node:crypto';
import type { CachePort } from '../../cache/cache.port';
import type { Principal } from '../../auth/principal';
import { badInput } from '../../errors';
import { MODEL_CATALOG } from '../../llm/catalog';
import { DEFAULT_LABEL, endpointKey, parseModelId, type Provider, toProviderName } from '../../llm/model-id';
import { endpointSql } from '../leaderboard/battle-sql';

/** How long the shared pair counts are reused before they are counted again. */
export const PAIR_COUNTS_TTL_MS = 30_000;
const PAIR_COUNTS_KEY = 'arena:pair-counts';

/** Battles so far per unordered pair, keyed by `pairKey`. */
export type PairCounts = ReadonlyMap<string, number>;

export interface WeightedPair {
  a: string;
  b: string;
  battles: number;
  weight: number;
}

/** A uniform number in [0, 1). */
export type Uniform = () => number;
/** `randomInt` takes a range below 2^48. */
const RANGE = 2 ** 48 - 1;
export const cryptoUniform: Uniform = () => randomInt(RANGE) / RANGE;

/** The key of an unordered pair (order-independent). */
export function pairKey(a: string, b: string): string {
  return a < b ? `${a}\n${b}` : `${b}\n${a}`;
}

/** Every unordered pair of distinct candidates with its weight 1 / (1 + battles so far). */
export function pairWeights(candidates: readonly string[], counts: PairCounts): WeightedPair[] {
  const unique = [...new Set(candidates)].sort();
  const pairs: WeightedPair[] = [];
  for (let i = 0; i < unique.length; i++) {
    for (let j = i + 1; j < unique.length; j++) {
      const battles = counts.get(pairKey(unique[i]!, unique[j]!)) ?? 0;
      pairs.push({ a: unique[i]!, b: unique[j]!, battles, weight: 1 / (1 + battles) });
    }
  }
  return pairs;
}

/** Draws one pair with probability proportional to its weight; `u` is uniform in [0, 1). */
export function drawPair(pairs: readonly WeightedPair[], u: number): WeightedPair {
  if (pairs.length === 0) throw new Error('drawPair needs at least one pair');
  const total = pairs.reduce((sum, p) => sum + p.weight, 0);
  let target = u * total;
  for (const pair of pairs) {
    target -= pair.weight;
    if (target < 0) return pair;
  }
  return pairs[pairs.length - 1]!; // rounding at u → 1
}

/** The candidates (endpoint keys) a user with these keys may battle; see the module comment. */
export function arenaCandidates(keys: ReadonlyArray<{ provider: Provider; label: string }>, pool: readonly string[]): string[] {
  const held = new Set(keys.map((k) => `${toProviderName(k.provider)}@${k.label}`));
  if (pool.length > 0) {
    return pool.filter((id) => {
      const m = parseModelId(id);
      return held.has(`${m.provider}@${m.label}`);
    });
  }
  const labelOf = new Map<string, string>();
  for (const k of [...keys].sort((x, y) =>
    x.label === DEFAULT_LABEL ? -1 : y.label === DEFAULT_LABEL ? 1 : x.label.localeCompare(y.label),
  )) {
    const provider = toProviderName(k.provider);
    if (!labelOf.has(provider)) labelOf.set(provider, k.label);
  }
  return MODEL_CATALOG.filter((e) => labelOf.has(e.provider)).map((e) =>
    endpointKey({ id: `${e.provider}:${e.name}`, label: labelOf.get(e.provider)! }),
  );
}

export class ArenaService {
  constructor(
    private readonly cache: CachePort,
    /** `Config.arena.models`: the operator's pool (endpoint keys), empty for none. */
    private readonly pool: readonly string[],
    private readonly uniform: Uniform = cryptoUniform,
  ) {}

  /** Two distinct model ids for a battle of the user's, chosen as the module comment says. */
  async pickModels(em: EntityManager, principal: Principal): Promise<string[]> {
    const keys: Array<{ provider: Provider; label: string }> = await em
      .getConnection()
      .execute(`select provider, label from api_keys where owner_id = ? order by provider, label`, [principal.userId]);
    const candidates = arenaCandidates(keys, this.pool);
    if (candidates.length < 2) throw this.tooFew(candidates);
    const counts = await this.pairCounts(em);
    const pair = drawPair(pairWeights(candidates, counts), this.uniform());
    return [pair.a, pair.b];
  }

  private tooFew(candidates: readonly string[]) {
    const reachable = candidates.length === 0 ? 'none' : `only ${candidates[0]}`;
    if (this.pool.length > 0) {
      return badInput(
        `An arena battle needs two models you can reach (${reachable}): save API keys (saveApiKey) for the providers of at ` +
          `least two models of the arena pool: ${this.pool.join(', ')}`,
      );
    }
    return badInput(
      `An arena battle needs two models you can reach (${reachable}): save an API key (saveApiKey) for OpenAI, Anthropic, ` +
        `Google or Mistral, or run a comparison of the models you choose with runComparison(blind: true)`,
    );
  }

  /** Blind comparisons so far per pair of endpoints, every user's, shared through the cache. */
  private async pairCounts(em: EntityManager): Promise<PairCounts> {
    const rows = await this.cache.wrap(PAIR_COUNTS_KEY, PAIR_COUNTS_TTL_MS, () =>
      em.getConnection().execute<Array<{ a: string; b: string; n: number }>>(
        `with e as (
           select distinct x.comparison_id, ${endpointSql('x')} as k
             from comparison_responses x join comparison_results c on c.id = x.comparison_id
            where c.blind
         )
         select p.k as a, q.k as b, count(*)::int as n
           from e p join e q on p.comparison_id = q.comparison_id and p.k < q.k
          group by 1, 2`,
      ),
    );
    return new Map(rows.map((r) => [pairKey(r.a, r.b), Number(r.n)]));
  }
}
