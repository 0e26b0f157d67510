/**
 * Eval runs, their cells and pairwise verdicts (see the migration
 * `Migration20261207120000_eval_runs` for the lifecycle rules, and
 * `eval-worker.ts` for how cells run). Written mostly with conditional SQL
 * (claims, settles, counters); these entities are the tables' one definition.
 */
import { ArrayType, Entity, Index, ManyToOne, Property, type Ref, Unique } from '@mikro-orm/core';
import { BaseEntity } from '../../db/base.entity';
import type { AssertionSpec } from '../prompt-set/assertions';
import { PromptSet } from '../prompt-set/prompt-set.entity';
import { User } from '../user/user.entity';

export enum EvalRunStatus {
  QUEUED = 'QUEUED',
  RUNNING = 'RUNNING',
  COMPLETED = 'COMPLETED',
  CANCELLED = 'CANCELLED',
  FAILED = 'FAILED',
}

export enum EvalCellStatus {
  QUEUED = 'QUEUED',
  RUNNING = 'RUNNING',
  COMPLETED = 'COMPLETED',
  FAILED = 'FAILED',
  CANCELLED = 'CANCELLED',
}

/** A stored assertion result of a cell (`assertion_results`). */
export interface StoredAssertionResult {
  kind: AssertionSpec['kind'];
  passed: boolean;
  /** pass, fail, refused, unparseable, error (see `evaluate-assertions.ts`). */
  outcome: string;
  reason: string;
}

@Entity({ tableName: 'eval_runs' })
@Index({
  name: 'eval_runs_owner_created_idx',
  expression: 'create index "eval_runs_owner_created_idx" on "eval_runs" ("owner_id", "created_at" desc, "id" desc)',
})
@Index({
  name: 'eval_runs_set_created_idx',
  expression: 'create index "eval_runs_set_created_idx" on "eval_runs" ("prompt_set_id", "created_at" desc, "id" desc)',
})
export class EvalRun extends BaseEntity<
  'reuseAnswers' | 'cellsTotal' | 'cellsDone' | 'cellsFailed' | 'judgeCallsTotal' | 'judgeCallsDone' | 'spentUsd'
> {
  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  owner!: Ref<User>;

  /** Deleting the set deletes its runs (see the migration). */
  @ManyToOne(() => PromptSet, { ref: true, deleteRule: 'cascade' })
  promptSet!: Ref<PromptSet>;

  /** The personal API token that started the run (null: a signed-in session): its cells count against the token's cap. */
  @Property({ type: 'uuid', nullable: true })
  apiTokenId?: string | null;

  @Property({ type: ArrayType, columnType: 'text[]' })
  models!: string[];

  @Property({ type: 'text', nullable: true })
  judgeModel?: string | null;

  @Property({ type: 'integer' })
  repeats!: number;

  @Property({ type: 'double' })
  temperature!: number;

  @Property({ type: 'integer', nullable: true })
  maxOutputTokens?: number | null;

  @ManyToOne(() => EvalRun, { ref: true, nullable: true, deleteRule: 'set null' })
  baselineRun?: Ref<EvalRun> | null;

  @Property({ type: 'boolean', default: false })
  reuseAnswers: boolean = false;

  @Property({ type: 'text' })
  status!: EvalRunStatus;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  startedAt?: Date | null;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  finishedAt?: Date | null;

  @Property({ type: 'integer', default: 0 })
  cellsTotal: number = 0;

  @Property({ type: 'integer', default: 0 })
  cellsDone: number = 0;

  @Property({ type: 'integer', default: 0 })
  cellsFailed: number = 0;

  @Property({ type: 'integer', default: 0 })
  judgeCallsTotal: number = 0;

  @Property({ type: 'integer', default: 0 })
  judgeCallsDone: number = 0;

  @Property({ type: 'double', default: 0 })
  spentUsd: number = 0;
}

@Entity({ tableName: 'eval_cells' })
@Unique({ name: 'eval_cells_cell_key', properties: ['run', 'itemId', 'model', 'repeat'] })
@Unique({ name: 'eval_cells_idempotency_key_key', properties: ['idempotencyKey'] })
@Index({ name: 'eval_cells_page_idx', properties: ['run', 'model', 'position', 'repeat', 'id'] })
@Index({
  name: 'eval_cells_failed_idx',
  expression:
    `create index "eval_cells_failed_idx" on "eval_cells" ("run_id", "model", "position", "repeat", "id") ` + `where "status" = 'FAILED'`,
})
@Index({
  name: 'eval_cells_running_idx',
  expression: `create index "eval_cells_running_idx" on "eval_cells" ("owner_id", "heartbeat_at") where "status" = 'RUNNING'`,
})
@Index({
  name: 'eval_cells_reserved_idx',
  expression:
    `create index "eval_cells_reserved_idx" on "eval_cells" ("heartbeat_at") ` + `where "status" = 'QUEUED' and "lease_owner" is not null`,
})
@Index({
  name: 'eval_cells_reuse_idx',
  expression:
    `create index "eval_cells_reuse_idx" on "eval_cells" ("owner_id", "reuse_key") ` +
    `where "status" = 'COMPLETED' and "reuse_key" is not null`,
})
@Index({
  name: 'eval_cells_spend_idx',
  expression:
    `create index "eval_cells_spend_idx" on "eval_cells" ("owner_id", "finished_at") ` +
    `where "cost_usd" is not null or "judge_cost_usd" is not null`,
})
export class EvalCell extends BaseEntity {
  @ManyToOne(() => EvalRun, { ref: true, deleteRule: 'cascade' })
  run!: Ref<EvalRun>;

  @Property({ type: 'uuid' })
  ownerId!: string;

  /** The prompt item this cell snapshots (not a foreign key: the item may change or go; the cell keeps its copy). */
  @Property({ type: 'uuid' })
  itemId!: string;

  @Property({ type: 'integer' })
  position!: number;

  @Property({ type: 'text' })
  prompt!: string;

  @Property({ type: 'text', nullable: true })
  system?: string | null;

  @Property({ type: 'text', nullable: true })
  reference?: string | null;

  /** The effective assertions (the set's defaults, then the item's own) when the run started. */
  @Property({ type: 'json', columnType: 'jsonb' })
  assertions!: AssertionSpec[];

  @Property({ type: 'text' })
  model!: string;

  @Property({ type: 'integer' })
  repeat!: number;

  @Property({ type: 'text' })
  status!: EvalCellStatus;

  @Property({ type: 'text', nullable: true })
  content?: string | null;

  @Property({ type: 'integer', nullable: true })
  latencyMs?: number | null;

  @Property({ type: 'integer', nullable: true })
  ttftMs?: number | null;

  @Property({ type: 'integer', nullable: true })
  inputTokens?: number | null;

  @Property({ type: 'integer', nullable: true })
  outputTokens?: number | null;

  @Property({ type: 'double', nullable: true })
  costUsd?: number | null;

  /** What the RUBRIC judge calls of this cell cost. */
  @Property({ type: 'double', nullable: true })
  judgeCostUsd?: number | null;

  @Property({ type: 'boolean', default: false })
  reused: boolean = false;

  @Property({ type: 'boolean', nullable: true })
  passed?: boolean | null;

  @Property({ type: 'json', columnType: 'jsonb', nullable: true })
  assertionResults?: StoredAssertionResult[] | null;

  @Property({ type: 'text', nullable: true })
  error?: string | null;

  @Property({ type: 'integer', default: 0 })
  attempts: number = 0;

  /** Sent to the provider as `Idempotency-Key`; one per (run, item, model, repeat). */
  @Property({ type: 'text' })
  idempotencyKey!: string;

  /** What `reuseAnswers` matches on (model, prompt, system, max tokens; temperature 0 only). */
  @Property({ type: 'text', nullable: true })
  reuseKey?: string | null;

  /** The instance running the cell and its last heartbeat (database time). */
  @Property({ type: 'text', nullable: true })
  leaseOwner?: string | null;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  heartbeatAt?: Date | null;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  startedAt?: Date | null;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  finishedAt?: Date | null;
}

@Entity({ tableName: 'eval_pair_verdicts' })
@Unique({ name: 'eval_pair_verdicts_pair_key', properties: ['run', 'itemId', 'repeat', 'modelA', 'modelB'] })
@Index({
  name: 'eval_pair_verdicts_running_idx',
  expression:
    `create index "eval_pair_verdicts_running_idx" on "eval_pair_verdicts" ("owner_id", "heartbeat_at") ` + `where "status" = 'RUNNING'`,
})
@Index({
  name: 'eval_pair_verdicts_spend_idx',
  expression:
    `create index "eval_pair_verdicts_spend_idx" on "eval_pair_verdicts" ("owner_id", "finished_at") ` + `where "cost_usd" is not null`,
})
export class EvalPairVerdict extends BaseEntity {
  @ManyToOne(() => EvalRun, { ref: true, deleteRule: 'cascade' })
  run!: Ref<EvalRun>;

  @Property({ type: 'uuid' })
  ownerId!: string;

  @Property({ type: 'uuid' })
  itemId!: string;

  @Property({ type: 'integer' })
  repeat!: number;

  @Property({ type: 'text' })
  modelA!: string;

  @Property({ type: 'text' })
  modelB!: string;

  /** The judge's verdict with model A shown first ('A', 'B', 'TIE'), then with model B first (in the shown labels). */
  @Property({ type: 'text', nullable: true })
  verdictAb?: string | null;

  @Property({ type: 'text', nullable: true })
  verdictBa?: string | null;

  /** Both orders agreeing: the winner in model terms; disagreement: TIE; null when judging failed. */
  @Property({ type: 'text', nullable: true })
  outcome?: 'A' | 'B' | 'TIE' | null;

  @Property({ type: 'text', default: 'QUEUED' })
  status: string = 'QUEUED';

  @Property({ type: 'text', nullable: true })
  error?: string | null;

  @Property({ type: 'double', nullable: true })
  costUsd?: number | null;

  @Property({ type: 'integer', default: 0 })
  attempts: number = 0;

  /** Leased like a cell while its judge calls run. */
  @Property({ type: 'text', nullable: true })
  leaseOwner?: string | null;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  heartbeatAt?: Date | null;

  @Property({ type: 'Date', columnType: 'timestamptz(3)', nullable: true })
  finishedAt?: Date | null;
}
