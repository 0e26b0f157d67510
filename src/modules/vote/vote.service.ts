import { ForeignKeyConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Principal } from '../../graphql/auth';
import { badInput, notFound } from '../../errors';
import { ResponseStatus } from '../comparison/comparison.entity';
import type { ComparisonService } from '../comparison/comparison.service';
import { Vote, VoteOutcome } from './vote.entity';
import type { VoteInput } from './vote.inputs';

const RUNNING: readonly ResponseStatus[] = [ResponseStatus.PENDING, ResponseStatus.STREAMING];

/**
 * Casting and replacing the viewer's vote on one of their comparisons.
 *
 * Rules, in the order they are checked (decision table):
 * - `winnerResponseId` with TIE / ALL_BAD → BAD_USER_INPUT. Rejected rather
 *   than ignored, so a client bug (wrong outcome) is not silently stored as a tie.
 * - WINNER without `winnerResponseId` → BAD_USER_INPUT.
 * - A comparison that is missing, malformed or another user's → NOT_FOUND,
 *   one message for all three (ownership is never revealed).
 * - Any response still PENDING / STREAMING → BAD_USER_INPUT "still running",
 *   whatever the outcome: the voter has not seen every answer yet, and the
 *   leaderboard reads the response statuses when it builds battles.
 * - WINNER's response not among this comparison's responses (another
 *   comparison's, another user's, or no such id: same message) or not
 *   COMPLETED (FAILED / TIMED_OUT) → BAD_USER_INPUT.
 * - TIE / ALL_BAD are accepted even when fewer than two responses completed
 *   (such a vote simply yields no battles).
 *
 * Storage: one row per (comparison, user), written with
 * `insert … on conflict (comparison_id, user_id) do update`, so voting again
 * replaces the outcome and winner in place (same vote id, `createdAt` stays
 * the time of the first vote) and concurrent votes by the same user never hit
 * a unique violation: the last statement to commit wins.
 */
export class VoteService {
  constructor(private readonly comparisons: ComparisonService) {}

  async vote(em: EntityManager, principal: Principal, input: VoteInput): Promise<Vote> {
    const winnerId = input.winnerResponseId ?? null;
    if (input.outcome !== VoteOutcome.WINNER && winnerId !== null) {
      throw badInput(`winnerResponseId is only allowed with outcome WINNER, got outcome ${input.outcome}`, 'winnerResponseId');
    }
    if (input.outcome === VoteOutcome.WINNER && winnerId === null) {
      throw badInput('A WINNER vote needs winnerResponseId: the id of a COMPLETED response of this comparison', 'winnerResponseId');
    }

    const comparison = await this.comparisons.get(em, principal, input.comparisonId);
    const responses = await this.comparisons.responsesByComparisonIds(em, [comparison.id]);
    if (responses.some((r) => RUNNING.includes(r.status))) {
      throw badInput('Comparison is still running: vote once every response has settled', 'comparisonId');
    }
    if (winnerId !== null) {
      const winner = responses.find((r) => r.id === winnerId);
      if (!winner) throw badInput(`Response ${JSON.stringify(winnerId)} is not a response of this comparison`, 'winnerResponseId');
      if (winner.status !== ResponseStatus.COMPLETED) {
        throw badInput(`Response ${winnerId} is ${winner.status}: only a COMPLETED response can win`, 'winnerResponseId');
      }
    }

    const [row] = await em
      .getConnection()
      .execute<Array<Record<string, unknown>>>(
      `insert into votes (id, created_at, comparison_id, user_id, outcome, winner_id)
       values (gen_random_uuid(), now(), ?, ?, ?::vote_outcome, ?::uuid)
       on conflict (comparison_id, user_id) do update
         set outcome = excluded.outcome, winner_id = excluded.winner_id
       returning *`,
      [comparison.id, principal.userId, input.outcome, winnerId],
      )
      .catch((error: unknown) => {
        // The comparison (or its winner) was deleted after the checks above: same answer as a missing one.
        if (error instanceof ForeignKeyConstraintViolationException) throw notFound('Comparison');
        throw error;
      });
    if (!row) throw notFound('Comparison');
    return em.map(Vote, row);
  }
}
