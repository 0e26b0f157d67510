import { Entity, Index, ManyToOne, Property, type Ref, Unique } from '@mikro-orm/core';
import { Field, Float, Int, ObjectType } from 'type-graphql';
import { BaseEntity } from '../../db/base.entity';
import { User } from '../user/user.entity';
import { AssertionKind, type AssertionSpec } from './assertions';

@ObjectType('Assertion', { simpleResolvers: true, description: 'See AssertionKind; value is null for EQUALS_REFERENCE and JSON_VALID.' })
export class AssertionType implements AssertionSpec {
  @Field(() => AssertionKind)
  kind!: AssertionKind;

  @Field(() => String, { nullable: true })
  value!: string | null;

  @Field(() => Float)
  weight!: number;
}

/**
 * A user's prompt set: items to run against models, and assertions applied to
 * every item (`defaultAssertions`, before the item's own). Deleting it deletes
 * its items (FK cascade); deleting the user deletes it.
 */
@ObjectType({ simpleResolvers: true })
@Entity({ tableName: 'prompt_sets' })
@Index({
  name: 'prompt_sets_owner_created_idx',
  expression: 'create index "prompt_sets_owner_created_idx" on "prompt_sets" ("owner_id", "created_at" desc, "id" desc)',
})
export class PromptSet extends BaseEntity<'updatedAt' | 'ownerId' | 'description' | 'defaultAssertions'> {
  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  owner!: Ref<User>;

  @Field(() => String)
  @Property({ type: 'text' })
  name!: string;

  @Field(() => String, { nullable: true })
  @Property({ type: 'text', nullable: true })
  description: string | null = null;

  @Field(() => [AssertionType])
  @Property({ type: 'json', columnType: 'jsonb' })
  defaultAssertions: AssertionSpec[] = [];

  /** Changes with the set's own fields and with every change to its items. */
  @Field(() => Date)
  @Property({ type: 'Date', columnType: 'timestamptz(3)' })
  updatedAt: Date = new Date();

  /** The foreign key under the name plain reads use (see `db/plain.ts`). */
  get ownerId(): string {
    return this.owner.id;
  }
}

export type PromptSetView = Pick<PromptSet, 'id' | 'createdAt' | 'updatedAt' | 'ownerId' | 'name' | 'description' | 'defaultAssertions'>;

/**
 * One prompt of a set, at `position` (unique in its set, ascending in the order
 * items were added; deleting an item leaves a gap, never renumbers). Its
 * assertions apply after the set's defaults.
 */
@ObjectType({ simpleResolvers: true })
@Entity({ tableName: 'prompt_items' })
@Unique({ name: 'prompt_items_set_position_key', properties: ['promptSet', 'position'] })
export class PromptItem extends BaseEntity<'promptSetId' | 'system' | 'reference' | 'assertions' | 'tags'> {
  @ManyToOne(() => PromptSet, { ref: true, deleteRule: 'cascade' })
  promptSet!: Ref<PromptSet>;

  @Field(() => Int)
  @Property({ type: 'integer' })
  position!: number;

  @Field(() => String)
  @Property({ type: 'text' })
  prompt!: string;

  @Field(() => String, { nullable: true })
  @Property({ type: 'text', nullable: true })
  system: string | null = null;

  @Field(() => String, { nullable: true })
  @Property({ type: 'text', nullable: true })
  reference: string | null = null;

  @Field(() => [AssertionType], { description: "The item's own assertions (the set's defaultAssertions apply too)." })
  @Property({ type: 'json', columnType: 'jsonb' })
  assertions: AssertionSpec[] = [];

  @Field(() => [String])
  @Property({ type: 'text[]' })
  tags: string[] = [];

  get promptSetId(): string {
    return this.promptSet.id;
  }
}

export type PromptItemView = Pick<
  PromptItem,
  'id' | 'createdAt' | 'promptSetId' | 'position' | 'prompt' | 'system' | 'reference' | 'assertions' | 'tags'
>;
