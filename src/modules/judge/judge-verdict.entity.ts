import { Entity, Enum, Index, ManyToOne, Property, type Ref, Unique } from '@mikro-orm/core';
import { BaseEntity } from '../../db/base.entity';
import { ComparisonResponse, ComparisonResult } from '../comparison/comparison.entity';
import { User } from '../user/user.entity';
import { VoteOutcome } from '../vote/vote.entity';

/**
 * A judge model's verdict on one pair of a comparison's responses, asked in
 * both orders (`forward`: first shown as A; `swapped`: second shown as A;
 * each 'FIRST', 'SECOND' or 'TIE' in the pair's own terms). Agreement gives
 * the outcome; disagreement is a TIE. A pair whose judging failed keeps the
 * row with `failure` set and `outcome` null (its cost still counts against
 * the budget) and shows nowhere. Judging the same pair with the same judge
 * again replaces the row. Never mixed into the human board.
 */
@Entity({ tableName: 'judge_verdicts' })
@Unique({ name: 'judge_verdicts_pair_unique', properties: ['comparison', 'judgeModel', 'first', 'second'] })
@Index({ name: 'judge_verdicts_user_created_idx', properties: ['user', 'createdAt'] })
@Index({
  name: 'judge_verdicts_api_token_idx',
  expression: 'create index "judge_verdicts_api_token_idx" on "judge_verdicts" ("api_token_id") where "api_token_id" is not null',
})
export class JudgeVerdictEntity extends BaseEntity<'customEndpoint'> {
  @ManyToOne(() => ComparisonResult, { ref: true, deleteRule: 'cascade' })
  comparison!: Ref<ComparisonResult>;

  /** Who asked (the comparison's owner): their keys, budget and rate limit paid for it. */
  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  user!: Ref<User>;

  @Property({ type: 'text' })
  judgeModel!: string;

  /** The personal API token that asked (null: a signed-in session), for the token's daily cap. */
  @Property({ type: 'uuid', nullable: true, lazy: true })
  apiTokenId?: string | null;

  @ManyToOne(() => ComparisonResponse, { ref: true, deleteRule: 'cascade' })
  first!: Ref<ComparisonResponse>;

  @ManyToOne(() => ComparisonResponse, { ref: true, deleteRule: 'cascade' })
  second!: Ref<ComparisonResponse>;

  @Enum({ items: () => VoteOutcome, nativeEnumName: 'vote_outcome', nullable: true })
  outcome?: VoteOutcome | null;

  @ManyToOne(() => ComparisonResponse, { ref: true, nullable: true, deleteRule: 'cascade' })
  winner?: Ref<ComparisonResponse> | null;

  @Property({ type: 'text', nullable: true })
  forward?: string | null;

  @Property({ type: 'text', nullable: true })
  swapped?: string | null;

  @Property({ type: 'text', nullable: true })
  failure?: string | null;

  @Property({ type: 'double', nullable: true })
  costUsd?: number | null;

  /** The judge model was served by the user's own key `baseUrl` (not an operator endpoint): the verdict stays off the JUDGE board. */
  @Property({ type: 'boolean', default: false })
  customEndpoint: boolean = false;
}
