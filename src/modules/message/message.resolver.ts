import { Arg, Ctx, Extensions, FieldResolver, ID, Mutation, Resolver, Root } from 'type-graphql';
import { TokenScope, tokenAccess } from '../../auth/token-scopes';
import { requireUser } from '../../auth/principal';
import { COMPUTED } from '../../db/read-plan';
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

  @Extensions(tokenAccess(TokenScope.COMPARE))
  @Mutation(() => Message, {
    description:
      "The chosen comparison response becomes the assistant's turn of its conversation and `content` goes to that " +
      "response's model; answers the model's reply, like sendMessage. The other answers stay in the comparison.",
  })
  continueWith(
    @Arg('responseId', () => ID) responseId: string,
    @Arg('content', () => String) content: string,
    @Arg('conversationId', () => ID, {
      nullable: true,
      description:
        "Where the turn is continued: the comparison's own conversation (the default), or a fork that inherited the " +
        'comparison (the chosen answer and the message are then written in the fork; the original is unchanged).',
    })
    conversationId: string | null | undefined,
    @Ctx() ctx: Context,
  ): Promise<Message> {
    return ctx.services.chat.continueWith(ctx.em, requireUser(ctx.principal), { responseId, content, conversationId });
  }

  @Extensions(tokenAccess(TokenScope.COMPARE))
  @Mutation(() => Message, {
    description:
      'The same assistant turn answered again by `model` (the same or another), kept as a new version beside the ' +
      'others; answers the new version, now the current one (what reads show and models receive).',
  })
  regenerateMessage(
    @Arg('messageId', () => ID) messageId: string,
    @Arg('model', () => String, { description: "Model id 'provider:name[@label]'." }) model: string,
    @Arg('conversationId', () => ID, {
      nullable: true,
      description:
        "Where the turn is regenerated: the message's own conversation (the default), or a fork that inherited it " +
        "(the new version is then the fork's own; the conversation it came from is unchanged).",
    })
    conversationId: string | null | undefined,
    @Ctx() ctx: Context,
  ): Promise<Message> {
    return ctx.services.chat.regenerate(ctx.em, requireUser(ctx.principal), { messageId, model, conversationId });
  }

  @FieldResolver(() => Conversation)
  async conversation(@Root() message: MessageView, @Ctx() ctx: Context): Promise<ConversationView> {
    const conversation = await ctx.loaders.conversationByIdLoader.load(message.conversationId);
    // A message is only ever reached through its owner's conversation.
    if (!conversation) throw new AppError('NOT_FOUND', 'Conversation not found');
    return conversation;
  }

  @FieldResolver(() => Boolean, {
    description: 'Whether this is the version of its turn the conversation shows (and models receive).',
  })
  current(@Root() message: MessageView): boolean {
    return COMPUTED['Message.current']!.value(message as never) as boolean;
  }

  @FieldResolver(() => [Message], {
    description: 'Every version of this turn (regenerateMessage), the first first; a turn never regenerated has one.',
  })
  async versions(@Root() message: MessageView, @Ctx() ctx: Context): Promise<MessageView[]> {
    // As the conversation reading the turn lists them: a fork's inherited versions as of the fork, then its own.
    const versions = await ctx.loaders.messageVersionsByTurnLoader.load({
      conversationId: message.conversationId,
      slot: message.versionOfId ?? message.id,
    });
    // Read where the turn is read (a fork's inherited turn stays the fork's).
    return versions.map((v) => ({ ...v, conversationId: message.conversationId }));
  }

  @FieldResolver(() => Message, {
    nullable: true,
    description:
      "On a turn a fork inherited: the same message in the conversation it came from (null there, on the fork's own " +
      'messages, and once that conversation is deleted).',
  })
  async forkedFrom(@Root() message: MessageView, @Ctx() ctx: Context): Promise<MessageView | null> {
    const origin = await ctx.loaders.messageOriginByIdLoader.load(message.id);
    return origin && origin.conversationId !== message.conversationId ? origin : null;
  }
}
