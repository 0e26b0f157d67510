import { Arg, Ctx, Extensions, Field, FieldResolver, Mutation, ObjectType, Query, Resolver, Root } from 'type-graphql';
import { cacheHint } from '../../read-cache/cache-policy';
import { requireUser } from '../../auth/principal';
import type { Context } from '../common/context';
import { ApiKey } from '../api-key/api-key.entity';
import { User, type UserView } from './user.entity';

@ObjectType({ simpleResolvers: true })
export class AuthPayload {
  @Field(() => String)
  token!: string;

  @Field(() => User)
  user!: User;
}

@Resolver(() => User)
export class UserResolver {
  @Extensions(cacheHint({ perUser: true }))
  @Query(() => User, { nullable: true, description: 'The signed-in user (UNAUTHENTICATED without a token).' })
  me(@Ctx() ctx: Context): Promise<UserView | null> {
    return ctx.services.users.findById(ctx.em, requireUser(ctx.principal).userId);
  }

  @Mutation(() => AuthPayload)
  async register(@Arg('email', () => String) email: string, @Arg('password', () => String) password: string, @Ctx() ctx: Context) {
    const payload = await ctx.services.users.register(ctx.em, email, password, ctx.clientIp);
    // Signed up anonymously (no author for the invalidation plugin): the new user's first reads must see the row.
    await ctx.services.invalidation.committed(payload.user.id);
    return payload;
  }

  @Mutation(() => AuthPayload)
  login(@Arg('email', () => String) email: string, @Arg('password', () => String) password: string, @Ctx() ctx: Context) {
    return ctx.services.users.login(ctx.em, email, password, ctx.clientIp);
  }

  @FieldResolver(() => [ApiKey])
  apiKeys(@Root() user: UserView, @Ctx() ctx: Context): Promise<ApiKey[]> | ApiKey[] {
    // Only the owner sees their keys (a User object is only ever the viewer today).
    if (ctx.principal?.userId !== user.id) return [];
    return ctx.loaders.apiKeysByUserIdLoader.load(user.id);
  }
}
