/**
 * Usage analytics (`usage`, `exportUsage`): calls, errors, tokens, cost and latency percentiles grouped by any of
 * user, model, provider, day and token, read from the rollups (kept by triggers as calls settle: see their
 * migrations), never by scanning responses: the smallest one whose key covers the grouping (ROLLUPS). A user sees
 * their own calls; an admin everyone's.
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

/** The rollups' latency histogram: 64 buckets, four per octave of ms (Migration20261207130000_usage_rollup). */
const LATENCY_BUCKETS = 64;

export enum UsageDimension {
  USER = 'USER',
  MODEL = 'MODEL',
  PROVIDER = 'PROVIDER',
  DAY = 'DAY',
  TOKEN = 'TOKEN',
}

/** The token key of calls made with a JWT (the rollups' key has no null); its key string is "". */
const NO_TOKEN = '00000000-0000-0000-0000-000000000000';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** A YYYY-MM-DD that is a day of the calendar. */
const isDay = (k: string) => /^\d{4}-\d{2}-\d{2}$/.test(k) && !Number.isNaN(Date.parse(k)) && new Date(k).toISOString().startsWith(k);

/**
 * Each dimension's column in the rollups, as grouped and ordered by: the order of its values is the bytewise order of
 * their key strings (a uuid's bytes are its hex digits' order; the zero uuid, "", is the least; a date's is its
 * YYYY-MM-DD), so the groups come sorted by key from the rollup's index and a page stops after its last group.
 */
const COLUMN: Record<UsageDimension, string> = {
  USER: 'user_id',
  MODEL: 'model collate "C"',
  PROVIDER: 'provider collate "C"',
  DAY: 'day',
  TOKEN: 'token_key',
};

/** A group's key string, from its column's value `c` (after grouping). */
const KEY_SQL: Record<UsageDimension, (c: string) => string> = {
  USER: (c) => `${c}::text`,
  MODEL: (c) => c,
  PROVIDER: (c) => c,
  DAY: (c) => `to_char(${c}, 'YYYY-MM-DD')`,
  TOKEN: (c) => `case when ${c} = '${NO_TOKEN}' then '' else ${c}::text end`,
};

/** A cursor's key string as its column's value (the inverse of KEY_SQL), and the placeholder that reads it. */
const VALUE_OF_KEY: Record<UsageDimension, { value: (key: string) => string | null; sql: string }> = {
  USER: { value: (k) => (UUID.test(k) ? k : null), sql: '?::uuid' },
  MODEL: { value: (k) => k, sql: '? collate "C"' },
  PROVIDER: { value: (k) => k, sql: '? collate "C"' },
  DAY: { value: (k) => (isDay(k) ? k : null), sql: '?::date' },
  TOKEN: { value: (k) => (k === '' ? NO_TOKEN : UUID.test(k) ? k : null), sql: '?::uuid' },
};

const { USER, MODEL, PROVIDER, DAY, TOKEN } = UsageDimension;

/**
 * The rollups (Migration20261207130000_usage_rollup, Migration20261207220000_usage_rollups_coarser), smallest first:
 * the dimensions each can group by, and whether it has the user (a user's own slice needs it).
 */
const ROLLUPS: Array<{ table: string; dims: UsageDimension[]; user: boolean }> = [
  { table: 'usage_rollup_model_day', dims: [DAY, PROVIDER, MODEL], user: false },
  { table: 'usage_rollup_user_day', dims: [USER, DAY], user: true },
  { table: 'usage_rollup_model_token_day', dims: [DAY, PROVIDER, MODEL, TOKEN], user: false },
  { table: 'usage_rollup', dims: [USER, DAY, PROVIDER, MODEL, TOKEN], user: true },
];

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
/** A page of at most this many rows keyed by user or token first walks their ids (see select); an export reads all. */
const MAX_WALKED_PAGE = 1_000;
/** The id column of the dimensions whose pages walk the ids (every rollup with one has an index on (it, day)). */
const WALKED: Partial<Record<UsageDimension, string>> = { USER: 'user_id', TOKEN: 'token_key' };
/** The groups' latency histograms, summed in the database (bucket by bucket: one array per group reaches the app). */
export const BUCKET_SUMS = `array[${Array.from({ length: LATENCY_BUCKETS }, (_, i) => `sum(latency_buckets[${i + 1}])`).join(', ')}]`;
/** The longest range one query covers. */
const MAX_RANGE_DAYS = 400;

interface Row {
  k: string[];
  calls: string;
  errors: string;
  i: string;
  o: string;
  cost: number;
  /** The group's latency histogram (bigint sums: strings). */
  buckets: string[];
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
    const columns = dims.map((_, i) => `c${i}`);
    const names = dims.map((_, i) => `k${i}`);
    const admin = principal.role === 'ADMIN';
    const rollup = ROLLUPS.find((r) => (admin || r.user) && dims.every((d) => r.dims.includes(d)))!;
    const range = [q.from.toISOString(), q.to.toISOString()];
    const days = (day: string) => `${day} >= (?::timestamptz at time zone 'UTC')::date
                          and ${day} <= ((?::timestamptz - interval '1 millisecond') at time zone 'UTC')::date`;
    // Groups after the cursor's have a first column ≥ its first key's value (the columns' order is the keys').
    let from: { sql: string; value: string } | null = null;
    if (after) {
      const first = VALUE_OF_KEY[dims[0]!];
      const value = first.value(after[0]!);
      if (value === null) throw badCursor();
      from = { sql: first.sql, value };
    }
    const params: unknown[] = [];
    let source = rollup.table;
    const walk = WALKED[dims[0]!];
    if (admin && walk && limit <= MAX_WALKED_PAGE) {
      // A page of everyone's calls keyed by user or token first: only the next limit + 1 ids with calls in the range
      // (a skip scan of the rollup's index on (id, day)) are read, each by that index. Each id makes at least one
      // group (the cursor's own may have none left), so the page is among theirs.
      const next = (cmp: string) =>
        `select x.${walk} from ${rollup.table} x where x.${walk} ${cmp} and ${days('x.day')} order by 1 limit 1`;
      source = `(with recursive ids(id) as (
                   (${next(from ? `>= ${from.sql}` : 'is not null')})
                   union all
                   select (${next('> ids.id')}) from ids where ids.id is not null)
                 select r.* from (select id from ids where id is not null limit ?) i,
                                 lateral (select * from ${rollup.table} r where r.${walk} = i.id offset 0) r) r`;
      params.push(...(from ? [from.value] : []), ...range, ...range, limit + 1);
    }
    params.push(...range);
    let scope = '';
    if (!admin) {
      scope += ' and user_id = ?';
      params.push(principal.userId);
    }
    let keyset = '';
    if (from && after) {
      scope += ` and ${COLUMN[dims[0]!]} >= ${from.sql}`;
      params.push(from.value);
      keyset = `where (${names.map((n) => `${n} collate "C"`).join(', ')}) > (${names.map(() => '? collate "C"').join(', ')})`;
      params.push(...after);
    }
    params.push(limit);
    return em.getConnection().execute<Row[]>(
      `select array[${names.join(', ')}] as k, calls, errors, i, o, cost, buckets
         from (select ${columns.join(', ')}, ${dims.map((d, i) => `${KEY_SQL[d](columns[i]!)} as ${names[i]}`).join(', ')},
                      calls, errors, i, o, cost, buckets
                 from (select ${dims.map((d, i) => `${COLUMN[d]} as ${columns[i]}`).join(', ')}, sum(calls) as calls,
                              sum(errors) as errors, sum(input_tokens) as i, sum(output_tokens) as o,
                              sum(cost_usd)::float8 as cost, ${BUCKET_SUMS} as buckets
                         from ${source}
                        where ${days('day')}${scope}
                        group by ${columns.join(', ')}) a) g
        ${keyset}
        order by ${columns.join(', ')}
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
  const totals = r.buckets.map(Number);
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

const badCursor = () =>
  badInput('after is not a cursor of this grouping: pass the endCursor of the previous page with the same groupBy', 'after');

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
  throw badCursor();
}
