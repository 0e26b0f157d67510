import { Arg, Ctx, Extensions, FieldResolver, Mutation, Resolver, Root } from 'type-graphql';
import { TokenScope, tokenAccess } from '../../auth/token-scopes';
import { requireUser } from '../../auth/principal';
import type { Context } from '../common/context';
import { AppError } from '../../errors';
import { Conversation, type ConversationView } from '../conversation/conversation.entity';
import { Message, type MessageView } from './message.entity';
import { SendMessageInput } from './message.inputs';

@Resolver(() => Message)
export class MessageResolver {
  @Extensions(tokenAccess(TokenScope.COMPARE))
  @Mutation(() => Message, { description: "The assistant's reply; the user's message is stored first." })
  sendMessage(@Arg('input', () => SendMessageInput) input: SendMessageInput, @Ctx() ctx: Context): Promise<Message> {
    return ctx.services.chat.send(ctx.em, requireUser(ctx.principal), input);
  }

  @FieldResolver(() => Conversation)
  async conversation(@Root() message: MessageView, @Ctx() ctx: Context): Promise<ConversationView> {
    const conversation = await ctx.loaders.conversationByIdLoader.load(message.conversationId);
    // A message is only ever reached through its owner's conversation.
    if (!conversation) throw new AppError('NOT_FOUND', 'Conversation not found');
    return conversation;
  }
}
