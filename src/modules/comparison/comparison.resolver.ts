import { Arg, Args, Ctx, Field, FieldResolver, ID, Int, ObjectType, Query, Resolver, Root } from 'type-graphql';
import { requireUser } from '../../graphql/auth';
import type { Context } from '../../graphql/context';
import { AppError } from '../../graphql/errors';
import { PageInfoType } from '../../graphql/types';
import { Conversation } from '../conversation/conversation.entity';
import { PageArgs } from '../conversation/conversation.resolver';
import { Vote } from '../vote/vote.entity';
import { ComparisonResponse, ComparisonResult } from './comparison.entity';

@ObjectType()
export class ComparisonConnection {
  @Field(() => [ComparisonResult])
  nodes!: ComparisonResult[];

  @Field(() => PageInfoType)
  pageInfo!: PageInfoType;
}

@Resolver(() => ComparisonConnection)
export class ComparisonConnectionResolver {
  @FieldResolver(() => Int)
  totalCount(@Ctx() ctx: Context): Promise<number> {
    return ctx.services.comparisons.count(ctx.em, requireUser(ctx.principal));
  }
}

@Resolver(() => ComparisonResult)
export class ComparisonResolver {
  @Query(() => ComparisonConnection, { description: 'Newest first.' })
  comparisons(@Args(() => PageArgs) { first, after }: PageArgs, @Ctx() ctx: Context) {
    return ctx.services.comparisons.list(ctx.em, requireUser(ctx.principal), first, after);
  }

  @Query(() => ComparisonResult, { nullable: true })
  comparison(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    requireUser(ctx.principal);
    return ctx.loaders.comparisonByIdLoader.load(id);
  }

  @FieldResolver(() => Conversation, { nullable: true })
  conversation(@Root() comparison: ComparisonResult, @Ctx() ctx: Context) {
    return comparison.conversation ? ctx.loaders.conversationByIdLoader.load(comparison.conversation.id) : null;
  }

  @FieldResolver(() => [ComparisonResponse])
  responses(@Root() comparison: ComparisonResult, @Ctx() ctx: Context) {
    return ctx.loaders.responsesByComparisonIdLoader.load(comparison.id);
  }

  @FieldResolver(() => Vote, { nullable: true })
  vote(@Root() comparison: ComparisonResult, @Ctx() ctx: Context) {
    return ctx.loaders.voteByComparisonIdLoader.load(comparison.id);
  }
}

@Resolver(() => ComparisonResponse)
export class ComparisonResponseResolver {
  @FieldResolver(() => ComparisonResult)
  async comparison(@Root() response: ComparisonResponse, @Ctx() ctx: Context): Promise<ComparisonResult> {
    const comparison = await ctx.loaders.comparisonByIdLoader.load(response.comparison.id);
    if (!comparison) throw new AppError('NOT_FOUND', 'Comparison not found');
    return comparison;
  }
}
