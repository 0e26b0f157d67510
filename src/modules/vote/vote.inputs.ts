import { Field, ID, InputType } from 'type-graphql';
import { VoteOutcome } from './vote.entity';

@InputType()
export class VoteInput {
  @Field(() => ID)
  comparisonId!: string;

  @Field(() => VoteOutcome)
  outcome!: VoteOutcome;

  @Field(() => ID, {
    nullable: true,
    description: 'Required for WINNER (a COMPLETED response of this comparison); must be absent for TIE and ALL_BAD.',
  })
  winnerResponseId?: string | null;
}
