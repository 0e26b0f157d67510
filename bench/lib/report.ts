/** The bench's one table, the ratios and the targets of issue 7, and the section of docs/BENCHMARKS.md. */
import { readFileSync, writeFileSync } from 'node:fs';
import type { LoadResult } from './load';
import type { Variant } from './options';

export interface Point {
  variant: Variant;
  connections: number;
  requests: number;
  seconds: number;
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  errors: number;
  errorDetail: LoadResult['errors'];
  firstError?: string;
  /** Body bytes of this variant's responses (from the checked sample). */
  bodyBytes: number;
  /** Bytes read per response on the wire, headers included. */
  wireBytes: number;
  statementsPerRequest: number | null;
  statementsSource: string;
  cpuMsPerRequest: number;
  /** CPU the autocannon process used over the window, % of one core. */
  loadGeneratorCpuPercent: number;
  rssMb: number;
  /** Ours only: "breaker open" log lines during the measured window. */
  breakerOpens?: number;
  /** Writes only: rows the point added to its table (warm-up and window), and the answered requests, which each wrote. */
  rowsWritten?: { table: string; rows: number; answered: number };
}

export interface PoolCheck {
  connections: number;
  poolMax: number;
  requests: number;
  seconds: number;
  rps: number;
  p99: number;
  /** Failed, timed out (10 s) or never answered. */
  errors: number;
  errorDetail: LoadResult['errors'] & { unanswered: number };
  firstError?: string;
  /** "breaker open" log lines of ours during the window. */
  breakerOpens: number;
}

export interface TargetRow {
  name: string;
  measured: string;
  goal: string;
  met: 'yes' | 'no' | 'n/a' | '—';
}

const LABELS: Record<Variant, string> = {
  'ours-miss': 'ours, cache miss',
  'ours-miss-resolvers': 'ours, miss, resolvers (graphql-jit)',
  'ours-miss-js': 'ours, miss, resolvers (graphql-js)',
  'ours-miss-traced': 'ours, cache miss, traced (OTLP/HTTP)',
  'ours-miss-traced-10pct': 'ours, cache miss, traced, 10% sampled',
  'ours-hit': 'ours, cache hit',
  'ours-hit-remote': 'ours, hit, no local copies',
  'ours-miss-pgbouncer': 'ours, miss, through PgBouncer (transaction pooling)',
  postgraphile5: 'PostGraphile 5.1.5',
  postgraphile4: 'PostGraphile 4.14.1',
  'bare-sql': 'bare node:http + pg (3 statements)',
  'bare-redis': 'bare node:http + 1 Redis GET',
  'ours-conversation': 'conversation view: ours, cache miss',
  'postgraphile5-conversation': 'conversation view: PostGraphile 5.1.5',
  'ours-comparison': 'comparison view: ours, cache miss',
  'postgraphile5-comparison': 'comparison view: PostGraphile 5.1.5',
  'ours-shared': 'shared page: ours, anonymous, hot',
  'bare-redis-shared': 'shared page: bare node:http + 1 Redis GET',
  'bare-conversation': 'conversation view: bare node:http + pg (1 statement)',
  'bare-comparison': 'comparison view: bare node:http + pg (1 statement)',
  'ours-send-message': 'sendMessage: ours (fake provider, at once)',
  'bare-send-message': 'sendMessage: bare node:http + pg (1 tx)',
  'ours-vote': 'vote: ours',
  'bare-vote': 'vote: bare node:http + pg (1 tx)',
  'ours-create-conversation': 'createConversation: ours',
  'bare-create-conversation': 'createConversation: bare node:http + pg (1 tx)',
};

export const label = (v: Variant) => LABELS[v];

export function fixed(value: number | null | undefined, digits: number): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function markdownTable(header: string[], rows: string[][], align: Array<'l' | 'r'>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const pad = (cells: string[]) =>
    `| ${cells.map((c, i) => (align[i] === 'r' ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `| ${widths.map((w, i) => (align[i] === 'r' ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
  return [pad(header), rule, ...rows.map(pad)].join('\n');
}

export function pointsTable(points: Point[]): string {
  const rows = points.map((p) => [
    label(p.variant),
    String(p.connections),
    fixed(p.rps, 0),
    fixed(p.p50, 2),
    fixed(p.p99, 2),
    String(p.errors),
    fixed(p.bodyBytes / 1024, 1),
    p.statementsPerRequest === null ? '–' : `${fixed(p.statementsPerRequest, 2)}${p.statementsSource === 'by design' ? '*' : ''}`,
    fixed(p.cpuMsPerRequest, 2),
    fixed(p.rssMb, 0),
  ]);
  return markdownTable(
    ['server (same data, same run)', 'c', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'KB/resp', 'SQL/req', 'CPU ms/req', 'RSS MB'],
    rows,
    ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  );
}

function find(points: Point[], variant: Variant, c: number): Point | undefined {
  return points.find((p) => p.variant === variant && p.connections === c);
}

/** Ratios and the targets of issue 7, all from this run. */
export function targets(points: Point[], pool: PoolCheck | null): TargetRow[] {
  const rows: TargetRow[] = [];
  const ratio = (a?: Point, b?: Point) => (a && b && b.rps > 0 ? a.rps / b.rps : undefined);
  const verdict = (ok: boolean | undefined): TargetRow['met'] => (ok === undefined ? 'n/a' : ok ? 'yes' : 'no');
  const c10 = (v: Variant) => find(points, v, 10);

  const miss = c10('ours-miss');
  const pg5 = c10('postgraphile5');
  const pg4 = c10('postgraphile4');
  const best = [pg5, pg4].filter((p): p is Point => !!p).sort((a, b) => b.rps - a.rps)[0];
  const rBest = ratio(miss, best);
  rows.push({
    name: `ours-miss / best PostGraphile${best ? ` (${best.variant === 'postgraphile5' ? 'v5' : 'v4'})` : ''}, req/s at c=10`,
    measured: fixed(rBest, 2),
    goal: '≥ 1.25',
    met: verdict(rBest === undefined ? undefined : rBest >= 1.25),
  });
  for (const [name, peer] of [
    ['PostGraphile 5', pg5],
    ['PostGraphile 4', pg4],
  ] as const) {
    const r = ratio(miss, peer);
    if (r !== undefined) rows.push({ name: `ours-miss / ${name}, req/s at c=10`, measured: fixed(r, 2), goal: '', met: '—' });
  }
  for (const view of ['conversation', 'comparison'] as const) {
    const r = ratio(c10(`ours-${view}`), c10(`postgraphile5-${view}`));
    if (r === undefined) continue;
    rows.push({ name: `${view} view: ours (miss) / PostGraphile 5, req/s at c=10`, measured: fixed(r, 2), goal: '', met: '—' });
  }
  for (const view of ['conversation', 'comparison'] as const) {
    const r = ratio(c10(`ours-${view}`), c10(`bare-${view}`));
    if (r === undefined) continue;
    rows.push({
      name: `${view} view: ours (miss) / bare one-statement limit, req/s at c=10`,
      measured: fixed(r, 2),
      goal: '≥ 0.9',
      met: verdict(r >= 0.9),
    });
  }
  for (const write of ['send-message', 'vote', 'create-conversation'] as const) {
    const ours = points.filter((p) => p.variant === `ours-${write}`);
    for (const p of ours) {
      const bare = find(points, `bare-${write}`, p.connections);
      const r = ratio(p, bare);
      if (r === undefined) continue;
      const p99 = p.connections === 10 ? `, p99 ${fixed(p.p99, 1)} vs ${fixed(bare!.p99, 1)} ms` : '';
      rows.push({
        name: `${label(p.variant).split(':')[0]}: ours / bare (1 tx), req/s at c=${p.connections}${p99}`,
        measured: fixed(r, 2),
        goal: '≥ 0.5',
        met: verdict(r >= 0.5),
      });
    }
    const statements = (v: Variant) =>
      points
        .filter((p) => p.variant === v)
        .map((p) => fixed(p.statementsPerRequest, 1))
        .join('/');
    if (ours.length) {
      const levels = ours.map((p) => p.connections).join('/');
      rows.push({
        name: `${label(ours[0]!.variant).split(':')[0]}: SQL statements per request, ours vs bare (c=${levels})`,
        measured: `${statements(`ours-${write}`)} vs ${statements(`bare-${write}`) || '–'}`,
        goal: '',
        met: '—',
      });
    }
  }
  const rSql = ratio(miss, c10('bare-sql'));
  rows.push({
    name: 'ours-miss / bare SQL, req/s at c=10',
    measured: fixed(rSql, 2),
    goal: '≥ 0.6',
    met: verdict(rSql === undefined ? undefined : rSql >= 0.6),
  });
  rows.push({
    name: 'ours-miss server CPU per request at c=10',
    measured: miss ? `${fixed(miss.cpuMsPerRequest, 2)} ms` : '–',
    goal: '≤ 3 ms',
    met: verdict(miss ? miss.cpuMsPerRequest <= 3 : undefined),
  });
  const rCompiled = ratio(miss, c10('ours-miss-resolvers'));
  rows.push({
    name: 'ours-miss compiled reads / resolvers (jit), req/s at c=10',
    measured: fixed(rCompiled, 2),
    goal: '> 1 to keep them',
    met: verdict(rCompiled === undefined ? undefined : rCompiled > 1),
  });
  const rJit = ratio(c10('ours-miss-resolvers'), c10('ours-miss-js'));
  rows.push({
    name: 'resolvers: graphql-jit / graphql-js executor, req/s at c=10',
    measured: fixed(rJit, 2),
    goal: '> 1 to keep jit',
    met: verdict(rJit === undefined ? undefined : rJit > 1),
  });
  const hit = c10('ours-hit');
  const rRedis = ratio(hit, c10('bare-redis'));
  rows.push({
    name: 'ours-hit / bare Redis, req/s at c=10',
    measured: fixed(rRedis, 2),
    goal: '≥ 0.6',
    met: verdict(rRedis === undefined ? undefined : rRedis >= 0.6),
  });
  const rRemote = ratio(c10('ours-hit-remote'), c10('bare-redis'));
  if (rRemote !== undefined)
    rows.push({
      name: 'ours-hit without local copies (every body from Redis) / bare Redis, req/s at c=10',
      measured: fixed(rRemote, 2),
      goal: '',
      met: '—',
    });
  const rBouncer = ratio(c10('ours-miss-pgbouncer'), miss);
  if (rBouncer !== undefined)
    rows.push({
      name: 'ours-miss through PgBouncer (DB_PREPARED_STATEMENTS=off) / ours-miss direct, req/s at c=10',
      measured: fixed(rBouncer, 2),
      goal: '',
      met: '—',
    });
  // The goal compares like with like: the same shared-page bytes (~2 KB) from the bare limit, keyed by the token.
  const rShared = ratio(c10('ours-shared'), c10('bare-redis-shared'));
  if (rShared !== undefined)
    rows.push({
      name: 'ours-shared (hot shared page, anonymous) / bare Redis serving the same page, req/s at c=10',
      measured: fixed(rShared, 2),
      goal: '≥ 0.6',
      met: verdict(rShared >= 0.6),
    });
  const sharedCpu = c10('ours-shared');
  const bareSharedCpu = c10('bare-redis-shared');
  if (sharedCpu && bareSharedCpu)
    rows.push({
      name: 'ours-shared / bare Redis serving the same page, server CPU per request at c=10',
      measured: `${fixed(sharedCpu.cpuMsPerRequest, 2)} / ${fixed(bareSharedCpu.cpuMsPerRequest, 2)} ms`,
      goal: '',
      met: '—',
    });
  // Not like for like (a 124 KB history page against a ~2 KB shared page): shown for continuity with earlier runs only.
  const rSharedHistory = ratio(c10('ours-shared'), c10('bare-redis'));
  if (rSharedHistory !== undefined)
    rows.push({
      name: 'ours-shared / bare Redis serving the history page (124 KB; not like for like), req/s at c=10',
      measured: fixed(rSharedHistory, 2),
      goal: '',
      met: '—',
    });
  const hit1 = find(points, 'ours-hit', 1);
  rows.push({
    name: 'ours-hit p99 at c=1',
    measured: hit1 ? `${fixed(hit1.p99, 2)} ms` : '–',
    goal: '< 2 ms',
    met: verdict(hit1 ? hit1.p99 < 2 : undefined),
  });
  const hit50 = find(points, 'ours-hit', 50);
  rows.push({
    name: 'ours-hit at c=50: breaker opened (Redis healthy)',
    measured: hit50 ? `${hit50.breakerOpens ?? 0} times` : '–',
    goal: 'never',
    met: verdict(hit50 ? (hit50.breakerOpens ?? 0) === 0 : undefined),
  });
  const missPoints = points.filter((p) => p.variant === 'ours-miss');
  const statements = missPoints.map((p) => p.statementsPerRequest ?? NaN);
  const constant = statements.length > 0 && statements.every((s) => Math.abs(s - statements[0]!) < 0.05);
  rows.push({
    name: 'ours-miss SQL statements per request',
    measured: statements.length
      ? statements.map((s) => fixed(s, 2)).join(' / ') + ` (c=${missPoints.map((p) => p.connections).join('/')})`
      : '–',
    goal: '≤ 5, constant',
    met: verdict(statements.length ? constant && statements.every((s) => s <= 5 && s >= 0.5) : undefined),
  });
  const ours = points.filter((p) => p.variant.startsWith('ours'));
  const oursErrors = ours.reduce((n, p) => n + p.errors, 0);
  rows.push({
    name: 'ours errors, every variant and c',
    measured: ours.length ? String(oursErrors) : '–',
    goal: '0',
    met: verdict(ours.length ? oursErrors === 0 : undefined),
  });
  rows.push({
    name: pool ? `pool of ${pool.poolMax} at c=${pool.connections} (ours-miss)` : 'pool of 10 at c=200 (ours-miss)',
    measured: pool ? `${pool.errors} errors in ${pool.requests} requests, p99 ${fixed(pool.p99, 0)} ms` : '–',
    goal: '0 errors',
    met: verdict(pool ? pool.errors === 0 : undefined),
  });
  return rows;
}

export function targetsTable(rows: TargetRow[]): string {
  return markdownTable(
    ['ratio / target (this run)', 'measured', 'target', 'met?'],
    rows.map((r) => [r.name, r.measured, r.goal, r.met]),
    ['l', 'r', 'l', 'l'],
  );
}

const START = '<!-- bench:start -->';
const END = '<!-- bench:end -->';

/** Replaces the generated part of the "Performance" section of docs/BENCHMARKS.md (the file at `path`). */
export function writeReadme(path: string, text: string): void {
  const readme = readFileSync(path, 'utf8');
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${path} has no ${START} … ${END} block in its "Performance" section`);
  writeFileSync(path, `${readme.slice(0, start + START.length)}\n${text.trim()}\n${readme.slice(end)}`);
}
