import { Arg, Ctx, Extensions, Field, Float, Int, ObjectType, Query, registerEnumType, Resolver } from 'type-graphql';
import { cacheHint } from '../../read-cache/cache-policy';
import { requireUser } from '../../auth/principal';
import type { Context } from '../common/context';
import { Provider } from '../api-key/api-key.entity';
import { LeaderboardFilter } from './leaderboard.inputs';
import type { LeaderboardBoard, LeaderboardInfoData, ModelRankingData } from './leaderboard.types';

export enum LeaderboardScope {
  MINE = 'MINE',
  GLOBAL = 'GLOBAL',
  JUDGE = 'JUDGE',
}
registerEnumType(LeaderboardScope, {
  name: 'LeaderboardScope',
  valuesConfig: {
    MINE: { description: "The viewer's own votes." },
    GLOBAL: { description: "Every user's votes." },
    JUDGE: { description: "Judge models' verdicts, never mixed with human votes." },
  },
});

@ObjectType({ simpleResolvers: true, description: 'Bradley-Terry rating on an Elo-like scale (1000 = average) with a 95% interval.' })
export class ModelRanking implements ModelRankingData {
  @Field(() => String, {
    description:
      "The endpoint ranked: the model id, plus '@label' when its key label is not 'default' (each endpoint of one model is " +
      "ranked apart), e.g. 'openai:gpt-4o' or 'openai_compatible:llama3.1:8b@vllm'.",
  })
  model!: string;

  @Field(() => Provider)
  provider!: Provider;

  @Field(() => Float, { description: 'Maximum-likelihood rating (style-adjusted with styleControl).' })
  rating!: number;

  @Field(() => Float, { description: 'Lower end of the 95% interval from the Fisher information (rating − 1.96 se).' })
  ratingLow!: number;

  @Field(() => Float, { description: 'Upper end of the 95% Fisher interval (rating + 1.96 se).' })
  ratingHigh!: number;

  @Field(() => Float, {
    description: '2.5th percentile of the rating over the bootstrap resamples (the Fisher bound when there are none).',
  })
  bootstrapLow!: number;

  @Field(() => Float, { description: '97.5th percentile of the rating over the bootstrap resamples.' })
  bootstrapHigh!: number;

  @Field(() => Int, {
    description: '1 + number of models better with confidence (their lower bound above this upper bound; bootstrap intervals).',
  })
  rank!: number;

  @Field(() => Int, { description: 'Best plausible rank (equals rank).' })
  rankLow!: number;

  @Field(() => Int, { description: 'Worst plausible rank: number of models − number of models worse with confidence.' })
  rankHigh!: number;

  @Field(() => Int, {
    description: 'Pairwise battles: a WINNER vote is one battle per other completed model, a TIE or ALL_BAD one per pair.',
  })
  battles!: number;

  @Field(() => Int)
  wins!: number;

  @Field(() => Int)
  losses!: number;

  @Field(() => Int)
  ties!: number;

  @Field(() => Float, { description: '(wins + ties / 2) / battles.' })
  winRate!: number;

  @Field(() => Float, { nullable: true, description: 'Mean latency of its COMPLETED responses in scope.' })
  avgLatencyMs!: number | null;

  @Field(() => Float, { nullable: true, description: 'Mean cost of its COMPLETED responses in scope.' })
  avgCostUsd!: number | null;
}

@ObjectType({
  simpleResolvers: true,
  description: 'A style covariate of the fit: change in log-odds of winning per typical (root-mean-square) normalised difference.',
})
export class StyleCoefficient {
  @Field(() => String, { description: 'length, headers, lists or bold.' })
  feature!: string;

  @Field(() => Float)
  coefficient!: number;

  @Field(() => Float, { description: 'Lower end of its 95% interval (bootstrap, or Fisher without resamples).' })
  low!: number;

  @Field(() => Float)
  high!: number;
}

@ObjectType({ simpleResolvers: true, description: 'How a board was computed.' })
export class LeaderboardInfo implements LeaderboardInfoData {
  @Field(() => Int, { description: 'Votes (scope JUDGE: verdicts) that produced at least one battle and count on this board.' })
  votesUsed!: number;

  @Field(() => Int, {
    description:
      'Votes the filters selected that count on no board: their voter is excluded for an implausible pattern (README "Vote ' +
      'integrity"). 0 for JUDGE.',
  })
  votesExcluded!: number;

  @Field(() => Int)
  models!: number;

  @Field(() => Date)
  computedAt!: Date;

  @Field(() => Int)
  bootstrapSamples!: number;

  @Field(() => [StyleCoefficient], { description: 'Empty without styleControl.' })
  styleCoefficients!: StyleCoefficient[];

  @Field(() => Float, {
    nullable: true,
    description:
      'Scope JUDGE only (null elsewhere, and when no comparison in scope has both): the share of (judge verdict, human vote) ' +
      'pairs on the same comparisons that agree — the judge picked the response the human voted for, or both called the ' +
      'pair a tie (TIE and ALL_BAD votes are ties).',
  })
  judgeHumanAgreement!: number | null;

  @Field(() => Int, {
    description: 'How many (judge verdict, human vote) pairs judgeHumanAgreement is computed on; 0 outside scope JUDGE.',
  })
  judgeHumanPairs!: number;
}

@Resolver(() => ModelRanking)
export class LeaderboardResolver {
  // MINE is the viewer's own votes: cached per user. GLOBAL and JUDGE change with everyone's votes (cached by the service).
  @Extensions(cacheHint({ perUser: true, onlyIf: { scope: 'MINE' } }))
  @Query(() => [ModelRanking], { description: 'Models that took part in at least one battle, best first.' })
  async leaderboard(
    @Arg('scope', () => LeaderboardScope, { nullable: true, defaultValue: LeaderboardScope.GLOBAL }) scope: LeaderboardScope,
    @Arg('filter', () => LeaderboardFilter, { nullable: true }) filter: LeaderboardFilter | null,
    @Ctx() ctx: Context,
  ): Promise<ModelRankingData[]> {
    return (await board(ctx, scope, filter)).rankings;
  }

  @Extensions(cacheHint({ perUser: true, onlyIf: { scope: 'MINE' } }))
  @Query(() => LeaderboardInfo, { description: 'Votes used and excluded, bootstrap resamples and style coefficients of a board.' })
  async leaderboardInfo(
    @Arg('scope', () => LeaderboardScope, { nullable: true, defaultValue: LeaderboardScope.GLOBAL }) scope: LeaderboardScope,
    @Arg('filter', () => LeaderboardFilter, { nullable: true }) filter: LeaderboardFilter | null,
    @Ctx() ctx: Context,
  ): Promise<LeaderboardInfoData> {
    return (await board(ctx, scope, filter)).info;
  }
}

function board(ctx: Context, scope: LeaderboardScope, filter: LeaderboardFilter | null): Promise<LeaderboardBoard> {
  const principal = requireUser(ctx.principal);
  return ctx.services.leaderboard.board(ctx.em, scope, principal.userId, filter);
}
