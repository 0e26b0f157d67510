/**
 * `exportEvalRun` as JSON or CSV, from the run's meta, its cells and its
 * results (`eval-results.ts`). Pure; the documents are stable: keys and
 * columns in a fixed order, cells ordered by item position, then model (run
 * order), then repeat. A reused cell's cost is exported as 0, as the results
 * count it (nothing was spent).
 *
 * CSV: RFC 4180 — comma-separated, CRLF line ends, a header row; a field with
 * a comma, a double quote, CR or LF is enclosed in double quotes and its
 * quotes doubled. Text fields are CSV-injection safe: one starting with
 * `=`, `+`, `-`, `@`, tab, CR or LF gets a leading single quote (OWASP), so a
 * spreadsheet shows it as text instead of evaluating it. Numbers and booleans
 * are written by the exporter and never prefixed; empty field = null.
 */
import { csvText, csvValue } from '../common/csv';
import type { CellRow, EvalModelResult, EvalResults, EvalRunDiffResult, EvalRunMeta } from './eval-results.types';

export const EVAL_EXPORT_FORMAT = 'llmselect.eval-run';
export const EVAL_EXPORT_VERSION = 1;

/** CSV columns, in order. */
export const EVAL_CSV_COLUMNS = [
  'run_id',
  'position',
  'item_id',
  'model',
  'repeat',
  'status',
  'passed',
  'assertions_passed',
  'assertions_total',
  'failed_assertions',
  'latency_ms',
  'ttft_ms',
  'input_tokens',
  'output_tokens',
  'cost_usd',
  'reused',
  'error',
  'prompt',
  'content',
] as const;

/** Cells in export order: position, then the run's model order (unknown models last, by name), then repeat. */
export function orderCells(models: readonly string[], cells: readonly CellRow[]): CellRow[] {
  const order = new Map(models.map((m, i) => [m, i]));
  const rank = (m: string) => order.get(m) ?? models.length;
  return [...cells].sort(
    (x, y) =>
      x.position - y.position ||
      (x.itemId < y.itemId ? -1 : x.itemId > y.itemId ? 1 : 0) ||
      rank(x.model) - rank(y.model) ||
      (x.model < y.model ? -1 : x.model > y.model ? 1 : 0) ||
      x.repeat - y.repeat,
  );
}

function cost(c: CellRow): number | null {
  return c.reused ? 0 : c.costUsd;
}

/** One row per cell, header first; see EVAL_CSV_COLUMNS and the module comment. */
export function exportRunCsv(meta: Pick<EvalRunMeta, 'id' | 'models'>, cells: readonly CellRow[]): string {
  const lines = [EVAL_CSV_COLUMNS.join(',')];
  for (const c of orderCells(meta.models, cells)) {
    const failed = c.assertionResults.filter((a) => !a.passed).map((a) => (a.reason ? `${a.kind}: ${a.reason}` : a.kind));
    lines.push(
      [
        csvText(meta.id),
        csvValue(c.position),
        csvText(c.itemId),
        csvText(c.model),
        csvValue(c.repeat),
        csvText(c.status),
        csvValue(c.passed),
        csvValue(c.assertionResults.filter((a) => a.passed).length),
        csvValue(c.assertionResults.length),
        csvText(failed.length === 0 ? null : failed.join('; ')),
        csvValue(c.latencyMs),
        csvValue(c.ttftMs),
        csvValue(c.inputTokens),
        csvValue(c.outputTokens),
        csvValue(cost(c)),
        csvValue(c.reused),
        csvText(c.error),
        csvText(c.prompt),
        csvText(c.content),
      ].join(','),
    );
  }
  return lines.join('\r\n') + '\r\n';
}

function iso(d: Date | string | null | undefined): string | null {
  if (d === null || d === undefined) return null;
  return typeof d === 'string' ? d : d.toISOString();
}

function finite(v: number | null | undefined): number | null {
  return v === null || v === undefined || !Number.isFinite(v) ? null : v;
}

/** A model's results with keys in a fixed order (the bootstrap draws are not exported). */
function resultJson(r: EvalModelResult): Record<string, unknown> {
  return {
    model: r.model,
    cells: r.cells,
    completed: r.completed,
    errors: r.errors,
    scored: r.scored,
    passes: r.passes,
    passRate: r.passRate,
    passRateLow: r.passRateLow,
    passRateHigh: r.passRateHigh,
    assertions: r.assertions.map((a) => ({ kind: a.kind, passed: a.passed, total: a.total })),
    latencyP50Ms: r.latencyP50Ms,
    latencyP95Ms: r.latencyP95Ms,
    ttftP50Ms: r.ttftP50Ms,
    inputTokens: r.inputTokens,
    outputTokens: r.outputTokens,
    costUsd: r.costUsd,
    costPerPassUsd: finite(r.costPerPassUsd),
    reusedCells: r.reusedCells,
    rating: finite(r.rating),
    ratingLow: finite(r.ratingLow),
    ratingHigh: finite(r.ratingHigh),
    rank: r.rank,
    rankLow: r.rankLow,
    rankHigh: r.rankHigh,
    battles: r.battles,
    wins: r.wins,
    losses: r.losses,
    ties: r.ties,
  };
}

/**
 * The run as one JSON document (2-space indented):
 * `{ format, version, run, results, rating, diff, cells }` — see NOTES-eval-results.md.
 */
export function exportRunJson(
  meta: EvalRunMeta,
  cells: readonly CellRow[],
  results: EvalResults,
  diff: EvalRunDiffResult | null = null,
): string {
  const doc = {
    format: EVAL_EXPORT_FORMAT,
    version: EVAL_EXPORT_VERSION,
    run: {
      id: meta.id,
      status: meta.status,
      promptSetId: meta.promptSetId,
      promptSetName: meta.promptSetName ?? null,
      models: [...meta.models],
      judgeModel: meta.judgeModel ?? null,
      repeats: meta.repeats,
      temperature: meta.temperature ?? null,
      maxOutputTokens: meta.maxOutputTokens ?? null,
      baselineRunId: meta.baselineRunId ?? null,
      createdAt: iso(meta.createdAt),
      startedAt: iso(meta.startedAt),
      finishedAt: iso(meta.finishedAt),
    },
    results: results.perModel.map(resultJson),
    rating: results.rating && {
      battles: results.rating.battles,
      bootstrapSamples: results.rating.bootstrapSamples,
      seed: results.rating.seed,
    },
    diff: diff && {
      regressions: diff.regressions,
      improvements: diff.improvements,
      promptChanged: diff.promptChanged,
      regressed: diff.regressed.map((c) => ({ model: c.model, itemId: c.itemId, position: c.position, repeat: c.repeat })),
      improved: diff.improved.map((c) => ({ model: c.model, itemId: c.itemId, position: c.position, repeat: c.repeat })),
      perModel: diff.perModel.map((d) => ({
        model: d.model,
        passRateDelta: d.passRateDelta,
        passRateDeltaLow: d.passRateDeltaLow,
        passRateDeltaHigh: d.passRateDeltaHigh,
        passRateSignificant: d.passRateSignificant,
        ratingDelta: finite(d.ratingDelta),
        ratingDeltaLow: finite(d.ratingDeltaLow),
        ratingDeltaHigh: finite(d.ratingDeltaHigh),
        ratingSignificant: d.ratingSignificant,
        matched: d.matched,
        regressions: d.regressions,
        improvements: d.improvements,
      })),
    },
    cells: orderCells(meta.models, cells).map((c) => ({
      itemId: c.itemId,
      position: c.position,
      model: c.model,
      repeat: c.repeat,
      status: c.status,
      passed: c.passed,
      assertions: c.assertionResults.map((a) => ({ kind: a.kind, passed: a.passed, reason: a.reason })),
      prompt: c.prompt,
      content: c.content,
      error: c.error,
      latencyMs: finite(c.latencyMs),
      ttftMs: finite(c.ttftMs),
      inputTokens: finite(c.inputTokens),
      outputTokens: finite(c.outputTokens),
      costUsd: finite(cost(c)),
      reused: c.reused,
    })),
  };
  return JSON.stringify(doc, null, 2);
}
