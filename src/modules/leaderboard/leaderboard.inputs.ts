import { Field, InputType } from 'type-graphql';
import type { LeaderboardFilterInput } from './leaderboard.types';

@InputType({ description: 'Which votes a board counts.' })
export class LeaderboardFilter implements LeaderboardFilterInput {
  @Field(() => Boolean, { nullable: true, defaultValue: true, description: 'Count only votes on blind comparisons.' })
  blindOnly?: boolean | null;

  @Field(() => Boolean, {
    nullable: true,
    defaultValue: false,
    description: 'Fit style covariates (answer length, headers, list items, bold) and show style-adjusted ratings.',
  })
  styleControl?: boolean | null;

  @Field(() => String, { nullable: true, description: "Only comparisons of this category (e.g. 'code')." })
  category?: string | null;

  @Field(() => Date, { nullable: true, description: 'Only votes cast at or after this instant.' })
  since?: Date | null;
}
