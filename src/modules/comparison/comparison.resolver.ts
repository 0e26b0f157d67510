import type { GraphQLResolveInfo } from 'graphql';
import { Arg, Args, Ctx, Extensions, FieldResolver, ID, Info, Mutation, ObjectType, Query, Resolver, Root } from 'type-graphql';
import { TokenScope, tokenAccess } from '../../auth/token-scopes';
import { cacheHint } from '../../read-cache/cache-policy';
import { requireUser } from '../../auth/principal';
import { childFieldArgs } from '../common/lookahead';
import type { Context } from '../common/context';
import { AppError } from '../../errors';
import { Connection, PageArgs, totalCountResolver } from '../common/connection';
import { Conversation } from '../conversation/conversation.entity';
import { Vote } from '../vote/vote.entity';
import { type PresentedResponse, presentResponse } from './blind';
import type { StartedComparison } from './comparison-runner';
import { ComparisonResponse, ComparisonResult, type ComparisonView } from './comparison.entity';
import { ArenaBattleInput, RunComparisonInput } from './comparison.inputs';

@ObjectType({ simpleResolvers: true })
export class ComparisonConnection extends Connection(ComparisonResult) {}

export const ComparisonConnectionResolver = totalCountResolver(ComparisonConnection, (ctx: Context) =>
  ctx.services.comparisons.count(ctx.em, requireUser(ctx.principal)),
);

@Resolver(() => ComparisonResult)
export class ComparisonResolver {
  @Extensions(cacheHint({ perUser: true }))
  @Query(() => ComparisonConnection, { description: 'Newest first.' })
  async comparisons(@Args(() => PageArgs) { first, after }: PageArgs, @Ctx() ctx: Context, @Info() info: GraphQLResolveInfo) {
    const principal = requireUser(ctx.principal);
    // Look-ahead: each comparison's responses come in the list's own statement.
    const embed = childFieldArgs(info, ['nodes', 'responses']) ? ctx.services.comparisons.embeddedResponses(ctx.em, 'r') : undefined;
    const page = await ctx.services.comparisons.list(ctx.em, principal, first, after, embed && [embed.column]);
    if (embed) {
      for (const node of page.nodes)
        ctx.loaders.responsesByComparisonIdLoader.prime(node.id, embed.responsesOf(node as ComparisonView & Record<string, unknown>));
    }
    return page;
  }

  @Extensions(cacheHint({ perUser: true }))
  @Query(() => ComparisonResult, { nullable: true })
  comparison(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    requireUser(ctx.principal);
    return ctx.loaders.comparisonByIdLoader.load(id);
  }

  @Extensions(tokenAccess(TokenScope.COMPARE))
  @Mutation(() => ComparisonResult, { description: 'Returns at once with PENDING responses; follow it with comparisonEvents.' })
  async startComparison(@Arg('input', () => RunComparisonInput) input: RunComparisonInput, @Ctx() ctx: Context) {
    return this.started(ctx, await ctx.services.runner.begin(requireUser(ctx.principal), input));
  }

  @Extensions(tokenAccess(TokenScope.COMPARE))
  @Mutation(() => ComparisonResult, { description: 'Returns when every response has settled.' })
  async runComparison(@Arg('input', () => RunComparisonInput) input: RunComparisonInput, @Ctx() ctx: Context) {
    const { view } = await ctx.services.runner.begin(requireUser(ctx.principal), input);
    await ctx.services.runner.settled(view.id);
    return this.load(ctx, view.id);
  }

  @Extensions(tokenAccess(TokenScope.COMPARE))
  @Mutation(() => ComparisonResult, {
    description:
      "A blind comparison of two models the server picks among those your saved keys reach (or the operator's arena pool), " +
      'favouring pairs with few battles so far. Returns at once with PENDING responses labelled A and B; follow it with ' +
      'comparisonEvents, vote to reveal the models.',
  })
  async startArenaBattle(@Arg('input', () => ArenaBattleInput) input: ArenaBattleInput, @Ctx() ctx: Context) {
    const principal = requireUser(ctx.principal);
    const models = await ctx.services.arena.pickModels(ctx.em, principal);
    return this.started(ctx, await ctx.services.runner.begin(principal, { ...input, models, blind: true }));
  }

  @Extensions(tokenAccess(TokenScope.COMPARE))
  @Mutation(() => ComparisonResponse, {
    description:
      'One answer merged by `model` from every COMPLETED answer of the comparison (labels only while it is blind and ' +
      'unrevealed; fusing reveals nothing). Returns at once with a PENDING response of kind FUSED; follow it with ' +
      'comparisonEvents. BAD_USER_INPUT with fewer than two COMPLETED answers or more than 256 KB to fuse.',
  })
  async fuseComparison(
    @Arg('comparisonId', () => ID) comparisonId: string,
    @Arg('model', () => String) model: string,
    @Arg('instruction', () => String, { nullable: true }) instruction: string | null | undefined,
    @Ctx() ctx: Context,
  ) {
    const id = await ctx.services.runner.fuse(requireUser(ctx.principal), { comparisonId, model, instruction });
    const response = await ctx.loaders.responseByIdLoader.load(id);
    if (!response) throw new AppError('NOT_FOUND', 'Comparison response not found');
    return response;
  }

  @Extensions(tokenAccess(TokenScope.COMPARE))
  @Mutation(() => ComparisonResult, { description: 'Stops the responses still running (they settle as FAILED "Cancelled").' })
  async cancelComparison(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    await ctx.services.runner.cancel(requireUser(ctx.principal), id);
    return this.load(ctx, id);
  }

  @Extensions(tokenAccess(TokenScope.COMPARE))
  @Mutation(() => ComparisonResponse, { description: 'Re-runs one FAILED or TIMED_OUT response and returns it settled.' })
  async retryComparisonResponse(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    await ctx.services.runner.retry(requireUser(ctx.principal), id);
    const response = await ctx.loaders.responseByIdLoader.load(id);
    if (!response) throw new AppError('NOT_FOUND', 'Comparison response not found');
    return response;
  }

  /** A comparison just started, answered from what was written (its responses PENDING): no read back. */
  private started(ctx: Context, { view, responses }: StartedComparison): ComparisonView {
    ctx.loaders.comparisonByIdLoader.prime(view.id, view);
    ctx.loaders.responsesByComparisonIdLoader.prime(
      view.id,
      responses.map((r) => presentResponse(r, view.revealed)),
    );
    return view;
  }

  private async load(ctx: Context, id: string): Promise<ComparisonView> {
    const comparison = await ctx.loaders.comparisonByIdLoader.load(id);
    if (!comparison) throw new AppError('NOT_FOUND', 'Comparison not found');
    return comparison;
  }

  @FieldResolver(() => Boolean, {
    description: 'True for non-blind comparisons, and for blind ones once voted on: the responses show their models.',
  })
  revealed(@Root() comparison: ComparisonView): boolean {
    return comparison.revealed;
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
  @FieldResolver(() => [ComparisonResponse], {
    description: 'What a FUSED response merged, in the order the model was given them (empty for MODEL responses).',
  })
  async sources(@Root() response: PresentedResponse, @Ctx() ctx: Context): Promise<PresentedResponse[]> {
    const ids = response.sourceIds ?? [];
    if (ids.length === 0) return [];
    // Siblings in the same comparison: presented (concealed or not) as the comparison's responses are.
    const siblings = await ctx.loaders.responsesByComparisonIdLoader.load(response.comparisonId);
    const byId = new Map(siblings.map((r) => [r.id, r]));
    return ids.flatMap((id) => byId.get(id) ?? []);
  }

  @FieldResolver(() => String, { description: '"A", "B", … in the order shown; shuffled once per blind comparison.' })
  label(@Root() response: PresentedResponse): string {
    return response.label;
  }

  @FieldResolver(() => ComparisonResult)
  async comparison(@Root() response: PresentedResponse, @Ctx() ctx: Context): Promise<ComparisonView> {
    const comparison = await ctx.loaders.comparisonByIdLoader.load(response.comparisonId);
    if (!comparison) throw new AppError('NOT_FOUND', 'Comparison not found');
    return comparison;
  }
}
