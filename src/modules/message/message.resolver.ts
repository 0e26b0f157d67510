import { Ctx, FieldResolver, Resolver, Root } from 'type-graphql';
import type { Context } from '../../graphql/context';
import { AppError } from '../../graphql/errors';
import { Conversation } from '../conversation/conversation.entity';
import { Message } from './message.entity';

@Resolver(() => Message)
export class MessageResolver {
  @FieldResolver(() => Conversation)
  async conversation(@Root() message: Message, @Ctx() ctx: Context): Promise<Conversation> {
    const conversation = await ctx.loaders.conversationByIdLoader.load(message.conversation.id);
    // A message is only ever reached through its owner's conversation.
    if (!conversation) throw new AppError('NOT_FOUND', 'Conversation not found');
    return conversation;
  }
}
