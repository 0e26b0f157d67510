import { Arg, Field, ID, ObjectType, Resolver, Root, Subscription } from 'type-graphql';
import { requireUser } from '../../auth/principal';
import type { Context } from '../common/context';
import { AppError, notFound } from '../../errors';
import { type ComparisonEvent, isShutdownNotice, type StreamItem } from './comparison-events';
import { ResponseStatus } from './comparison.entity';

@ObjectType('ComparisonEvent', { simpleResolvers: true })
export class ComparisonEventType implements ComparisonEvent {
  @Field(() => ID)
  comparisonId!: string;

  @Field(() => ID)
  responseId!: string;

  @Field(() => ResponseStatus)
  status!: ResponseStatus;

  @Field(() => String, { nullable: true, description: 'New text since the last event for this response.' })
  delta!: string | null;

  @Field(() => String, { nullable: true, description: 'Full text so far: in the first event of each response and at completion.' })
  content!: string | null;

  @Field(() => String, { nullable: true })
  error!: string | null;
}

@Resolver(() => ComparisonEventType)
export class ComparisonEventsResolver {
  @Subscription(() => ComparisonEventType, {
    description: 'Replays the state so far, then live deltas, then completes when every response has settled.',
    subscribe: async ({ args, context }) => {
      const ctx = context as Context;
      const principal = requireUser(ctx.principal);
      const comparisonId = String(args.comparisonId);
      // Running here for this user (and revealed): nothing to read.
      const local = ctx.services.runner.runsHere(comparisonId, principal.userId);
      if (local) return ctx.services.runner.events(comparisonId, true, ctx.streamReady, local);
      const [comparison] = await ctx.services.comparisons.findByIds(ctx.em, principal, [comparisonId]);
      if (!comparison) throw notFound('Comparison');
      return ctx.services.runner.events(comparison.id, comparison.revealed, ctx.streamReady);
    },
  })
  comparisonEvents(@Arg('comparisonId', () => ID) _comparisonId: string, @Root() event: StreamItem): ComparisonEvent {
    // The server is stopping while a response still runs on another instance: the last event says so.
    if (isShutdownNotice(event))
      throw new AppError('SERVICE_UNAVAILABLE', 'The server is shutting down: subscribe again to follow this comparison');
    return event;
  }
}
