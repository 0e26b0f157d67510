/**
 * Text a client sends: what is refused everywhere, and how length is counted.
 *
 * - NUL (U+0000) cannot be stored by PostgreSQL (the statement fails), and an
 *   unpaired UTF-16 surrogate (`"\ud800"` is valid JSON) would be silently
 *   replaced by U+FFFD on the way to the database. Both are refused as
 *   BAD_USER_INPUT in every string a request carries — variables at any depth
 *   and literals in the document — before anything runs (`findUnsafeText`,
 *   called by the document guard for `/graphql` and `/graphql/stream`).
 * - Length limits count Unicode code points (what a person calls characters),
 *   not UTF-16 units: an emoji is one character.
 */
import { type DocumentNode, Kind, visit } from 'graphql';

const UNSAFE = /\u0000|\p{Cs}/u;

/** True when `text` holds no NUL and no unpaired surrogate. */
export function isSafeText(text: string): boolean {
  return !UNSAFE.test(text);
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;
const CONTROL_BUT_LINE_BREAKS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/u;

/**
 * The first C0/C1 control character of `text` as `U+000B`, or null. With
 * `lineBreaks`, tab, line feed and carriage return are allowed (prompts and
 * descriptions); without, none is (names, tags). For fields whose text comes
 * from inside another value (an imported file), where the document guard's
 * check of NUL is not enough.
 */
export function findControlCharacter(text: string, lineBreaks: boolean): string | null {
  const found = (lineBreaks ? CONTROL_BUT_LINE_BREAKS : CONTROL).exec(text);
  return found ? `U+${found[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}` : null;
}

/** Length in Unicode code points. */
export function codePointLength(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    // A high surrogate followed by a low one is one code point.
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** The first `max` code points of `text` (never splits a surrogate pair). */
export function sliceCodePoints(text: string, max: number): string {
  if (text.length <= max) return text;
  let out = '';
  let n = 0;
  for (const point of text) {
    if (n++ >= max) break;
    out += point;
  }
  return out;
}

/**
 * Where the first unsafe string is: a variable path such as `input.title`, or
 * `a string literal` in the document; null when every string is clean.
 * Iterative (no recursion), so deeply nested JSON cannot overflow the stack.
 */
export function findUnsafeText(document: DocumentNode | undefined, variables: unknown): string | null {
  const stack: Array<{ value: unknown; path: string }> = [{ value: variables, path: '' }];
  while (stack.length) {
    const { value, path } = stack.pop()!;
    if (typeof value === 'string') {
      if (!isSafeText(value)) return path || 'variables';
    } else if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], path: `${path}[${i}]` });
    } else if (value !== null && typeof value === 'object') {
      for (const [key, child] of Object.entries(value)) stack.push({ value: child, path: path ? `${path}.${key}` : key });
    }
  }
  return document && hasUnsafeLiteral(document) ? 'a string literal' : null;
}

/**
 * Whether a document has an unsafe string literal, walked once per parsed document: the document cache hands the
 * same (immutable) DocumentNode to every request of its text, and the walk (graphql's `visit`) was ~1% of a
 * compiled read's CPU (issue 20, the conversation view's profile).
 */
const literalVerdicts = new WeakMap<DocumentNode, boolean>();

function hasUnsafeLiteral(document: DocumentNode): boolean {
  let unsafe = literalVerdicts.get(document);
  if (unsafe === undefined) {
    let found = false;
    visit(document, {
      [Kind.STRING]: (node) => {
        if (!found && !isSafeText(node.value)) found = true;
      },
    });
    unsafe = found;
    literalVerdicts.set(document, unsafe);
  }
  return unsafe;
}
