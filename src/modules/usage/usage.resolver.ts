import { Arg, Ctx, FieldResolver, Float, ID, Mutation, Resolver, Root } from 'type-graphql';
import { requireAdmin, requireUser } from '../../auth/principal';
import type { Context } from '../common/context';
import { AppError } from '../../errors';
import { UserRole } from '../user/user.entity';
import { User, type UserView } from '../user/user.entity';
import type { SpendSummary } from './usage.service';

@Resolver(() => User)
export class UsageResolver {
  @Mutation(() => User, {
    description:
      "ADMIN only. Sets a user's spend budget in USD over a rolling 24 h: null returns to the default " +
      '(USER_DAILY_BUDGET_USD), 0 is unlimited.',
  })
  setUserBudget(
    @Arg('userId', () => ID) userId: string,
    @Arg('dailyUsd', () => Float, { nullable: true }) dailyUsd: number | null,
    @Ctx() ctx: Context,
  ): Promise<UserView> {
    requireAdmin(ctx.principal);
    return ctx.services.usage.setBudget(ctx.em, userId, dailyUsd ?? null);
  }

  @FieldResolver(() => Float, {
    description: "USD recorded for this user's model calls over the last 24 h (models without a known price record nothing).",
  })
  async spentTodayUsd(@Root() user: UserView, @Ctx() ctx: Context): Promise<number> {
    return (await this.summary(user, ctx)).spentUsd;
  }

  @FieldResolver(() => Float, { nullable: true, description: 'Spend budget in USD over a rolling 24 h; null when unlimited.' })
  async dailyBudgetUsd(@Root() user: UserView, @Ctx() ctx: Context): Promise<number | null> {
    return (await this.summary(user, ctx)).budgetUsd;
  }

  @FieldResolver(() => Float, {
    nullable: true,
    description: "The contract's name (API.md): the spend budget in USD over a rolling 24 h; null when unlimited.",
  })
  async budgetUsd(@Root() user: UserView, @Ctx() ctx: Context): Promise<number | null> {
    return (await this.summary(user, ctx)).budgetUsd;
  }

  @FieldResolver(() => Float, { nullable: true, description: 'What is left of the budget (never negative); null when unlimited.' })
  async remainingBudgetUsd(@Root() user: UserView, @Ctx() ctx: Context): Promise<number | null> {
    return (await this.summary(user, ctx)).remainingUsd;
  }

  /** The user themselves, or an admin. */
  private summary(user: UserView, ctx: Context): Promise<SpendSummary> {
    const viewer = requireUser(ctx.principal);
    if (viewer.userId !== user.id && viewer.role !== UserRole.ADMIN)
      throw new AppError('FORBIDDEN', "Only the user or an admin sees a user's spend");
    return ctx.loaders.spendByUserIdLoader.load(user.id);
  }
}
