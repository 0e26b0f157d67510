/**
 * `npm run bench:usage [-- --responses=10000000 --users=10000 --days=90 --n=50 --row-seconds=60 --keep --no-build]`:
 * issue 21 item 5's bench row, usage analytics over `--responses` provider calls, goal p95 < 200 ms.
 *
 * 1. A fresh database (lib/db.ts), migrated by ours at its start (the production build, MIGRATE_ON_START): the app's schema.
 * 2. Seeded with set-based SQL (generate_series): `--users` users (user 1 is the admin), comparisons over `--days` days
 *    ending 25 h ago, each with 2–4 settled responses (≈ responses / 3 comparisons), 40 models over the 6 providers
 *    (each user keeps to 4 of them), a skewed owner (user u's share ∝ u^(-1/3): a few heavy users), 2.5 % errors
 *    (FAILED / TIMED_OUT, no tokens, no cost), every 5th user calling 30 % of the time with a personal token.
 *    The load runs with `session_replication_role = replica` (no triggers: neither the rollup's nor the foreign keys'
 *    checks, the ids are consistent by construction), the secondary indexes of the loaded tables read from pg_indexes
 *    (what the migrations made), dropped, and re-created from their own definitions afterwards.
 * 3. The rollup is built from the seeded rows by the app's own SQL: the backfill statement of
 *    Migration20261207130000_usage_rollup (read from the migration class, not copied), which fills calls, errors,
 *    tokens and cost; it leaves the latency histograms empty, so they are then filled set-based with `usage_record`'s
 *    bucket formula (LATENCY_BUCKET below, the one expression copied); the coarser rollups (by model and day, by model,
 *    token and day, by user and day) then by the backfills of Migration20261207220000_usage_rollups_coarser (read from
 *    it). Then a live tail of --tail comparisons is written as ours does (inserted PENDING, then settled by UPDATE)
 *    with the triggers on: the app's rollup path.
 * 4. Checks (exit 1 when one fails): for a sample of users, the rollup's calls, errors, tokens and cost equal the
 *    responses' to the cent; every coarser rollup equals the per-user one summed by its key (histograms too); for the live-tail users, `me.spentTodayUsd` (the budgets' own spend) equals today's
 *    `usage` cost to the cent; the plan check: an app built in-process (`queryObserver.inlineParams`) answers each
 *    measured operation once, every SELECT it sent is EXPLAIN ANALYZEd, and a plan that reads a table of recorded
 *    calls (responses, comparisons, messages, verdicts, eval rows) fails the run.
 * 5. Measured on ours over HTTP (cache bypassed): admin `usage` for each groupBy and [MODEL, DAY] over 30 and 90 days,
 *    a user's own slice (a heavy user; typical users in turn), a later page (`after`), `exportUsage` CSV. Each row
 *    `--n` requests at c=1 and at c=10 (fewer when a row exceeds `--row-seconds`: the count is recorded): p50/p95/p99
 *    and "p95 < 200 ms" met or not, with the load average beside every number.
 * Results: bench/results/usage-<time>.json. The database is dropped at the end unless --keep (then its URL is printed).
 */
import 'reflect-metadata';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import type { Client } from 'pg';
import { Migration20261207130000_usage_rollup } from '../migrations/Migration20261207130000_usage_rollup';
import { COARSER, Migration20261207220000_usage_rollups_coarser } from '../migrations/Migration20261207220000_usage_rollups_coarser';
import { BUCKET_SUMS } from '../src/modules/usage/usage-analytics.service';
import { createBenchDatabase, DEFAULT_ADMIN_URL, withClient } from './lib/db';
import { Cleanup, deleteRedisKeys, log, ROOT, startOurs } from './lib/setup';
import { rollupBackfillSql } from './lib/rollups';

const flags = new Map(
  process.argv
    .slice(2)
    .map((a) => /^--([^=]+)(?:=(.*))?$/.exec(a))
    .flatMap((m) => (m ? [[m[1]!, m[2] ?? '']] : [])),
);
const num = (name: string, fallback: number) => (flags.has(name) ? Number(flags.get(name)) : fallback);
const RESPONSES = num('responses', 10_000_000);
const USERS = num('users', 10_000);
const DAYS = num('days', 90);
const N = num('n', 50);
const ROW_SECONDS = num('row-seconds', 60);
const TAIL = num('tail', 1_000);
const KEEP = flags.has('keep');
const BUILD = !flags.has('no-build');
const GOAL_MS = 200;
const MODELS = 40;
const PROVIDERS = ['OPENAI', 'ANTHROPIC', 'GOOGLE', 'MISTRAL', 'AZURE', 'OPENAI_COMPATIBLE'];
/** Tables of recorded calls: a usage statement that reads one of them fails the plan check. */
const CALL_TABLES = ['comparison_responses', 'comparison_results', 'messages', 'judge_verdicts', 'eval_cells', 'eval_pair_verdicts'];
const NO_TOKEN = '00000000-0000-0000-0000-000000000000';

const loadAverage = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

// Ordered ids (append-only B-tree inserts): the usage statements never read them.
const id = (kind: string, n: string) => `('00000000-0000-4000-${kind}-' || lpad(to_hex(${n}), 12, '0'))::uuid`;
const idOf = (kind: string, n: number) => `00000000-0000-4000-${kind}-${n.toString(16).padStart(12, '0')}`;
export const userIdOf = (u: number) => idOf('b000', u);
/** Comparison k's owner: skewed towards low user numbers (x^1.5 of a hash of k in [0, 1)). */
const OWNER = (k: string) =>
  `(1 + floor($users::int * power(((${k}::bigint * 2654435761) % 4294967296)::float8 / 4294967296.0::float8, 1.5::float8)))::int`;
/** `usage_record`'s latency bucket (Migration20261207130000_usage_rollup): 4 per octave of ms, 64 in all. */
const LATENCY_BUCKET = (ms: string) => `least(63, greatest(0, floor(4 * ln(greatest(${ms}, 1)) / ln(2))::int))`;

/** The rows of comparisons k in [$lo, $hi] (responses: position p ≤ 2 + k % 3), at times spread evenly over [start, end). */
const COMPARISONS = `
  insert into comparison_results (id, created_at, owner_id, prompt)
  select ${id('9000', 'k')}, $start::timestamptz + (k - 1) * ($span::float8 / $count) * interval '1 millisecond',
         ${id('b000', OWNER('k'))}, 'Bench prompt ' || k
    from generate_series($lo::int, $hi::int) k`;
const RESPONSES_SQL = `
  insert into comparison_responses (id, created_at, comparison_id, position, provider, model, status, content, latency_ms,
                                    prompt_tokens, completion_tokens, cost_usd, settled_at, api_token_id)
  select ${id('8000', 'k::bigint * 4 + p')}, t + p * interval '1 millisecond', ${id('9000', 'k')}, p - 1,
         ((array[${PROVIDERS.map((p) => `'${p}'`).join(', ')}])[1 + m % 6])::provider,
         lower((array[${PROVIDERS.map((p) => `'${p}'`).join(', ')}])[1 + m % 6]) || ':bench-model-' || lpad(m::text, 2, '0'),
         (case when h % 1000 < 20 then 'FAILED' when h % 1000 < 25 then 'TIMED_OUT' else 'COMPLETED' end)::response_status,
         'ok', lat, case when h % 1000 >= 25 then 50 + h % 800 end, case when h % 1000 >= 25 then 20 + (h / 7) % 1500 end,
         case when h % 1000 >= 25 then ((50 + h % 800) * (1 + m % 10) + (20 + (h / 7) % 1500) * (3 + m % 7) * 4) * 1e-7::float8 end,
         t + p * interval '1 millisecond' + lat * interval '1 millisecond',
         case when u % 5 = 0 and k % 10 < 3 then ${id('a000', 'u')} end
    from generate_series($lo::int, $hi::int) k,
         lateral (select ${OWNER('k')} as u,
                         $start::timestamptz + (k - 1) * ($span::float8 / $count) * interval '1 millisecond' as t) c,
         generate_series(1, 2 + k % 3) p,
         lateral (select ((k::bigint * 4 + p) * 2246822519) % 4294967296 as h) x,
         lateral (select (u * 7919 + 3 * ((p - 1 + k % 2) % 4)) % ${MODELS} as m,
                         (200 + h % 2500 + case when h % 50 = 0 then 15000 else 0 end)::int as lat) y`;

/** Replaces $name placeholders (this file's SQL) with positional ones. */
function bind(sql: string, values: Record<string, unknown>): [string, unknown[]] {
  const names: string[] = [];
  const text = sql.replace(/\$([a-z]+)\b/g, (_, name: string) => {
    if (!(name in values)) throw new Error(`no value for $${name}`);
    let i = names.indexOf(name);
    if (i < 0) i = names.push(name) - 1;
    return `$${i + 1}`;
  });
  return [text, names.map((n) => values[n])];
}

async function timed<T>(steps: Record<string, number>, name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    steps[name] = Number(((performance.now() - t0) / 1000).toFixed(1));
    log(`  ${name}: ${steps[name]} s (load ${loadAverage()})`);
  }
}

async function seed(c: Client, end: Date): Promise<{ steps: Record<string, number>; comparisons: number }> {
  const steps: Record<string, number> = {};
  const comparisons = Math.round(RESPONSES / 3);
  const span = DAYS * 86_400_000;
  const start = new Date(end.getTime() - span).toISOString();
  await c.query(`set session_replication_role = replica`);
  await c.query(`set maintenance_work_mem = '256MB'`);
  await c.query(`set work_mem = '64MB'`);
  const tables = ['comparison_results', 'comparison_responses', 'usage_rollup', ...COARSER.map((r) => r.table)];
  const secondary = await c.query<{ name: string; def: string }>(
    `select i.indexname as name, i.indexdef as def from pg_indexes i
      where i.schemaname = current_schema() and i.tablename = any($1::text[])
        and not exists (select 1 from pg_constraint k where k.conindid = format('%I.%I', i.schemaname, i.indexname)::regclass)`,
    [tables],
  );
  for (const { name } of secondary.rows) await c.query(`drop index "${name}"`);
  await timed(steps, 'users', async () => {
    await c.query(
      ...bind(
        `insert into users (id, created_at, email, password_hash, role)
         select ${id('b000', 'u')}, $start::timestamptz - interval '1 day', 'usage-bench-' || u || '@example.com', 'not a hash',
                (case when u = 1 then 'ADMIN' else 'USER' end)::user_role
           from generate_series(1, $users::int) u`,
        { start, users: USERS },
      ),
    );
    await c.query(
      ...bind(
        `insert into api_tokens (id, created_at, owner_id, name, scopes, token_hash, prefix)
         select ${id('a000', 'u')}, $start::timestamptz - interval '1 day', ${id('b000', 'u')}, 'bench', '{READ,WRITE}',
                md5('token' || u), 'bench'
           from generate_series(5, $users::int, 5) u`,
        { start, users: USERS },
      ),
    );
  });
  // In chunks of 1M comparisons (one statement each: progress in the log, bounded memory).
  const CHUNK = 1_000_000;
  await timed(steps, 'comparisons', async () => {
    for (let lo = 1; lo <= comparisons; lo += CHUNK) {
      const values = { start, span, count: comparisons, lo, hi: Math.min(comparisons, lo + CHUNK - 1), users: USERS };
      await c.query(...bind(COMPARISONS, values));
    }
  });
  await timed(steps, 'responses', async () => {
    for (let lo = 1; lo <= comparisons; lo += CHUNK) {
      const values = { start, span, count: comparisons, lo, hi: Math.min(comparisons, lo + CHUNK - 1), users: USERS };
      await c.query(...bind(RESPONSES_SQL, values));
      log(`    responses of comparisons ≤ ${values.hi} (load ${loadAverage()})`);
    }
  });
  await timed(steps, 'rollup (the migration backfill)', () =>
    c.query(rollupBackfillSql(Migration20261207130000_usage_rollup, 'usage_rollup')),
  );
  await timed(steps, 'rollup latency histograms', async () => {
    await c.query(`create function pg_temp.usage_hist(b int[], n bigint[]) returns integer[] language plpgsql immutable as $$
      declare h integer[] := array_fill(0, array[64]);
      begin for i in 1..coalesce(array_length(b, 1), 0) loop h[b[i] + 1] := h[b[i] + 1] + n[i]; end loop; return h; end $$`);
    await c.query(`
      update usage_rollup u set latency_buckets = pg_temp.usage_hist(h.b, h.n)
        from (select day, user_id, provider, model, token_key, array_agg(b) as b, array_agg(n) as n
                from (select (c.created_at at time zone 'UTC')::date as day, c.owner_id as user_id, x.provider::text as provider,
                             x.model, coalesce(x.api_token_id, '${NO_TOKEN}') as token_key, ${LATENCY_BUCKET('x.latency_ms')} as b,
                             count(*) as n
                        from comparison_responses x join comparison_results c on c.id = x.comparison_id
                       where x.latency_ms is not null
                       group by 1, 2, 3, 4, 5, 6) s
               group by 1, 2, 3, 4, 5) h
       where (u.day, u.user_id, u.provider, u.model, u.token_key) = (h.day, h.user_id, h.provider, h.model, h.token_key)`);
  });
  // The coarser rollups, from the per-user one with its histograms: their migration's own backfills.
  for (const { table } of COARSER) {
    await timed(steps, `${table} (the migration backfill)`, () =>
      c.query(rollupBackfillSql(Migration20261207220000_usage_rollups_coarser, table)),
    );
  }
  await timed(steps, 'indexes', async () => {
    for (const { def } of secondary.rows) await c.query(def);
  });
  await c.query(`set session_replication_role = origin`);
  await timed(steps, 'vacuum analyze', () => c.query('vacuum analyze'));
  return { steps, comparisons };
}

/** --tail comparisons of 3 calls for users 2..201, written as ours does: inserted PENDING, then settled (the triggers on). */
async function liveTail(c: Client): Promise<{ users: number[]; seconds: number }> {
  const t0 = performance.now();
  const users = Array.from({ length: Math.min(200, USERS - 1) }, (_, i) => 2 + i);
  await c.query('begin');
  await c.query(
    `insert into comparison_results (id, created_at, owner_id, prompt)
     select ${id('9001', 'k')}, now() - interval '1 minute' + k * interval '1 millisecond', ${id('b000', `(2 + k % $2::int)`)}, 'tail'
       from generate_series(1, $1::int) k`,
    [TAIL, users.length],
  );
  await c.query(
    `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, status, api_token_id)
     select ${id('8001', 'k::bigint * 4 + p')}, now(), ${id('9001', 'k')}, p - 1, 'OPENAI', 'openai:bench-model-0' || p, 'PENDING',
            case when (2 + k % $2::int) % 5 = 0 and k % 2 = 0 then ${id('a000', `(2 + k % $2::int)`)} end
       from generate_series(1, $1::int) k, generate_series(1, 3) p`,
    [TAIL, users.length],
  );
  await c.query(
    `update comparison_responses
        set status = (case when position = 2 and comparison_id::text like '%3' then 'FAILED' else 'COMPLETED' end)::response_status,
            latency_ms = 300 + position * 400, settled_at = now(),
            prompt_tokens = case when position = 2 and comparison_id::text like '%3' then null else 120 + position end,
            completion_tokens = case when position = 2 and comparison_id::text like '%3' then null else 300 + position end,
            cost_usd = case when position = 2 and comparison_id::text like '%3' then null else 0.000123 * (position + 1) + 0.0000007 end
      where comparison_id in (select ${id('9001', 'k')} from generate_series(1, $1::int) k)`,
    [TAIL],
  );
  await c.query('commit');
  return { users, seconds: (performance.now() - t0) / 1000 };
}

/** Rollup against the responses for a sample of users (all time): calls, errors, tokens, cost to the cent. */
async function reconcile(c: Client, sample: number[]): Promise<{ users: number; mismatches: string[]; worstCostDiff: number }> {
  const mismatches: string[] = [];
  let worst = 0;
  for (const u of sample) {
    const r = (
      await c.query(
        `select (select row(sum(calls), sum(errors), sum(input_tokens), sum(output_tokens))::text
                   from usage_rollup where user_id = $1) as a,
                (select sum(cost_usd) from usage_rollup where user_id = $1) as ac,
                (select row(count(*) filter (where x.status in ('COMPLETED', 'FAILED', 'TIMED_OUT')),
                            count(*) filter (where x.status in ('FAILED', 'TIMED_OUT')),
                            sum(x.prompt_tokens), sum(x.completion_tokens))::text
                   from comparison_results c join comparison_responses x on x.comparison_id = c.id where c.owner_id = $1) as b,
                (select sum(x.cost_usd) from comparison_results c join comparison_responses x on x.comparison_id = c.id
                  where c.owner_id = $1) as bc`,
        [userIdOf(u)],
      )
    ).rows[0];
    const diff = Math.abs(Number(r.ac ?? 0) - Number(r.bc ?? 0));
    worst = Math.max(worst, diff);
    if (r.a !== r.b || Math.round(Number(r.ac ?? 0) * 100) !== Math.round(Number(r.bc ?? 0) * 100)) {
      mismatches.push(`user ${u}: rollup ${r.a} $${r.ac}, responses ${r.b} $${r.bc}`);
    }
  }
  return { users: sample.length, mismatches, worstCostDiff: worst };
}

/**
 * Each coarser rollup against the per-user one summed by its key, every group of all time (the bulk from the backfills,
 * the live tail through the triggers): calls, errors, tokens and histograms equal, cost to the cent.
 */
async function rollupsAgree(c: Client): Promise<Array<{ table: string; groups: number; mismatches: number; worstCostDiff: number }>> {
  const out = [];
  for (const { table, key } of COARSER) {
    const r = (
      await c.query(
        `select count(*) as groups, max(abs(coalesce(a.cost, 0) - coalesce(g.cost_usd, 0))) as worst,
                count(*) filter (where a.calls is distinct from g.calls or a.errors is distinct from g.errors
                                    or a.i is distinct from g.input_tokens or a.o is distinct from g.output_tokens
                                    or a.h is distinct from g.latency_buckets::bigint[]
                                    or abs(coalesce(a.cost, 0) - coalesce(g.cost_usd, 0)) >= 0.005) as mismatches
           from (select ${key.join(', ')}, sum(calls) as calls, sum(errors) as errors, sum(input_tokens) as i,
                        sum(output_tokens) as o, sum(cost_usd) as cost, ${BUCKET_SUMS} as h
                   from usage_rollup group by ${key.join(', ')}) a
           full join ${table} g using (${key.join(', ')})`,
      )
    ).rows[0];
    out.push({ table, groups: Number(r.groups), mismatches: Number(r.mismatches), worstCostDiff: Number(r.worst ?? 0) });
  }
  return out;
}

async function sign(secret: string, userId: string, role: 'USER' | 'ADMIN'): Promise<string> {
  // As TokenService.sign (src/auth/tokens.ts): HS256, role claim, subject, issuer 'llmselect'.
  return new SignJWT({ role })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(userId)
    .setIssuer('llmselect')
    .setIssuedAt()
    .setExpirationTime('4h')
    .sign(new TextEncoder().encode(secret));
}

const USAGE = `query Usage($g: [UsageDimension!]!, $from: DateTime!, $to: DateTime!, $first: Int, $after: String) {
  usage(groupBy: $g, from: $from, to: $to, first: $first, after: $after) {
    nodes { key calls errors inputTokens outputTokens costUsd latencyP50Ms latencyP95Ms } pageInfo { hasNextPage endCursor } } }`;
const EXPORT = `query Export($g: [UsageDimension!]!, $from: DateTime!, $to: DateTime!) { exportUsage(groupBy: $g, from: $from, to: $to) }`;

interface Call {
  token: string;
  query: string;
  variables: Record<string, unknown>;
}

async function gql(url: string, call: Call): Promise<any> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${call.token}`, 'cache-control': 'no-cache' },
    body: JSON.stringify({ query: call.query, variables: call.variables }),
    signal: AbortSignal.timeout(180_000),
  });
  const body = (await res.json()) as { data?: any; errors?: Array<{ message: string }> };
  if (res.status !== 200 || body.errors?.length)
    throw new Error(`HTTP ${res.status}: ${JSON.stringify(body.errors ?? body).slice(0, 300)}`);
  return body.data;
}

interface Measured {
  c: number;
  requests: number;
  errors: number;
  firstError?: string;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  goalMet: boolean;
  load: string;
}

const pct = (sorted: number[], q: number) => (sorted.length ? sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]! : NaN);

/** `n` requests (cycling over `calls`) with `c` in flight; stops early past `ROW_SECONDS` (at least 2c requests then). */
async function measure(url: string, calls: Call[], n: number, c: number): Promise<Measured> {
  await gql(url, calls[0]!).catch(() => undefined); // warm-up, not counted
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  const until = Date.now() + ROW_SECONDS * 1000;
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < n && (Date.now() < until || next < 2 * c)) {
        const call = calls[next++ % calls.length]!;
        const t0 = performance.now();
        try {
          await gql(url, call);
          latencies.push(performance.now() - t0);
        } catch (error) {
          errors++;
          firstError ??= (error as Error).message;
        }
      }
    }),
  );
  const sorted = latencies.sort((a, b) => a - b);
  const r = (x: number) => Number(x.toFixed(1));
  const p95 = pct(sorted, 0.95);
  return {
    c,
    requests: sorted.length,
    errors,
    ...(firstError ? { firstError } : {}),
    p50: r(pct(sorted, 0.5)),
    p95: r(p95),
    p99: r(pct(sorted, 0.99)),
    max: r(sorted.at(-1) ?? NaN),
    goalMet: errors === 0 && p95 < GOAL_MS,
    load: loadAverage(),
  };
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

/** Each operation once on an app built in-process with inlined parameters; every SELECT it sent, EXPLAIN ANALYZEd. */
async function checkPlans(
  env: { dbUrl: string; redisUrl: string; cachePrefix: string; jwtSecret: string; encryptionKey: string; statementMs: string },
  operations: Array<{ name: string; calls: Call[] }>,
) {
  const [{ buildApp }, { loadConfig }] = await Promise.all([import('../src/app'), import('../src/config')]);
  const config = loadConfig({
    NODE_ENV: 'production',
    DATABASE_URL: env.dbUrl,
    REDIS_URL: env.redisUrl,
    CACHE_PREFIX: env.cachePrefix,
    JWT_SECRET: env.jwtSecret,
    ENCRYPTION_KEY: env.encryptionKey,
    MIGRATE_ON_START: 'false',
    LOG_LEVEL: 'warn',
    // Long enough for every statement to finish once, so each is captured and EXPLAINed whatever ours' timeout is.
    DB_STATEMENT_TIMEOUT_MS: '300000',
    REQUEST_DEADLINE_MS: '300000',
  });
  const app = await buildApp(config, { logStream: new Writable({ write: (_c, _e, done) => done() }) });
  await new Promise<void>((resolve) => app.httpServer.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(app.httpServer.address() as AddressInfo).port}`;
  const captured: Array<{ operation: string; sql: string }> = [];
  try {
    for (const op of operations) {
      app.queryObserver.inlineParams = true;
      const stop = app.queryObserver.onQuery((sql) => {
        const text = sql.replace(/^\s*(\/\*.*?\*\/\s*)*/s, '');
        // The usage statements (the request's others are the principal's and background work's: not checked here).
        if (/^(select|with)\b/i.test(text) && /\busage_rollup(_\w+)?\b/.test(text)) captured.push({ operation: op.name, sql: text });
      });
      try {
        await gql(url, op.calls[0]!);
      } catch (error) {
        log(`  plan check: ${op.name} failed in-process: ${(error as Error).message}`);
      } finally {
        stop();
        app.queryObserver.inlineParams = false;
      }
    }
  } finally {
    await app.close();
  }
  const plans: Array<{ operation: string; sql: string; ms: number; nodes: string[]; explain: string }> = [];
  const failures: string[] = [];
  for (const op of operations)
    if (!captured.some((c) => c.operation === op.name)) failures.push(`${op.name}: no statement reading a usage rollup was captured`);
  await withClient(env.dbUrl, async (c) => {
    await c.query(`set statement_timeout = '300s'`);
    for (const { operation, sql } of captured) {
      if (/\$\d/.test(sql)) {
        failures.push(`${operation}: a statement with parameters left, not EXPLAINed: ${sql.slice(0, 200)}`);
        continue;
      }
      const explained = (await c.query(`explain (analyze, format json) ${sql}`)).rows[0]['QUERY PLAN'][0];
      const text = (await c.query(`explain ${sql}`)).rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n');
      const nodes: string[] = [];
      const walk = (n: PlanNode) => {
        const on = n['Index Name'] ?? n['Relation Name'];
        nodes.push(on ? `${n['Node Type']} (${on})` : n['Node Type']);
        if (n['Relation Name'] && CALL_TABLES.includes(n['Relation Name']))
          failures.push(`${operation}: reads ${n['Relation Name']} (${n['Node Type']})`);
        for (const child of n.Plans ?? []) walk(child);
      };
      walk(explained.Plan as PlanNode);
      plans.push({ operation, sql, ms: Number((explained['Execution Time'] as number).toFixed(1)), nodes, explain: text });
    }
  });
  return { plans, failures };
}

async function main(): Promise<number> {
  const cleanup = new Cleanup();
  process.once('SIGINT', () => void cleanup.run().then(() => process.exit(130)));
  const adminUrl = process.env.BENCH_DATABASE_URL ?? DEFAULT_ADMIN_URL;
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const failures: string[] = [];
  try {
    log(`usage analytics: ${RESPONSES} responses, ${USERS} users, ${DAYS} days (load ${loadAverage()})`);
    if (BUILD) {
      log('npm run build');
      const built = spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, encoding: 'utf8' });
      if (built.status !== 0) throw new Error(`npm run build failed:\n${built.stdout}\n${built.stderr}`);
    }
    const db = await createBenchDatabase(adminUrl);
    if (!KEEP) cleanup.add('drop the bench database', () => db.drop());
    const env = {
      dbUrl: db.url,
      redisUrl,
      cachePrefix: `llmselect-usage-bench-${randomBytes(4).toString('hex')}`,
      jwtSecret: randomBytes(48).toString('base64url'),
      encryptionKey: randomBytes(32).toString('base64'),
      // DB_STATEMENT_TIMEOUT_MS for ours (default: the app's, 5 s); BENCH_STATEMENT_TIMEOUT_MS=60000 to see past it.
      statementMs: process.env.BENCH_STATEMENT_TIMEOUT_MS ?? '5000',
    };
    cleanup.add('delete the bench Redis keys', () => deleteRedisKeys(redisUrl, env.cachePrefix));
    log(`database ${db.name}; migrating it with ours (MIGRATE_ON_START)`);
    const migrator = await startOurs('ours-migrate', env);
    await migrator.stop();

    const end = new Date(Math.floor((Date.now() - 25 * 3_600_000) / 1000) * 1000);
    const seedLoad = loadAverage();
    const t0 = performance.now();
    const seeded = await withClient(db.url, (c) => seed(c, end));
    const seedSeconds = Number(((performance.now() - t0) / 1000).toFixed(1));
    const tail = await withClient(db.url, liveTail);
    log(
      `seeded in ${seedSeconds} s (load at start ${seedLoad}, now ${loadAverage()}); ` +
        `live tail through the triggers ${tail.seconds.toFixed(1)} s`,
    );
    const sizes = await withClient(db.url, async (c) => {
      const r = (
        await c.query(
          `select pg_database_size(current_database()) as db, pg_total_relation_size('comparison_responses') as responses_bytes,
                  pg_total_relation_size('usage_rollup') as rollup_bytes,
                  ${COARSER.map((r) => `pg_total_relation_size('${r.table}') as "${r.table}_bytes", (select count(*) from ${r.table}) as "${r.table}_rows"`).join(', ')},
                  (select count(*) from comparison_responses) as responses,
                  (select count(*) from comparison_results) as comparisons, (select count(*) from usage_rollup) as rollup_rows`,
        )
      ).rows[0];
      return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Number(v)]));
    });
    log(
      `${sizes.responses} responses, ${sizes.comparisons} comparisons, ${sizes.rollup_rows} rollup rows, ` +
        COARSER.map(
          (r) => `${r.table} ${sizes[`${r.table}_rows`]} rows (${(sizes[`${r.table}_bytes`]! / 1024 ** 2).toFixed(1)} MiB), `,
        ).join('') +
        'database ' +
        `${(sizes.db! / 1024 ** 3).toFixed(2)} GiB, responses ${(sizes.responses_bytes! / 1024 ** 3).toFixed(2)} GiB, rollup ` +
        `${(sizes.rollup_bytes! / 1024 ** 2).toFixed(0)} MiB`,
    );

    // Written now and after every step below: a run cut short still leaves what it measured.
    const dir = join(ROOT, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `usage-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    const result: Record<string, unknown> = {
      options: {
        responses: RESPONSES,
        users: USERS,
        days: DAYS,
        n: N,
        rowSeconds: ROW_SECONDS,
        tail: TAIL,
        statementTimeoutMs: env.statementMs,
      },
      versions: await withClient(db.url, async (c) => (await c.query(`select version() as v`)).rows[0].v),
      seed: { seconds: seedSeconds, loadAtStart: seedLoad, steps: seeded.steps, liveTailSeconds: tail.seconds },
      sizes,
      goalMs: GOAL_MS,
    };
    const save = () => writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    save();

    // Users to sample: the heaviest few, then spread over everyone, and live-tail users.
    const sample = [1, 2, 3, 10, ...Array.from({ length: 12 }, (_, i) => Math.max(1, Math.floor(((i + 1) * USERS) / 13))), tail.users[3]!];
    const reconciled = await withClient(db.url, (c) => reconcile(c, sample));
    log(
      `reconcile (rollup vs responses, ${reconciled.users} users, all time): ${reconciled.mismatches.length} mismatches, ` +
        `worst cost difference $${reconciled.worstCostDiff.toExponential(2)}`,
    );
    for (const m of reconciled.mismatches) failures.push(`reconcile: ${m}`);
    result.reconcile = { ...reconciled, sample };
    const agree = await withClient(db.url, rollupsAgree);
    for (const a of agree) {
      log(
        `${a.table} vs usage_rollup summed by its key (${a.groups} groups): ${a.mismatches} mismatches, ` +
          `worst cost difference $${a.worstCostDiff.toExponential(2)}`,
      );
      if (a.mismatches) failures.push(`rollups: ${a.mismatches} of ${a.table}'s ${a.groups} groups differ from usage_rollup`);
    }
    result.rollupsAgree = agree;
    save();

    const ours = await startOurs('ours', env, { DB_STATEMENT_TIMEOUT_MS: env.statementMs });
    cleanup.add('stop ours', () => ours.stop());
    const admin = await sign(env.jwtSecret, userIdOf(1), 'ADMIN');
    const heavy = await sign(env.jwtSecret, userIdOf(2), 'USER');
    const typical = await Promise.all(
      Array.from({ length: 20 }, (_, i) => sign(env.jwtSecret, userIdOf(Math.floor(USERS / 2) + i * 17), 'USER')),
    );
    const to = new Date(Date.now() + 86_400_000);
    to.setUTCHours(0, 0, 0, 0);
    const range = (days: number) => ({ from: new Date(to.getTime() - days * 86_400_000).toISOString(), to: to.toISOString() });

    // The budgets' spend against today's usage, for live-tail users (their only calls of the last 24 h are today's).
    const budget: Array<{ user: number; spentTodayUsd: number; usageTodayUsd: number }> = [];
    for (const u of tail.users.slice(0, 10)) {
      const token = await sign(env.jwtSecret, userIdOf(u), 'USER');
      const spent = (await gql(ours.url, { token, query: 'query { me { spentTodayUsd } }', variables: {} })).me.spentTodayUsd as number;
      const today = await gql(ours.url, { token, query: USAGE, variables: { g: ['DAY'], ...range(1) } });
      const usd = (today.usage.nodes as Array<{ costUsd: number }>).reduce((s, r) => s + r.costUsd, 0);
      budget.push({ user: u, spentTodayUsd: spent, usageTodayUsd: usd });
      if (Math.round(spent * 100) !== Math.round(usd * 100)) failures.push(`budget: user ${u} spent $${spent} today, usage says $${usd}`);
    }
    log(
      `budgets' spend vs today's usage (${budget.length} live-tail users): ` +
        (budget.every((b) => Math.round(b.spentTodayUsd * 100) === Math.round(b.usageTodayUsd * 100)) ? 'equal to the cent' : 'MISMATCH'),
    );
    result.budget = budget;
    save();

    const adminCall = (g: string[], days: number, extra: Record<string, unknown> = {}): Call => ({
      token: admin,
      query: USAGE,
      variables: { g, ...range(days), ...extra },
    });
    // A later page: the cursor after 5 pages of 100 users, walked over the last 7 days (a cursor is a key, the same in any
    // range of the same groupBy): walking the 90-day range itself may take longer than ours' statement timeout.
    let cursor: string | null = null;
    for (let i = 0; i < 5; i++) {
      const page: any = await gql(ours.url, adminCall(['USER'], 7, { after: cursor }));
      if (!page.usage.pageInfo.hasNextPage) break;
      cursor = page.usage.pageInfo.endCursor;
    }
    const operations: Array<{ name: string; calls: Call[] }> = [];
    for (const days of [30, 90]) {
      for (const g of [['USER'], ['MODEL'], ['PROVIDER'], ['DAY'], ['TOKEN'], ['MODEL', 'DAY']]) {
        operations.push({ name: `admin ${g.join('+')} ${days}d`, calls: [adminCall(g, days)] });
      }
    }
    operations.push({ name: 'admin USER 90d, page 6 (after)', calls: [adminCall(['USER'], 90, { after: cursor })] });
    operations.push({
      name: 'own MODEL 90d (heavy user 2)',
      calls: [{ token: heavy, query: USAGE, variables: { g: ['MODEL'], ...range(90) } }],
    });
    operations.push({
      name: 'own MODEL+DAY 90d (typical users)',
      calls: typical.map((token) => ({ token, query: USAGE, variables: { g: ['MODEL', 'DAY'], ...range(90) } })),
    });
    operations.push({
      name: 'exportUsage admin MODEL+DAY 90d',
      calls: [{ token: admin, query: EXPORT, variables: { g: ['MODEL', 'DAY'], ...range(90) } }],
    });
    operations.push({
      name: 'exportUsage admin USER 30d',
      calls: [{ token: admin, query: EXPORT, variables: { g: ['USER'], ...range(30) } }],
    });
    operations.push({
      name: 'exportUsage own MODEL+DAY 90d (heavy user 2)',
      calls: [{ token: heavy, query: EXPORT, variables: { g: ['MODEL', 'DAY'], ...range(90) } }],
    });

    log('plan check (EXPLAIN ANALYZE of every statement of each operation, app built in-process)');
    const planCheck = await checkPlans(env, operations);
    result.planCheck = planCheck;
    save();
    for (const p of planCheck.plans) log(`  ${p.operation} (${p.ms} ms): ${p.nodes.join(' > ')}`);
    failures.push(...planCheck.failures);
    log(
      planCheck.failures.length
        ? `  PLAN CHECK FAILED: ${planCheck.failures.join('; ')}`
        : '  plan check passed: no usage statement reads a table of recorded calls',
    );

    const rows: Array<{ operation: string; c1: Measured; c10: Measured }> = [];
    for (const op of operations) {
      const c1 = await measure(ours.url, op.calls, N, 1);
      const c10 = await measure(ours.url, op.calls, N, 10);
      rows.push({ operation: op.name, c1, c10 });
      result.rows = rows;
      save();
      const show = (m: Measured) =>
        `c=${m.c} ${m.requests} req p50 ${m.p50} p95 ${m.p95} p99 ${m.p99} ms${m.errors ? ` ${m.errors} errors` : ''} (load ${m.load})`;
      log(`  ${op.name.padEnd(44)} ${show(c1)} | ${show(c10)} | p95 < ${GOAL_MS} ms: ${c1.goalMet && c10.goalMet ? 'met' : 'NOT MET'}`);
    }
    const errors = rows.reduce((s, r) => s + r.c1.errors + r.c10.errors, 0);
    const goalMet = rows.every((r) => r.c1.goalMet && r.c10.goalMet);
    log(
      `target "p95 < ${GOAL_MS} ms" (every row, c=1 and c=10): ` +
        (goalMet ? 'MET' : `NOT MET (${rows.filter((r) => !(r.c1.goalMet && r.c10.goalMet)).length} of ${rows.length} rows)`),
    );

    Object.assign(result, { goalMet, failures });
    save();
    log(`results: ${file.slice(ROOT.length + 1)}`);
    if (KEEP) log(`kept the database: ${db.url} (drop database ${db.name} with (force) when done)`);
    if (failures.length || errors) {
      log(`FAILED: ${failures.length} check failures, ${errors} request errors`);
      return 1;
    }
    return 0;
  } finally {
    await cleanup.run();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(error);
    process.exitCode = 1;
  },
);
