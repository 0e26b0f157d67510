import { Entity, Index, ManyToOne, Property, type Ref } from '@mikro-orm/core';
import { Field, ObjectType } from 'type-graphql';
import { BaseEntity } from '../../db/base.entity';
import { User } from '../user/user.entity';

/**
 * Deleting a conversation deletes its messages (FK cascade) and detaches its
 * comparisons (`conversation_id` set null): a comparison and its vote stay in
 * the user's comparison history and keep feeding the leaderboard. A
 * conversation that forks still read from is hidden instead (`deletedAt`), and
 * removed with its last fork (see `ConversationService.delete`).
 */
@ObjectType({ simpleResolvers: true })
@Entity({ tableName: 'conversations' })
@Index({
  name: 'conversations_owner_created_idx',
  expression: 'create index "conversations_owner_created_idx" on "conversations" ("owner_id", "created_at" desc, "id" desc)',
})
export class Conversation extends BaseEntity<'updatedAt' | 'ownerId'> {
  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  owner!: Ref<User>;

  @Field(() => String)
  @Property({ type: 'text' })
  title!: string;

  @Field(() => Date)
  @Property({ type: 'Date', columnType: 'timestamptz(3)' })
  updatedAt: Date = new Date();

  /**
   * Set when the owner deleted it while forks still inherit its messages: every
   * read treats it as missing (`CONVERSATIONS.hiddenWhen`), its messages stay for the forks.
   */
  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  deletedAt?: Date | null;

  /** A fork: the message it was cut at (the last message it inherits). No foreign key: it records, the ancestry rows own. */
  @Property({ type: 'uuid', nullable: true })
  forkedFromMessageId?: string | null;

  /** The foreign key under the name plain reads use (see `db/plain.ts`). */
  get ownerId(): string {
    return this.owner.id;
  }
}

/** A conversation as read paths return it (a plain row); an entity fits too. */
export type ConversationView = Pick<Conversation, 'id' | 'createdAt' | 'updatedAt' | 'ownerId' | 'title'> &
  Partial<Pick<Conversation, 'forkedFromMessageId'>>;
