import { Entity, Enum, Index, ManyToOne, Property, type Ref } from '@mikro-orm/core';
import { Field, ObjectType, registerEnumType } from 'type-graphql';
import { type ModelCallField, ModelCallEntity } from '../../db/model-call.entity';
import { Provider } from '../api-key/api-key.entity';
import { ComparisonResult } from '../comparison/comparison.entity';
import { Conversation } from '../conversation/conversation.entity';

export enum MessageRole {
  SYSTEM = 'SYSTEM',
  USER = 'USER',
  ASSISTANT = 'ASSISTANT',
}
registerEnumType(MessageRole, { name: 'MessageRole' });

@ObjectType({ simpleResolvers: true })
@Entity({ tableName: 'messages' })
@Index({
  name: 'messages_api_token_idx',
  expression: 'create index "messages_api_token_idx" on "messages" ("api_token_id") where "api_token_id" is not null',
})
@Index({
  name: 'messages_conversation_created_idx',
  expression: 'create index "messages_conversation_created_idx" on "messages" ("conversation_id", "created_at", "id")',
})
@Index({ name: 'messages_comparison_idx', properties: ['comparison'] })
@Index({
  name: 'messages_content_fts_idx',
  expression: `create index "messages_content_fts_idx" on "messages" using gin (to_tsvector('english', "content"))`,
})
/** A message; an assistant's answer also carries its call's measurements (`ModelCallEntity`). */
export class Message extends ModelCallEntity<'conversationId' | 'comparisonId'> {
  @ManyToOne(() => Conversation, { ref: true, deleteRule: 'cascade' })
  conversation!: Ref<Conversation>;

  @Field(() => MessageRole)
  @Enum({ items: () => MessageRole, nativeEnumName: 'message_role' })
  role!: MessageRole;

  @Field(() => String)
  @Property({ type: 'text' })
  content!: string;

  /**
   * Set on the USER message that holds a comparison's prompt: the prompt is a
   * message of its conversation (searchable, part of the history), and each
   * model's answer to it lives in that comparison's responses.
   */
  @ManyToOne(() => ComparisonResult, { ref: true, nullable: true, deleteRule: 'set null' })
  comparison?: Ref<ComparisonResult> | null;

  @Field(() => Provider, { nullable: true })
  @Enum({ items: () => Provider, nativeEnumName: 'provider', nullable: true })
  provider?: Provider | null;

  /** Model id without the key label, e.g. `openai:gpt-4o`. */
  @Field(() => String, { nullable: true })
  @Property({ type: 'text', nullable: true })
  model?: string | null;

  /** The foreign keys under the names plain reads use (see `db/plain.ts`). */
  get conversationId(): string {
    return this.conversation.id;
  }

  get comparisonId(): string | null {
    return this.comparison?.id ?? null;
  }
}

/** A message as read paths return it (a plain row) and resolvers read it; an entity fits too. */
export type MessageView = Pick<
  Message,
  'id' | 'createdAt' | 'conversationId' | 'comparisonId' | 'role' | 'content' | 'provider' | 'model' | ModelCallField
>;
