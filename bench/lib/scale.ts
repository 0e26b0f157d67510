/**
 * `npm run bench -- --scale=N [--quick] [--no-baseline] [--spread]`: the cost as data grows (issue 20 item 3).
 *
 * For scale 1 (the baseline, unless --no-baseline) and then scale N, in the same invocation: a fresh bench database,
 * migrated by ours, seeded with WORKLOAD × N users (same per-user shape; lib/seed.ts: set-based INSERT … SELECT over
 * generate_series, secondary indexes rebuilt after the bulk insert from the migrations' own definitions), ANALYZEd. Then:
 * - sizes: pg_database_size and pg_total_relation_size('messages'), each per 1M messages;
 * - the plan check (EXPLAIN ANALYZE: each statement's execution time too): an app built in-process on that database (`queryObserver.inlineParams = true`) answers one request of
 *   each hot read (history page, conversation view, comparison view, search; cache bypassed) and every SELECT it sent is
 *   EXPLAINed (FORMAT JSON) on the bench database: each plan's node types are printed, and a `Seq Scan` on a table of more
 *   than 10,000 rows (pg_class.reltuples) fails the run (exit 1), and so does a `to_tsvector(` in a node's filter (text
 *   parsed per row read, not read from the stored `content_tsv`);
 * - history page, conversation view (second page of 5) and search (a rare word: the md5 token of one of the user's
 *   messages, one hit) on ours (production build, cache bypassed) at c=10: req/s, p50, p99, with the load average beside.
 * Printed at the end: each row at scale N against scale 1 (latency ratio, goal ≤ 1.3×; req/s ratio, goal ≥ 1/1.3).
 * Requests cycle over the first 200 users' tokens (the hot set), or with --spread over 200 users spread across all.
 * Results: bench/results/scale-<time>.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { withClient } from './db';
import { LoadGenerator, type LoadRequest, totalErrors } from './load';
import type { Options } from './options';
import { CONVERSATION_VIEW, COMPARISON_VIEW, HISTORY } from './queries';
import { comparisonId, conversationId, md5Uuid, WORKLOAD } from './seed';
import { Cleanup, type Environment, log, mapLimit, prepare, ROOT } from './setup';

const SEARCH = `query Search($q: String!) { search(query: $q, first: 20) {
  nodes { snippet message { id role content createdAt } } pageInfo { endCursor hasNextPage } } }`;
/** A sequential scan of a table with more rows than this fails the plan check. */
const SEQ_SCAN_LIMIT = 10_000;
const ROWS = ['history', 'conversation', 'search'] as const;
type Row = (typeof ROWS)[number];

interface Measured {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
  load: string;
}

interface ScaleResult {
  scale: number;
  rows: Record<string, number>;
  seedSeconds: number;
  seedSteps: Record<string, number>;
  load: string;
  sizes: { databaseBytes: number; messagesBytes: number; messages: number; databaseMbPer1M: number; messagesMbPer1M: number };
  plans: Array<{ operation: string; sql: string; ms: number; nodes: string[]; seqScans: Array<{ table: string; rows: number }> }>;
  failures: string[];
  measured: Partial<Record<Row, Measured>>;
}

const loadAverage = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

const headers = (token: string) => ({ 'content-type': 'application/json', authorization: `Bearer ${token}`, 'cache-control': 'no-cache' });

function request(token: string, query: string, operationName: string, variables: object): LoadRequest {
  return { method: 'POST', path: '/graphql', headers: headers(token), body: JSON.stringify({ query, variables, operationName }) };
}

/** The md5 token in the text of message `m` of conversation `c` of user `u` (lib/seed.ts TEXT): a word of one message. */
const rareWord = (u: number, c: number, m: number) => md5Uuid(`m${u}-${c}-${m}`).replaceAll('-', '');

async function post(url: string, r: LoadRequest): Promise<any> {
  const res = await fetch(`${url}${r.path}`, { method: 'POST', headers: r.headers, body: r.body, signal: AbortSignal.timeout(60_000) });
  const body = (await res.json()) as { data?: any; errors?: unknown[] };
  if (res.status !== 200 || body.errors?.length) throw new Error(`HTTP ${res.status}: ${JSON.stringify(body).slice(0, 300)}`);
  return body.data;
}

/** The requests of each measured row for every cycled user (conversation view: second page, with ours' first endCursor). */
async function requestsOf(env: Environment): Promise<Record<Row, LoadRequest[]>> {
  const url = env.ours.url;
  const conversation = await mapLimit(env.users, 8, async (u) => {
    const id = conversationId(u.n, 1 + (u.n % WORKLOAD.conversations));
    const first = await post(url, request(u.token, CONVERSATION_VIEW, 'ConversationView', { id, n: 5, after: null }));
    const after = first.conversation?.messages?.pageInfo?.endCursor;
    if (!after) throw new Error(`no first page of conversation ${id}`);
    return request(u.token, CONVERSATION_VIEW, 'ConversationView', { id, n: 5, after });
  });
  const search = env.users.map((u) =>
    request(u.token, SEARCH, 'Search', { q: rareWord(u.n, 1 + (u.n % WORKLOAD.conversations), 1 + (u.n % WORKLOAD.messages)) }),
  );
  const hits = (await post(url, search[0]!)).search.nodes.length;
  if (hits !== 1) throw new Error(`search for a rare word of user ${env.users[0]!.n} found ${hits} hits, expected 1`);
  return { history: env.users.map((u) => request(u.token, HISTORY, 'History', {})), conversation, search };
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Filter?: string;
  Plans?: PlanNode[];
}

/** One request of each hot read on an app built in-process with inlined parameters; every SELECT sent, EXPLAINed. */
async function checkPlans(env: Environment): Promise<Pick<ScaleResult, 'plans' | 'failures'>> {
  const [{ buildApp }, { loadConfig }, { BACKGROUND_SQL_TAG }] = await Promise.all([
    import('../../src/app'),
    import('../../src/config'),
    import('../../src/modules/comparison/comparison-runner'),
  ]);
  const config = loadConfig({
    NODE_ENV: 'production',
    DATABASE_URL: env.db.url,
    REDIS_URL: env.redisUrl,
    CACHE_PREFIX: env.cachePrefix,
    JWT_SECRET: env.jwtSecret,
    ENCRYPTION_KEY: env.encryptionKey,
    MIGRATE_ON_START: 'false',
    LOG_LEVEL: 'warn',
  });
  const app = await buildApp(config, { logStream: new Writable({ write: (_c, _e, done) => done() }) });
  await new Promise<void>((resolve) => app.httpServer.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(app.httpServer.address() as AddressInfo).port}`;
  const u = env.users[env.users.length - 1]!;
  const conversation = conversationId(u.n, 1 + (u.n % WORKLOAD.conversations));
  const operations: Array<[string, () => LoadRequest | Promise<LoadRequest>]> = [
    ['history page', () => request(u.token, HISTORY, 'History', {})],
    [
      'conversation view',
      async () => {
        const first = await post(url, request(u.token, CONVERSATION_VIEW, 'ConversationView', { id: conversation, n: 5, after: null }));
        return request(u.token, CONVERSATION_VIEW, 'ConversationView', {
          id: conversation,
          n: 5,
          after: first.conversation.messages.pageInfo.endCursor,
        });
      },
    ],
    ['comparison view', () => request(u.token, COMPARISON_VIEW, 'ComparisonView', { id: comparisonId(u.n, 1) })],
    ['search', () => request(u.token, SEARCH, 'Search', { q: rareWord(u.n, 2, 3) })],
  ];
  const captured: Array<{ operation: string; sql: string }> = [];
  try {
    for (const [operation, make] of operations) {
      const r = await make();
      app.queryObserver.inlineParams = true;
      const stop = app.queryObserver.onQuery((sql) => {
        const text = sql.replace(/^\s*(\/\*.*?\*\/\s*)*/s, '');
        if (!sql.startsWith(BACKGROUND_SQL_TAG) && /^(select|with)\b/i.test(text)) captured.push({ operation, sql: text });
      });
      try {
        await post(url, r);
      } finally {
        stop();
        app.queryObserver.inlineParams = false;
      }
    }
  } finally {
    await app.close();
  }
  const plans: ScaleResult['plans'] = [];
  const failures: string[] = [];
  await withClient(env.db.url, async (c) => {
    const tuples = new Map(
      (await c.query<{ t: string; n: number }>(`select relname as t, reltuples::float8 as n from pg_class where relkind = 'r'`)).rows.map(
        (r) => [r.t, r.n],
      ),
    );
    for (const { operation, sql } of captured) {
      // ANALYZE: the statement runs (reads only), so each plan comes with its real execution time.
      const explained = (await c.query(`explain (analyze, format json) ${sql}`)).rows[0]['QUERY PLAN'][0];
      const plan = explained.Plan as PlanNode;
      const ms = explained['Execution Time'] as number;
      const nodes: string[] = [];
      const seqScans: Array<{ table: string; rows: number }> = [];
      const walk = (n: PlanNode) => {
        const on = n['Index Name'] ?? n['Relation Name'];
        nodes.push(on ? `${n['Node Type']} (${on})` : n['Node Type']);
        if (n['Node Type'] === 'Seq Scan' && n['Relation Name'])
          seqScans.push({ table: n['Relation Name'], rows: tuples.get(n['Relation Name']) ?? 0 });
        // Parsing each candidate row's text to filter it (the search's per-user path before content_tsv) grows with the rows read.
        if (n.Filter?.includes('to_tsvector(')) failures.push(`${operation}: to_tsvector in a filter on ${on ?? n['Node Type']}`);
        for (const child of n.Plans ?? []) walk(child);
      };
      walk(plan);
      plans.push({ operation, sql, ms, nodes, seqScans });
      for (const s of seqScans)
        if (s.rows > SEQ_SCAN_LIMIT) failures.push(`${operation}: Seq Scan on ${s.table} (${Math.round(s.rows)} rows)`);
    }
  });
  return { plans, failures };
}

async function measureAll(env: Environment, options: Options, load: LoadGenerator): Promise<Partial<Record<Row, Measured>>> {
  const requests = await requestsOf(env);
  const measured: Partial<Record<Row, Measured>> = {};
  for (const row of ROWS) {
    const { result } = await load.run({
      url: env.ours.url,
      connections: 10,
      warmupSeconds: options.warmupSeconds,
      seconds: options.seconds,
      timeoutSeconds: 10,
      verify: true,
      requests: requests[row],
    });
    measured[row] = {
      rps: result.rps,
      p50: result.p50,
      p99: result.p99,
      requests: result.requests,
      errors: totalErrors(result),
      load: loadAverage(),
    };
    const m = measured[row]!;
    log(
      `  ${row.padEnd(12)} c=10: ${m.rps.toFixed(0)} req/s, p50 ${m.p50.toFixed(2)} ms, p99 ${m.p99.toFixed(2)} ms, ${m.errors} errors (load ${m.load})`,
    );
  }
  return measured;
}

async function runOne(scale: number, options: Options, load: LoadGenerator, build: boolean): Promise<ScaleResult> {
  const cleanup = new Cleanup();
  try {
    log(`== scale ${scale} (load ${loadAverage()})`);
    const env = await prepare({ ...options, scale, build }, cleanup);
    const seedLoad = loadAverage();
    const sizes = await withClient(env.db.url, async (c) => {
      const r = (
        await c.query<{ db: string; m: string; n: string }>(
          `select pg_database_size(current_database()) as db, pg_total_relation_size('messages') as m, (select count(*) from messages) as n`,
        )
      ).rows[0]!;
      const messages = Number(r.n);
      const per = (bytes: number) => bytes / 1024 / 1024 / (messages / 1e6);
      return {
        databaseBytes: Number(r.db),
        messagesBytes: Number(r.m),
        messages,
        databaseMbPer1M: per(Number(r.db)),
        messagesMbPer1M: per(Number(r.m)),
      };
    });
    log(
      `scale ${scale}: seeded in ${env.seedSeconds.toFixed(1)} s (load ${seedLoad}); ${sizes.messages} messages; database ` +
        `${(sizes.databaseBytes / 1024 ** 3).toFixed(2)} GiB = ${sizes.databaseMbPer1M.toFixed(0)} MiB per 1M messages; messages table ` +
        `(with indexes, TOAST) ${sizes.messagesMbPer1M.toFixed(0)} MiB per 1M messages`,
    );
    const { plans, failures } = await checkPlans(env);
    for (const p of plans) log(`  plan ${p.operation} (${p.ms.toFixed(2)} ms): ${p.nodes.join(' > ')}`);
    if (failures.length) for (const f of failures) log(`  PLAN CHECK FAILED: ${f}`);
    else log(`  plan check passed: ${plans.length} statements, no Seq Scan on a table over ${SEQ_SCAN_LIMIT} rows`);
    const measured = await measureAll(env, options, load);
    const rows = await withClient(env.db.url, async (c) =>
      Object.fromEntries(
        (
          await c.query<{ t: string; n: string }>(
            `select relname as t, n_live_tup as n from pg_stat_user_tables where n_live_tup > 0 order by relname`,
          )
        ).rows.map((r) => [r.t, Number(r.n)]),
      ),
    );
    return { scale, rows, seedSeconds: env.seedSeconds, seedSteps: env.seedSteps, load: seedLoad, sizes, plans, failures, measured };
  } finally {
    await cleanup.run();
  }
}

export async function runScale(options: Options, _cleanup: Cleanup): Promise<number> {
  const scales = options.baseline && options.scale !== 1 ? [1, options.scale] : [options.scale];
  const load = LoadGenerator.start();
  const results: ScaleResult[] = [];
  try {
    for (const [i, scale] of scales.entries()) results.push(await runOne(scale, options, load, options.build && i === 0));
  } finally {
    await load.stop();
  }
  const [small, big] = [results[0]!, results[results.length - 1]!];
  const ratios: Record<string, { latency: number; rps: number }> = {};
  if (results.length > 1) {
    log(`scale ${big.scale} against scale 1 (same invocation), c=10, goal: p50 ≤ 1.3× and req/s ≥ 1/1.3 of scale 1`);
    for (const row of ROWS) {
      const a = small.measured[row]!;
      const b = big.measured[row]!;
      ratios[row] = { latency: b.p50 / a.p50, rps: b.rps / a.rps };
      const ok = ratios[row].latency <= 1.3 && ratios[row].rps >= 1 / 1.3;
      log(
        `  ${row.padEnd(12)} ${a.rps.toFixed(0)} → ${b.rps.toFixed(0)} req/s (×${ratios[row].rps.toFixed(2)}), p50 ${a.p50.toFixed(2)} → ` +
          `${b.p50.toFixed(2)} ms (×${ratios[row].latency.toFixed(2)}) ${ok ? 'ok' : 'OVER GOAL'} (load ${a.load} / ${b.load})`,
      );
    }
  }
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `scale-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  const errors = results.flatMap((r) => ROWS.map((row) => r.measured[row]?.errors ?? 0)).reduce((a, b) => a + b, 0);
  writeFileSync(
    file,
    `${JSON.stringify({ options: { ...options, adminUrl: undefined, redisUrl: undefined }, spread: options.spread, results, ratios }, null, 2)}\n`,
  );
  log(`results: ${file.slice(ROOT.length + 1)}`);
  const failures = results.flatMap((r) => r.failures.map((f) => `scale ${r.scale}: ${f}`));
  if (failures.length || errors) {
    log(`FAILED: ${failures.length} plan check failures, ${errors} request errors`);
    return 1;
  }
  return 0;
}
