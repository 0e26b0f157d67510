/**
 * Helpers for the few raw statements (aggregates, LATERAL pages). MikroORM
 * inlines parameters and expands JS arrays into lists, so arrays are passed
 * as one Postgres array literal: `?::uuid[]` with `pgArray(ids)`.
 */
export function pgArray(values: ReadonlyArray<string | number | Date | null>): string {
  const items = values.map((v) => {
    if (v === null) return 'NULL';
    const text = v instanceof Date ? v.toISOString() : String(v);
    return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  });
  return `{${items.join(',')}}`;
}
