/**
 * REGEX assertions, bounded twice:
 * - when saved, a pattern that can backtrack catastrophically (star height
 *   above one, as `(a+)+`) is refused: `safe-regex2` (fastify's fork of
 *   substack's safe-regex) decides, not a heuristic of ours;
 * - when run, the match executes in a `node:vm` context with a time limit, so a
 *   pattern the screen let through (`(a|a)*$` has star height one) still stops:
 *   V8 checks for the watchdog's interrupt inside the backtracking loop.
 * RE2 would remove the second need, but it is a native addon (a compiler or a
 * downloaded binary at install time); this keeps the install script-free.
 */
import { Script, createContext } from 'node:vm';
import safeRegex from 'safe-regex2';

export const MAX_PATTERN_CHARS = 1_000;
/** How long one match may run before it counts as a failure. */
export const REGEX_TIME_LIMIT_MS = 100;

export interface ParsedPattern {
  source: string;
  flags: string;
}

/**
 * `value` as a pattern: `/source/flags` (flags among `imsu`), or the whole text
 * as the source without flags. Throws an Error saying what to change.
 */
export function parsePattern(value: string): ParsedPattern {
  const literal = /^\/(.+)\/([a-z]*)$/s.exec(value);
  const pattern = literal ? { source: literal[1]!, flags: literal[2]! } : { source: value, flags: '' };
  if (!/^[imsu]*$/.test(pattern.flags) || new Set(pattern.flags).size !== pattern.flags.length) {
    throw new Error(`flags "${pattern.flags}" are not allowed: use any of i, m, s, u once each`);
  }
  return pattern;
}

/** Throws an Error saying what to change when `value` is not a pattern this server will run. */
export function checkPattern(value: string): ParsedPattern {
  if (value.length > MAX_PATTERN_CHARS) throw new Error(`the pattern must be at most ${MAX_PATTERN_CHARS} characters`);
  const pattern = parsePattern(value);
  checkSource(pattern.source, pattern.flags);
  return pattern;
}

/** Throws when `source` does not compile with `flags` or can backtrack catastrophically. */
export function checkSource(source: string, flags: string): void {
  let compiled: RegExp;
  try {
    compiled = new RegExp(source, flags);
  } catch (error) {
    throw new Error(`the pattern does not compile (${(error as SyntaxError).message.replace(/^Invalid regular expression: /, '')})`);
  }
  if (!safeRegex(compiled)) {
    throw new Error(
      `the pattern "${source}" can backtrack catastrophically (a repetition inside a repetition, such as (a+)+): ` +
        'remove the nested quantifier, e.g. (a+)+ → a+',
    );
  }
}

// One context for the process: the script reads its inputs from the context's globals.
const context = createContext({ source: '', flags: '', text: '' });
const script = new Script('new RegExp(source, flags).test(text)');

/** Whether `text` matches; 'timeout' when the match ran past {@link REGEX_TIME_LIMIT_MS}. */
export function testBounded(pattern: ParsedPattern, text: string, timeoutMs = REGEX_TIME_LIMIT_MS): boolean | 'timeout' {
  context.source = pattern.source;
  context.flags = pattern.flags;
  context.text = text;
  try {
    return script.runInContext(context, { timeout: timeoutMs }) === true;
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') return 'timeout';
    throw error;
  } finally {
    context.text = '';
  }
}
