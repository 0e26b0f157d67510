/**
 * Helpers for raw statements (aggregates, LATERAL pages, `prepared.ts`). MikroORM
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

/**
 * `?` placeholders (MikroORM's and knex's) as PostgreSQL's `$1`, `$2`, …, for
 * statements sent to `pg` directly. Every `?` must be a placeholder: the text
 * is built from identifiers and constants, never from values.
 */
export function numberedPlaceholders(sql: string): { text: string; count: number } {
  let count = 0;
  const text = sql.replace(/\?/g, () => `$${++count}`);
  // A text written with `$n` already (a parameter used more than once): its highest number.
  if (count === 0) for (const [, n] of sql.matchAll(/\$(\d+)/g)) count = Math.max(count, Number(n));
  return { text, count };
}
