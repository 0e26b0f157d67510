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
 * The vote's check and write in one statement, under the user's advisory lock (taken by the statement before):
 * - `existing`: the user's vote on this comparison, with its age;
 * - `recent`: the user's votes in the last 24 h, and when the one that must leave the window first leaves it;
 * - `updated`: the existing vote changed, unless the comparison is blind or the change window has closed;
 * - `inserted`: a new vote when there is none and the daily cap (≤ 0: none) leaves room; excluded at once when
 *   the user is under an active exclusion.
 * One row answers: `inserted` / `updated` (the vote), `existing` (left as it was: blind, or past the window, with
 * its age) or `refused` (the cap: `n` and `retry_s`). Parameters: comparison, user, user, cap, user, outcome,
 * winner, blind, window (s), comparison, user, outcome, winner, blind, user, cap, cap.
 */
const WRITE_VOTE_SQL = `with existing as (
    select v.*, extract(epoch from now() - v.created_at)::float8 as age_s
      from votes v where v.comparison_id = ? and v.user_id = ?
  ), recent as (
    select count(*)::int as n,
           (select extract(epoch from created_at + interval '24 hours' - now())::float8
              from votes where user_id = ? and created_at > now() - interval '24 hours'
             order by created_at desc offset greatest(?::int, 1) - 1 limit 1) as retry_s
      from votes where user_id = ? and created_at > now() - interval '24 hours'
  ), updated as (
    update votes v set outcome = ?::vote_outcome, winner_id = ?::uuid
      from existing e
     where v.id = e.id and not ?::boolean and e.age_s <= ?::float8
    returning v.*
  ), inserted as (
    insert into votes (id, created_at, comparison_id, user_id, outcome, winner_id, cast_blind, excluded_at)
    select gen_random_uuid(), now(), ?, ?, ?::vote_outcome, ?::uuid, ?,
           (select now() from vote_exclusions where user_id = ? and reversed_at is null)
     where not exists (select 1 from existing) and (?::int <= 0 or (select n from recent) < ?::int)
    returning *
  )
  select 'inserted' as __result, i.*, null::float8 as age_s, null::int as n, null::float8 as retry_s from inserted i
  union all select 'updated', u.*, null, null, null from updated u
  union all select 'existing', e.*, null, null from existing e where not exists (select 1 from updated)
  union all select 'refused', (null::votes).*, null, r.n, r.retry_s from recent r
   where not exists (select 1 from existing) and not exists (select 1 from inserted)`;

type VoteWriteRow = Record<string, unknown> & {
  __result: 'inserted' | 'updated' | 'existing' | 'refused';
  created_at: Date;
  outcome: string;
  winner_id: string | null;
  age_s: number | null;
  n: number | null;
  retry_s: number | null;
};

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
 * holding a per-user advisory lock, checked and written in one statement
 * (`WRITE_VOTE_SQL`), so the cap and the window are exact
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

    // The comparison (owner-checked) and its responses' states, in one read.
    const comparison = await this.comparisons.voteTarget(em, principal, input.comparisonId);
    // A FUSED response is not a candidate: it neither holds a vote back while it runs nor can win (it is no battle).
    const all = comparison.responses;
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
        // The lock first, in its own statement: the next one's snapshot is taken once it is held, so it sees every
        // vote of this user committed before (the cap and the window are exact across instances).
        await sql(`select pg_advisory_xact_lock(hashtextextended(?, 0))`, [`llmselect:votes:${principal.userId}`]);
        const blind = comparison.blind === true;
        const [result] = await sql<VoteWriteRow[]>(WRITE_VOTE_SQL, [
          comparison.id,
          principal.userId,
          principal.userId,
          this.rules.dailyCap,
          principal.userId,
          input.outcome,
          winnerId,
          blind,
          this.rules.changeWindowSeconds,
          comparison.id,
          principal.userId,
          input.outcome,
          winnerId,
          blind,
          principal.userId,
          this.rules.dailyCap,
          this.rules.dailyCap,
        ]);
        if (!result) return undefined;
        const { __result: kind, age_s: _age, n: _n, retry_s: retry, ...stored } = result;
        if (kind === 'inserted' || kind === 'updated') return stored as Record<string, unknown>;
        if (kind === 'refused') {
          // The vote that must leave the 24 h window before another fits.
          const retryAfterSeconds = Math.max(1, Math.ceil(retry ?? DAY_SECONDS));
          throw new AppError(
            'VOTE_LIMIT_REACHED',
            `Daily vote limit reached (${this.rules.dailyCap} votes in 24 h): retry in ${retryAfterSeconds} s`,
            {
              limit: this.rules.dailyCap,
              retryAfterSeconds,
            },
          );
        }
        // An existing vote left as it was: a blind comparison's (a retry answers it) or one past the change window.
        if (blind) {
          if (stored.outcome === input.outcome && (stored.winner_id ?? null) === winnerId) return stored as Record<string, unknown>;
          const votedAt = new Date(stored.created_at).toISOString();
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
        const votedAt = new Date(stored.created_at);
        throw new AppError(
          'VOTE_CHANGE_WINDOW_CLOSED',
          `This vote can no longer be changed: votes can be changed for ${this.rules.changeWindowSeconds} s after they are cast`,
          {
            votedAt: votedAt.toISOString(),
            closedAt: new Date(votedAt.getTime() + this.rules.changeWindowSeconds * 1000).toISOString(),
          },
        );
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
