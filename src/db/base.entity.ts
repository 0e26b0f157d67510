import { randomUUID } from 'node:crypto';
import { OptionalProps, PrimaryKey, Property } from '@mikro-orm/core';
import { Field, ID, ObjectType } from 'type-graphql';

/**
 * Every row has a UUID and a `created_at` stored at millisecond precision
 * (`timestamptz(3)`: JS Dates round-trip exactly, SQL-made values are rounded),
 * so a keyset cursor built from `(createdAt, id)` round-trips exactly.
 */
@ObjectType({ simpleResolvers: true })
export abstract class BaseEntity<Optional extends string = never> {
  /** Properties with defaults: optional in `em.create()`. */
  [OptionalProps]?: 'id' | 'createdAt' | Optional;

  @Field(() => ID)
  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Field(() => Date)
  @Property({ type: 'Date', columnType: 'timestamptz(3)' })
  createdAt: Date = new Date();
}
