import { Arg, Ctx, Field, ID, Int, Mutation, ObjectType, Query, registerEnumType, Resolver } from 'type-graphql';
import { requireAdmin } from '../../auth/principal';
import type { Context } from '../common/context';
import type { VoteExclusionView } from './vote-integrity';

export enum VoteExclusionReason {
  FIRST_POSITION = 'FIRST_POSITION',
  RANDOM_AGAINST_CONSENSUS = 'RANDOM_AGAINST_CONSENSUS',
}
registerEnumType(VoteExclusionReason, {
  name: 'VoteExclusionReason',
  valuesConfig: {
    FIRST_POSITION: { description: 'Nearly every decisive vote went to the response shown first.' },
    RANDOM_AGAINST_CONSENSUS: {
      description: 'Decisive votes between clearly separated models agree with the board no better than a coin flip.',
    },
  },
});

@ObjectType({ simpleResolvers: true, description: 'A user whose votes count on no board (implausible voting pattern). ADMIN only.' })
export class VoteExclusion implements VoteExclusionView {
  @Field(() => ID)
  id!: string;

  @Field(() => ID)
  userId!: string;

  @Field(() => String)
  email!: string;

  @Field(() => VoteExclusionReason)
  reason!: VoteExclusionView['reason'];

  @Field(() => String, { description: 'The evidence, e.g. "the first response shown won 30 of 30 decisive votes".' })
  detail!: string;

  @Field(() => Int, { description: 'Votes (or battles, for RANDOM_AGAINST_CONSENSUS) the rule judged on.' })
  votesConsidered!: number;

  @Field(() => Int, { description: "The user's votes excluded now (0 once reversed)." })
  votesExcluded!: number;

  @Field(() => Date)
  createdAt!: Date;

  @Field(() => Date, { nullable: true, description: 'When an admin reversed it; the user is then never excluded automatically again.' })
  reversedAt!: Date | null;

  @Field(() => Boolean)
  active!: boolean;
}

@Resolver(() => VoteExclusion)
export class VoteExclusionResolver {
  @Query(() => [VoteExclusion], { description: 'ADMIN only. Users whose votes are excluded from the leaderboard, active first.' })
  voteExclusions(
    @Arg('includeReversed', () => Boolean, { nullable: true, defaultValue: false }) includeReversed: boolean | null,
    @Ctx() ctx: Context,
  ): Promise<VoteExclusionView[]> {
    requireAdmin(ctx.principal);
    return ctx.services.voteIntegrity.list(ctx.em, includeReversed ?? false);
  }

  @Mutation(() => VoteExclusion, { description: "ADMIN only. The user's votes count again; NOT_FOUND when the user has no exclusion." })
  reverseVoteExclusion(@Arg('userId', () => ID) userId: string, @Ctx() ctx: Context): Promise<VoteExclusionView> {
    const admin = requireAdmin(ctx.principal);
    return ctx.services.voteIntegrity.reverse(ctx.em, admin, userId);
  }
}
