import { Entity, Enum, Index, ManyToOne, Property, type Ref, Unique } from '@mikro-orm/core';
import { Field, ObjectType, registerEnumType } from 'type-graphql';
import { BaseEntity } from '../../db/base.entity';
import { ComparisonResponse, ComparisonResult } from '../comparison/comparison.entity';
import { User } from '../user/user.entity';

export enum VoteOutcome {
  WINNER = 'WINNER',
  TIE = 'TIE',
  ALL_BAD = 'ALL_BAD',
}
registerEnumType(VoteOutcome, { name: 'VoteOutcome' });

/** One per comparison per user; voting again replaces it (upsert on the unique pair). */
@ObjectType({ simpleResolvers: true })
@Entity({ tableName: 'votes' })
@Unique({ name: 'votes_comparison_user_unique', properties: ['comparison', 'user'] })
@Index({ name: 'votes_user_idx', properties: ['user'] })
@Index({ name: 'votes_user_created_idx', properties: ['user', 'createdAt'] })
@Index({ name: 'votes_created_idx', properties: ['createdAt'] })
@Index({ name: 'votes_winner_idx', properties: ['winner'] })
export class Vote extends BaseEntity<'comparisonId' | 'userId' | 'winnerId' | 'castBlind'> {
  @ManyToOne(() => ComparisonResult, { ref: true, deleteRule: 'cascade' })
  comparison!: Ref<ComparisonResult>;

  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  user!: Ref<User>;

  @Field(() => VoteOutcome)
  @Enum({ items: () => VoteOutcome, nativeEnumName: 'vote_outcome' })
  outcome!: VoteOutcome;

  @ManyToOne(() => ComparisonResponse, { ref: true, nullable: true, deleteRule: 'cascade' })
  winner?: Ref<ComparisonResponse> | null;

  /** Set when the vote is excluded from the leaderboard (implausible voting pattern); null = counted. */
  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  excludedAt?: Date | null;

  /**
   * Cast while its comparison was blind and unrevealed (the first vote on a
   * blind comparison, which reveals it). Only these count on blind-only
   * boards; a change of outcome or winner clears it (see the 20261207062000
   * migration), though the vote service refuses such a change.
   */
  @Property({ type: 'boolean', default: false })
  castBlind: boolean = false;

  /**
   * The battles this vote yields, computed by the database when the vote is
   * written (trigger, see the 20261128021000 migration); never read by the app.
   */
  @Property({ type: 'json', columnType: 'jsonb', nullable: true, lazy: true, hidden: true })
  battles?: unknown;

  /** The foreign keys under the names plain reads use (see `db/plain.ts`). */
  get comparisonId(): string {
    return this.comparison.id;
  }

  get userId(): string {
    return this.user.id;
  }

  get winnerId(): string | null {
    return this.winner?.id ?? null;
  }
}

/** A vote as read paths return it (a plain row); an entity fits too. */
export type VoteView = Pick<Vote, 'id' | 'createdAt' | 'comparisonId' | 'userId' | 'outcome' | 'winnerId'>;
