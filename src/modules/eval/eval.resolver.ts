import {
  Arg,
  Args,
  ArgsType,
  Ctx,
  Extensions,
  Field,
  FieldResolver,
  ID,
  Mutation,
  Query,
  Resolver,
  Root,
  Subscription,
} from 'type-graphql';
import { requireUser } from '../../auth/principal';
import { TokenScope, tokenAccess } from '../../auth/token-scopes';
import { notFound } from '../../errors';
import { PageArgsOf } from '../common/connection';
import type { Context } from '../common/context';
import { PromptItem, PromptSet, type PromptSetView } from '../prompt-set/prompt-set.entity';
import { type EvalCellView, type EvalRunView, progressOf } from './eval.service';
import {
  AssertionResult,
  EvalCell,
  EvalCellConnection,
  EvalEstimate,
  EvalProgress,
  EvalRun,
  EvalRunConnection,
  EvalRunEvent,
  EvalRunInput,
} from './eval.types';

@ArgsType()
class EvalRunPageArgs extends PageArgsOf(20) {}

@ArgsType()
class EvalCellArgs extends PageArgsOf(50) {
  @Field(() => String, { nullable: true, description: 'Only this model (as the run lists it).' })
  model?: string | null;

  @Field(() => Boolean, { nullable: true, defaultValue: false })
  failedOnly?: boolean | null;
}

@Resolver(() => EvalRun)
export class EvalRunResolver {
  @Extensions(tokenAccess(TokenScope.READ))
  @Query(() => EvalRun, { nullable: true, description: "Null for an unknown id and for another user's run." })
  async evalRun(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    const [run] = await ctx.services.evals.findByIds(ctx.em, requireUser(ctx.principal), [id]);
    return run ?? null;
  }

  @Extensions(tokenAccess(TokenScope.READ))
  @Query(() => EvalEstimate, { description: 'Calls, tokens and a cost range per model (and for the judge), before anything runs.' })
  async estimateEvalRun(@Arg('input', () => EvalRunInput) input: EvalRunInput, @Ctx() ctx: Context) {
    return ctx.services.evals.estimate(ctx.em, requireUser(ctx.principal), input);
  }

  @Extensions(tokenAccess(TokenScope.EVAL))
  @Mutation(() => EvalRun, {
    description:
      'Queues every cell (item × model × repeat) as a durable job; BUDGET_EXCEEDED before anything when the worst case does not fit.',
  })
  startEvalRun(@Arg('input', () => EvalRunInput) input: EvalRunInput, @Ctx() ctx: Context) {
    return ctx.services.evals.start(ctx.em, requireUser(ctx.principal), input);
  }

  @Extensions(tokenAccess(TokenScope.EVAL))
  @Mutation(() => EvalRun, { description: 'Queued cells stop at once, running ones within seconds.' })
  cancelEvalRun(@Arg('id', () => ID) id: string, @Ctx() ctx: Context) {
    return ctx.services.evals.cancel(ctx.em, requireUser(ctx.principal), id);
  }

  @FieldResolver(() => PromptSet)
  async promptSet(@Root() run: EvalRunView, @Ctx() ctx: Context) {
    const set = await ctx.loaders.promptSetByIdLoader.load(run.promptSetId);
    if (!set) throw notFound('Prompt set');
    return set;
  }

  @FieldResolver(() => EvalProgress)
  progress(@Root() run: EvalRunView) {
    return progressOf(run);
  }

  @FieldResolver(() => EvalRun, { nullable: true, description: 'The run this one is compared with (baselineRunId).' })
  async baseline(@Root() run: EvalRunView, @Ctx() ctx: Context) {
    if (!run.baselineRunId) return null;
    const [baseline] = await ctx.services.evals.findByIds(ctx.em, requireUser(ctx.principal), [run.baselineRunId]);
    return baseline ?? null;
  }

  @FieldResolver(() => EvalCellConnection, { description: 'In (model, item position, repeat) order.' })
  cells(@Root() run: EvalRunView, @Args(() => EvalCellArgs) args: EvalCellArgs, @Ctx() ctx: Context) {
    const key = ctx.services.evals.cellPageKey(run.id, args.model, args.failedOnly, args.first, args.after);
    return ctx.services.evals.cellPage(ctx.em, key);
  }
}

@Resolver(() => EvalCell)
export class EvalCellResolver {
  @FieldResolver(() => PromptItem, { description: 'The item as it was when the run started (its assertions: the effective ones).' })
  item(@Root() cell: EvalCellView) {
    return {
      id: cell.itemId,
      createdAt: cell.createdAt,
      position: cell.position,
      prompt: cell.prompt,
      system: cell.system ?? null,
      reference: cell.reference ?? null,
      assertions: cell.assertions,
      tags: [],
    };
  }

  @FieldResolver(() => [AssertionResult])
  assertions(@Root() cell: EvalCellView) {
    return cell.assertionResults ?? [];
  }
}

@Resolver(() => PromptSet)
export class PromptSetRunsResolver {
  @FieldResolver(() => EvalRunConnection, { description: 'Its eval runs, newest first.' })
  runs(@Root() set: PromptSetView, @Args(() => EvalRunPageArgs) { first, after }: EvalRunPageArgs, @Ctx() ctx: Context) {
    return ctx.services.evals.runsOfSet(ctx.em, requireUser(ctx.principal), set.id, first, after);
  }
}

@Resolver(() => EvalRunEvent)
export class EvalRunEventsResolver {
  @Subscription(() => EvalRunEvent, {
    description: "The run's state, then one event per settled cell, then the final one (terminal status), then completes.",
    subscribe: async ({ args, context }) => {
      const ctx = context as Context;
      const principal = requireUser(ctx.principal);
      const [run] = await ctx.services.evals.findByIds(ctx.em, principal, [String(args.runId)]);
      if (!run) throw notFound('Eval run');
      return ctx.services.evals.events(run.id, principal, ctx.streamReady);
    },
  })
  evalRunEvents(@Arg('runId', () => ID) _runId: string, @Root() event: unknown) {
    return event;
  }
}
