/**
 * How errors are written to logs (`err` and `error` keys): with no values.
 *
 * A failed SQL statement reaches the logs as a MikroORM `DriverException`
 * whose message is knex's statement *with every parameter inlined*
 * (`insert into "users" (…) values ('…', 'a@b.c', '$argon2id$…')`), then
 * " - " and PostgreSQL's message, then MikroORM's "\n - detail: …" which
 * quotes the offending row (`Failing row contains (…)`, `Key (email)=(a@b.c)
 * already exists`). Such an error is logged as:
 *
 *   { type, code (SQLSTATE), sql (literals masked), message (values masked),
 *     table, column, constraint, routine, stack frames }
 *
 * and never with `detail`, `where`, `internalQuery` or parameters. The same
 * holds for errors without a SQLSTATE that carry a statement: a connection
 * that broke under a statement (ECONNRESET, "Connection terminated
 * unexpectedly") is a MikroORM DriverException (or a knex error) whose
 * message is the statement too. `db/orm.ts` already puts the statement's
 * placeholders in place of its inlined values; this masks any literal left,
 * as the one place every logger goes through. Other
 * errors use pino's serializer, unless a database error hides in their
 * `cause` chain (pino would concatenate its message), in which case each
 * link is written on its own and the database link is sanitised.
 */
import { DriverException } from '@mikro-orm/core';
import pino from 'pino';

/**
 * A string literal as knex's PostgreSQL dialect inlines it: `'…'` with quotes
 * doubled, and `E'…'` (backslashes doubled) when it holds a backslash, so a
 * left-to-right match is exact. Arrays, JSON, dates and buffers are inlined as
 * such literals too; numbers and booleans are not (and are not secrets here).
 */
const SQL_LITERAL = /E?'(?:[^']|'')*'/g;
const MAX_SQL = 2_000;

/** knex's "<statement> - <reason>" message, whatever the reason (a connection error has no SQLSTATE). */
const STATEMENT_MESSAGE = new RegExp(
  String.raw`^\s*(?:\/\*[\s\S]*?\*\/\s*)?(?:select|insert|update|delete|with|merge|call|set|begin|commit|rollback|savepoint|release|` +
    String.raw`create|alter|drop|truncate|lock|copy|values|explain|execute|prepare|do)\b[\s\S]* - `,
  'i',
);

/**
 * A PostgreSQL error, MikroORM's wrapper of one (which copies its fields), any
 * MikroORM driver error (connection failures included), or an error whose
 * message is a statement.
 */
export function isDatabaseError(error: unknown): error is Error & Record<string, unknown> {
  if (!(error instanceof Error)) return false;
  const e = error as unknown as Record<string, unknown>;
  if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && typeof e.severity === 'string') return true;
  return error instanceof DriverException || STATEMENT_MESSAGE.test(error.message);
}

/**
 * Masks SQL string literals and collapses whitespace. Fails closed: when a
 * quote is left over (the text was not escaped the way knex does it), null.
 */
export function maskSqlValues(text: string): string | null {
  const masked = text.replace(SQL_LITERAL, "'?'");
  if (masked.split("'?'").join('').includes("'")) return null;
  return masked.replace(/\s+/g, ' ').trim();
}

/** PostgreSQL quotes an offending value after a colon (`invalid input syntax for type uuid: "x"`), maybe cut off. */
const VALUE_AFTER_COLON = /: "(?:[^"]|"")*(?:"|$)/g;

/**
 * Values in PostgreSQL's message: after a colon, in `Key (col)=(value)`, and
 * any single-quoted text. Identifiers elsewhere (`relation "users"`) stay.
 */
function maskMessageValues(text: string): string {
  return text
    .replace(VALUE_AFTER_COLON, ': "?"')
    .replace(/\((?:[^()]*)\)=\((?:[^()]*)\)/g, '(?)=(?)')
    .replace(/'[^']*'?/g, "'?'")
    .replace(/\s+/g, ' ')
    .trim();
}

/**
 * knex's "<statement> - <postgres message>" (MikroORM's detail and hint cut
 * off), split at the last " - " outside a string literal that leaves a
 * statement whose literals all mask (a value in the message may hold " - "
 * or a quote). The statement is masked, and so is anything that looks like a
 * message value in it, in case the split fell inside the message. null when
 * no split masks reliably.
 */
function splitStatement(raw: string): { sql?: string; message: string } | null {
  const text = raw.replace(/\n - (?:detail|hint): [\s\S]*$/, '');
  const literals = [...text.matchAll(SQL_LITERAL)].map((m) => [m.index!, m.index! + m[0].length] as const);
  for (let i = text.lastIndexOf(' - '); i > 0; i = text.lastIndexOf(' - ', i - 1)) {
    if (literals.some(([from, to]) => i >= from && i < to)) continue;
    const sql = maskSqlValues(text.slice(0, i));
    if (sql !== null) return { sql: sql.replace(VALUE_AFTER_COLON, ': "?"'), message: maskMessageValues(text.slice(i + 3)) };
  }
  return maskSqlValues(text) === null ? null : { message: maskMessageValues(text) };
}

function stackFrames(stack: unknown): string[] {
  return typeof stack === 'string'
    ? stack
        .split('\n')
        .filter((line) => /^\s+at /.test(line))
        .map((line) => line.trim())
        .slice(0, 20)
    : [];
}

function databaseErrorRecord(error: Error & Record<string, unknown>): Record<string, unknown> {
  const parts = splitStatement(String(error.message ?? ''));
  if (!parts)
    return {
      type: error.name,
      ...(typeof error.code === 'string' ? { code: error.code } : {}),
      message: '[unparseable statement omitted]',
      stack: stackFrames(error.stack),
    };
  const record: Record<string, unknown> = { type: error.name, message: parts.message };
  if (typeof error.code === 'string' || typeof error.code === 'number') record.code = error.code;
  if (parts.sql) record.sql = parts.sql.length > MAX_SQL ? `${parts.sql.slice(0, MAX_SQL)}…` : parts.sql;
  for (const key of ['severity', 'table', 'column', 'constraint', 'routine'] as const) {
    if (typeof error[key] === 'string') record[key] = error[key];
  }
  record.stack = stackFrames(error.stack);
  return record;
}

function causeOf(error: unknown): unknown {
  return error !== null && typeof error === 'object' ? (error as { cause?: unknown }).cause : undefined;
}

function record(error: unknown, depth: number): unknown {
  if (isDatabaseError(error)) return databaseErrorRecord(error);
  if (!(error instanceof Error)) return typeof error === 'object' && error !== null ? { type: 'non-error', value: '[omitted]' } : error;
  const out: Record<string, unknown> = { type: error.name, message: error.message, stack: stackFrames(error.stack) };
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' || typeof code === 'number') out.code = code;
  const cause = causeOf(error);
  if (cause !== undefined && depth < 5) out.cause = record(cause, depth + 1);
  return out;
}

/** The `err` / `error` serializer of every logger. */
export function serializeError(value: unknown): unknown {
  if (!(value instanceof Error)) return value;
  let hasDatabaseError = false;
  for (let e: unknown = value, depth = 0; e !== undefined && e !== null && depth < 6; e = causeOf(e), depth++) {
    if (isDatabaseError(e)) hasDatabaseError = true;
  }
  return hasDatabaseError ? record(value, 0) : pino.stdSerializers.err(value);
}
