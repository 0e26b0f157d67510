/**
 * Assertions: what an answer to a prompt item must satisfy. One declaration of
 * each kind's rules, used when a set or an item is saved (`checkAssertions`)
 * and when an answer is scored (`evaluate-assertions.ts`).
 *
 * | kind             | value                                   | passes when                                           |
 * | ---------------- | --------------------------------------- | ----------------------------------------------------- |
 * | CONTAINS         | text (required)                         | the answer contains it (case-sensitive)               |
 * | NOT_CONTAINS     | text (required)                         | the answer does not contain it                        |
 * | REGEX            | `pattern` or `/pattern/flags` (imsu)    | the pattern matches (refused if it can backtrack)     |
 * | EQUALS_REFERENCE | none (the item's `reference`)           | equal after case and whitespace normalisation         |
 * | JSON_VALID       | none                                    | the answer (or its one fenced block) parses as JSON   |
 * | JSON_SCHEMA      | a JSON Schema (draft-07) as JSON text    | the answer parses and the schema accepts it (Ajv)     |
 * | MAX_LATENCY_MS   | a number > 0                            | the call took at most that long                       |
 * | MAX_COST_USD     | a number ≥ 0                            | the call cost at most that much                       |
 * | RUBRIC           | the rubric text (required)              | the judge model answers pass                          |
 *
 * `weight` (> 0, default 1) weighs the assertion in the answer's score.
 */
import type * as AjvModule from 'ajv';
import type { ValidateFunction } from 'ajv';
import { registerEnumType } from 'type-graphql';
import { codePointLength } from '../../input/text-input';
import { LruMap } from '../../lru-map';
import { checkPattern, checkSource, REGEX_TIME_LIMIT_MS, testBounded } from './bounded-regex';
import { AppError } from '../../errors';

export enum AssertionKind {
  CONTAINS = 'CONTAINS',
  NOT_CONTAINS = 'NOT_CONTAINS',
  REGEX = 'REGEX',
  EQUALS_REFERENCE = 'EQUALS_REFERENCE',
  JSON_VALID = 'JSON_VALID',
  JSON_SCHEMA = 'JSON_SCHEMA',
  MAX_LATENCY_MS = 'MAX_LATENCY_MS',
  MAX_COST_USD = 'MAX_COST_USD',
  RUBRIC = 'RUBRIC',
}
registerEnumType(AssertionKind, { name: 'AssertionKind', description: 'What an answer is checked for (see Assertion.value).' });

/** An assertion as stored (jsonb) and as answered: `value` is null for the kinds that take none. */
export interface AssertionSpec {
  kind: AssertionKind;
  value: string | null;
  weight: number;
}

/** An assertion as a client sends it (GraphQL input, a JSONL object, a CSV cell). */
export interface AssertionDraft {
  kind: unknown;
  value?: unknown;
  weight?: unknown;
}

export const MAX_ASSERTIONS = 20;
export const MAX_ASSERTION_VALUE_CHARS = 10_000;
export const MAX_WEIGHT = 1_000;

const KINDS = new Set<string>(Object.values(AssertionKind));
const NO_VALUE = new Set<AssertionKind>([AssertionKind.EQUALS_REFERENCE, AssertionKind.JSON_VALID]);

/**
 * Validates a list of assertions; each problem is thrown as an Error whose
 * message starts with `where` and the assertion's index and says what to
 * change (the caller turns it into BAD_USER_INPUT naming the item or line).
 */
export function checkAssertions(drafts: readonly AssertionDraft[] | null | undefined, where: string): AssertionSpec[] {
  if (!drafts) return [];
  if (drafts.length > MAX_ASSERTIONS) throw new Error(`${where}: at most ${MAX_ASSERTIONS} assertions, got ${drafts.length}`);
  return drafts.map((draft, i) => {
    const at = `${where}[${i}]`;
    try {
      return checkAssertion(draft);
    } catch (error) {
      throw new Error(`${at}: ${(error as Error).message}`);
    }
  });
}

function checkAssertion(draft: AssertionDraft): AssertionSpec {
  if (draft === null || typeof draft !== 'object') throw new Error('must be an object with "kind", "value" and "weight"');
  const kind = draft.kind;
  if (typeof kind !== 'string' || !KINDS.has(kind)) {
    throw new Error(`kind must be one of ${[...KINDS].join(', ')}, got ${JSON.stringify(kind)}`);
  }
  const weight = draft.weight === undefined || draft.weight === null ? 1 : draft.weight;
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0 || weight > MAX_WEIGHT) {
    throw new Error(`weight must be a number above 0 and at most ${MAX_WEIGHT}, got ${JSON.stringify(weight)}`);
  }
  const raw = draft.value ?? null;
  if (raw !== null && typeof raw !== 'string') throw new Error(`value must be a string, got ${typeof raw}`);
  if (raw !== null && codePointLength(raw) > MAX_ASSERTION_VALUE_CHARS) {
    throw new Error(`value must be at most ${MAX_ASSERTION_VALUE_CHARS} characters`);
  }
  const value = checkValue(kind as AssertionKind, raw);
  return { kind: kind as AssertionKind, value, weight };
}

function checkValue(kind: AssertionKind, raw: string | null): string | null {
  if (NO_VALUE.has(kind)) {
    const compares = kind === AssertionKind.JSON_VALID ? 'nothing' : "the item's reference";
    if (raw !== null && raw.trim() !== '') throw new Error(`${kind} takes no value (it compares with ${compares}): remove it`);
    return null;
  }
  if (raw === null || raw.trim() === '') throw new Error(`${kind} needs a value: ${VALUE_HINT[kind]}`);
  switch (kind) {
    case AssertionKind.CONTAINS:
    case AssertionKind.NOT_CONTAINS:
      return raw;
    case AssertionKind.RUBRIC:
      return raw.trim();
    case AssertionKind.REGEX:
      checkPattern(raw);
      return raw;
    case AssertionKind.JSON_SCHEMA:
      compileSchema(raw);
      return raw;
    case AssertionKind.MAX_LATENCY_MS:
    case AssertionKind.MAX_COST_USD: {
      const n = Number(raw.trim());
      const low = kind === AssertionKind.MAX_LATENCY_MS ? 'above 0' : '0 or more';
      const plainNumber = /^[+]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(raw.trim());
      if (!plainNumber || !Number.isFinite(n) || (kind === AssertionKind.MAX_LATENCY_MS && n <= 0)) {
        throw new Error(`${kind} needs a number ${low} as its value, got ${JSON.stringify(raw)}`);
      }
      return String(n);
    }
  }
  throw new Error(`unknown kind ${kind as string}`);
}

const VALUE_HINT: Record<AssertionKind, string> = {
  CONTAINS: 'the text the answer must contain',
  NOT_CONTAINS: 'the text the answer must not contain',
  REGEX: 'a pattern, e.g. "^\\\\d{4}-\\\\d{2}-\\\\d{2}$" or "/yes|no/i"',
  EQUALS_REFERENCE: '',
  JSON_VALID: '',
  JSON_SCHEMA: 'a JSON Schema as JSON text, e.g. {"type":"object","required":["name"]}',
  MAX_LATENCY_MS: 'the most milliseconds the call may take, e.g. "2000"',
  MAX_COST_USD: 'the most the call may cost in USD, e.g. "0.01"',
  RUBRIC: 'what the judge model grades the answer against',
};

// ─── JSON Schema ───────────────────────────────────────────────────────────────

/**
 * Ajv, strict (a schema with an unknown keyword or a mistake is refused when
 * saved rather than ignored when scoring), one instance per schema: Ajv keeps
 * every schema it compiled in its instance's code scope even after
 * `removeSchema`, so a shared instance grows with every distinct schema ever
 * saved. Its `pattern`s run through the same time-bounded matcher as REGEX
 * assertions (a screened pattern can still backtrack: `^(a|a)*$`).
 */
const boundedRegExp = Object.assign(
  (source: string, flags: string) => ({
    test(text: string): boolean {
      const matched = testBounded({ source, flags }, text);
      if (matched === 'timeout') throw new Error(`the JSON Schema's pattern "${source}" ran past ${REGEX_TIME_LIMIT_MS} ms`);
      return matched;
    },
  }),
  { code: 'boundedRegExp' },
);
const ajvOptions = { allErrors: true, strict: true, validateFormats: false, code: { regExp: boundedRegExp } } as const;
/** Compiled schemas by their text (compiling is the expensive part; an eval scores the same schema many times). */
const compiled = new LruMap<string, ValidateFunction>(256);
/** Distinct JSON Schemas one save (a set, an import, an item) may bring: each is compiled when saved. */
export const MAX_DISTINCT_SCHEMAS = 20;

/**
 * The validator of a JSON Schema given as JSON text; throws an Error saying
 * what to change when it is not JSON, Ajv cannot compile it, or a `pattern`
 * in it could backtrack catastrophically.
 */
export function compileSchema(text: string): ValidateFunction {
  const hit = compiled.get(text);
  if (hit) return hit;
  let schema: unknown;
  try {
    schema = JSON.parse(text);
  } catch (error) {
    throw new Error(`the JSON Schema is not valid JSON (${(error as Error).message})`);
  }
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
    throw new Error('the JSON Schema must be a JSON object, e.g. {"type":"object"}');
  }
  for (const pattern of schemaPatterns(schema)) {
    try {
      // Ajv compiles `pattern` with the u flag.
      checkSource(pattern, 'u');
    } catch (error) {
      throw new Error(`the JSON Schema's pattern is refused: ${(error as Error).message}`);
    }
  }
  // Required here, not imported: only JSON_SCHEMA assertions use Ajv, and every process that loaded the app paid for it.
  const { default: Ajv } = require('ajv') as typeof AjvModule;
  let validate: ValidateFunction;
  try {
    validate = new Ajv(ajvOptions).compile(schema);
  } catch (error) {
    throw new Error(`Ajv cannot compile the JSON Schema: ${(error as Error).message}`);
  }
  compiled.set(text, validate);
  return validate;
}

/**
 * Refuses a save that brings more than {@link MAX_DISTINCT_SCHEMAS} distinct
 * JSON Schemas, before any is compiled (compiling is synchronous work).
 */
export function limitSchemas(
  drafts: ReadonlyArray<{ assertions?: unknown } | null | undefined>,
  extra: readonly AssertionSpec[] = [],
): void {
  const distinct = new Set<string>();
  const note = (a: unknown) => {
    const { kind, value } = (a ?? {}) as { kind?: unknown; value?: unknown };
    if (kind === AssertionKind.JSON_SCHEMA && typeof value === 'string') distinct.add(value);
  };
  extra.forEach(note);
  for (const draft of drafts) if (draft && Array.isArray(draft.assertions)) draft.assertions.forEach(note);
  if (distinct.size > MAX_DISTINCT_SCHEMAS) {
    throw new AppError(
      'BAD_USER_INPUT',
      `at most ${MAX_DISTINCT_SCHEMAS} distinct JSON Schemas per save, got ${distinct.size}: ` +
        "share a schema between items (or put it in the set's defaultAssertions)",
      { field: 'assertions' },
    );
  }
}

/** Every `pattern` value and `patternProperties` key in a schema (iterative: a deep schema cannot overflow the stack). */
function schemaPatterns(schema: object): string[] {
  const found: string[] = [];
  const stack: unknown[] = [schema];
  while (stack.length) {
    const node = stack.pop();
    if (Array.isArray(node)) stack.push(...node);
    else if (node !== null && typeof node === 'object') {
      for (const [key, child] of Object.entries(node)) {
        if (key === 'pattern' && typeof child === 'string') found.push(child);
        if (key === 'patternProperties' && child && typeof child === 'object') found.push(...Object.keys(child));
        stack.push(child);
      }
    }
  }
  return found;
}

/** Whether the list asks for a reference answer (EQUALS_REFERENCE). */
export function needsReference(assertions: readonly AssertionSpec[]): boolean {
  return assertions.some((a) => a.kind === AssertionKind.EQUALS_REFERENCE);
}

/** Whether the list asks for a judge model (RUBRIC): an eval run needs `judgeModel` then. */
export function needsJudge(assertions: readonly AssertionSpec[]): boolean {
  return assertions.some((a) => a.kind === AssertionKind.RUBRIC);
}
