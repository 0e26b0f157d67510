/**
 * Blind comparisons (issue 10): what a reader sees of a response while its
 * comparison is blind and has no vote yet.
 *
 * Labels. Every response shows a `label`, "A", "B", … in the order shown:
 * the label is the letter of the response's stored `position`. A blind
 * comparison shuffles its models once, with a crypto RNG, before positions
 * are assigned (and before the rows are created, so nothing that follows
 * creation order — ids, insertion order — knows the order asked for); a
 * non-blind one keeps the order of `models`. Responses are always listed by
 * position, i.e. by label.
 *
 * Revealed. A comparison is revealed when it is not blind, or once a vote on
 * it exists: the `REVEALED` rule of `db/read-plan.ts`, the one declaration
 * that yields its SQL predicate (`REVEALED.sql(alias)`) and its TypeScript
 * check (`REVEALED.check(facts)`). The vote row is the reveal, so the two are
 * written atomically by the vote's own statement and every instance sees the
 * same answer. Reads compute it in SQL next to the row they read.
 *
 * Hidden while unrevealed (`REVEALED.conceals`, applied by `presentResponse`),
 * on every read path that goes through `ComparisonService` (queries, the
 * list's look-ahead, search hits, votes' winners, exports), in the compiled
 * reads (which leave such a row to the services) and in `comparisonEvents`:
 * - `provider`, `model`, `keyLabel`: null (the label of a key names the endpoint);
 * - `costUsd`: null (a price identifies a model);
 * - `promptTokens`, `completionTokens`: null (the same prompt counts
 *   differently under each provider's tokenizer, so the count names the family);
 * - `customEndpoint`: false (it is not nullable; true would tell which
 *   answer came through which of the user's keys, i.e. name the provider);
 * - `error`: the reason code only (`RATE_LIMIT: …`), never the provider's own
 *   text, which tends to name the model or provider (`hiddenError`).
 * Shown: `id`, `label`, `status`, `content`, `latencyMs`,
 * `timeToFirstTokenMs`, `createdAt` (timing is accepted as visible).
 *
 * Continuing the conversation. Each model sees its own earlier answers, so a
 * follow-up ("repeat what you said") to a named model, or to another battle
 * whose models are later revealed, would tell who wrote which blind answer:
 * a conversation holding an unrevealed blind comparison is continued
 * (`sendMessage`, any comparison or battle with its `conversationId`) only
 * after that vote (`assertNothingHidden`).
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import { randomInt } from 'node:crypto';
import { badInput } from '../../errors';
import { HIDDEN_DETAILS, hiddenError, RESPONSE_LABEL, REVEALED } from '../../db/read-plan';
import type { ComparisonResponseView } from './comparison.entity';

export { HIDDEN_DETAILS, hiddenError };

/** "A" for position 0, "B" for 1, … (a comparison has at most 8 responses). */
export function responseLabel(position: number): string {
  return RESPONSE_LABEL.value({ position }) as string;
}

/** A random number in [0, max), by default from the crypto RNG. Injectable for tests. */
export type RandomInt = (max: number) => number;
export const cryptoRandomInt: RandomInt = (max) => randomInt(max);

/** A shuffled copy (Fisher–Yates). */
export function shuffled<T>(items: readonly T[], random: RandomInt = cryptoRandomInt): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = random(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** A response as read paths return it: identity fields nullable, plus its label. */
export type PresentedResponse = Omit<ComparisonResponseView, 'provider' | 'model' | 'keyLabel'> & {
  provider: ComparisonResponseView['provider'] | null;
  model: string | null;
  keyLabel: string | null;
  label: string;
};

/** The response as the reader sees it: everything when `revealed`, else the identity hidden (see the module comment). */
export function presentResponse(row: ComparisonResponseView, revealed: boolean): PresentedResponse {
  return REVEALED.present<PresentedResponse>({ ...row, label: responseLabel(row.position) }, revealed);
}

/**
 * The first comparison of conversation `conversationId` (SQL: a placeholder or a column) that is not revealed, its id
 * or null: a scalar subquery, for a statement that reads the conversation anyway (`ConversationService.getToContinue`).
 */
export function hiddenComparisonSql(conversationId: string): string {
  return (
    `(select r.id from comparison_results r where r.conversation_id = ${conversationId} and not ${REVEALED.sql('r')} ` +
    'order by r.created_at limit 1)'
  );
}

/** BAD_USER_INPUT when `hiddenId` (from {@link hiddenComparisonSql}) names a blind comparison not yet voted on. */
export function refuseHidden(hiddenId: string | null | undefined): void {
  if (hiddenId) {
    throw badInput(
      `This conversation has a blind comparison you have not voted on (${hiddenId}): vote on it first, or start a new ` +
        `conversation. Continuing it would let the models' own earlier answers tell who wrote which.`,
      'conversationId',
    );
  }
}

/**
 * BAD_USER_INPUT when the conversation holds a blind comparison not yet voted
 * on (see the module comment); one indexed statement.
 */
export async function assertNothingHidden(em: EntityManager, conversationId: string): Promise<void> {
  const sql = `select ${hiddenComparisonSql('?')} as id`;
  const [row] = await em.getConnection().execute<Array<{ id: string | null }>>(sql, [conversationId]);
  refuseHidden(row?.id);
}
