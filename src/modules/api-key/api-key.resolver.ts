import { Arg, Ctx, Field, ID, InputType, Mutation, Resolver } from 'type-graphql';
import { requireUser } from '../../auth/principal';
import type { Context } from '../common/context';
import { ApiKey, Provider } from './api-key.entity';

@InputType()
export class SaveApiKeyInput {
  @Field(() => Provider)
  provider!: Provider;

  @Field(() => String)
  apiKey!: string;

  @Field(() => String, { nullable: true, defaultValue: 'default' })
  label?: string;

  @Field(() => String, { nullable: true })
  baseUrl?: string | null;
}

@Resolver(() => ApiKey)
export class ApiKeyResolver {
  @Mutation(() => ApiKey, { description: 'Creates or replaces the key for (provider, label). Only last4 is ever returned.' })
  async saveApiKey(@Arg('input', () => SaveApiKeyInput) input: SaveApiKeyInput, @Ctx() ctx: Context): Promise<ApiKey> {
    const principal = requireUser(ctx.principal);
    const key = await ctx.services.apiKeys.save(ctx.em, principal, input);
    return key;
  }

  @Mutation(() => Boolean)
  async deleteApiKey(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<boolean> {
    const principal = requireUser(ctx.principal);
    await ctx.services.apiKeys.delete(ctx.em, principal, id);
    return true;
  }
}
