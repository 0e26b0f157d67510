import { Entity, Enum, Index, ManyToOne, Property, type Ref } from '@mikro-orm/core';
import { Field, Int, ObjectType, registerEnumType } from 'type-graphql';
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
  name: 'messages_version_of_idx',
  expression: 'create index "messages_version_of_idx" on "messages" ("version_of_id") where "version_of_id" is not null',
})
@Index({
  name: 'messages_content_fts_idx',
  expression: `create index "messages_content_fts_idx" on "messages" using gin ("content_tsv")`,
})
/** A message; an assistant's answer also carries its call's measurements (`ModelCallEntity`). */
export class Message extends ModelCallEntity<'conversationId' | 'comparisonId' | 'version'> {
  @ManyToOne(() => Conversation, { ref: true, deleteRule: 'cascade' })
  conversation!: Ref<Conversation>;

  @Field(() => MessageRole)
  @Enum({ items: () => MessageRole, nativeEnumName: 'message_role' })
  role!: MessageRole;

  @Field(() => String)
  @Property({ type: 'text' })
  content!: string;

  /**
   * `to_tsvector('english', content)`, stored (search matches and ranks on it,
   * index `messages_content_fts_idx`): computed once per write, not per row
   * read, so a search that takes the viewer's own messages first costs a
   * lexeme match per message, not a parse of its text. Never selected by
   * reads (lazy) nor written (generated).
   */
  @Property({
    type: 'unknown',
    columnType: 'tsvector',
    generated: `(to_tsvector('english'::regconfig, content)) stored`,
    lazy: true,
    hidden: true,
    nullable: true,
  })
  contentTsv?: unknown;

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

  /**
   * Versions (`regenerateMessage`): a regenerated answer is a new row with the
   * first version's id here, the first version's `createdAt` (its place in the
   * conversation) and `answeredAt` (when it was written). Exactly one version
   * of a turn has `replacedAt` null: the current one, which every read shows
   * (the `CURRENT_VERSION` rule of `db/read-plan.ts`). No foreign key: versions
   * live and die with their conversation.
   */
  @Property({ type: 'uuid', nullable: true })
  versionOfId?: string | null;

  @Field(() => Int, { description: '1 for the first answer of a turn; each regenerated version the next.' })
  @Property({ type: 'smallint', default: 1 })
  version: number = 1;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  answeredAt?: Date | null;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  replacedAt?: Date | null;

  /**
   * The comparison response this assistant message carries (`continueWith`,
   * `forkConversation` with a response): that model's answer to the prompt
   * before it. No foreign key: it records, it does not own.
   */
  @Property({ type: 'uuid', nullable: true })
  sourceResponseId?: string | null;

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
> &
  Partial<Pick<Message, 'versionOfId' | 'version' | 'replacedAt' | 'answeredAt' | 'sourceResponseId'>>;
