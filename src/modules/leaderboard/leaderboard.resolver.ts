import { Arg, Ctx, Extensions, Field, Float, Int, ObjectType, Query, registerEnumType, Resolver } from 'type-graphql';
import { cacheHint } from '../../graphql/cache-policy';
import { requireUser } from '../../graphql/auth';
import type { Context } from '../../graphql/context';
import { Provider } from '../api-key/api-key.entity';
import type { ModelRankingData } from './leaderboard.service';

export enum LeaderboardScope {
  MINE = 'MINE',
  GLOBAL = 'GLOBAL',
}
registerEnumType(LeaderboardScope, {
  name: 'LeaderboardScope',
  valuesConfig: {
    MINE: { description: "The viewer's own votes." },
    GLOBAL: { description: "Every user's votes." },
  },
});

@ObjectType({ simpleResolvers: true, description: 'Bradley-Terry rating on an Elo-like scale (1000 = average) with a 95% interval.' })
export class ModelRanking implements ModelRankingData {
  @Field(() => String, {
    description: "The endpoint ranked: the model id, plus '@label' when its key label is not 'default' (each endpoint of one model is ranked apart), e.g. 'openai:gpt-4o' or 'openai_compatible:llama3.1:8b@vllm'.",
  })
  model!: string;

  @Field(() => Provider)
  provider!: Provider;

  @Field(() => Float)
  rating!: number;

  @Field(() => Float)
  ratingLow!: number;

  @Field(() => Float)
  ratingHigh!: number;

  @Field(() => Int, { description: 'Pairwise battles: a WINNER vote is one battle per other completed model, a TIE or ALL_BAD one per pair.' })
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

@Resolver(() => ModelRanking)
export class LeaderboardResolver {
  // MINE is the viewer's own votes: cached per user. GLOBAL changes with everyone's votes (cached by the service).
  @Extensions(cacheHint({ perUser: true, onlyIf: { scope: 'MINE' } }))
  @Query(() => [ModelRanking], { description: 'Models that took part in at least one battle, best first.' })
  leaderboard(
    @Arg('scope', () => LeaderboardScope, { nullable: true, defaultValue: LeaderboardScope.GLOBAL }) scope: LeaderboardScope,
    @Ctx() ctx: Context,
  ): Promise<ModelRankingData[]> {
    const principal = requireUser(ctx.principal);
    return scope === LeaderboardScope.MINE
      ? ctx.services.leaderboard.mine(ctx.em, principal.userId)
      : ctx.services.leaderboard.global(ctx.em);
  }
}
