import { Entity, Enum, Index, Property } from '@mikro-orm/core';
import { Field, ObjectType, registerEnumType } from 'type-graphql';
import { BaseEntity } from '../../db/base.entity';

export enum UserRole {
  USER = 'USER',
  ADMIN = 'ADMIN',
}
registerEnumType(UserRole, { name: 'UserRole' });

/** `email` is stored trimmed and lower-cased; a unique index on lower(email) backs it (migration). */
@ObjectType({ simpleResolvers: true })
@Entity({ tableName: 'users' })
@Index({ name: 'users_email_lower_unique', expression: 'create unique index "users_email_lower_unique" on "users" (lower("email"))' })
export class User extends BaseEntity<'role'> {
  @Field(() => String)
  @Property({ type: 'text' })
  email!: string;

  /** argon2id hash; never exposed. */
  @Property({ type: 'text', hidden: true, lazy: true })
  passwordHash!: string;

  @Field(() => UserRole)
  @Enum({ items: () => UserRole, nativeEnumName: 'user_role' })
  role: UserRole = UserRole.USER;

  /** Spend budget in USD over a rolling 24 h set by an admin; null = the configured default (USER_DAILY_BUDGET_USD). */
  @Property({ type: 'double', nullable: true })
  dailyBudgetUsd?: number | null;
}

/** A user as read paths return it (a plain row, never the password hash); an entity fits too. */
export type UserView = Pick<User, 'id' | 'createdAt' | 'email' | 'role'> & { dailyBudgetUsd?: number | null };
