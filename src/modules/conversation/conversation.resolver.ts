import type { GraphQLResolveInfo } from 'graphql';
import {
  Arg,
  Args,
  ArgsType,
  Ctx,
  Extensions,
  FieldResolver,
  ID,
  Info,
  Int,
  Mutation,
  ObjectType,
  Query,
  Resolver,
  Root,
} from 'type-graphql';
import { TokenScope, tokenAccess } from '../../auth/token-scopes';
import { cacheHint } from '../../read-cache/cache-policy';
import { requireUser } from '../../auth/principal';
import { childFieldArgs } from '../common/lookahead';
import { isPageSizeOf, MESSAGES } from '../../db/read-plan';
import type { Context } from '../common/context';
import { Connection, PageArgs, PageArgsOf, totalCountResolver } from '../common/connection';
import { ComparisonResult } from '../comparison/comparison.entity';
import { Message } from '../message/message.entity';
import { Conversation, type ConversationView } from './conversation.entity';

@ObjectType({ simpleResolvers: true })
export class ConversationConnection extends Connection(Conversation) {}

@ObjectType({ simpleResolvers: true })
export class MessageConnection extends Connection(Message) {}

/** A conversation's messages: the `MESSAGES` read plan's default page unless asked. */
@ArgsType()
class MessagePageArgs extends PageArgsOf(MESSAGES.page.default) {}

export const ConversationConnectionResolver = totalCountResolver(ConversationConnection, (ctx: Context) =>
  ctx.services.conversations.count(ctx.em, requireUser(ctx.principal)),
);

@Resolver(() => Conversation)
export class ConversationResolver {
  @Extensions(cacheHint({ perUser: true }))
  @Query(() => ConversationConnection, { description: 'Newest first.' })
  async conversations(@Args(() => PageArgs) { first, after }: PageArgs, @Ctx() ctx: Context, @Info() info: GraphQLResolveInfo) {
    const principal = requireUser(ctx.principal);
    // Look-ahead: the first page of each conversation's messages comes in the list's own statement.
    const messages = childFieldArgs(info, ['nodes', 'messages']) as { first?: number; after?: string | null } | undefined;
    const embed =
      messages && !messages.after && isPageSizeOf(MESSAGES, messages.first)
        ? ctx.services.messages.embeddedFirstPages(ctx.em, 'c', messages.first)
        : undefined;
    const page = await ctx.services.conversations.list(ctx.em, principal, first, after, embed && [embed.column]);
    if (embed) {
      for (const node of page.nodes) {
        const { key, page: messagePage } = embed.pageOf(node as ConversationView & Record<string, unknown>);
        ctx.loaders.messagePageByConversationLoader.prime(key, messagePage);
      }
    }
    return page;
  }

  @Extensions(cacheHint({ perUser: true }))
  @Query(() => Conversation, { nullable: true })
  conversation(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    requireUser(ctx.principal);
    return ctx.loaders.conversationByIdLoader.load(id);
  }

  @Extensions(tokenAccess(TokenScope.COMPARE))
  @Mutation(() => Conversation)
  async createConversation(@Arg('title', () => String, { nullable: true }) title: string | null, @Ctx() ctx: Context) {
    const principal = requireUser(ctx.principal);
    const conversation = await ctx.services.conversations.create(ctx.em, principal, title);
    return conversation;
  }

  @Extensions(tokenAccess(TokenScope.COMPARE))
  @Mutation(() => Conversation, {
    description:
      'A new conversation whose history is the one of messageId up to and including it (with responseId: then that ' +
      'answer of the comparison whose prompt it is), then its own. The history is shared, not copied.',
  })
  forkConversation(
    @Arg('messageId', () => ID) messageId: string,
    @Arg('title', () => String, { nullable: true }) title: string | null,
    @Arg('responseId', () => ID, { nullable: true }) responseId: string | null,
    @Ctx() ctx: Context,
  ) {
    return ctx.services.conversations.fork(ctx.em, requireUser(ctx.principal), { messageId, title, responseId });
  }

  @Mutation(() => Conversation)
  async renameConversation(@Arg('id', () => ID) id: string, @Arg('title', () => String) title: string, @Ctx() ctx: Context) {
    const principal = requireUser(ctx.principal);
    const conversation = await ctx.services.conversations.rename(ctx.em, principal, id, title);
    return conversation;
  }

  @Mutation(() => Boolean)
  async deleteConversation(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    const principal = requireUser(ctx.principal);
    // Its share links stop (rows cascade, or answer null while the conversation is kept hidden for its forks); their
    // cached snapshots must stop being served on every instance too.
    const forgetLinks = await ctx.services.shareLinks.deletingConversation(ctx.em, principal, id);
    await ctx.services.conversations.delete(ctx.em, principal, id);
    await forgetLinks();
    return true;
  }

  @FieldResolver(() => Int)
  messageCount(@Root() conversation: ConversationView, @Ctx() ctx: Context) {
    return ctx.loaders.messageCountByConversationIdLoader.load(conversation.id);
  }

  @FieldResolver(() => Message, { nullable: true })
  lastMessage(@Root() conversation: ConversationView, @Ctx() ctx: Context) {
    return ctx.loaders.lastMessageByConversationIdLoader.load(conversation.id);
  }

  @FieldResolver(() => MessageConnection, { description: 'Oldest first.' })
  messages(@Root() conversation: ConversationView, @Args(() => MessagePageArgs) { first, after }: MessagePageArgs, @Ctx() ctx: Context) {
    const key = ctx.services.messages.pageKey(conversation.id, first, after);
    return ctx.loaders.messagePageByConversationLoader.load(key);
  }

  @FieldResolver(() => [ComparisonResult])
  comparisons(@Root() conversation: ConversationView, @Ctx() ctx: Context) {
    return ctx.loaders.comparisonsByConversationIdLoader.load(conversation.id);
  }
}
