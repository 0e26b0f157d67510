import { Arg, Args, Extensions, Ctx, Field, FieldResolver, ID, Int, Mutation, ObjectType, Query, Resolver, Root } from 'type-graphql';
import { cacheHint } from '../../graphql/cache-policy';
import { requireUser } from '../../graphql/auth';
import type { Context } from '../../graphql/context';
import { AppError } from '../../graphql/errors';
import { PageInfoType } from '../../graphql/types';
import { Conversation } from '../conversation/conversation.entity';
import { PageArgs } from '../conversation/conversation.resolver';
import { Vote } from '../vote/vote.entity';
import { ComparisonResponse, type ComparisonResponseView, ComparisonResult, type ComparisonView } from './comparison.entity';
import { RunComparisonInput } from './comparison.inputs';

@ObjectType({ simpleResolvers: true })
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
  @Extensions(cacheHint({ perUser: true }))
  @Query(() => ComparisonConnection, { description: 'Newest first.' })
  comparisons(@Args(() => PageArgs) { first, after }: PageArgs, @Ctx() ctx: Context) {
    return ctx.services.comparisons.list(ctx.em, requireUser(ctx.principal), first, after);
  }

  @Extensions(cacheHint({ perUser: true }))
  @Query(() => ComparisonResult, { nullable: true })
  comparison(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    requireUser(ctx.principal);
    return ctx.loaders.comparisonByIdLoader.load(id);
  }

  @Mutation(() => ComparisonResult, { description: 'Returns at once with PENDING responses; follow it with comparisonEvents.' })
  async startComparison(@Arg('input', () => RunComparisonInput) input: RunComparisonInput, @Ctx() ctx: Context) {
    const id = await ctx.services.runner.begin(requireUser(ctx.principal), input);
    return this.load(ctx, id);
  }

  @Mutation(() => ComparisonResult, { description: 'Returns when every response has settled.' })
  async runComparison(@Arg('input', () => RunComparisonInput) input: RunComparisonInput, @Ctx() ctx: Context) {
    const id = await ctx.services.runner.begin(requireUser(ctx.principal), input);
    await ctx.services.runner.settled(id);
    return this.load(ctx, id);
  }

  @Mutation(() => ComparisonResult, { description: 'Stops the responses still running (they settle as FAILED "Cancelled").' })
  async cancelComparison(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    await ctx.services.runner.cancel(requireUser(ctx.principal), id);
    return this.load(ctx, id);
  }

  @Mutation(() => ComparisonResponse, { description: 'Re-runs one FAILED or TIMED_OUT response and returns it settled.' })
  async retryComparisonResponse(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    await ctx.services.runner.retry(requireUser(ctx.principal), id);
    const response = await ctx.loaders.responseByIdLoader.load(id);
    if (!response) throw new AppError('NOT_FOUND', 'Comparison response not found');
    return response;
  }

  private async load(ctx: Context, id: string): Promise<ComparisonView> {
    const comparison = await ctx.loaders.comparisonByIdLoader.load(id);
    if (!comparison) throw new AppError('NOT_FOUND', 'Comparison not found');
    return comparison;
  }

  @FieldResolver(() => Conversation, { nullable: true })
  conversation(@Root() comparison: ComparisonView, @Ctx() ctx: Context) {
    return comparison.conversationId ? ctx.loaders.conversationByIdLoader.load(comparison.conversationId) : null;
  }

  @FieldResolver(() => [ComparisonResponse])
  responses(@Root() comparison: ComparisonView, @Ctx() ctx: Context) {
    return ctx.loaders.responsesByComparisonIdLoader.load(comparison.id);
  }

  @FieldResolver(() => Vote, { nullable: true })
  vote(@Root() comparison: ComparisonView, @Ctx() ctx: Context) {
    return ctx.loaders.voteByComparisonIdLoader.load(comparison.id);
  }
}

@Resolver(() => ComparisonResponse)
export class ComparisonResponseResolver {
  @FieldResolver(() => ComparisonResult)
  async comparison(@Root() response: ComparisonResponseView, @Ctx() ctx: Context): Promise<ComparisonView> {
    const comparison = await ctx.loaders.comparisonByIdLoader.load(response.comparisonId);
    if (!comparison) throw new AppError('NOT_FOUND', 'Comparison not found');
    return comparison;
  }
}
