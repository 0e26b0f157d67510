import { Arg, Ctx, Extensions, FieldResolver, Mutation, Resolver, Root } from 'type-graphql';
import { TokenScope, tokenAccess } from '../../auth/token-scopes';
import { requireUser } from '../../auth/principal';
import type { Context } from '../common/context';
import { ComparisonResponse } from '../comparison/comparison.entity';
import { Vote, type VoteView } from './vote.entity';
import { VoteInput } from './vote.inputs';

@Resolver(() => Vote)
export class VoteResolver {
  @Extensions(tokenAccess(TokenScope.COMPARE))
  @Mutation(() => Vote, {
    description:
      "Casts or changes the viewer's vote on one of their comparisons (see README 'Vote integrity': change window, daily cap, exclusions).",
  })
  async vote(@Arg('input', () => VoteInput) input: VoteInput, @Ctx() ctx: Context): Promise<Vote> {
    const principal = requireUser(ctx.principal);
    const vote = await ctx.services.votes.vote(ctx.em, principal, input);
    // A blind comparison's calls mark their keys used only now that it is revealed (an open one's did at the call).
    if (vote.castBlind) await ctx.services.apiKeys.markUsedByRevealedComparison(ctx.em, principal, vote.comparisonId);
    // The shared boards refit in the background (the author's own reads are invalidated by the mutation pipeline).
    await ctx.services.leaderboard.invalidateGlobal();
    return vote;
  }

  @FieldResolver(() => ComparisonResponse, { nullable: true })
  winner(@Root() vote: VoteView, @Ctx() ctx: Context) {
    return vote.winnerId ? ctx.loaders.responseByIdLoader.load(vote.winnerId) : null;
  }
}
