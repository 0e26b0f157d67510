/**
 * Scores one answer against its assertions: pure, no I/O except the judge the
 * caller injects for RUBRIC (an eval run passes its judge model's call).
 *
 * Each assertion yields `{ kind, passed, outcome, reason }`. `outcome` keeps
 * apart what `passed: false` folds together: a RUBRIC the judge refused to
 * grade, or graded in a form that could not be read, is `refused` /
 * `unparseable`, never a pass and never a plain `fail`; a REGEX that ran past
 * its time limit, a MAX_* without the measurement, a RUBRIC without a judge are
 * `error`. A judge that throws (its call failed) is not an outcome: the error
 * propagates so the caller can retry the call.
 *
 * The answer `passed` when every assertion passed (null when there are none);
 * `score` is the weighted share of the assertions that passed (0..1).
 */
import { AssertionKind, type AssertionSpec, compileSchema } from './assertions';
import { codePointLength, sliceCodePoints } from '../../input/text-input';
import { parsePattern, REGEX_TIME_LIMIT_MS, testBounded } from './bounded-regex';

export interface ScoredAnswer {
  content: string;
  latencyMs?: number | null;
  costUsd?: number | null;
}

export interface ScoredItem {
  reference?: string | null;
}

export type JudgeVerdict = 'pass' | 'fail' | 'refused' | 'unparseable';

/** Grades `content` against the rubric text; throws when the call itself failed. */
export type RubricJudge = (rubric: string, content: string) => Promise<{ verdict: JudgeVerdict; reason: string }>;

export type AssertionOutcome = 'pass' | 'fail' | 'refused' | 'unparseable' | 'error';

export interface AssertionResult {
  kind: AssertionKind;
  passed: boolean;
  outcome: AssertionOutcome;
  reason: string;
  weight: number;
}

export interface Evaluation {
  results: AssertionResult[];
  /** Every assertion passed; null without assertions. */
  passed: boolean | null;
  /** The weighted share of passing assertions, 0..1; null without assertions. */
  score: number | null;
}

/** Longest excerpt of an answer or a reference quoted in a reason. */
const QUOTE_CHARS = 80;

export async function evaluateAssertions(
  assertions: readonly AssertionSpec[],
  answer: ScoredAnswer,
  item: ScoredItem,
  judge?: RubricJudge,
): Promise<Evaluation> {
  const results: AssertionResult[] = [];
  // In order, one at a time: at most one judge call in flight per answer.
  for (const assertion of assertions) {
    const { outcome, reason } = await evaluateOne(assertion, answer, item, judge);
    results.push({ kind: assertion.kind, passed: outcome === 'pass', outcome, reason, weight: assertion.weight });
  }
  if (results.length === 0) return { results, passed: null, score: null };
  const total = results.reduce((sum, r) => sum + r.weight, 0);
  const passing = results.reduce((sum, r) => sum + (r.passed ? r.weight : 0), 0);
  return { results, passed: results.every((r) => r.passed), score: passing / total };
}

type Verdict = { outcome: AssertionOutcome; reason: string };

const pass = (reason: string): Verdict => ({ outcome: 'pass', reason });
const fail = (reason: string): Verdict => ({ outcome: 'fail', reason });
const error = (reason: string): Verdict => ({ outcome: 'error', reason });

async function evaluateOne(a: AssertionSpec, answer: ScoredAnswer, item: ScoredItem, judge?: RubricJudge): Promise<Verdict> {
  const content = answer.content;
  switch (a.kind) {
    case AssertionKind.CONTAINS:
      return content.includes(a.value!) ? pass(`contains ${quote(a.value!)}`) : fail(`does not contain ${quote(a.value!)}`);
    case AssertionKind.NOT_CONTAINS: {
      const at = content.indexOf(a.value!);
      return at < 0 ? pass(`does not contain ${quote(a.value!)}`) : fail(`contains ${quote(a.value!)} at character ${at}`);
    }
    case AssertionKind.REGEX: {
      const matched = testBounded(parsePattern(a.value!), content);
      if (matched === 'timeout') return error(`the pattern ran longer than ${REGEX_TIME_LIMIT_MS} ms on this answer and was stopped`);
      return matched ? pass(`matches ${a.value}`) : fail(`does not match ${a.value}`);
    }
    case AssertionKind.EQUALS_REFERENCE: {
      if (item.reference === null || item.reference === undefined) return error('the item has no reference answer to compare with');
      return normalise(content) === normalise(item.reference)
        ? pass('equals the reference (ignoring case and whitespace)')
        : fail(`differs from the reference ${quote(item.reference)} (ignoring case and whitespace): got ${quote(content)}`);
    }
    case AssertionKind.JSON_VALID: {
      const parsed = parseJson(content);
      return parsed.ok ? pass('is valid JSON') : fail(`is not valid JSON: ${parsed.message}`);
    }
    case AssertionKind.JSON_SCHEMA: {
      const parsed = parseJson(content);
      if (!parsed.ok) return fail(`is not valid JSON: ${parsed.message}`);
      const validate = compileSchema(a.value!);
      let valid: boolean;
      try {
        valid = validate(parsed.value) as boolean;
      } catch (e) {
        // A `pattern` of the schema ran past the regex time limit: not a pass, not a fail.
        return error((e as Error).message);
      }
      if (valid) return pass('matches the JSON Schema');
      const errors = (validate.errors ?? []).map((e) => `${e.instancePath || '(root)'} ${e.message ?? 'is invalid'}`);
      return fail(`does not match the JSON Schema: ${errors.join('; ')}`);
    }
    case AssertionKind.MAX_LATENCY_MS: {
      const limit = Number(a.value);
      if (answer.latencyMs === null || answer.latencyMs === undefined) return error('the call has no measured latency');
      return answer.latencyMs <= limit
        ? pass(`took ${answer.latencyMs} ms (limit ${limit} ms)`)
        : fail(`took ${answer.latencyMs} ms, over the limit of ${limit} ms`);
    }
    case AssertionKind.MAX_COST_USD: {
      const limit = Number(a.value);
      if (answer.costUsd === null || answer.costUsd === undefined) {
        return error('the call has no known cost (the model has no price in the catalog)');
      }
      return answer.costUsd <= limit
        ? pass(`cost $${answer.costUsd} (limit $${limit})`)
        : fail(`cost $${answer.costUsd}, over the limit of $${limit}`);
    }
    case AssertionKind.RUBRIC: {
      if (!judge) return error('no judge model to grade the rubric: give the run a judgeModel');
      const { verdict, reason } = await judge(a.value!, content);
      switch (verdict) {
        case 'pass':
          return pass(reason);
        case 'fail':
          return fail(reason);
        case 'refused':
          return { outcome: 'refused', reason: `the judge refused to grade: ${reason}` };
        case 'unparseable':
          return { outcome: 'unparseable', reason: `the judge's verdict could not be read: ${reason}` };
      }
      return { outcome: 'unparseable', reason: `the judge answered an unknown verdict ${JSON.stringify(verdict)}` };
    }
  }
  return error(`unknown assertion kind ${String(a.kind)}`);
}

/** Case and whitespace normalisation of EQUALS_REFERENCE: Unicode NFKC, lower case, runs of whitespace as one space, trimmed. */
export function normalise(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(/\s+/gu, ' ').trim();
}

/**
 * The answer as JSON: the whole text, or, when the answer is one fenced code
 * block (```json … ```), that block's content — models often fence JSON.
 */
export function parseJson(content: string): { ok: true; value: unknown } | { ok: false; message: string } {
  const trimmed = content.trim();
  const fenced = /^```[a-zA-Z0-9_-]*\s*\n([\s\S]*?)\n?```$/.exec(trimmed);
  const text = fenced ? fenced[1]! : trimmed;
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    return { ok: false, message: (e as SyntaxError).message };
  }
}

function quote(text: string): string {
  const shown = codePointLength(text) > QUOTE_CHARS ? `${sliceCodePoints(text, QUOTE_CHARS - 1)}…` : text;
  return JSON.stringify(shown);
}
