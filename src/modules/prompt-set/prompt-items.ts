/**
 * What a prompt set and its items may hold: one checker for every way an item
 * arrives (`createPromptSet`'s items, `updatePromptItem`, each JSONL line or
 * CSV row of `importPromptItems`). A problem is BAD_USER_INPUT whose message
 * starts with where it is (`items[3]`, `line 7`) and says what to change, with
 * the same place in `extensions` (`field`, and `line` or `index`).
 */
import { AppError } from '../../errors';
import { codePointLength, findControlCharacter, isSafeText } from '../../input/text-input';
import { MAX_PROMPT_CHARS } from '../message/chat.service';
import { type AssertionDraft, type AssertionSpec, checkAssertions, needsReference } from './assertions';

export const MAX_ITEMS_PER_SET = 1_000;
export const MAX_NAME_CHARS = 200;
export const MAX_DESCRIPTION_CHARS = 2_000;
export const MAX_TAGS = 20;
export const MAX_TAG_CHARS = 64;

/** An item as a client sends it; every field still unchecked. */
export interface PromptItemDraft {
  prompt?: unknown;
  system?: unknown;
  reference?: unknown;
  assertions?: unknown;
  tags?: unknown;
}

/** An item ready to be written. */
export interface CleanItem {
  prompt: string;
  system: string | null;
  reference: string | null;
  assertions: AssertionSpec[];
  tags: string[];
}

/** Where a draft came from: `label` starts every message, `extensions` go with the error (`{ line: 7 }`, `{ index: 3 }`). */
export interface Place {
  label: string;
  extensions: Record<string, unknown>;
}

export function problem(place: Place, field: string | null, message: string): AppError {
  const extensions = field ? { ...place.extensions, field } : place.extensions;
  return new AppError('BAD_USER_INPUT', `${place.label}${field ? `, ${field}` : ''}: ${message}`, extensions);
}

/** Checks one item; `defaults` are the set's default assertions (an EQUALS_REFERENCE among them needs the item's reference). */
export function checkItem(draft: PromptItemDraft, place: Place, defaults: readonly AssertionSpec[]): CleanItem {
  if (draft === null || typeof draft !== 'object' || Array.isArray(draft)) throw problem(place, null, 'must be an object with a "prompt"');
  const prompt = text(draft.prompt, place, 'prompt', MAX_PROMPT_CHARS);
  if (prompt === null) throw problem(place, 'prompt', 'must not be empty: every item needs the prompt sent to the models');
  const system = text(draft.system, place, 'system', MAX_PROMPT_CHARS);
  const reference = text(draft.reference, place, 'reference', MAX_PROMPT_CHARS);
  const assertions = assertionsOf(draft.assertions, place);
  if (reference === null && (needsReference(assertions) || needsReference(defaults))) {
    throw problem(place, 'reference', 'EQUALS_REFERENCE compares the answer with the reference: give the item a reference answer');
  }
  return { prompt, system, reference, assertions, tags: tagsOf(draft.tags, place) };
}

/** The set's name: trimmed, 1 to 200 characters, one line. */
export function checkName(raw: string, place: Place): string {
  const name = text(raw, place, 'name', MAX_NAME_CHARS, false);
  if (name === null) throw problem(place, 'name', 'must not be empty');
  return name;
}

export function checkDescription(raw: string | null | undefined, place: Place): string | null {
  return text(raw, place, 'description', MAX_DESCRIPTION_CHARS);
}

export function assertionsOf(raw: unknown, place: Place, field = 'assertions'): AssertionSpec[] {
  if (raw === null || raw === undefined) return [];
  if (!Array.isArray(raw)) throw problem(place, field, 'must be a list of assertions, e.g. [{"kind":"CONTAINS","value":"Paris"}]');
  try {
    return checkAssertions(raw as AssertionDraft[], field);
  } catch (error) {
    // "assertions[1]: REGEX …" → "line 7, assertions[1]: …"; the field names the assertion.
    const message = (error as Error).message;
    const at = /^([^:]+): /.exec(message);
    throw problem(place, at ? at[1]! : field, at ? message.slice(at[0].length) : message);
  }
}

/** Trimmed text, or null when absent or blank; BAD_USER_INPUT for a non-string, unsafe characters or a length over `max`. */
function text(raw: unknown, place: Place, field: string, max: number, lineBreaks = true): string | null {
  if (raw === null || raw === undefined) return null;
  if (typeof raw !== 'string') throw problem(place, field, `must be text, got ${Array.isArray(raw) ? 'a list' : typeof raw}`);
  if (!isSafeText(raw)) throw problem(place, field, 'holds a NUL character or an unpaired surrogate: remove it');
  const control = findControlCharacter(raw, lineBreaks);
  if (control) throw problem(place, field, `holds the control character ${control}${lineBreaks ? '' : ' (one line only)'}: remove it`);
  const value = raw.trim();
  if (!value) return null;
  const length = codePointLength(value);
  if (length > max) throw problem(place, field, `must be at most ${max} characters, got ${length}`);
  return value;
}

/**
 * Tags: up to 20 distinct, each 1 to 64 characters on one line, without `|`
 * or `;` (the separators of the CSV `tags` column), so every tag survives a
 * round trip through CSV.
 */
function tagsOf(raw: unknown, place: Place): string[] {
  if (raw === null || raw === undefined) return [];
  if (!Array.isArray(raw)) throw problem(place, 'tags', 'must be a list of text, e.g. ["geography", "easy"]');
  const tags: string[] = [];
  raw.forEach((tag, i) => {
    const value = text(tag, place, `tags[${i}]`, MAX_TAG_CHARS, false);
    if (value === null) throw problem(place, `tags[${i}]`, 'must not be empty');
    if (/[|;]/.test(value)) throw problem(place, `tags[${i}]`, 'must not contain "|" or ";" (they separate tags in CSV)');
    if (!tags.includes(value)) tags.push(value);
  });
  if (tags.length > MAX_TAGS) throw problem(place, 'tags', `at most ${MAX_TAGS} tags, got ${tags.length}`);
  return tags;
}
