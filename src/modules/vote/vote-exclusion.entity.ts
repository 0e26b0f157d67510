import { Entity, ManyToOne, Property, type Ref, Unique } from '@mikro-orm/core';
import { BaseEntity } from '../../db/base.entity';
import { User } from '../user/user.entity';

/**
 * A user whose voting pattern was found implausible (see `vote-integrity.ts`):
 * while `reversedAt` is null every vote of theirs carries `excluded_at` and
 * counts on no board. An admin's reversal sets `reversedAt` (their votes count
 * again) and is final: the detector never excludes that user again.
 */
@Entity({ tableName: 'vote_exclusions' })
@Unique({ name: 'vote_exclusions_user_unique', properties: ['user'] })
export class VoteExclusion extends BaseEntity {
  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  user!: Ref<User>;

  /** `FIRST_POSITION` or `RANDOM_AGAINST_CONSENSUS`. */
  @Property({ type: 'text' })
  reason!: string;

  /** The evidence, in words (e.g. "first position in 30 of 30 decisive votes"). */
  @Property({ type: 'text' })
  detail!: string;

  /** Votes the rule judged on. */
  @Property({ type: 'integer' })
  votesConsidered!: number;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  reversedAt?: Date | null;

  @ManyToOne(() => User, { ref: true, nullable: true, deleteRule: 'set null' })
  reversedBy?: Ref<User> | null;
}
