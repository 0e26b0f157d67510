import { Arg, ArgsType, Args, Ctx, Extensions, Field, Float, Int, ObjectType, Query, Resolver, registerEnumType } from 'type-graphql';
import { TokenScope } from '../../auth/principal';
import { tokenAccess } from '../../auth/token-scopes';
import { Connection, PageArgsOf } from '../common/connection';
import type { Context } from '../common/context';
import { UsageDimension, type UsageRowView } from './usage-analytics.service';

registerEnumType(UsageDimension, { name: 'UsageDimension' });

@ObjectType('UsageRow', { simpleResolvers: true })
export class UsageRow implements UsageRowView {
  @Field(() => [String], {
    description: 'The group\'s key, one string per groupBy dimension: user id, model id, provider, YYYY-MM-DD (UTC), token id ("": a JWT).',
  })
  key!: string[];

  @Field(() => Int)
  calls!: number;

  @Field(() => Int, { description: 'Calls that did not complete (failed or timed out).' })
  errors!: number;

  @Field(() => Int)
  inputTokens!: number;

  @Field(() => Int)
  outputTokens!: number;

  @Field(() => Float, { description: 'USD, as the budgets count it.' })
  costUsd!: number;

  @Field(() => Int, { nullable: true, description: 'Within 19% (log buckets); null without a timed call.' })
  latencyP50Ms!: number | null;

  @Field(() => Int, { nullable: true })
  latencyP95Ms!: number | null;
}

@ObjectType('UsageRowConnection', { simpleResolvers: true })
export class UsageRowConnection extends Connection(UsageRow) {}

@ArgsType()
class UsageArgs extends PageArgsOf(100) {
  @Field(() => [UsageDimension])
  groupBy!: UsageDimension[];

  @Field(() => Date, { description: 'Inclusive; days are UTC.' })
  from!: Date;

  @Field(() => Date, { description: 'Exclusive.' })
  to!: Date;
}

@Resolver()
export class UsageAnalyticsResolver {
  @Query(() => UsageRowConnection, {
    description: "Provider calls grouped by the given dimensions over [from, to): your own; an ADMIN sees everyone's.",
  })
  @Extensions(tokenAccess(TokenScope.READ))
  usage(@Args(() => UsageArgs) { groupBy, from, to, first, after }: UsageArgs, @Ctx() ctx: Context) {
    return ctx.services.usageAnalytics.page(ctx.em, ctx.principal, { groupBy, from, to, first, after });
  }

  @Query(() => String, { description: '`usage` as CSV (every row, at most 100,000): the key columns, then the measures.' })
  @Extensions(tokenAccess(TokenScope.READ))
  exportUsage(
    @Arg('groupBy', () => [UsageDimension]) groupBy: UsageDimension[],
    @Arg('from', () => Date) from: Date,
    @Arg('to', () => Date) to: Date,
    @Ctx() ctx: Context,
  ): Promise<string> {
    return ctx.services.usageAnalytics.exportCsv(ctx.em, ctx.principal, { groupBy, from, to });
  }
}
