/**
 * CSV cells for every export that writes one (`exportEvalRun`, `exportUsage`): RFC 4180 quoting, and text that a
 * spreadsheet would run as a formula (starting with = + - @, a tab or a line break) prefixed with a quote.
 */
const FORMULA_START = /^[=+\-@\t\r\n]/;
const NEEDS_QUOTES = /[",\r\n]/;

/** A text field: injection-prefixed, then quoted when RFC 4180 needs it. */
export function csvText(value: string | null | undefined): string {
  if (value === null || value === undefined) return '';
  const safe = FORMULA_START.test(value) ? `'${value}` : value;
  return NEEDS_QUOTES.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** A number or boolean the exporter formats itself: never prefixed (a negative number stays a number). */
export function csvValue(value: number | boolean | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return Number.isFinite(value) ? String(value) : '';
}
