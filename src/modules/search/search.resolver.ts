import { Args, Ctx, FieldResolver, Query, Resolver, Root } from 'type-graphql';
import { requireUser } from '../../auth/principal';
import type { Context } from '../common/context';
import { AppError } from '../../errors';
import { ComparisonResult } from '../comparison/comparison.entity';
import { Conversation, type ConversationView } from '../conversation/conversation.entity';
import { SearchArgs, SearchConnection, SearchHit } from './search.types';

@Resolver(() => SearchHit)
export class SearchResolver {
  @Query(() => SearchConnection, {
    description: "Full-text search over the viewer's messages and comparison prompts: most relevant first, then newest.",
  })
  search(@Args(() => SearchArgs) { query, first, after }: SearchArgs, @Ctx() ctx: Context) {
    return ctx.services.search.search(ctx.em, requireUser(ctx.principal), query, first, after);
  }

  @FieldResolver(() => Conversation)
  async conversation(@Root() hit: SearchHit, @Ctx() ctx: Context): Promise<ConversationView> {
    const conversation = await ctx.loaders.conversationByIdLoader.load(hit.message.conversationId);
    // Hits come only from the viewer's conversations.
    if (!conversation) throw new AppError('NOT_FOUND', 'Conversation not found');
    return conversation;
  }

  @FieldResolver(() => ComparisonResult, { nullable: true, description: 'Set when the hit is the prompt of a comparison.' })
  comparison(@Root() hit: SearchHit, @Ctx() ctx: Context) {
    return hit.message.comparisonId ? ctx.loaders.comparisonByIdLoader.load(hit.message.comparisonId) : null;
  }
}
