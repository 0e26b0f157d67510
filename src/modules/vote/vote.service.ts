import { ForeignKeyConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { VoteRules } from '../../config';
import type { Principal } from '../../auth/principal';
import { AppError, badInput, notFound } from '../../errors';
import { ResponseKind, ResponseStatus } from '../comparison/comparison.entity';
import type { ComparisonService } from '../comparison/comparison.service';
import { Vote, VoteOutcome } from './vote.entity';
import type { VoteInput } from './vote.inputs';
import type { VoteIntegrity } from './vote-integrity';

const RUNNING: readonly ResponseStatus[] = [ResponseStatus.PENDING, ResponseStatus.STREAMING];
const DAY_SECONDS = 24 * 60 * 60;

/**
 * Casting and replacing the viewer's vote on one of their comparisons.
 *
 * Rules, in the order they are checked (decision table):
 * - `winnerResponseId` with TIE / ALL_BAD → BAD_USER_INPUT. Rejected rather
 *   than ignored, so a client bug (wrong outcome) is not silently stored as a tie.
 * - WINNER without `winnerResponseId` → BAD_USER_INPUT.
 * - A comparison that is missing, malformed or another user's → NOT_FOUND,
 *   one message for all three (ownership is never revealed).
 * - Any response still PENDING / STREAMING → COMPARISON_NOT_SETTLED
 *   ("still running"), whatever the outcome: the voter has not seen every
 *   answer yet, and the vote's battles are taken from the settled responses.
 * - WINNER's response not among this comparison's responses (another
 *   comparison's, another user's, or no such id: same message) or not
 *   COMPLETED (FAILED / TIMED_OUT) → BAD_USER_INPUT.
 * - TIE / ALL_BAD are accepted even when fewer than two responses completed
 *   (such a vote simply yields no battles).
 * - Changing a vote more than VOTE_CHANGE_WINDOW_SECONDS after it was first
 *   cast → VOTE_CHANGE_WINDOW_CLOSED (`extensions.votedAt`, `closedAt`).
 * - Changing a vote on a blind comparison → VOTE_CHANGE_WINDOW_CLOSED
 *   (`extensions.votedAt`, `closedAt` = `votedAt`, `revealed: true`): the
 *   first vote revealed the models, so a second one would be cast knowing
 *   them (issue 16, case 6). Voting the same outcome and winner again is not
 *   a change: it answers the stored vote (a client's retry).
 * - A new vote (not a change) when the user cast VOTE_DAILY_CAP votes in the
 *   last 24 h → VOTE_LIMIT_REACHED (`extensions.limit`,
 *   `retryAfterSeconds`: when the oldest of them leaves the window).
 *
 * Storage: one row per (comparison, user). The write runs in a transaction
 * holding a per-user advisory lock, so the cap and the window are exact
 * across instances and concurrent votes of one user are serialized (the last
 * to commit wins; never a unique violation). A change keeps the vote id and
 * `createdAt` (the time of the first vote). A vote on a blind comparison is
 * stored `cast_blind` (only those count on blind-only boards). A vote of a user under an active
 * exclusion is stored excluded. Triggers on `votes` keep the battle counts
 * in step in the same transaction (see the 20261128021000 migration); after
 * the commit the user's voting pattern is checked (`VoteIntegrity`).
 */
export class VoteService {
  constructor(
    private readonly comparisons: ComparisonService,
    private readonly rules: VoteRules,
    private readonly integrity: VoteIntegrity,
  ) {}

  async vote(em: EntityManager, principal: Principal, input: VoteInput): Promise<Vote> {
    const winnerId = input.winnerResponseId ?? null;
    if (input.outcome !== VoteOutcome.WINNER && winnerId !== null) {
      throw badInput(`winnerResponseId is only allowed with outcome WINNER, got outcome ${input.outcome}`, 'winnerResponseId');
    }
    if (input.outcome === VoteOutcome.WINNER && winnerId === null) {
      throw badInput('A WINNER vote needs winnerResponseId: the id of a COMPLETED response of this comparison', 'winnerResponseId');
    }

    const comparison = await this.comparisons.get(em, principal, input.comparisonId);
    // A FUSED response is not a candidate: it neither holds a vote back while it runs nor can win (it is no battle).
    const all = await this.comparisons.responsesByComparisonIds(em, [comparison.id]);
    const responses = all.filter((r) => r.kind !== ResponseKind.FUSED);
    if (responses.some((r) => RUNNING.includes(r.status))) {
      throw new AppError('COMPARISON_NOT_SETTLED', 'Comparison is still running: vote once every response has settled', {
        field: 'comparisonId',
      });
    }
    if (winnerId !== null) {
      const winner = responses.find((r) => r.id === winnerId);
      if (!winner && all.some((r) => r.id === winnerId)) {
        throw badInput(`Response ${winnerId} is FUSED (merged from the others): only a model's own answer can win`, 'winnerResponseId');
      }
      if (!winner) throw badInput(`Response ${JSON.stringify(winnerId)} is not a response of this comparison`, 'winnerResponseId');
      if (winner.status !== ResponseStatus.COMPLETED) {
        throw badInput(`Response ${winnerId} is ${winner.status}: only a COMPLETED response can win`, 'winnerResponseId');
      }
    }

    const row = await em
      .fork()
      .transactional(async (tx) => {
        const sql = <T>(text: string, params: unknown[]) =>
          tx.getConnection().execute(text, params, 'all', tx.getTransactionContext()) as Promise<T>;
        await sql(`select pg_advisory_xact_lock(hashtextextended(?, 0))`, [`llmselect:votes:${principal.userId}`]);
        const [existing] = await sql<
          Array<Record<string, unknown> & { id: string; created_at: Date; age_s: number; outcome: string; winner_id: string | null }>
        >(`select *, extract(epoch from now() - created_at)::float8 as age_s from votes where comparison_id = ? and user_id = ?`, [
          comparison.id,
          principal.userId,
        ]);
        if (existing && comparison.blind) {
          if (existing.outcome === input.outcome && (existing.winner_id ?? null) === winnerId) {
            const { age_s: _age, ...stored } = existing;
            return stored;
          }
          const votedAt = new Date(existing.created_at).toISOString();
          throw new AppError(
            'VOTE_CHANGE_WINDOW_CLOSED',
            'A vote on a blind comparison cannot be changed: the first vote revealed the models',
            {
              votedAt,
              closedAt: votedAt,
              revealed: true,
            },
          );
        }
        if (existing) {
          if (existing.age_s > this.rules.changeWindowSeconds) {
            const votedAt = new Date(existing.created_at);
            throw new AppError(
              'VOTE_CHANGE_WINDOW_CLOSED',
              `This vote can no longer be changed: votes can be changed for ${this.rules.changeWindowSeconds} s after they are cast`,
              {
                votedAt: votedAt.toISOString(),
                closedAt: new Date(votedAt.getTime() + this.rules.changeWindowSeconds * 1000).toISOString(),
              },
            );
          }
          const [updated] = await sql<Array<Record<string, unknown>>>(
            `update votes set outcome = ?::vote_outcome, winner_id = ?::uuid where id = ? returning *`,
            [input.outcome, winnerId, existing.id],
          );
          return updated;
        }
        if (this.rules.dailyCap > 0) {
          // The vote that must leave the 24 h window before another fits (null: under the cap).
          const [window] = await sql<Array<{ n: number; retry_s: number | null }>>(
            `select count(*)::int as n,
                    (select extract(epoch from created_at + interval '24 hours' - now())::float8
                       from votes where user_id = ? and created_at > now() - interval '24 hours'
                      order by created_at desc offset ? - 1 limit 1) as retry_s
               from votes where user_id = ? and created_at > now() - interval '24 hours'`,
            [principal.userId, this.rules.dailyCap, principal.userId],
          );
          if (window && window.n >= this.rules.dailyCap) {
            const retryAfterSeconds = Math.max(1, Math.ceil(window.retry_s ?? DAY_SECONDS));
            throw new AppError(
              'VOTE_LIMIT_REACHED',
              `Daily vote limit reached (${this.rules.dailyCap} votes in 24 h): retry in ${retryAfterSeconds} s`,
              {
                limit: this.rules.dailyCap,
                retryAfterSeconds,
              },
            );
          }
        }
        const [inserted] = await sql<Array<Record<string, unknown>>>(
          `insert into votes (id, created_at, comparison_id, user_id, outcome, winner_id, cast_blind, excluded_at)
           values (gen_random_uuid(), now(), ?, ?, ?::vote_outcome, ?::uuid, ?,
                   (select now() from vote_exclusions where user_id = ? and reversed_at is null))
           returning *`,
          [comparison.id, principal.userId, input.outcome, winnerId, comparison.blind === true, principal.userId],
        );
        return inserted;
      })
      .catch((error: unknown) => {
        // The comparison (or its winner) was deleted after the checks above: same answer as a missing one.
        if (error instanceof ForeignKeyConstraintViolationException) throw notFound('Comparison');
        throw error;
      });
    if (!row) throw notFound('Comparison');
    await this.integrity.check(em, principal.userId);
    return em.map(Vote, row);
  }
}
