import { Arg, Ctx, Extensions, Field, ID, InputType, Int, Float, Mutation, ObjectType, Query, Resolver } from 'type-graphql';
import { requireUser } from '../../auth/principal';
import { tokenAccess } from '../../auth/token-scopes';
import type { Context } from '../common/context';
import { ApiToken, type ApiTokenView, TokenScope } from './api-token.entity';

@InputType()
export class ApiTokenInput {
  @Field(() => String)
  name!: string;

  @Field(() => [TokenScope])
  scopes!: TokenScope[];

  @Field(() => Int, { nullable: true, description: 'Days until the token stops working; null: it does not expire.' })
  expiresInDays?: number | null;

  @Field(() => Float, { nullable: true, description: 'USD this token may spend over a rolling 24 h; null: only your own budget applies.' })
  dailyBudgetUsd?: number | null;
}

@ObjectType()
export class ApiTokenSecret {
  @Field(() => String, { description: 'The token, shown this once: it is stored hashed and cannot be shown again.' })
  token!: string;

  @Field(() => ApiToken)
  apiToken!: ApiTokenView;
}

/** Managing tokens needs a signed-in session: a personal token cannot list, create or revoke tokens. */
@Resolver(() => ApiToken)
export class ApiTokenResolver {
  @Query(() => [ApiToken], { description: 'Your personal API tokens, newest first (the token values are never shown again).' })
  @Extensions(tokenAccess('JWT_ONLY'))
  async apiTokens(@Ctx() ctx: Context): Promise<ApiTokenView[]> {
    return ctx.services.apiTokens.list(ctx.em, requireUser(ctx.principal));
  }

  @Mutation(() => ApiTokenSecret)
  @Extensions(tokenAccess('JWT_ONLY'))
  async createApiToken(@Arg('input', () => ApiTokenInput) input: ApiTokenInput, @Ctx() ctx: Context): Promise<ApiTokenSecret> {
    return ctx.services.apiTokens.create(ctx.em, requireUser(ctx.principal), input);
  }

  @Mutation(() => ApiToken, { description: 'Every instance refuses the token within a second.' })
  @Extensions(tokenAccess('JWT_ONLY'))
  async revokeApiToken(@Arg('id', () => ID) id: string, @Ctx() ctx: Context): Promise<ApiTokenView> {
    return ctx.services.apiTokens.revoke(ctx.em, requireUser(ctx.principal), id);
  }
}
