/**
 * The eval API's GraphQL types (`../shared/API.md`, "Evals"), over the plain
 * rows of `eval.service.ts`. `results`, `diff` and `exportEvalRun` are the
 * results module's.
 */
import { Field, Float, ID, InputType, Int, ObjectType, registerEnumType } from 'type-graphql';
import { Connection } from '../common/connection';
import { AssertionKind } from '../prompt-set/assertions';
import { EvalCellStatus, EvalRunStatus } from './eval.entity';

registerEnumType(EvalRunStatus, { name: 'EvalRunStatus' });
registerEnumType(EvalCellStatus, { name: 'EvalCellStatus' });

@InputType()
export class EvalRunInput {
  @Field(() => ID)
  promptSetId!: string;

  @Field(() => [String], { description: '1 to 8 distinct model ids (provider:name[@label]).' })
  models!: string[];

  @Field(() => String, { nullable: true, description: 'Needed for RUBRIC assertions and for the pairwise rating (with 2 or more models).' })
  judgeModel?: string | null;

  @Field(() => Int, { nullable: true, defaultValue: 1, description: '1 to 10.' })
  repeats?: number | null;

  @Field(() => Float, { nullable: true, defaultValue: 0, description: '0 to 2.' })
  temperature?: number | null;

  @Field(() => Int, { nullable: true, description: "Each answer's token cap (default 4096); bounds the worst-case cost." })
  maxOutputTokens?: number | null;

  @Field(() => ID, { nullable: true, description: 'An earlier run of the same set to compare with.' })
  baselineRunId?: string | null;

  @Field(() => Boolean, {
    nullable: true,
    defaultValue: false,
    description:
      'Serve a cell from an identical earlier COMPLETED cell of yours ' +
      '(same model, prompt, system, temperature 0, max tokens): $0, no call.',
  })
  reuseAnswers?: boolean | null;
}

@ObjectType({ simpleResolvers: true })
export class EvalModelEstimate {
  @Field(() => String)
  model!: string;

  @Field(() => Int)
  calls!: number;

  @Field(() => Int, { description: 'Expected: a quarter of the UTF-8 bytes sent.' })
  inputTokens!: number;

  @Field(() => Int, { description: 'High bound: the UTF-8 bytes sent (what budgets reserve).' })
  inputTokensHigh!: number;

  @Field(() => Int)
  outputTokensHigh!: number;

  @Field(() => Float)
  costUsdLow!: number;

  @Field(() => Float)
  costUsdHigh!: number;

  @Field(() => Boolean, { description: 'False when the catalog has no price for the model (its costs count as 0 here).' })
  priced!: boolean;
}

@ObjectType({ simpleResolvers: true })
export class EvalEstimate {
  @Field(() => Int)
  calls!: number;

  @Field(() => [EvalModelEstimate])
  perModel!: EvalModelEstimate[];

  @Field(() => EvalModelEstimate, { nullable: true, description: "The judge model's calls (RUBRIC grading and pairwise verdicts)." })
  judge!: EvalModelEstimate | null;

  @Field(() => Float)
  costUsdLow!: number;

  @Field(() => Float, { description: 'The worst case: what startEvalRun reserves from your budget.' })
  costUsdHigh!: number;

  @Field(() => Float, { nullable: true, description: "What is left of your budget (and the token's cap); null: unlimited." })
  budgetLeftUsd!: number | null;
}

@ObjectType({ simpleResolvers: true })
export class EvalProgress {
  @Field(() => Int)
  cellsTotal!: number;

  @Field(() => Int, { description: 'Cells settled (COMPLETED or FAILED).' })
  cellsDone!: number;

  @Field(() => Int)
  cellsFailed!: number;

  @Field(() => Int)
  judgeCallsDone!: number;

  @Field(() => Int)
  judgeCallsTotal!: number;

  @Field(() => Float)
  spentUsd!: number;

  @Field(() => Int, { nullable: true })
  etaSeconds!: number | null;
}

@ObjectType({ simpleResolvers: true })
export class AssertionResult {
  @Field(() => AssertionKind)
  kind!: AssertionKind;

  @Field(() => Boolean)
  passed!: boolean;

  @Field(() => String, { nullable: true })
  reason!: string | null;

  @Field(() => String, { description: 'pass, fail, refused, unparseable (a RUBRIC judge) or error.' })
  outcome!: string;
}

@ObjectType()
export class EvalCell {
  @Field(() => ID)
  id!: string;

  @Field(() => String)
  model!: string;

  @Field(() => Int)
  repeat!: number;

  @Field(() => EvalCellStatus)
  status!: EvalCellStatus;

  @Field(() => String, { nullable: true })
  content!: string | null;

  @Field(() => Int, { nullable: true })
  latencyMs!: number | null;

  @Field(() => Int, { nullable: true })
  ttftMs!: number | null;

  @Field(() => Int, { nullable: true })
  inputTokens!: number | null;

  @Field(() => Int, { nullable: true })
  outputTokens!: number | null;

  @Field(() => Float, { nullable: true, description: "The answer's cost (0 when reused)." })
  costUsd!: number | null;

  @Field(() => Float, { nullable: true, description: 'What grading its RUBRIC assertions cost.' })
  judgeCostUsd!: number | null;

  @Field(() => Boolean)
  reused!: boolean;

  @Field(() => Boolean, { nullable: true })
  passed!: boolean | null;

  @Field(() => String, { nullable: true })
  error!: string | null;

  @Field(() => Int, { description: 'Provider attempts (a cell re-queued after a 429 or a crash counts each).' })
  attempts!: number;
}

@ObjectType({ simpleResolvers: true })
export class EvalCellConnection extends Connection(EvalCell) {}

@ObjectType()
export class EvalRun {
  @Field(() => ID)
  id!: string;

  @Field(() => EvalRunStatus)
  status!: EvalRunStatus;

  @Field(() => [String])
  models!: string[];

  @Field(() => String, { nullable: true })
  judgeModel!: string | null;

  @Field(() => Int)
  repeats!: number;

  @Field(() => Float)
  temperature!: number;

  @Field(() => Int, { nullable: true })
  maxOutputTokens!: number | null;

  @Field(() => Boolean)
  reuseAnswers!: boolean;

  @Field(() => Date)
  createdAt!: Date;

  @Field(() => Date, { nullable: true })
  startedAt!: Date | null;

  @Field(() => Date, { nullable: true })
  finishedAt!: Date | null;
}

@ObjectType({ simpleResolvers: true })
export class EvalRunConnection extends Connection(EvalRun) {}

@ObjectType()
export class EvalRunEvent {
  @Field(() => ID)
  runId!: string;

  @Field(() => EvalCell, { nullable: true, description: 'The cell that settled (null for the first event and status changes).' })
  cell!: unknown;

  @Field(() => EvalProgress)
  progress!: EvalProgress;

  @Field(() => EvalRunStatus)
  status!: EvalRunStatus;
}
