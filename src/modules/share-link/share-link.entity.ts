import { Entity, Index, ManyToOne, Property, type Ref, Unique } from '@mikro-orm/core';
import { BaseEntity } from '../../db/base.entity';
import { ComparisonResult } from '../comparison/comparison.entity';
import { Conversation } from '../conversation/conversation.entity';
import { User } from '../user/user.entity';

/**
 * A share link (`share-link.service.ts`). Only the SHA-256 of its token is
 * stored (`tokenHash`); `prefix` is the token's first characters, for telling
 * links apart in a list. The snapshot is fixed here at share time: the title
 * and `asOf` (messages are read as of then); the comparisons shared are rows
 * of {@link ShareLinkComparison}.
 */
@Entity({ tableName: 'share_links' })
@Index({
  name: 'share_links_owner_created_idx',
  expression: 'create index "share_links_owner_created_idx" on "share_links" ("owner_id", "created_at" desc, "id" desc)',
})
@Index({
  name: 'share_links_conversation_idx',
  expression: 'create index "share_links_conversation_idx" on "share_links" ("conversation_id") where "conversation_id" is not null',
})
@Index({
  name: 'share_links_comparison_idx',
  expression: 'create index "share_links_comparison_idx" on "share_links" ("comparison_id") where "comparison_id" is not null',
})
@Unique({ name: 'share_links_token_hash_unique', properties: ['tokenHash'] })
export class ShareLinkEntity extends BaseEntity<'expiresAt' | 'revokedAt' | 'views' | 'title'> {
  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  owner!: Ref<User>;

  /** `CONVERSATION` or `COMPARISON`. */
  @Property({ type: 'text' })
  target!: string;

  @ManyToOne(() => Conversation, { ref: true, nullable: true, deleteRule: 'cascade' })
  conversation?: Ref<Conversation> | null;

  @ManyToOne(() => ComparisonResult, { ref: true, nullable: true, deleteRule: 'cascade' })
  comparison?: Ref<ComparisonResult> | null;

  @Property({ type: 'text', hidden: true })
  tokenHash!: string;

  @Property({ type: 'text' })
  prefix!: string;

  @Property({ type: 'text', nullable: true })
  title?: string | null;

  /** The snapshot's time: the conversation's messages (current versions, a fork's inherited ones) as they read then. */
  @Property({ type: 'Date', columnType: 'timestamptz(3)' })
  asOf!: Date;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  expiresAt?: Date | null;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  revokedAt?: Date | null;

  /** Counted in batches (`ShareLinkService`'s view counter), never per request. */
  @Property({ type: 'int', default: 0 })
  views: number = 0;
}

/** One comparison of a share link's snapshot, and whether it was revealed when shared (the `SHARED_REVEALED` rule's fact). */
@Entity({ tableName: 'share_link_comparisons' })
@Index({
  name: 'share_link_comparisons_link_idx',
  expression: 'create index "share_link_comparisons_link_idx" on "share_link_comparisons" ("link_id", "position")',
})
@Index({ name: 'share_link_comparisons_comparison_idx', properties: ['comparison'] })
export class ShareLinkComparison extends BaseEntity {
  @ManyToOne(() => ShareLinkEntity, { ref: true, deleteRule: 'cascade' })
  link!: Ref<ShareLinkEntity>;

  @ManyToOne(() => ComparisonResult, { ref: true, deleteRule: 'cascade' })
  comparison!: Ref<ComparisonResult>;

  @Property({ type: 'int' })
  position!: number;

  @Property({ type: 'boolean' })
  revealed!: boolean;
}
