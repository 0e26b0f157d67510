import { ArrayType, Entity, Index, ManyToOne, Property, type Ref, Unique } from '@mikro-orm/core';
import { Field, Float, ObjectType, registerEnumType } from 'type-graphql';
import { TokenScope } from '../../auth/principal';
import { BaseEntity } from '../../db/base.entity';
import { User } from '../user/user.entity';

// Declared with the principal (`auth/principal.ts`); what each scope allows: `auth/token-scopes.ts`.
registerEnumType(TokenScope, { name: 'TokenScope' });
export { TokenScope };

/**
 * A personal API token (`auth/personal-tokens.ts` verifies them). Only the
 * SHA-256 of the token is stored (`tokenHash`, never returned); `prefix` is
 * its first characters, for telling tokens apart in a list. Revoked tokens
 * stay listed, with `revokedAt`.
 */
@ObjectType({ simpleResolvers: true })
@Entity({ tableName: 'api_tokens' })
@Index({ name: 'api_tokens_owner_created_idx', properties: ['owner', 'createdAt'] })
@Unique({ name: 'api_tokens_token_hash_unique', properties: ['tokenHash'] })
export class ApiToken extends BaseEntity<'expiresAt' | 'lastUsedAt' | 'dailyBudgetUsd' | 'revokedAt'> {
  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  owner!: Ref<User>;

  @Field(() => String)
  @Property({ type: 'text' })
  name!: string;

  @Field(() => [TokenScope])
  @Property({ type: ArrayType, columnType: 'text[]' })
  scopes!: TokenScope[];

  @Property({ type: 'text', hidden: true })
  tokenHash!: string;

  @Field(() => String, { description: 'The first characters of the token (not secret): which token this is.' })
  @Property({ type: 'text' })
  prefix!: string;

  @Field(() => Date, { nullable: true })
  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  expiresAt?: Date | null;

  @Field(() => Date, { nullable: true, description: 'Updated at most once a minute.' })
  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  lastUsedAt?: Date | null;

  @Field(() => Float, { nullable: true, description: 'USD spent through this token over a rolling 24 h, at most.' })
  @Property({ type: 'double', nullable: true })
  dailyBudgetUsd?: number | null;

  @Field(() => Date, { nullable: true })
  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  revokedAt?: Date | null;
}

/** An ApiToken as read (plain; no hash). */
export type ApiTokenView = Pick<
  ApiToken,
  'id' | 'createdAt' | 'name' | 'scopes' | 'prefix' | 'expiresAt' | 'lastUsedAt' | 'dailyBudgetUsd' | 'revokedAt'
>;
