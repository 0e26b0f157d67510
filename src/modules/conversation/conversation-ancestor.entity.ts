import { Entity, Index, ManyToOne, Property, type Ref } from '@mikro-orm/core';
import { BaseEntity } from '../../db/base.entity';
import { Conversation } from './conversation.entity';

/**
 * One segment of a fork's inherited history (the `FORK_ANCESTRY` of
 * `db/read-plan.ts`): the messages of `ancestor` up to and including
 * `(uptoCreatedAt, uptoId)` (`uptoId` is the cut message's first version), as
 * they were when the fork was made (`createdAt`). A fork has one row per
 * conversation its history comes from (its parent's segments, cut, plus the
 * parent itself): the rows a fork writes do not grow with the history's length.
 *
 * The ancestor's foreign key forbids deletion (`no action`: checked at the end
 * of the statement, so deleting a user still cascades): a conversation whose
 * messages a fork shows cannot be removed from under it (the service hides it
 * instead).
 */
@Entity({ tableName: 'conversation_ancestors' })
@Index({ name: 'conversation_ancestors_conversation_idx', properties: ['conversation'] })
@Index({ name: 'conversation_ancestors_ancestor_idx', properties: ['ancestor'] })
export class ConversationAncestor extends BaseEntity {
  @ManyToOne(() => Conversation, { ref: true, deleteRule: 'cascade' })
  conversation!: Ref<Conversation>;

  @ManyToOne(() => Conversation, { ref: true, deleteRule: 'no action' })
  ancestor!: Ref<Conversation>;

  @Property({ type: 'Date', columnType: 'timestamptz(3)' })
  uptoCreatedAt!: Date;

  @Property({ type: 'uuid' })
  uptoId!: string;
}
