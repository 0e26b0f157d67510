import type { EntityManager } from '@mikro-orm/postgresql';
import type { VoteRules } from '../../config';
import { isUuid } from '../../db/pagination';
import type { Principal } from '../../auth/principal';
import { notFound } from '../../errors';
import type { Logger } from '../../observability/logger';

export type ExclusionReason = 'FIRST_POSITION' | 'RANDOM_AGAINST_CONSENSUS';

/** An exclusion as the admin API shows it. */
export interface VoteExclusionView {
  id: string;
  userId: string;
  email: string;
  reason: ExclusionReason;
  detail: string;
  votesConsidered: number;
  votesExcluded: number;
  createdAt: Date;
  reversedAt: Date | null;
  active: boolean;
}

/** The consensus: endpoint → rating on the last GLOBAL board computed (all votes), or null when none is stored. */
export type ConsensusSource = () => Promise<Map<string, number> | null>;

/** How many of a user's most recent votes the rules look at. */
const RECENT_VOTES = 500;

/**
 * Implausible voting patterns, checked for the voter after each vote; a user
 * found implausible gets one `vote_exclusions` row and every vote of theirs
 * (now and later) is marked `excluded_at`, so it counts on no board (the
 * triggers move it from `battle_counts` to the excluded tally). Rules, each
 * judged only on enough evidence (VOTE_INTEGRITY_MIN_VOTES):
 *
 * - FIRST_POSITION: among the user's decisive votes (WINNER on a comparison
 *   with at least two COMPLETED responses), the share won by the response
 *   shown first (position 0) is at least VOTE_INTEGRITY_FIRST_POSITION_SHARE
 *   (default 0.95). An honest voter on two answers picks the first about
 *   half the time.
 * - RANDOM_AGAINST_CONSENSUS: among the user's decisive battles between
 *   models at least VOTE_INTEGRITY_CONSENSUS_GAP rating points apart on the
 *   last computed GLOBAL board (all votes, a clear consensus: the better one
 *   wins ≥ 64 % of the time at 100 points), the share the better-rated model
 *   won is at most VOTE_INTEGRITY_CONSENSUS_AGREEMENT_MAX (default 0.55): a
 *   coin flip, or worse. Skipped while no board has been computed.
 *
 * An admin's reversal is final: a user with a reversed exclusion is never
 * checked again. The rules read at most the user's 500 most recent votes.
 */
export class VoteIntegrity {
  constructor(
    private readonly rules: VoteRules,
    private readonly consensus: ConsensusSource,
    private readonly logger: Logger,
    /** Called after an exclusion or a reversal changed which of the user's votes count (shared boards and the user's cached reads). */
    private readonly onChange: (userId: string) => Promise<void>,
  ) {}

  /** Checks the user's pattern; excludes them when a rule fires. Returns the reason, or null. */
  async check(em: EntityManager, userId: string): Promise<ExclusionReason | null> {
    const connection = em.getConnection();
    // Whether the user was ever excluded (then never checked again) and the first-position counts, in one statement.
    const [first] = await connection.execute<Array<{ known: boolean; n: number; first: number }>>(
      `select exists (select 1 from vote_exclusions where user_id = ?) as known,
              count(*)::int as n, count(*) filter (where w.position = 0)::int as first
         from (select v.comparison_id, v.winner_id from votes v where v.user_id = ? and v.outcome = 'WINNER'
                order by v.created_at desc limit ${RECENT_VOTES}) v
         join comparison_responses w on w.id = v.winner_id
        where (select count(*) from comparison_responses r
                where r.comparison_id = v.comparison_id and r.status = 'COMPLETED' and r.kind = 'MODEL') >= 2`,
      [userId, userId],
    );
    if (!first || first.known) return null;
    if (first.n >= this.rules.integrityMinVotes && first.first / first.n >= this.rules.firstPositionShare) {
      return this.exclude(
        em,
        userId,
        'FIRST_POSITION',
        `the first response shown won ${first.first} of ${first.n} decisive votes`,
        first.n,
      );
    }

    if (this.rules.consensusAgreementMax <= 0) return null;
    const ratings = await this.consensus();
    if (!ratings) return null;
    const battles = await connection.execute<Array<{ a: string; b: string; o: 'A' | 'B' }>>(
      `select c->>'a' as a, c->>'b' as b, c->>'o' as o
         from (select battles from votes where user_id = ? order by created_at desc limit ${RECENT_VOTES}) v,
              jsonb_array_elements(v.battles->'cells') c
        where c->>'o' <> 'TIE'`,
      [userId],
    );
    let n = 0;
    let agree = 0;
    for (const b of battles) {
      const ra = ratings.get(b.a);
      const rb = ratings.get(b.b);
      if (ra === undefined || rb === undefined || Math.abs(ra - rb) < this.rules.consensusGap) continue;
      n++;
      if (ra > rb === (b.o === 'A')) agree++;
    }
    if (n >= this.rules.integrityMinVotes && agree / n <= this.rules.consensusAgreementMax) {
      return this.exclude(
        em,
        userId,
        'RANDOM_AGAINST_CONSENSUS',
        `agreed with the consensus in ${agree} of ${n} decisive battles between clearly separated models`,
        n,
      );
    }
    return null;
  }

  private async exclude(
    em: EntityManager,
    userId: string,
    reason: ExclusionReason,
    detail: string,
    considered: number,
  ): Promise<ExclusionReason | null> {
    const excluded = await em.fork().transactional(async (tx) => {
      const sql = <T>(text: string, params: unknown[]) =>
        tx.getConnection().execute(text, params, 'all', tx.getTransactionContext()) as Promise<T>;
      const rows = await sql<unknown[]>(
        `insert into vote_exclusions (id, created_at, user_id, reason, detail, votes_considered)
         values (gen_random_uuid(), now(), ?, ?, ?, ?) on conflict (user_id) do nothing returning id`,
        [userId, reason, detail, considered],
      );
      if (rows.length === 0) return false;
      await sql(`update votes set excluded_at = now() where user_id = ? and excluded_at is null`, [userId]);
      return true;
    });
    if (!excluded) return null;
    this.logger.warn({ userId, reason, votesConsidered: considered }, 'votes excluded from the leaderboard: implausible voting pattern');
    await this.onChange(userId);
    return reason;
  }

  /** Every exclusion (active first, newest first); reversed ones only with `includeReversed`. */
  async list(em: EntityManager, includeReversed: boolean): Promise<VoteExclusionView[]> {
    const rows = await em.getConnection().execute<Array<Record<string, any>>>(
      `select x.id, x.user_id, u.email, x.reason, x.detail, x.votes_considered, x.created_at, x.reversed_at,
              (select count(*) from votes v where v.user_id = x.user_id and v.excluded_at is not null)::int as votes_excluded
         from vote_exclusions x join users u on u.id = x.user_id
        where ? or x.reversed_at is null
        order by x.reversed_at is not null, x.created_at desc, x.id`,
      [includeReversed],
    );
    return rows.map(toView);
  }

  /** Reverses the user's exclusion: their votes count again, and they are never excluded automatically again. */
  async reverse(em: EntityManager, admin: Principal, userId: string): Promise<VoteExclusionView> {
    if (!isUuid(userId)) throw notFound('Vote exclusion');
    const found = await em.fork().transactional(async (tx) => {
      const sql = <T>(text: string, params: unknown[]) =>
        tx.getConnection().execute(text, params, 'all', tx.getTransactionContext()) as Promise<T>;
      const rows = await sql<unknown[]>(
        `update vote_exclusions set reversed_at = coalesce(reversed_at, now()), reversed_by_id = coalesce(reversed_by_id, ?) ` +
          `where user_id = ? returning id`,
        [admin.userId, userId],
      );
      if (rows.length === 0) return false;
      await sql(`update votes set excluded_at = null where user_id = ? and excluded_at is not null`, [userId]);
      return true;
    });
    if (!found) throw notFound('Vote exclusion');
    this.logger.info({ userId, adminId: admin.userId }, 'vote exclusion reversed by an admin');
    await this.onChange(userId);
    const [view] = (await this.list(em, true)).filter((x) => x.userId === userId);
    return view!;
  }
}

function toView(r: Record<string, any>): VoteExclusionView {
  return {
    id: r.id,
    userId: r.user_id,
    email: r.email,
    reason: r.reason,
    detail: r.detail,
    votesConsidered: r.votes_considered,
    votesExcluded: r.votes_excluded,
    createdAt: new Date(r.created_at),
    reversedAt: r.reversed_at ? new Date(r.reversed_at) : null,
    active: !r.reversed_at,
  };
}
