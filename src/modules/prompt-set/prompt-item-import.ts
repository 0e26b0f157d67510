/**
 * `importPromptItems`' two formats, parsed into checked items or refused with
 * the line (and the field or column) to fix. Nothing here writes: the service
 * writes every item or none, in one transaction.
 *
 * JSONL: one JSON object per line (blank lines skipped), validated with Ajv
 * against {@link JSONL_ITEM_SCHEMA}:
 *   {"prompt": "Capital of France?", "reference": "Paris", "tags": ["geo"],
 *    "assertions": [{"kind": "CONTAINS", "value": "Paris"}]}
 *
 * CSV (RFC 4180, parsed by csv-parse): a header row naming the columns, in any
 * order, of `prompt` (required), `system`, `reference`, `tags` (separated by
 * `|` or `;`) and `assertions` (a JSON list, as in JSONL); an empty cell is
 * absent. Fields with commas, quotes or line breaks are quoted ("…", "" for a
 * quote). A row's line is the line it starts on.
 */
import type * as AjvModule from 'ajv';
import type { ValidateFunction } from 'ajv';
import type * as CsvParse from 'csv-parse/sync';
import { badInput } from '../../errors';
import { AssertionKind } from './assertions';
import { type PromptItemDraft, problem } from './prompt-items';

export enum ImportFormat {
  JSONL = 'JSONL',
  CSV = 'CSV',
}

/** What one import may carry, in UTF-8 bytes. */
export const MAX_IMPORT_BYTES = 5 * 1024 * 1024;

export const CSV_COLUMNS = ['prompt', 'system', 'reference', 'tags', 'assertions'] as const;

/** An item draft and the line it starts on. */
export interface ImportedDraft {
  line: number;
  draft: PromptItemDraft;
}

/** The shape of a JSONL line; the values' own rules (lengths, patterns, schemas) are `checkItem`'s. */
export const JSONL_ITEM_SCHEMA = {
  type: 'object',
  required: ['prompt'],
  additionalProperties: false,
  properties: {
    prompt: { type: 'string' },
    system: { type: ['string', 'null'] },
    reference: { type: ['string', 'null'] },
    tags: { type: 'array', items: { type: 'string' } },
    assertions: {
      type: 'array',
      items: {
        type: 'object',
        required: ['kind'],
        additionalProperties: false,
        properties: {
          kind: { enum: Object.values(AssertionKind) },
          value: { type: ['string', 'null'] },
          weight: { type: 'number' },
        },
      },
    },
  },
} as const;

let compiledLineValidator: ValidateFunction | undefined;

/**
 * The JSONL line validator, compiled on the first JSONL import. Ajv (like csv-parse in `parseCsv`) is
 * required here, not imported: only an import uses it, and every process that loaded the app paid for it.
 */
function lineValidator(): ValidateFunction {
  if (!compiledLineValidator) {
    const { default: Ajv } = require('ajv') as typeof AjvModule;
    compiledLineValidator = new Ajv({ allErrors: false, strict: true }).compile(JSONL_ITEM_SCHEMA);
  }
  return compiledLineValidator;
}

/** Refuses data over {@link MAX_IMPORT_BYTES} and parses it; a file with more than `maxItems` rows is refused without parsing the rest. */
export function parseImport(format: ImportFormat, data: string, maxItems: number): ImportedDraft[] {
  const bytes = Buffer.byteLength(data, 'utf8');
  if (bytes > MAX_IMPORT_BYTES) {
    const mb = (n: number) => (n / (1024 * 1024)).toFixed(1);
    const message = `data is ${mb(bytes)} MB; an import takes at most ${mb(MAX_IMPORT_BYTES)} MB: split the file into smaller imports`;
    throw badInput(message, 'data');
  }
  const drafts = format === ImportFormat.JSONL ? parseJsonl(data, maxItems) : parseCsv(data, maxItems);
  if (drafts.length === 0) {
    const expected = format === ImportFormat.JSONL ? 'one JSON object per line' : 'a header row, then one row per item';
    throw badInput(`data holds no items: ${expected}`, 'data');
  }
  return drafts;
}

/** Refuses before parsing everything: a file with more rows than a set holds is refused as a whole anyway. */
function tooMany(maxItems: number): never {
  const most = maxItems.toLocaleString('en-US');
  throw badInput(`the file has more than ${most} items; a set holds at most that many: split the file across sets`, 'data');
}

function parseJsonl(data: string, maxItems: number): ImportedDraft[] {
  const drafts: ImportedDraft[] = [];
  const lines = data.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!.trim();
    if (!text) continue;
    const line = i + 1;
    const place = { label: `line ${line}`, extensions: { line } };
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      const reason = (error as SyntaxError).message;
      throw problem(place, null, `not valid JSON (${reason}): each line holds one JSON object, e.g. {"prompt": "…"}`);
    }
    const validateLine = lineValidator();
    if (!validateLine(value)) {
      const e = validateLine.errors![0]!;
      const field = fieldOf(e.instancePath, e.params as Record<string, unknown>);
      const extra = (e.params as { additionalProperty?: string }).additionalProperty;
      const detail = e.keyword === 'additionalProperties' ? `unknown field "${extra}"` : e.message;
      throw problem(place, field, `${detail}${e.keyword === 'enum' ? ` (${Object.values(AssertionKind).join(', ')})` : ''}`);
    }
    if (drafts.length === maxItems) tooMany(maxItems);
    drafts.push({ line, draft: value as PromptItemDraft });
  }
  return drafts;
}

/** `/assertions/0/kind` → `assertions[0].kind`; a missing required property names itself. */
function fieldOf(instancePath: string, params: Record<string, unknown>): string | null {
  const parts = instancePath.split('/').filter(Boolean);
  if (typeof params.missingProperty === 'string') parts.push(params.missingProperty);
  if (parts.length === 0) return null;
  return parts.reduce((path, part) => (/^\d+$/.test(part) ? `${path}[${part}]` : path ? `${path}.${part}` : part), '');
}

interface CsvInfo {
  /** UTF-8 bytes read when the record ended (its line break included). */
  bytes: number;
}

function parseCsv(data: string, maxItems: number): ImportedDraft[] {
  const { CsvError, parse } = require('csv-parse/sync') as typeof CsvParse;
  const header = { label: 'line 1', extensions: { line: 1 } };
  let records: Array<{ record: Record<string, string>; info: CsvInfo }>;
  try {
    records = parse(data, {
      bom: true,
      info: true,
      skip_empty_lines: true,
      // Stops parsing one row past what could fit.
      to: maxItems + 1,
      columns: (names: string[]) =>
        names.map((raw, i) => {
          const name = raw.trim().toLowerCase();
          if (!(CSV_COLUMNS as readonly string[]).includes(name)) {
            throw problem(header, `column ${i + 1}`, `unknown column "${raw}": the header names columns among ${CSV_COLUMNS.join(', ')}`);
          }
          if (names.slice(0, i).some((n) => n.trim().toLowerCase() === name)) {
            throw problem(header, `column ${i + 1}`, `"${name}" appears twice in the header`);
          }
          return name;
        }),
    }) as unknown as Array<{ record: Record<string, string>; info: CsvInfo }>;
  } catch (error) {
    if (error instanceof CsvError) {
      const line = (error as CsvParse.CsvError & { lines?: number }).lines ?? 1;
      throw problem({ label: `line ${line}`, extensions: { line } }, null, `malformed CSV: ${error.message}`);
    }
    throw error;
  }
  if (records.length > 0 && !('prompt' in records[0]!.record)) throw problem(header, null, 'the header has no "prompt" column');
  if (records.length > maxItems) tooMany(maxItems);
  const drafts: ImportedDraft[] = [];
  const lines = lineCounter(Buffer.from(data, 'utf8'));
  let start = records.length ? headerEnd(data) : 0;
  for (const { record, info } of records) {
    // The line a row starts on (a quoted field may span lines), found from where the previous row ended.
    const line = lines.at(start);
    start = info.bytes;
    drafts.push({ line, draft: csvDraft(record, { label: `line ${line}`, extensions: { line } }) });
  }
  return drafts;
}

/**
 * Line numbers of byte offsets, counted forward once (offsets must not
 * decrease): the line of the first non-blank byte at or after `offset`, so the
 * blank lines csv-parse skipped before a row are not the row's line. csv-parse's
 * own `info.lines` counts a CRLF inside a quoted field twice, hence this.
 */
function lineCounter(bytes: Buffer) {
  let position = 0;
  let line = 1;
  const advance = (to: number) => {
    for (; position < to && position < bytes.length; position++) if (bytes[position] === 0x0a) line++;
  };
  return {
    at(offset: number): number {
      advance(offset);
      while (position < bytes.length && (bytes[position] === 0x0a || bytes[position] === 0x0d)) advance(position + 1);
      return line;
    },
  };
}

/** The byte offset just past the header row (the header is one line: its names hold no line break). */
function headerEnd(data: string): number {
  const newline = data.indexOf('\n');
  return newline < 0 ? Buffer.byteLength(data, 'utf8') : Buffer.byteLength(data.slice(0, newline + 1), 'utf8');
}

/** A CSV `tags` cell: tags separated by `|` or `;`, blanks dropped. */
function splitTags(cell: string): string[] {
  return cell
    .split(/[|;]/)
    .map((t) => t.trim())
    .filter(Boolean);
}

function csvDraft(record: Record<string, string>, place: { label: string; extensions: Record<string, unknown> }): PromptItemDraft {
  const cell = (name: string) => (record[name]?.trim() ? record[name] : undefined);
  const draft: PromptItemDraft = { prompt: cell('prompt'), system: cell('system'), reference: cell('reference') };
  const tags = cell('tags');
  if (tags !== undefined) draft.tags = splitTags(tags);
  const assertions = cell('assertions');
  if (assertions !== undefined) {
    try {
      draft.assertions = JSON.parse(assertions);
    } catch (error) {
      const reason = (error as SyntaxError).message;
      throw problem(place, 'assertions', `not valid JSON (${reason}): a JSON list such as [{"kind":"CONTAINS","value":"Paris"}]`);
    }
  }
  return draft;
}
