import { Entity, Enum, ManyToOne, Property, type Ref, Unique } from '@mikro-orm/core';
import { Field, ObjectType, registerEnumType } from 'type-graphql';
import { BaseEntity } from '../../db/base.entity';
import { Provider } from '../../llm/model-id';
import { User } from '../user/user.entity';

// Defined with its mapping to model ids' provider names in `llm/model-id.ts`; registered with GraphQL here.
registerEnumType(Provider, { name: 'Provider' });
export { Provider };

/**
 * A user's provider key. The secret is AES-256-GCM encrypted
 * (`encryptedSecret` = base64(iv | tag | ciphertext)) under the key named by
 * `encryptionKeyId`, so the server key can be rotated. Only `last4` leaves the server.
 */
@ObjectType({ simpleResolvers: true })
@Entity({ tableName: 'api_keys' })
@Unique({ name: 'api_keys_owner_provider_label_unique', properties: ['owner', 'provider', 'label'] })
export class ApiKey extends BaseEntity<'label' | 'lastUsedAt' | 'baseUrl'> {
  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  owner!: Ref<User>;

  @Field(() => Provider)
  @Enum({ items: () => Provider, nativeEnumName: 'provider' })
  provider!: Provider;

  @Field(() => String)
  @Property({ type: 'text' })
  label: string = 'default';

  @Property({ type: 'text', hidden: true })
  encryptedSecret!: string;

  @Property({ type: 'text', hidden: true })
  encryptionKeyId!: string;

  @Field(() => String)
  @Property({ type: 'text' })
  last4!: string;

  @Field(() => String, { nullable: true })
  @Property({ type: 'text', nullable: true })
  baseUrl?: string | null;

  @Field(() => Date, { nullable: true })
  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  lastUsedAt?: Date | null;
}
