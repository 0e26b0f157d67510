/**
 * What an eval run will do and may cost, before anything is written: the
 * validated input, the cells (item × repeat × model, in the order they are
 * queued) and the estimate. Pure: no I/O.
 *
 * Estimates, per call (list prices from `llm/catalog.ts`):
 * - input tokens: the expected count is a quarter of the UTF-8 bytes sent
 *   (the usual 4 bytes per token of English text); the high bound is the
 *   bytes themselves, the budgets' estimator (`usage.service.ts`: a token is
 *   at least one byte);
 * - output tokens high: the run's `maxOutputTokens` (sent to the provider),
 *   else the default cap every call carries (`DEFAULT_MAX_OUTPUT_TOKENS`);
 * - cost low: the expected input, no output; cost high: the high input and
 *   the high output — what `startEvalRun` reserves from the budget.
 * Judge calls are estimated the same way: RUBRIC (one call per cell and
 * RUBRIC assertion; the answer at its high bound in the input) and pairwise
 * (two calls per pair of models per item and repeat, both answers at their
 * high bound in the input).
 */
import { createHash } from 'node:crypto';
import { badInput } from '../../errors';
import { costUsd, findCatalogEntry } from '../../llm/catalog';
import { type ModelId, parseModelId } from '../../llm/model-id';
import { DEFAULT_MAX_OUTPUT_TOKENS } from '../../llm/stream-completion';
import { JUDGE_SYSTEM_PROMPT } from '../judge/judge.service';
import { AssertionKind, type AssertionSpec } from '../prompt-set/assertions';
import type { ItemsToRun } from '../prompt-set/prompt-set.service';

export const MAX_EVAL_MODELS = 8;
export const MAX_REPEATS = 10;
/** Cells of one run (items × models × repeats) at most. */
export const MAX_CELLS = 20_000;
export const MAX_OUTPUT_TOKENS_LIMIT = 32_768;
/** What a RUBRIC grading call and a pairwise judge call may answer. */
export const RUBRIC_MAX_OUTPUT_TOKENS = 512;
export const PAIR_MAX_OUTPUT_TOKENS = 1024;

/** The instructions of a RUBRIC grading call (the rubric and the answer follow in the user turn). */
export const RUBRIC_SYSTEM_PROMPT =
  'You grade one answer against a rubric. Read the rubric and the answer, explain briefly, then end with ' +
  'exactly one verdict line: "VERDICT: PASS" if the answer satisfies the rubric, "VERDICT: FAIL" otherwise.';

export function rubricUserPrompt(rubric: string, answer: string): string {
  return `[Rubric]\n${rubric}\n\n[The Start of the Answer]\n${answer}\n[The End of the Answer]`;
}

export interface EvalRunDraft {
  promptSetId: string;
  models: readonly string[];
  judgeModel?: string | null;
  repeats?: number | null;
  temperature?: number | null;
  maxOutputTokens?: number | null;
  baselineRunId?: string | null;
  reuseAnswers?: boolean | null;
}

export interface EvalRunSettings {
  promptSetId: string;
  models: ModelId[];
  judge: ModelId | null;
  repeats: number;
  temperature: number;
  maxOutputTokens: number | null;
  baselineRunId: string | null;
  reuseAnswers: boolean;
}

/** Checks the draft's own fields (the set, the baseline and the keys are checked against the database by the service). */
export function checkDraft(draft: EvalRunDraft): EvalRunSettings {
  const raw = draft.models ?? [];
  if (raw.length < 1 || raw.length > MAX_EVAL_MODELS) {
    throw badInput(`models: a run takes 1 to ${MAX_EVAL_MODELS} models, got ${raw.length}`, 'models');
  }
  const models = raw.map((m) => parseModelId(m));
  const seen = new Set<string>();
  for (const m of models) {
    const key = `${m.id}@${m.label}`;
    if (seen.has(key)) throw badInput(`models: ${m.id} is listed twice: list each model once`, 'models');
    seen.add(key);
  }
  const judge = draft.judgeModel ? parseModelId(draft.judgeModel) : null;
  const repeats = draft.repeats ?? 1;
  if (!Number.isInteger(repeats) || repeats < 1 || repeats > MAX_REPEATS) {
    throw badInput(`repeats must be an integer from 1 to ${MAX_REPEATS}, got ${repeats}`, 'repeats');
  }
  const temperature = draft.temperature ?? 0;
  if (!Number.isFinite(temperature) || temperature < 0 || temperature > 2) {
    throw badInput(`temperature must be between 0 and 2, got ${temperature}`, 'temperature');
  }
  const maxOutputTokens = draft.maxOutputTokens ?? null;
  if (
    maxOutputTokens !== null &&
    (!Number.isInteger(maxOutputTokens) || maxOutputTokens < 1 || maxOutputTokens > MAX_OUTPUT_TOKENS_LIMIT)
  ) {
    throw badInput(`maxOutputTokens must be an integer from 1 to ${MAX_OUTPUT_TOKENS_LIMIT}, got ${maxOutputTokens}`, 'maxOutputTokens');
  }
  return {
    promptSetId: draft.promptSetId,
    models,
    judge,
    repeats,
    temperature,
    maxOutputTokens,
    baselineRunId: draft.baselineRunId ?? null,
    reuseAnswers: draft.reuseAnswers === true,
  };
}

/** A cell as inserted: its item's snapshot, model and repeat. */
export interface PlannedCell {
  itemId: string;
  position: number;
  prompt: string;
  system: string | null;
  reference: string | null;
  assertions: AssertionSpec[];
  model: string;
  repeat: number;
  /** Order in the run (0 first): cells of one item are queued together, so its pairwise judging can start early. */
  ordinal: number;
}

/** Items × repeats × models, in queue order; BAD_USER_INPUT for an empty set, too many cells, or a RUBRIC without a judge. */
export function planCells(settings: EvalRunSettings, run: ItemsToRun): PlannedCell[] {
  if (run.items.length === 0) throw badInput('The prompt set has no items: add items before running it', 'promptSetId');
  const total = run.items.length * settings.models.length * settings.repeats;
  if (total > MAX_CELLS) {
    throw badInput(
      `A run holds at most ${MAX_CELLS.toLocaleString('en-US')} cells (items × models × repeats), ` +
        `this one ${total.toLocaleString('en-US')}: ` +
        'use fewer repeats or models, or a smaller set',
      'models',
    );
  }
  if (!settings.judge) {
    const rubric = run.items.find((i) => i.effectiveAssertions.some((a) => a.kind === AssertionKind.RUBRIC));
    if (rubric) {
      throw badInput(`Item ${rubric.position} has a RUBRIC assertion, which a judge model grades: give the run a judgeModel`, 'judgeModel');
    }
  }
  const cells: PlannedCell[] = [];
  for (const item of run.items) {
    for (let repeat = 1; repeat <= settings.repeats; repeat++) {
      for (const model of settings.models) {
        cells.push({
          itemId: item.id,
          position: item.position,
          prompt: item.prompt,
          system: item.system,
          reference: item.reference,
          assertions: item.effectiveAssertions,
          model: modelKey(model),
          repeat,
          ordinal: cells.length,
        });
      }
    }
  }
  return cells;
}

/** How a run names a model: `provider:name`, with `@label` when not the default key. */
export function modelKey(model: ModelId): string {
  return model.label === 'default' ? model.id : `${model.id}@${model.label}`;
}

/** The cell's idempotency key: one per (run, item, model, repeat), opaque, sent to the provider. */
export function idempotencyKey(runId: string, cell: Pick<PlannedCell, 'itemId' | 'model' | 'repeat'>): string {
  return `evc_${createHash('sha256').update(`${runId}\n${cell.itemId}\n${cell.model}\n${cell.repeat}`).digest('hex').slice(0, 40)}`;
}

/**
 * What `reuseAnswers` matches: model, prompt, system prompt and max tokens,
 * for temperature 0 only (null otherwise: a sampled answer is not reused).
 */
export function reuseKey(settings: Pick<EvalRunSettings, 'temperature' | 'maxOutputTokens'>, cell: PlannedCell): string | null {
  if (settings.temperature !== 0) return null;
  const parts = JSON.stringify([cell.model, cell.system, cell.prompt, settings.maxOutputTokens]);
  return createHash('sha256').update(parts).digest('hex');
}

// ─── Estimate ──────────────────────────────────────────────────────────────────

export interface ModelEstimate {
  model: string;
  calls: number;
  inputTokens: number;
  inputTokensHigh: number;
  outputTokensHigh: number;
  costUsdLow: number;
  costUsdHigh: number;
  /** False when the catalog has no price for the model (its costs then count as 0 here). */
  priced: boolean;
}

export interface RunEstimate {
  calls: number;
  perModel: ModelEstimate[];
  /** The judge model's calls (RUBRIC grading and pairwise verdicts); null without a judge. */
  judge: ModelEstimate | null;
  costUsdLow: number;
  costUsdHigh: number;
  /** The reservation: costUsdHigh, or null when a model's price is unknown. */
  worstCaseUsd: number | null;
  /** Pairwise judge calls of the run (2 per pair of models per item and repeat). */
  pairJudgeCalls: number;
}

const bytes = (text: string | null | undefined) => (text ? Buffer.byteLength(text, 'utf8') : 0);

export function estimate(settings: EvalRunSettings, cells: readonly PlannedCell[]): RunEstimate {
  const outputHigh = settings.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS;
  const perModel = settings.models.map((model) => {
    const mine = cells.filter((c) => c.model === modelKey(model));
    const sent = mine.map((c) => bytes(c.prompt) + bytes(c.system));
    return price(model, modelKey(model), sent, outputHigh);
  });
  let judge: ModelEstimate | null = null;
  let pairJudgeCalls = 0;
  if (settings.judge) {
    const sent: number[] = [];
    // RUBRIC: one call per cell and rubric, the answer at its high bound (a token is at least a byte: bytes ≥ tokens).
    for (const cell of cells) {
      for (const a of cell.assertions) {
        if (a.kind === AssertionKind.RUBRIC)
          sent.push(bytes(RUBRIC_SYSTEM_PROMPT) + bytes(rubricUserPrompt(a.value ?? '', '')) + outputHigh * 4);
      }
    }
    const rubricCalls = sent.length;
    if (settings.models.length >= 2) {
      const pairs = (settings.models.length * (settings.models.length - 1)) / 2;
      const seen = new Set<string>();
      for (const cell of cells) {
        const key = `${cell.itemId}\n${cell.repeat}`;
        if (seen.has(key)) continue;
        seen.add(key);
        for (let p = 0; p < pairs * 2; p++) sent.push(bytes(JUDGE_SYSTEM_PROMPT) + bytes(cell.prompt) + 200 + 2 * outputHigh * 4);
      }
      pairJudgeCalls = sent.length - rubricCalls;
    }
    if (sent.length) {
      const rubricOut = Array.from({ length: rubricCalls }, () => RUBRIC_MAX_OUTPUT_TOKENS);
      const pairOut = Array.from({ length: pairJudgeCalls }, () => PAIR_MAX_OUTPUT_TOKENS);
      judge = price(settings.judge, modelKey(settings.judge), sent, [...rubricOut, ...pairOut]);
    }
  }
  const all = judge ? [...perModel, judge] : perModel;
  const costUsdLow = sum(all.map((m) => m.costUsdLow));
  const costUsdHigh = sum(all.map((m) => m.costUsdHigh));
  return {
    calls: sum(all.map((m) => m.calls)),
    perModel,
    judge,
    costUsdLow,
    costUsdHigh,
    worstCaseUsd: all.every((m) => m.priced) ? costUsdHigh : null,
    pairJudgeCalls,
  };
}

/** One model's calls: `sentBytes` per call, output bound per call (one number for all, or one per call). */
function price(model: ModelId, name: string, sentBytes: readonly number[], outputHigh: number | readonly number[]): ModelEstimate {
  const entry = findCatalogEntry(model.provider, model.name);
  const outputs = typeof outputHigh === 'number' ? sentBytes.map(() => outputHigh) : outputHigh;
  const inputHigh = sum(sentBytes);
  const inputTokens = sum(sentBytes.map((b) => Math.ceil(b / 4)));
  const outputTokensHigh = sum(outputs);
  const low = costUsd(entry, inputTokens, 0);
  const high = costUsd(entry, inputHigh, outputTokensHigh);
  return {
    model: name,
    calls: sentBytes.length,
    inputTokens,
    inputTokensHigh: inputHigh,
    outputTokensHigh,
    costUsdLow: low ?? 0,
    costUsdHigh: high ?? 0,
    priced: low !== null && high !== null,
  };
}

/** A cell's worst case (what its settle takes off the run's reservation). */
export function cellWorstCaseUsd(model: ModelId, sentBytes: number, maxOutputTokens: number | null): number {
  return costUsd(findCatalogEntry(model.provider, model.name), sentBytes, maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS) ?? 0;
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
