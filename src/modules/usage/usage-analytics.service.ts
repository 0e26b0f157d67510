/**
 * Usage analytics (`usage`, `exportUsage`): calls, errors, tokens, cost and latency percentiles grouped by any of
 * user, model, provider, day and token, read from `usage_rollup` (kept by triggers as calls settle: see its
 * migration), never by scanning responses. A user sees their own calls; an admin everyone's.
 *
 * Days are UTC: a row of day D is in [from, to) when from's day ≤ D ≤ the day of the last millisecond before
 * `to`. Keys are strings: the user's id, the model id, the provider, `YYYY-MM-DD`, the token's id ("" for calls
 * made with a JWT). Latency percentiles come from 64 log-spaced buckets (4 per octave): each is the bucket's
 * geometric middle, within 19% of the true value; null without a timed call.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import { type Principal, requireUser } from '../../auth/principal';
import { badInput } from '../../errors';
import { pageSize } from '../../db/pagination';
import { csvText, csvValue } from '../common/csv';

export enum UsageDimension {
  USER = 'USER',
  MODEL = 'MODEL',
  PROVIDER = 'PROVIDER',
  DAY = 'DAY',
  TOKEN = 'TOKEN',
}

const DIMENSION_SQL: Record<UsageDimension, string> = {
  USER: 'user_id::text',
  MODEL: 'model',
  PROVIDER: 'provider',
  DAY: "to_char(day, 'YYYY-MM-DD')",
  TOKEN: "case when token_key = '00000000-0000-0000-0000-000000000000' then '' else token_key::text end",
};

export interface UsageRowView {
  key: string[];
  calls: number;
  errors: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
  latencyP50Ms: number | null;
  latencyP95Ms: number | null;
}

export interface UsageQuery {
  groupBy: UsageDimension[];
  from: Date;
  to: Date;
}

/** At most this many rows in one export. */
export const MAX_EXPORT_ROWS = 100_000;
/** The longest range one query covers. */
const MAX_RANGE_DAYS = 400;

interface Row {
  k: string[];
  calls: string;
  errors: string;
  i: string;
  o: string;
  cost: number;
  buckets: number[][];
}

export class UsageAnalytics {
  async page(
    em: EntityManager,
    principal: Principal | null,
    q: UsageQuery & { first?: number | null; after?: string | null },
  ): Promise<{ nodes: UsageRowView[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } }> {
    const limit = pageSize(q.first, 100);
    const after = q.after ? decodeCursor(q.after, q.groupBy.length) : null;
    const rows = await this.select(em, requireUser(principal), q, after, limit + 1);
    const hasNextPage = rows.length > limit;
    const nodes = rows.slice(0, limit).map(view);
    return { nodes, pageInfo: { hasNextPage, endCursor: nodes.length ? encodeCursor(nodes.at(-1)!.key) : null } };
  }

  /** CSV: the grouping keys, then the measures; formula-looking text is quoted as text (csvText). */
  async exportCsv(em: EntityManager, principal: Principal | null, q: UsageQuery): Promise<string> {
    const rows = await this.select(em, requireUser(principal), q, null, MAX_EXPORT_ROWS + 1);
    if (rows.length > MAX_EXPORT_ROWS) {
      throw badInput(`The export holds at most ${MAX_EXPORT_ROWS} rows: narrow the range or group by fewer dimensions`, 'from');
    }
    const header = [...q.groupBy.map((d) => d.toLowerCase()), 'calls', 'errors', 'input_tokens', 'output_tokens', 'cost_usd'];
    const lines = [[...header, 'latency_p50_ms', 'latency_p95_ms'].join(',')];
    for (const r of rows.map(view)) {
      lines.push(
        [
          ...r.key.map(csvText),
          ...[r.calls, r.errors, r.inputTokens, r.outputTokens, r.costUsd, r.latencyP50Ms, r.latencyP95Ms].map(csvValue),
        ].join(','),
      );
    }
    return `${lines.join('\r\n')}\r\n`;
  }

  private async select(em: EntityManager, principal: Principal, q: UsageQuery, after: string[] | null, limit: number): Promise<Row[]> {
    const dims = checkQuery(q);
    const keys = dims.map((d, i) => `${DIMENSION_SQL[d]} as k${i}`).join(', ');
    const names = dims.map((_, i) => `k${i}`);
    const params: unknown[] = [q.from.toISOString(), q.to.toISOString()];
    let scope = '';
    if (principal.role !== 'ADMIN') {
      scope = 'and user_id = ?';
      params.push(principal.userId);
    }
    let keyset = '';
    if (after) {
      keyset = `where (${names.map((n) => `${n} collate "C"`).join(', ')}) > (${names.map(() => '? collate "C"').join(', ')})`;
      params.push(...after);
    }
    params.push(limit);
    return em.getConnection().execute<Row[]>(
      `select array[${names.join(', ')}] as k, calls, errors, i, o, cost, buckets
         from (select ${keys}, sum(calls) as calls, sum(errors) as errors, sum(input_tokens) as i,
                      sum(output_tokens) as o, sum(cost_usd)::float8 as cost, array_agg(latency_buckets) as buckets
                 from usage_rollup
                where day >= (?::timestamptz at time zone 'UTC')::date
                  and day <= ((?::timestamptz - interval '1 millisecond') at time zone 'UTC')::date ${scope}
                group by ${names.join(', ')}) g
        ${keyset}
        order by ${names.map((n) => `${n} collate "C"`).join(', ')}
        limit ?`,
      params,
    );
  }
}

function checkQuery(q: UsageQuery): UsageDimension[] {
  if (q.groupBy.length === 0) throw badInput('groupBy needs at least one dimension (USER, MODEL, PROVIDER, DAY, TOKEN)', 'groupBy');
  if (new Set(q.groupBy).size !== q.groupBy.length) throw badInput('groupBy lists a dimension twice', 'groupBy');
  if (!(q.from.getTime() < q.to.getTime())) throw badInput('from must be before to', 'from');
  if (q.to.getTime() - q.from.getTime() > MAX_RANGE_DAYS * 86_400_000) {
    throw badInput(`A range covers at most ${MAX_RANGE_DAYS} days: split it`, 'to');
  }
  return q.groupBy;
}

function view(r: Row): UsageRowView {
  const totals = new Array<number>(64).fill(0);
  for (const b of r.buckets) for (let i = 0; i < 64; i++) totals[i] += b[i] ?? 0;
  return {
    key: r.k,
    calls: Number(r.calls),
    errors: Number(r.errors),
    inputTokens: Number(r.i),
    outputTokens: Number(r.o),
    costUsd: Math.round(r.cost * 1e10) / 1e10,
    latencyP50Ms: percentile(totals, 0.5),
    latencyP95Ms: percentile(totals, 0.95),
  };
}

/** The bucket holding the q-quantile of the timed calls, as its geometric middle in ms; null without any. */
export function percentile(buckets: readonly number[], q: number): number | null {
  const n = buckets.reduce((s, x) => s + x, 0);
  if (n === 0) return null;
  const rank = Math.ceil(q * n);
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    seen += buckets[i]!;
    if (seen >= rank) return Math.round(2 ** ((i + 0.5) / 4));
  }
  return null;
}

/** A page's position: its last row's key (the keys are ordered bytewise, `collate "C"`). */
function encodeCursor(key: string[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

function decodeCursor(cursor: string, length: number): string[] {
  try {
    const key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(key) && key.length === length && key.every((k) => typeof k === 'string')) return key as string[];
  } catch {
    // reported below
  }
  throw badInput('after is not a cursor of this grouping: pass the endCursor of the previous page with the same groupBy', 'after');
}
