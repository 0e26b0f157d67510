/**
 * What people decide with: a run's results (`EvalRun.results`), its diff against the baseline
 * (`EvalRun.diff`) and its export (`exportEvalRun`), computed from the run's cells and verdicts
 * (`EvalService.resultRows`, owner-checked) by the pure functions of `eval-results.ts` (Wilson intervals,
 * percentiles, cost per pass, the pairwise rating through the arena statistics) and `eval-export.ts`.
 * Computed once per run and request, whichever of the three asks first.
 */
import { Arg, Ctx, Extensions, Field, FieldResolver, Float, ID, Int, ObjectType, Query, Resolver, Root } from 'type-graphql';
import { type Principal, requireUser, TokenScope } from '../../auth/principal';
import { tokenAccess } from '../../auth/token-scopes';
import { badInput } from '../../errors';
import type { Context } from '../common/context';
import { ExportFormat } from '../conversation/export.service';
import { exportRunCsv, exportRunJson } from './eval-export';
import { computeResults, diffRuns } from './eval-results';
import type { CellRow, EvalModelDelta as DeltaData, EvalResults, EvalRunDiffResult } from './eval-results.types';
import type { EvalRunView } from './eval.service';
import { EvalRun } from './eval.types';

@ObjectType('AssertionCount', { simpleResolvers: true })
export class AssertionCountType {
  @Field(() => String) kind!: string;
  @Field(() => Int) passed!: number;
  @Field(() => Int) total!: number;
}

@ObjectType('EvalModelResult', { simpleResolvers: true })
export class EvalModelResult {
  @Field(() => String) model!: string;
  @Field(() => Int) cells!: number;
  @Field(() => Int, { description: 'Cells that FAILED (provider errors): left out of the pass rate.' }) errors!: number;
  @Field(() => Float, { description: 'Passes over the completed, scored cells.' }) passRate!: number;
  @Field(() => Float, { description: '95% Wilson score interval.' }) passRateLow!: number;
  @Field(() => Float) passRateHigh!: number;
  @Field(() => [AssertionCountType], { description: 'Per assertion kind: passed / total.' }) assertions!: AssertionCountType[];
  @Field(() => Float, { nullable: true, description: 'Pairwise judge rating (arena statistics, bootstrap interval); null without.' })
  rating!: number | null;
  @Field(() => Float, { nullable: true }) ratingLow!: number | null;
  @Field(() => Float, { nullable: true }) ratingHigh!: number | null;
  @Field(() => Int, { nullable: true }) rank!: number | null;
  @Field(() => Int, { nullable: true }) rankLow!: number | null;
  @Field(() => Int, { nullable: true }) rankHigh!: number | null;
  @Field(() => Int, { nullable: true, description: 'Nearest-rank percentiles of the completed cells.' }) latencyP50Ms!: number | null;
  @Field(() => Int, { nullable: true }) latencyP95Ms!: number | null;
  @Field(() => Int, { nullable: true }) ttftP50Ms!: number | null;
  @Field(() => Int) inputTokens!: number;
  @Field(() => Int) outputTokens!: number;
  @Field(() => Float, { description: 'Every call of the model in the run (reused cells: $0).' }) costUsd!: number;
  @Field(() => Float, { nullable: true, description: 'costUsd over passing answers; null without a pass.' }) costPerPassUsd!: number | null;
  @Field(() => Int, { description: 'Cells served from an earlier identical answer (reuseAnswers).' }) reusedCells!: number;
}

@ObjectType('EvalModelDelta', { simpleResolvers: true })
export class EvalModelDelta {
  @Field(() => String) model!: string;
  @Field(() => Float) passRateDelta!: number;
  @Field(() => Float, { description: "95% interval of the difference (Newcombe's hybrid score)." }) passRateDeltaLow!: number;
  @Field(() => Float) passRateDeltaHigh!: number;
  @Field(() => Boolean, { description: 'The interval leaves out 0.' }) passRateSignificant!: boolean;
  @Field(() => Float, { nullable: true }) ratingDelta!: number | null;
  @Field(() => Boolean, { nullable: true, description: 'Bootstrap interval of the difference leaves out 0; null without ratings.' })
  ratingSignificant!: boolean | null;
  @Field(() => Int, { description: 'Cells compared (same item, repeat and prompt in both runs).' }) matched!: number;
  @Field(() => Int) regressions!: number;
  @Field(() => Int) improvements!: number;
}

@ObjectType('EvalItemChange', { simpleResolvers: true })
export class EvalItemChange {
  @Field(() => String) model!: string;
  @Field(() => ID) itemId!: string;
  @Field(() => Int) position!: number;
  @Field(() => Int) repeat!: number;
}

@ObjectType('EvalRunDiff')
export class EvalRunDiff {
  @Field(() => EvalRun) baseline!: EvalRunView;
  @Field(() => Int, { description: 'Cells (item × repeat × model) that passed in the baseline and fail now.' }) regressions!: number;
  @Field(() => Int) improvements!: number;
  @Field(() => [EvalItemChange]) regressed!: EvalItemChange[];
  @Field(() => [EvalItemChange]) improved!: EvalItemChange[];
  @Field(() => Int, { description: "Cells not compared: the item's prompt changed between the runs." }) promptChanged!: number;
  @Field(() => [EvalModelDelta]) perModel!: DeltaData[];
}

interface Computed {
  cells: CellRow[];
  results: EvalResults;
}

/** One computation per run and request. */
function computed(ctx: Context, principal: Principal, runId: string): Promise<Computed & { run: EvalRunView }> {
  const holder = ctx as unknown as { evalResults?: Map<string, Promise<Computed & { run: EvalRunView }>> };
  holder.evalResults ??= new Map();
  let entry = holder.evalResults.get(runId);
  if (!entry) {
    entry = ctx.services.evals.resultRows(ctx.em, principal, runId).then(({ run, cells, verdicts }) => ({
      run,
      cells,
      results: computeResults(run.models, cells, verdicts),
    }));
    holder.evalResults.set(runId, entry);
  }
  return entry;
}

async function diffOf(
  ctx: Context,
  principal: Principal,
  run: EvalRunView,
): Promise<(EvalRunDiffResult & { baseline: EvalRunView }) | null> {
  if (!run.baselineRunId) return null;
  const [current, base] = await Promise.all([computed(ctx, principal, run.id), computed(ctx, principal, run.baselineRunId)]);
  const d = diffRuns(
    { models: current.run.models, cells: current.cells, results: current.results },
    { models: base.run.models, cells: base.cells, results: base.results },
  );
  return { ...d, baseline: base.run };
}

@Resolver(() => EvalRun)
export class EvalResultsResolver {
  @FieldResolver(() => [EvalModelResult], { description: 'Per model, in the run order (finished cells; recomputed while it runs).' })
  async results(@Root() run: EvalRunView, @Ctx() ctx: Context): Promise<EvalModelResult[]> {
    return (await computed(ctx, requireUser(ctx.principal), run.id)).results.perModel as unknown as EvalModelResult[];
  }

  @FieldResolver(() => EvalRunDiff, { nullable: true, description: 'Against baselineRunId: items that went from pass to fail and back.' })
  async diff(@Root() run: EvalRunView, @Ctx() ctx: Context): Promise<EvalRunDiff | null> {
    return (await diffOf(ctx, requireUser(ctx.principal), run)) as unknown as EvalRunDiff | null;
  }

  @Query(() => String, {
    nullable: true,
    description:
      'A run as a file: JSON (the run, per-model results, the diff, every cell with its assertions) or CSV (one row per cell). ' +
      "null for an unknown id or another user's run.",
  })
  @Extensions(tokenAccess(TokenScope.READ))
  async exportEvalRun(
    @Arg('id', () => ID) id: string,
    @Arg('format', () => ExportFormat, { nullable: true, defaultValue: ExportFormat.JSON }) format: ExportFormat | null,
    @Ctx() ctx: Context,
  ): Promise<string | null> {
    const principal = requireUser(ctx.principal);
    if (format === ExportFormat.MARKDOWN) throw badInput('exportEvalRun answers JSON or CSV', 'format');
    const [run] = await ctx.services.evals.findByIds(ctx.em, principal, [id]);
    if (!run) return null;
    const { cells, results } = await computed(ctx, principal, run.id);
    if (format === ExportFormat.CSV) return exportRunCsv({ id: run.id, models: run.models }, cells);
    const diff = await diffOf(ctx, principal, run);
    return exportRunJson({ ...run, status: String(run.status) }, cells, results, diff);
  }
}
