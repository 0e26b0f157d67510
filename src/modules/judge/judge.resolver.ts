import { Arg, Ctx, Extensions, Field, FieldResolver, ID, Mutation, ObjectType, Resolver, Root } from 'type-graphql';
import { TokenScope, tokenAccess } from '../../auth/token-scopes';
import { requireUser } from '../../auth/principal';
import type { Context } from '../common/context';
import { ComparisonResponse, ComparisonResult, type ComparisonView } from '../comparison/comparison.entity';
import type { PresentedResponse } from '../comparison/blind';
import { VoteOutcome } from '../vote/vote.entity';
import type { JudgeVerdictView } from './judge.service';

@ObjectType({
  simpleResolvers: true,
  description:
    "A judge model's verdict on one pair of a comparison's responses, asked in both orders: the winner when both orders " +
    'agree, TIE otherwise. Counted on the JUDGE board only.',
})
export class JudgeVerdict {
  @Field(() => ID)
  id!: string;

  @Field(() => String, { description: 'The judge model id as given, e.g. openai:gpt-4o.' })
  judgeModel!: string;

  @Field(() => VoteOutcome, { description: 'WINNER (see winner) or TIE (including position-swap disagreement).' })
  outcome!: VoteOutcome;

  @Field(() => Date)
  createdAt!: Date;
}

@Resolver(() => JudgeVerdict)
export class JudgeResolver {
  @Extensions(tokenAccess(TokenScope.COMPARE))
  @Mutation(() => [JudgeVerdict], {
    description:
      "Asks judgeModel (on the viewer's own key; rate limit and budget apply: two calls per pair) to compare each pair of " +
      "COMPLETED responses of one of the viewer's comparisons, in both orders, on their text only. PROVIDER_ERROR when the " +
      'judge model fails, JUDGE_FAILED (reason REFUSED or UNPARSEABLE) when it gives no verdict; the pairs that did ' +
      'succeed are stored either way.',
  })
  judgeComparison(
    @Arg('comparisonId', () => ID) comparisonId: string,
    @Arg('judgeModel', () => String) judgeModel: string,
    @Ctx() ctx: Context,
  ): Promise<JudgeVerdictView[]> {
    const principal = requireUser(ctx.principal);
    return ctx.services.judges.judge(ctx.em, principal, comparisonId, judgeModel);
  }

  @FieldResolver(() => ComparisonResult)
  async comparison(@Root() verdict: JudgeVerdictView, @Ctx() ctx: Context): Promise<ComparisonView> {
    return (await ctx.loaders.comparisonByIdLoader.load(verdict.comparisonId))!;
  }

  @FieldResolver(() => ComparisonResponse, { description: 'The pair member shown first in the comparison.' })
  async first(@Root() verdict: JudgeVerdictView, @Ctx() ctx: Context): Promise<PresentedResponse> {
    return (await ctx.loaders.responseByIdLoader.load(verdict.firstId))!;
  }

  @FieldResolver(() => ComparisonResponse)
  async second(@Root() verdict: JudgeVerdictView, @Ctx() ctx: Context): Promise<PresentedResponse> {
    return (await ctx.loaders.responseByIdLoader.load(verdict.secondId))!;
  }

  @FieldResolver(() => ComparisonResponse, { nullable: true, description: 'null for a TIE.' })
  winner(@Root() verdict: JudgeVerdictView, @Ctx() ctx: Context) {
    return verdict.winnerId ? ctx.loaders.responseByIdLoader.load(verdict.winnerId) : null;
  }
}
