/**
 * `npm run bench`: the history page of issue 7 against production builds of
 * ours, PostGraphile 5, PostGraphile 4 and two bare node:http limits, on the
 * same seeded data in the same run, with autocannon in its own process.
 * `npm run bench -- --soak`: the RSS soak (see lib/soak.ts).
 *
 * Rows (`--variants=a,b` runs only those; ours always starts, as the reference of the data checks):
 * - the history page: ours-miss, ours-miss-resolvers, ours-miss-js, ours-miss-traced / ours-miss-traced-10pct (OpenTelemetry
 *   on, every trace / one in ten, exported to a local OTLP/HTTP sink: lib/otlp-sink.ts), ours-hit, ours-hit-remote, postgraphile5,
 *   postgraphile4, bare-sql, bare-redis; ours-shared (a hot shared page) beside bare-redis-shared (its limit: the same
 *   ~2 KB bytes from one Redis GET keyed by the body's token; ratio goal ≥ 0.6); ours-miss-pgbouncer (c=10: ours, cache
 *   bypassed, through a PgBouncer in transaction pooling started by the bench, DB_PREPARED_STATEMENTS=off).
 * - the views (c=10 only): ours-conversation / ours-comparison (ours, cache bypassed), postgraphile5-conversation /
 *   postgraphile5-comparison, and bare-conversation / bare-comparison: the honest limit, limits/bare-views.js, ONE prepared
 *   statement building the whole document in PostgreSQL as ours' compiled read does, on ours' own requests (its cursor
 *   verified and signed with ours' secret). Checked before measuring: the same data as ours (and the same end cursor).
 *   Ratio ours / bare printed, goal ≥ 0.9.
 * - writes (c=1/10/50): ours-send-message, ours-vote, ours-create-conversation on their own instance of ours, which calls
 *   a fake provider in its own process (lib/fake-llm-child.ts, one delta at once) with each user's saved key; beside
 *   bare-send-message, bare-vote, bare-create-conversation (limits/bare-writes.js: the same INSERTs in one transaction per
 *   request; sendMessage also reads the history and calls the same fake provider). Votes go to settled, unvoted
 *   comparisons seeded in bulk just before each vote point (BENCH_VOTES_PER_SECOND × the point's seconds, default 3000),
 *   and each point walks its list once (LoadSpec.continuous). Checked: one write of each on both servers answers the same
 *   data (ids and times aside), and after every point the table gained ≥ rows per request × answered requests (warm-up
 *   included), else the run fails. Printed: req/s, p50/p99, ratio ours / bare per c (goal ≥ 0.5, p99 at c=10 beside
 *   it) and SQL statements per request (ours: /metrics; bare: pg client calls, begin and commit included).
 * `npm run bench -- --smoke`: every row (or --variants) for 1 s + 2 s at c=10, no pool check, no goals: the data checks
 * and row counts above, and exit 1 on any error (results in bench/results/smoke-*.json). A regression guard.
 * `npm run bench:smoke` (--ci, run by .ci/run after the tests): the same, sized for CI (about a minute): a 60-user seed,
 * 20 users cycled, every row but PostGraphile's for 0.5 s at c=10 with no warm-up and no wait for idle servers, a pool
 * of 3 per server, every server started at once; the history page and the views checked against ours' resolvers.
 * `npm run bench -- --scale=N`: the cost as data grows (seed × N users, plan check, ratios to scale 1): lib/scale.ts.
 * Flags and environment: lib/options.ts. What is measured and how: docs/BENCHMARKS.md "Performance".
 */
import { pgbouncerMissing, startPgBouncer } from '../test/helpers/pgbouncer';
import { fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { LoadGenerator, type LoadRequest, type LoadSpec, totalErrors } from './lib/load';
import { startOtlpSink } from './lib/otlp-sink';
import { assertLoopback, parseOptions, UsageError, type Options, type Variant } from './lib/options';
import { cpuMs, freePort, ServerProcess } from './lib/procs';
import {
  COMPARISON_VIEW,
  COMPARISON_VIEW_POSTGRAPHILE5,
  CONVERSATION_VIEW,
  CONVERSATION_VIEW_POSTGRAPHILE5,
  firstDifference,
  HISTORY,
  historyDifference,
  HISTORY_POSTGRAPHILE4,
  HISTORY_POSTGRAPHILE5,
  normalise,
  viewDifference,
  type Dialect,
  type View,
} from './lib/queries';
import { label, pointsTable, type Point, type PoolCheck, targets, targetsTable, writeReadme } from './lib/report';
import {
  baseEnv,
  Cleanup,
  type Environment,
  ensurePeerInstalled,
  graphql,
  log,
  mapLimit,
  prepare,
  ROOT,
  signToken,
  startOurs,
  waitQuiet,
} from './lib/setup';
import { withClient } from './lib/db';
import { runScale } from './lib/scale';
import { runSoak } from './lib/soak';
import { comparisonId, conversationId, md5Uuid, userId, WORKLOAD } from './lib/seed';
import { createClient } from '@redis/client';

interface Target {
  server: ServerProcess;
  /** Cumulative SQL statements the server has sent, or null when it has no database. */
  statements(): Promise<number | null>;
  statementsSource: string;
  requests: LoadRequest[];
  dialect: Dialect | 'bytes';
  /** Writes: every answered request must add `rowsPerRequest` rows to `table`; `requestsFor` makes fresh requests per point. */
  writes?: {
    table: string;
    rowsPerRequest: number;
    rows: () => Promise<number>;
    requestsFor?: (point: LoadSpec) => Promise<LoadRequest[]>;
  };
}

const PEERS = join(ROOT, 'bench', 'peers');
/** Comparison rows of ours (how much each layer buys), measured at c=10 only to keep the run under 10 minutes. */
const VIEWS: Record<View, { ours: Variant; postgraphile5: Variant; bare: Variant }> = {
  conversation: { ours: 'ours-conversation', postgraphile5: 'postgraphile5-conversation', bare: 'bare-conversation' },
  comparison: { ours: 'ours-comparison', postgraphile5: 'postgraphile5-comparison', bare: 'bare-comparison' },
};
const VIEW_VARIANTS = new Set<Variant>(Object.values(VIEWS).flatMap((v) => [v.ours, v.postgraphile5, v.bare]));
const ONLY_AT_C10 = new Set<Variant>([
  'ours-miss-resolvers',
  'ours-miss-js',
  'ours-hit-remote',
  'ours-miss-pgbouncer',
  'ours-shared',
  'bare-redis-shared',
  ...VIEW_VARIANTS,
]);
/** The rows of the history page (the others are the views, the shared page and the writes). */
const HISTORY_VARIANTS = new Set<Variant>([
  'ours-miss',
  'ours-miss-resolvers',
  'ours-miss-js',
  'ours-miss-traced',
  'ours-miss-traced-10pct',
  'ours-hit',
  'ours-hit-remote',
  'ours-miss-pgbouncer',
  'postgraphile5',
  'postgraphile4',
  'bare-sql',
  'bare-redis',
]);
/** The shared page: what a colleague opening a link asks for, without a token. */
const SHARED_PAGE = `query SharedPage($token: String!) { shared(token: $token) { title sharedAt
  messages { role content model createdAt }
  comparisons { prompt blind revealed createdAt responses { label model content status kind } } } }`;
const LIMITS = join(ROOT, 'bench', 'limits');
/**
 * Extra settings of every server of the run: the CI smoke runs a dozen servers beside the test suite's PostgreSQL
 * users, so each gets a pool of 3 (c=10 still queues on it) instead of 10, and max_connections (100) holds.
 */
let serverEnv: Record<string, string> = {};
const startOursHere: typeof startOurs = (name, e, extra = {}, nodeArgs) => startOurs(name, e, { ...serverEnv, ...extra }, nodeArgs);

/** Sum of ours' `llmselect_db_query_duration_seconds_count` (every SQL statement, all outcomes). */
async function oursStatements(server: ServerProcess): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('llmselect_db_query_duration_seconds_count')) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

async function benchStatements(server: ServerProcess): Promise<number> {
  const res = await fetch(`${server.url}/__bench/stats`, { signal: AbortSignal.timeout(10_000) });
  return ((await res.json()) as { statements: number }).statements;
}

async function startPeer(name: string, script: string, cwd: string, env: Record<string, string>): Promise<ServerProcess> {
  const port = await freePort();
  return ServerProcess.start({
    name,
    args: [process.execPath, script],
    cwd,
    port,
    readyPath: '/__bench/ready',
    env: baseEnv({ NODE_ENV: 'production', PORT: String(port), DB_POOL_MAX: '10', ...serverEnv, ...env }),
  });
}

function oursRequests(env: Environment, bypassCache: boolean): LoadRequest[] {
  const body = JSON.stringify({ query: HISTORY, operationName: 'History' });
  return env.users.map((u) => ({
    method: 'POST',
    path: '/graphql',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${u.token}`,
      ...(bypassCache ? { 'cache-control': 'no-cache' } : {}),
    },
    body,
  }));
}

function postgraphileRequests(env: Environment, query: string): LoadRequest[] {
  // The user id travels as a variable (the token is sent too, and ignored): see docs/BENCHMARKS.md "Performance".
  return env.users.map((u) => ({
    method: 'POST',
    path: '/graphql',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` },
    body: JSON.stringify({ query, variables: { id: u.id }, operationName: 'History' }),
  }));
}

/**
 * The requests of a view for every cycled user, on ours (the read cache
 * bypassed: a miss, answered by the compiled read) and on PostGraphile 5. The
 * conversation view asks for the second page of 5 messages of one of the
 * user's conversations, with the first page's `endCursor` (each server's own)
 * as the variable; the comparison view for one of the user's comparisons.
 */
async function viewRequests(
  env: Environment,
  view: View,
  server: ServerProcess,
  dialect: 'ours' | 'postgraphile5',
): Promise<LoadRequest[]> {
  const ours = dialect === 'ours';
  return mapLimit(env.users, 8, async (u) => {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      authorization: `Bearer ${u.token}`,
      ...(ours ? { 'cache-control': 'no-cache' } : {}),
    };
    const conversationQuery = ours ? CONVERSATION_VIEW : CONVERSATION_VIEW_POSTGRAPHILE5;
    const comparisonQuery = ours ? COMPARISON_VIEW : COMPARISON_VIEW_POSTGRAPHILE5;
    const request = (variables: Record<string, unknown>): LoadRequest => ({
      method: 'POST',
      path: '/graphql',
      headers,
      body: JSON.stringify({
        query: view === 'conversation' ? conversationQuery : comparisonQuery,
        variables,
        operationName: view === 'conversation' ? 'ConversationView' : 'ComparisonView',
      }),
    });
    if (view === 'comparison') return request({ id: comparisonId(u.n, 1 + (u.n % WORKLOAD.comparisons)) });
    const id = conversationId(u.n, 1 + (u.n % WORKLOAD.conversations));
    const first = await fetchBody(server, request({ id, n: 5, after: null }));
    const parsed = JSON.parse(first.toString('utf8'));
    const page = ours ? parsed.data?.conversation?.messages : parsed.data?.conversationByRowId?.messagesByConversationId;
    if (!page?.pageInfo?.endCursor) {
      throw new Error(`${server.spec.name}: no first page for the conversation view: ${first.toString('utf8').slice(0, 300)}`);
    }
    return request({ id, n: 5, after: page.pageInfo.endCursor });
  });
}

async function fetchBody(server: ServerProcess, request: LoadRequest): Promise<Buffer> {
  const res = await fetch(`${server.url}${request.path}`, {
    method: 'POST',
    headers: request.headers,
    body: request.body,
    signal: AbortSignal.timeout(30_000),
  });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`HTTP ${res.status} from ${server.spec.name}: ${body.toString('utf8').slice(0, 300)}`);
  return body;
}

/**
 * Same data from each server of a view as from the reference, for a sample of users (cursors aside, as each server
 * signs its own; a server in ours' dialect signs with ours' secret, so its cursor must be the reference's exactly).
 * The reference is ours' resolvers (COMPILED_READS=off) when they run, else ours; ours' own view is then checked too.
 * Body size of each.
 */
async function checkViews(
  view: View,
  ours: Target,
  others: Map<Variant, Target>,
  resolvers?: ServerProcess,
): Promise<Map<Variant, number>> {
  const sample = [0, 1, 56, ours.requests.length - 1].filter((i, k, all) => i < ours.requests.length && all.indexOf(i) === k);
  const sizes = new Map<Variant, number>();
  const add = (variant: Variant, bytes: number) => sizes.set(variant, (sizes.get(variant) ?? 0) + bytes / sample.length);
  const reference = resolvers ? "ours' resolvers" : 'ours';
  const checked = resolvers ? new Map([[VIEWS[view].ours, ours], ...others]) : others;
  for (const i of sample) {
    const a = await fetchBody(ours.server, ours.requests[i]!);
    add(VIEWS[view].ours, a.length);
    // The same request (same cursor: the resolvers verify ours' signature with the same secret).
    const expected = resolvers ? (await fetchBody(resolvers, ours.requests[i]!)).toString('utf8') : a.toString('utf8');
    for (const [variant, target] of checked) {
      const b = variant === VIEWS[view].ours ? a : await fetchBody(target.server, target.requests[i]!);
      if (variant !== VIEWS[view].ours) add(variant, b.length);
      const dialect = target.dialect === 'postgraphile5' ? 'postgraphile5' : 'ours';
      const difference = viewDifference(view, expected, dialect, b.toString('utf8'));
      if (difference)
        throw new Error(
          `DATA CHECK FAILED: the ${view} view of ${label(variant)} differs from ${reference} for sample ${i} at ${difference}`,
        );
    }
  }
  if (checked.size) {
    log(
      `data check passed: the ${view} view of ${[...checked.keys()].join(', ')} returns the same data as ${reference} for ${sample.length} users`,
    );
  }
  return sizes;
}

async function fetchPage(target: Target, index: number): Promise<Buffer> {
  const request = target.requests[index]!;
  const res = await fetch(`${target.server.url}${request.path}`, {
    method: 'POST',
    headers: request.headers,
    body: request.body,
    signal: AbortSignal.timeout(30_000),
  });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`HTTP ${res.status} from ${target.server.spec.name}: ${body.toString('utf8').slice(0, 300)}`);
  return body;
}

/** Same ids, same order, same values for a sample of users; fails loudly otherwise. Returns the body size per variant. */
async function checkSameData(env: Environment, targetsByVariant: Map<Variant, Target>): Promise<Map<Variant, number>> {
  const sample = [0, 1, 56, Math.floor(env.users.length / 2), env.users.length - 1].filter(
    (i, k, all) => i < env.users.length && all.indexOf(i) === k,
  );
  const sizes = new Map<Variant, number[]>();
  // Ours' resolvers (COMPILED_READS=off) when they run: every other row, compiled reads and limits, answers as they do.
  const referenceVariant = (['ours-miss-resolvers', 'ours-miss', 'ours-hit'] as const).find((v) => targetsByVariant.has(v));
  if (!referenceVariant) throw new Error('the data check needs ours');
  const reference = targetsByVariant.get(referenceVariant)!;
  for (const i of sample) {
    const expectedBody = (await fetchPage(reference, i)).toString('utf8');
    const expected = normalise('ours', expectedBody);
    const user = env.users[i]!;
    if (expected.me.id !== user.id) throw new Error(`ours answered user ${expected.me.id} for the token of ${user.id}`);
    const shape = `${expected.conversations.length}×${expected.conversations.map((c) => c.messages.length).join(',')} / ${expected.comparisons.length}×${expected.comparisons.map((c) => c.responses.length).join(',')}`;
    const want = `${WORKLOAD.conversations}×${Array(WORKLOAD.conversations).fill(WORKLOAD.messages).join(',')} / ${WORKLOAD.comparisons}×${Array(WORKLOAD.comparisons).fill(WORKLOAD.responses).join(',')}`;
    if (shape !== want) throw new Error(`ours returned a page of the wrong shape for user ${user.n}: ${shape}`);
    for (const [variant, target] of targetsByVariant) {
      if (!HISTORY_VARIANTS.has(variant)) continue;
      const body = await fetchPage(target, i);
      sizes.set(variant, [...(sizes.get(variant) ?? []), body.length]);
      const dialect: Dialect = target.dialect === 'bytes' ? 'ours' : target.dialect;
      const difference = historyDifference(expectedBody, dialect, body.toString('utf8'));
      if (difference) {
        throw new Error(
          `DATA CHECK FAILED: ${label(variant)} differs from ${label(referenceVariant)} for bench user ${user.n} at ${difference}`,
        );
      }
    }
  }
  log(
    `data check passed: ${[...targetsByVariant.keys()].filter((v) => HISTORY_VARIANTS.has(v)).join(', ')} return the same data as ${referenceVariant} for ${sample.length} users (same ids, same order)`,
  );
  return new Map([...sizes].map(([v, s]) => [v, s.reduce((a, b) => a + b, 0) / s.length]));
}

async function snapshot(target: Target, variant: Variant, loadPid: number) {
  const statements = await target.statements();
  return {
    statements,
    cpu: target.server.cpuMs(),
    loadCpu: cpuMs(loadPid),
    breaker: variant.startsWith('ours') ? target.server.count('breaker') : 0,
  };
}

async function measure(
  load: LoadGenerator,
  options: Options,
  variant: Variant,
  target: Target,
  connections: number,
  bodyBytes: number,
): Promise<Point> {
  const spec: LoadSpec = {
    url: target.server.url,
    connections,
    warmupSeconds: options.warmupSeconds,
    seconds: options.seconds,
    timeoutSeconds: 10,
    verify: true,
    requests: target.requests,
  };
  let before!: Awaited<ReturnType<typeof snapshot>>;
  let after!: Awaited<ReturnType<typeof snapshot>>;
  const writes = target.writes;
  if (writes?.requestsFor) spec.requests = await writes.requestsFor(spec);
  // A write point walks its list once across warm-up and window: each request writes something new (a vote, once).
  if (writes) spec.continuous = true;
  const waitIdle = () => (options.waitIdle ? waitQuiet(target.server) : Promise.resolve(true));
  await waitIdle();
  const rowsBefore = writes ? await writes.rows() : 0;
  const { result, warmup } = await load.run(spec, {
    beforeMeasure: async () => {
      await waitIdle();
      before = await snapshot(target, variant, load.pid);
    },
    afterMeasure: async () => {
      // CPU first, so the stats request itself is outside the window.
      const cpu = target.server.cpuMs();
      const loadCpu = cpuMs(load.pid);
      const breaker = target.server.count('breaker');
      after = { statements: await target.statements(), cpu, loadCpu, breaker };
    },
  });
  const n = Math.max(1, result.requests);
  let rowsWritten: Point['rowsWritten'];
  if (writes) {
    await waitIdle();
    const rows = (await writes.rows()) - rowsBefore;
    const answered = [warmup, result].reduce((sum, r) => sum + (r ? r.requests - totalErrors(r) : 0), 0);
    rowsWritten = { table: writes.table, rows, answered };
    if (rows < answered * writes.rowsPerRequest) {
      throw new Error(
        `DATA CHECK FAILED: ${label(variant)} c=${connections} answered ${answered} requests but added ${rows} rows to ${writes.table}` +
          ` (${writes.rowsPerRequest} per request expected; votes: raise BENCH_VOTES_PER_SECOND if the list wrapped)`,
      );
    }
  }
  let breakerOpens = variant.startsWith('ours') ? after.breaker - before.breaker : undefined;
  if (breakerOpens === 0) {
    // Belt and braces: the breaker may still be open without a log line we recognise.
    const health = (await (await fetch(`${target.server.url}/health`, { signal: AbortSignal.timeout(10_000) })).json()) as {
      cache?: { breakerOpen?: boolean };
    };
    if (health.cache?.breakerOpen) breakerOpens = 1;
  }
  return {
    variant,
    connections,
    requests: result.requests,
    seconds: result.seconds,
    rps: result.rps,
    p50: result.p50,
    p90: result.p90,
    p99: result.p99,
    max: result.max,
    errors: totalErrors(result),
    errorDetail: result.errors,
    firstError: result.firstError,
    bodyBytes,
    wireBytes: result.bytesPerResponse,
    statementsPerRequest: before.statements === null || after.statements === null ? 0 : (after.statements - before.statements) / n,
    statementsSource: target.statementsSource,
    cpuMsPerRequest: (after.cpu - before.cpu) / n,
    loadGeneratorCpuPercent: ((after.loadCpu - before.loadCpu) / (result.seconds * 1000)) * 100,
    rssMb: target.server.rssMb(),
    breakerOpens,
    rowsWritten,
  };
}

type Write = 'send-message' | 'vote' | 'create-conversation';
/** The write rows, each beside the limit doing the same INSERTs in one transaction; the table each request adds rows to. */
const WRITES: Record<Write, { ours: Variant; bare: Variant; table: string; rowsPerRequest: number; query: string; operationName: string }> =
  {
    'send-message': {
      ours: 'ours-send-message',
      bare: 'bare-send-message',
      table: 'messages',
      rowsPerRequest: 2,
      query: 'mutation SendMessage($input: SendMessageInput!) { sendMessage(input: $input) { id role content model } }',
      operationName: 'SendMessage',
    },
    vote: {
      ours: 'ours-vote',
      bare: 'bare-vote',
      table: 'votes',
      rowsPerRequest: 1,
      query: 'mutation Vote($input: VoteInput!) { vote(input: $input) { id outcome } }',
      operationName: 'Vote',
    },
    'create-conversation': {
      ours: 'ours-create-conversation',
      bare: 'bare-create-conversation',
      table: 'conversations',
      rowsPerRequest: 1,
      query: 'mutation CreateConversation($title: String) { createConversation(title: $title) { id title createdAt } }',
      operationName: 'CreateConversation',
    },
  };
/** Votable comparisons seeded before each vote point, per second of the point (warm-up included): more than any server votes. */
const VOTES_PER_SECOND = Number(process.env.BENCH_VOTES_PER_SECOND || 3000);
const FAKE_MODEL = 'openai:gpt-4o';
let voteBatches = 0;

/**
 * `count` settled comparisons (2 COMPLETED responses, not blind, no vote) for `users` round-robin, in two set-based
 * INSERTs: one vote request each, in order (a WINNER on the first response, a TIE every third).
 */
async function seedVotable(env: Environment, users: Environment['users'], count: number): Promise<LoadRequest[]> {
  const batch = `bv${++voteBatches}-`;
  await withClient(env.db.url, async (c) => {
    await c.query(
      `insert into comparison_results (id, created_at, owner_id, prompt)
       select md5($1 || i)::uuid, now() - interval '1 hour', ($2::uuid[])[1 + i % cardinality($2::uuid[])], 'Bench vote ' || i
         from generate_series(0, $3::int - 1) i`,
      [batch, users.map((u) => u.id), count],
    );
    await c.query(
      `insert into comparison_responses (id, created_at, comparison_id, position, provider, model, key_label, status, content,
                                         latency_ms, time_to_first_token_ms, prompt_tokens, completion_tokens, cost_usd, settled_at)
       select md5($1 || i || '-' || p)::uuid, now() - interval '1 hour', md5($1 || i)::uuid, p - 1,
              (array['OPENAI', 'ANTHROPIC'])[p]::provider, (array['openai:gpt-4o', 'anthropic:claude-sonnet-4-5'])[p], 'default',
              'COMPLETED', 'Answer ' || p, 900, 150, 130, 90, 0.0001, now() - interval '59 minutes'
         from generate_series(0, $2::int - 1) i, generate_series(1, 2) p`,
      [batch, count],
    );
  });
  return Array.from({ length: count }, (_, i) => {
    const u = users[i % users.length]!;
    const input = i % 3 === 2 ? { outcome: 'TIE' } : { outcome: 'WINNER', winnerResponseId: md5Uuid(`${batch}${i}-1`) };
    return writeRequest('vote', u.token, { input: { comparisonId: md5Uuid(`${batch}${i}`), ...input } });
  });
}

function writeRequest(write: Write, token: string, variables: object): LoadRequest {
  const { query, operationName } = WRITES[write];
  return {
    method: 'POST',
    path: '/graphql',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables, operationName }),
  };
}

/** A write's answer without what differs by design (ids, times): ours and the limit must agree on the rest. */
function writeData(write: Write, body: Buffer): unknown {
  const parsed = JSON.parse(body.toString('utf8')) as { data?: Record<string, Record<string, unknown>>; errors?: unknown[] };
  if (parsed.errors?.length || !parsed.data) throw new Error(`GraphQL errors: ${body.toString('utf8').slice(0, 300)}`);
  const { id, createdAt, ...rest } = Object.values(parsed.data)[0]!;
  if (typeof id !== 'string' || (write === 'create-conversation' && typeof createdAt !== 'string')) {
    throw new Error(`no id/createdAt in ${body.toString('utf8').slice(0, 300)}`);
  }
  return rest;
}

/**
 * The write rows: ours (its own instance, calling the fake provider in its own process, which answers in one delta at
 * once; no per-user model-call rate limit, everything else as in production) and bare-writes.js. Ours writes as the
 * next U users after the U readers (201..400 of 1,000), the limit as the U after those (401..600): reads see none of
 * the writes, and the two writers share no conversation nor daily vote cap. Checked before measuring:
 * one request of each write on both servers answers the same data (ids and times aside).
 */
async function writeTargets(
  env: Environment,
  secrets: Parameters<typeof startOurs>[1],
  wanted: Set<Variant>,
  cleanup: Cleanup,
  bodySizes: Map<Variant, number>,
): Promise<Map<Variant, Target>> {
  const fake = fork(join(__dirname, 'lib', 'fake-llm-child.ts'), [], {
    execArgv: ['--require', 'ts-node/register'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, FAKE_LLM_BEHAVIOR: JSON.stringify({ [FAKE_MODEL.split(':')[1]!]: { chunks: 1 } }) },
  });
  cleanup.add('stop the fake provider', async () => {
    if (fake.exitCode !== null) return;
    const exited = new Promise((resolve) => fake.once('exit', resolve));
    fake.disconnect();
    await exited;
  });
  const baseUrls = await new Promise<Record<string, string>>((resolve, reject) => {
    fake.once('message', (m: { baseUrls: Record<string, string> }) => resolve(m.baseUrls));
    fake.once('exit', (code) => reject(new Error(`the fake provider exited (${code})`)));
  });
  log('starting ours for writes (OPENAI_BASE_URL = the fake provider, RATE_LIMIT_PROVIDER_CALLS=0)');
  const server = await startOursHere('ours-writes', secrets, { OPENAI_BASE_URL: baseUrls.openai!, RATE_LIMIT_PROVIDER_CALLS: '0' });
  cleanup.add('stop ours-writes', () => server.stop());
  const bare = await startPeer('bare-writes', 'bare-writes.js', LIMITS, {
    DATABASE_URL: env.db.url,
    BENCH_OPENAI_BASE_URL: baseUrls.openai!,
  });
  cleanup.add('stop bare-writes', () => bare.stop());

  // Writers are not the readers (users 1..U): reads keep their data and their cached pages whatever the writes do.
  const writers = async (from: number) =>
    Promise.all(
      env.users.map(async (u) => {
        const n = u.n + from;
        if (n > env.seededUsers) throw new Error(`the write rows need ${n} seeded users (${env.seededUsers} are)`);
        return { n, id: userId(n), token: await signToken(env.jwtSecret, userId(n)) };
      }),
    );
  const oursUsers = await writers(env.users.length);
  const bareUsers = await writers(2 * env.users.length);
  // Ours calls the provider with the user's saved key, as every model call does.
  await mapLimit(oursUsers, 8, (u) =>
    graphql(
      server.url,
      'mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }',
      {
        input: { provider: 'OPENAI', apiKey: `sk-bench-writes-${u.n}` },
      },
      u.token,
    ),
  );
  const count = (table: string) => () =>
    withClient(env.db.url, async (c) => Number((await c.query<{ n: string }>(`select count(*) as n from ${table}`)).rows[0]!.n));
  const requests = (write: Write, users: Environment['users']): LoadRequest[] => {
    if (write === 'create-conversation') return users.map((u, i) => writeRequest(write, u.token, { title: `Bench conversation ${i}` }));
    // Every conversation of every user in turn: each sendMessage appends to a different conversation than the last.
    return Array.from({ length: users.length * WORKLOAD.conversations }, (_, i) => {
      const u = users[i % users.length]!;
      const id = conversationId(u.n, 1 + (Math.floor(i / users.length) % WORKLOAD.conversations));
      return writeRequest(write, u.token, { input: { conversationId: id, content: `Bench message ${i}`, model: FAKE_MODEL } });
    });
  };
  const targetsByVariant = new Map<Variant, Target>();
  for (const [write, w] of Object.entries(WRITES) as Array<[Write, (typeof WRITES)[Write]]>) {
    if (!wanted.has(w.ours) && !wanted.has(w.bare)) continue;
    const rows = count(w.table);
    const votes = (users: Environment['users']) => async (spec: LoadSpec) =>
      seedVotable(env, users, Math.ceil((spec.warmupSeconds + spec.seconds) * VOTES_PER_SECOND));
    const oursTarget: Target = {
      server,
      statements: () => oursStatements(server),
      statementsSource: 'ours /metrics (llmselect_db_query_duration_seconds_count)',
      requests: write === 'vote' ? [] : requests(write, oursUsers),
      dialect: 'ours',
      writes: { table: w.table, rowsPerRequest: w.rowsPerRequest, rows, requestsFor: write === 'vote' ? votes(oursUsers) : undefined },
    };
    const bareTarget: Target = {
      server: bare,
      statements: () => benchStatements(bare),
      statementsSource: 'pg client query calls',
      requests: write === 'vote' ? [] : requests(write, bareUsers),
      dialect: 'ours',
      writes: { table: w.table, rowsPerRequest: w.rowsPerRequest, rows, requestsFor: write === 'vote' ? votes(bareUsers) : undefined },
    };
    // The data check: the same write on both (a fresh comparison each for votes), the same answer ids and times aside.
    const [oursCheck, bareCheck] =
      write === 'vote'
        ? [(await seedVotable(env, oursUsers, 1))[0]!, (await seedVotable(env, bareUsers, 1))[0]!]
        : [oursTarget.requests[0]!, bareTarget.requests[0]!];
    const [oursBody, bareBody] = [await fetchBody(server, oursCheck), await fetchBody(bare, bareCheck)];
    bodySizes.set(w.ours, oursBody.length);
    bodySizes.set(w.bare, bareBody.length);
    const difference = firstDifference(writeData(write, oursBody), writeData(write, bareBody));
    if (difference) throw new Error(`DATA CHECK FAILED: ${label(w.bare)} answers differently from ours at ${difference}`);
    log(`data check passed: ${w.operationName} of ours and bare-writes answer the same data (ids and times aside)`);
    targetsByVariant.set(w.ours, oursTarget);
    targetsByVariant.set(w.bare, bareTarget);
  }
  return targetsByVariant;
}

/** A latency, or `n/a` when no request was answered in the window (autocannon then reports null). */
const ms = (value: number | null): string => (value === null || Number.isNaN(value) ? 'n/a' : `${value.toFixed(2)} ms`);

async function runBench(options: Options, cleanup: Cleanup): Promise<number> {
  const started = new Date();
  const wanted = new Set(options.variants);
  serverEnv = options.ci ? { DB_POOL_MAX: '3' } : {};
  // Ours is the reference of the data check and of the limits, so it always runs; only its rows are optional.
  for (const peer of ['postgraphile5', 'postgraphile4'] as const) if (wanted.has(peer)) ensurePeerInstalled(join(PEERS, peer));
  const env = await prepare(options, cleanup, serverEnv);
  env.ours.watch('breaker', /breaker open/gi);

  const targetsByVariant = new Map<Variant, Target>();
  const ours = env.ours;
  const oursTarget = (bypass: boolean): Target => ({
    server: ours,
    statements: () => oursStatements(ours),
    statementsSource: 'ours /metrics (llmselect_db_query_duration_seconds_count)',
    requests: oursRequests(env, bypass),
    dialect: 'ours',
  });
  targetsByVariant.set('ours-miss', oursTarget(true));
  // Comparison instances of ours on the same data and cache, measured at c=10 only: resolvers (COMPILED_READS=off) on graphql-jit, and on graphql-js.
  const secrets = {
    dbUrl: env.db.url,
    redisUrl: env.redisUrl,
    cachePrefix: env.cachePrefix,
    jwtSecret: env.jwtSecret,
    encryptionKey: env.encryptionKey,
  };
  // Every other server starts at once (a dozen processes, each seconds of CPU to start): each task registers its target.
  const tasks: Array<Promise<unknown>> = [];
  const task = (fn: () => Promise<void>) => tasks.push(fn());
  const db = { DATABASE_URL: env.db.url };
  /** Body sizes of the rows whose setup checks their answers (shared pages, writes). */
  const startSizes = new Map<Variant, number>();
  for (const [variant, executor] of [
    ['ours-miss-resolvers', 'jit'],
    ['ours-miss-js', 'graphql-js'],
  ] as const) {
    if (!wanted.has(variant)) continue;
    task(async () => {
      log(`starting ours with COMPILED_READS=off GRAPHQL_EXECUTOR=${executor}`);
      const server = await startOursHere(variant, secrets, { COMPILED_READS: 'off', GRAPHQL_EXECUTOR: executor });
      cleanup.add(`stop ${variant}`, () => server.stop());
      targetsByVariant.set(variant, {
        server,
        statements: () => oursStatements(server),
        statementsSource: 'ours /metrics (llmselect_db_query_duration_seconds_count)',
        requests: oursRequests(env, true),
        dialect: 'ours',
      });
    });
  }
  if (wanted.has('ours-miss-pgbouncer'))
    task(async () => {
      // The same data through a PgBouncer in transaction pooling (Debian's 1.18: no prepared statements per client,
      // so DB_PREPARED_STATEMENTS=off), started like the tests' (test/helpers/pgbouncer.ts).
      const missing = pgbouncerMissing();
      if (missing) throw new Error(`ours-miss-pgbouncer: ${missing}`);
      const bouncer = await startPgBouncer(env.db.url);
      cleanup.add('stop pgbouncer', () => bouncer.stop());
      log('starting ours through PgBouncer (DB_PREPARED_STATEMENTS=off)');
      const server = await startOursHere(
        'ours-miss-pgbouncer',
        { ...secrets, dbUrl: bouncer.via(env.db.url) },
        { DB_PREPARED_STATEMENTS: 'off' },
      );
      cleanup.add('stop ours-miss-pgbouncer', () => server.stop());
      targetsByVariant.set('ours-miss-pgbouncer', {
        server,
        statements: () => oursStatements(server),
        statementsSource: 'ours /metrics (llmselect_db_query_duration_seconds_count)',
        requests: oursRequests(env, true),
        dialect: 'ours',
      });
    });
  // Tracing's overhead: ours-miss with every span (or one trace in ten) made and exported to a sink that only counts what it gets.
  for (const [variant, ratio] of [
    ['ours-miss-traced', '1'],
    ['ours-miss-traced-10pct', '0.1'],
  ] as const) {
    if (!wanted.has(variant)) continue;
    task(async () => {
      const sink = await startOtlpSink();
      cleanup.add(`stop the OTLP sink of ${variant}`, () => sink.close());
      log(`starting ours with OTEL_EXPORTER_OTLP_ENDPOINT=${sink.url} OTEL_TRACES_SAMPLER_ARG=${ratio}`);
      const server = await startOursHere(variant, secrets, { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_TRACES_SAMPLER_ARG: ratio });
      cleanup.add(`stop ${variant}`, async () => {
        await server.stop();
        log(`OTLP sink of ${variant}: ${sink.exports} trace exports, ${(sink.bytes / 2 ** 20).toFixed(1)} MiB`);
      });
      targetsByVariant.set(variant, {
        server,
        statements: () => oursStatements(server),
        statementsSource: 'ours /metrics (llmselect_db_query_duration_seconds_count)',
        requests: oursRequests(env, true),
        dialect: 'ours',
      });
    });
  }
  if (wanted.has('ours-hit')) targetsByVariant.set('ours-hit', oursTarget(false));
  if (wanted.has('ours-hit-remote'))
    task(async () => {
      // Hits whose every body comes from Redis, as in the bare-Redis limit: local copies off.
      log('starting ours with CACHE_LOCAL_COPIES_MB=0');
      const server = await startOursHere('ours-hit-remote', secrets, { CACHE_LOCAL_COPIES_MB: '0' });
      cleanup.add('stop ours-hit-remote', () => server.stop());
      targetsByVariant.set('ours-hit-remote', {
        server,
        statements: () => oursStatements(server),
        statementsSource: 'ours /metrics (llmselect_db_query_duration_seconds_count)',
        requests: oursRequests(env, false),
        dialect: 'ours',
      });
    });

  const wantsPeerViews = Object.values(VIEWS).some((v) => wanted.has(v.postgraphile5));
  if (wanted.has('postgraphile5') || wantsPeerViews)
    task(async () => {
      log('starting PostGraphile 5');
      const server = await startPeer('postgraphile5', 'server.js', join(PEERS, 'postgraphile5'), db);
      cleanup.add('stop PostGraphile 5', () => server.stop());
      targetsByVariant.set('postgraphile5', {
        server,
        statements: () => benchStatements(server),
        statementsSource: 'pg client query calls',
        requests: postgraphileRequests(env, HISTORY_POSTGRAPHILE5),
        dialect: 'postgraphile5',
      });
    });
  if (wanted.has('postgraphile4'))
    task(async () => {
      log('starting PostGraphile 4');
      const server = await startPeer('postgraphile4', 'server.js', join(PEERS, 'postgraphile4'), db);
      cleanup.add('stop PostGraphile 4', () => server.stop());
      targetsByVariant.set('postgraphile4', {
        server,
        statements: () => benchStatements(server),
        statementsSource: 'pg client query calls',
        requests: postgraphileRequests(env, HISTORY_POSTGRAPHILE4),
        dialect: 'postgraphile4',
      });
    });
  if (wanted.has('bare-sql'))
    task(async () => {
      const server = await startPeer('bare-sql', 'bare-sql.js', LIMITS, db);
      cleanup.add('stop bare-sql', () => server.stop());
      targetsByVariant.set('bare-sql', {
        server,
        statements: () => benchStatements(server),
        statementsSource: 'pg client query calls',
        requests: oursRequests(env, false),
        dialect: 'ours',
      });
    });
  if (wanted.has('bare-redis'))
    task(async () => {
      // The exact bytes ours answers for each user, stored once under bench keys (this also warms ours' cache).
      const keyPrefix = `${env.cachePrefix}:bare:`;
      const redis = createClient({ url: env.redisUrl });
      redis.on('error', () => undefined);
      await redis.connect();
      const reference = oursTarget(false);
      await mapLimit(env.users, 8, async (u) => redis.set(keyPrefix + u.id, await fetchPage(reference, u.n - 1), { EX: 3600 }));
      await redis.close();
      const server = await startPeer('bare-redis', 'bare-redis.js', LIMITS, { REDIS_URL: env.redisUrl, BENCH_KEY_PREFIX: keyPrefix });
      cleanup.add('stop bare-redis', () => server.stop());
      targetsByVariant.set('bare-redis', {
        server,
        statements: async () => null,
        statementsSource: 'by design',
        requests: oursRequests(env, false),
        dialect: 'bytes',
      });
    });

  let bareViews: ServerProcess | undefined;
  if (Object.values(VIEWS).some((v) => wanted.has(v.bare))) {
    // The limit verifies and signs cursors like ours (same secret), so it answers ours' requests, cursor included.
    task(async () => {
      const server = await startPeer('bare-views', 'bare-views.js', LIMITS, { ...db, BENCH_CURSOR_SECRET: env.jwtSecret });
      cleanup.add('stop bare-views', () => server.stop());
      bareViews = server;
    });
  }
  if (wanted.has('ours-shared') || wanted.has('bare-redis-shared'))
    task(async () => {
      // Its own instance, so the per-IP limit (one load generator, one address) can be set out of the way while still
      // consulted on every request; each cycled user shares one of their comparisons, and the page is read once (hot).
      log('starting ours for shared pages (RATE_LIMIT_SHARED_PER_IP=1000000000)');
      const server = await startOursHere('ours-shared', secrets, { RATE_LIMIT_SHARED_PER_IP: '1000000000' });
      cleanup.add('stop ours-shared', () => server.stop());
      const fetchJson = async (request: LoadRequest) => JSON.parse((await fetchBody(server, request)).toString('utf8'));
      const sizes: number[] = [];
      const requests = await mapLimit(env.users, 8, async (u): Promise<LoadRequest> => {
        const created = await fetchJson({
          method: 'POST',
          path: '/graphql',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` },
          body: JSON.stringify({
            query: 'mutation($input: ShareLinkInput!) { createShareLink(input: $input) { token } }',
            variables: { input: { comparisonId: comparisonId(u.n, 1 + (u.n % WORKLOAD.comparisons)) } },
          }),
        });
        const token = created.data?.createShareLink?.token;
        if (typeof token !== 'string') throw new Error(`createShareLink failed: ${JSON.stringify(created).slice(0, 300)}`);
        const request: LoadRequest = {
          method: 'POST',
          path: '/graphql',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ query: SHARED_PAGE, variables: { token }, operationName: 'SharedPage' }),
        };
        const body = await fetchBody(server, request);
        if (!JSON.parse(body.toString('utf8')).data?.shared) throw new Error(`shared page empty: ${body.toString('utf8').slice(0, 300)}`);
        sizes.push(body.length);
        return request;
      });
      startSizes.set('ours-shared', sizes.reduce((a, b) => a + b, 0) / sizes.length);
      targetsByVariant.set('ours-shared', {
        server,
        statements: () => oursStatements(server),
        statementsSource: 'ours /metrics (llmselect_db_query_duration_seconds_count)',
        requests,
        dialect: 'bytes',
      });
      if (wanted.has('bare-redis-shared')) {
        // The like-for-like limit: the exact bytes ours answers for each shared page, stored under the page's token, served
        // to the same anonymous requests by node:http + one Redis GET (the body read and parsed for the token).
        const keyPrefix = `${env.cachePrefix}:bare-shared:`;
        const redis = createClient({ url: env.redisUrl });
        redis.on('error', () => undefined);
        await redis.connect();
        const pages = await mapLimit(requests, 8, async (request) => {
          const token = JSON.parse(request.body as string).variables.token as string;
          const body = await fetchBody(server, request);
          await redis.set(keyPrefix + token, body, { EX: 3600 });
          return body;
        });
        await redis.close();
        const bare = await startPeer('bare-redis-shared', 'bare-redis.js', LIMITS, {
          REDIS_URL: env.redisUrl,
          BENCH_KEY_PREFIX: keyPrefix,
          BENCH_KEY_FROM: 'token',
        });
        cleanup.add('stop bare-redis-shared', () => bare.stop());
        // Data check: the limit serves ours' bytes for a sample of pages.
        for (const i of [0, Math.floor(requests.length / 2), requests.length - 1]) {
          const [ours, limit] = [await fetchBody(server, requests[i]!), await fetchBody(bare, requests[i]!)];
          if (!ours.equals(limit) || !limit.equals(pages[i]!)) {
            throw new Error(`DATA CHECK FAILED: bare-redis-shared does not serve ours' shared page ${i} byte for byte`);
          }
        }
        log(`data check passed: bare-redis-shared serves ours' shared pages byte for byte (${requests.length} pages)`);
        startSizes.set('bare-redis-shared', pages.reduce((n, b) => n + b.length, 0) / pages.length);
        targetsByVariant.set('bare-redis-shared', {
          server: bare,
          statements: async () => null,
          statementsSource: 'by design',
          requests,
          dialect: 'bytes',
        });
      }
    });
  if (Object.values(WRITES).some((w) => wanted.has(w.ours) || wanted.has(w.bare))) {
    task(async () => {
      for (const [variant, target] of await writeTargets(env, secrets, wanted, cleanup, startSizes)) targetsByVariant.set(variant, target);
    });
  }
  // Settled, not all: a failed start must not leave another start to register its cleanup after the cleanup ran.
  const failed = (await Promise.allSettled(tasks)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;

  const bodySizes = await checkSameData(env, targetsByVariant);
  for (const [variant, bytes] of startSizes) bodySizes.set(variant, bytes);
  // The views, on ours, PostGraphile 5 and the one-statement limit on the same data: checked against ours, then measured.
  const postgraphile5 = targetsByVariant.get('postgraphile5');
  for (const [view, variants] of Object.entries(VIEWS) as Array<[View, (typeof VIEWS)[View]]>) {
    if (![variants.ours, variants.postgraphile5, variants.bare].some((v) => wanted.has(v))) continue;
    const oursView: Target = { ...oursTarget(true), requests: await viewRequests(env, view, ours, 'ours') };
    const others = new Map<Variant, Target>();
    if (postgraphile5 && wanted.has(variants.postgraphile5)) {
      others.set(variants.postgraphile5, {
        ...postgraphile5,
        requests: await viewRequests(env, view, postgraphile5.server, 'postgraphile5'),
      });
    }
    if (bareViews && wanted.has(variants.bare)) {
      const server = bareViews;
      others.set(variants.bare, {
        server,
        statements: () => benchStatements(server),
        statementsSource: 'pg client query calls',
        requests: oursView.requests,
        dialect: 'ours',
      });
    }
    const sizes = await checkViews(view, oursView, others, targetsByVariant.get('ours-miss-resolvers')?.server);
    targetsByVariant.set(variants.ours, oursView);
    for (const [variant, target] of others) targetsByVariant.set(variant, target);
    for (const [variant, bytes] of sizes) bodySizes.set(variant, bytes);
  }
  // Warm ours' cache for every user (the hit variant must measure hits from its first request).
  await mapLimit(env.users, 8, (u) => fetchPage(oursTarget(false), u.n - 1));

  const load = LoadGenerator.start();
  cleanup.add('stop the load generator', () => load.stop());
  const order = options.variants;
  const points: Point[] = [];
  const perPoint = options.warmupSeconds + options.seconds;
  const pointCount = order.reduce(
    (n, v) => n + (ONLY_AT_C10.has(v) && options.concurrency.includes(10) ? 1 : options.concurrency.length),
    0,
  );
  log(
    `measuring ${order.length} variants × c=${options.concurrency.join(',')}: ${pointCount} points of ${options.warmupSeconds} s warm-up + ${options.seconds} s (~${Math.ceil((pointCount * perPoint) / 60)} min)`,
  );
  for (const c of options.concurrency) {
    for (const variant of order) {
      if (ONLY_AT_C10.has(variant) && c !== 10 && options.concurrency.includes(10)) continue;
      const target = targetsByVariant.get(variant)!;
      const point = await measure(load, options, variant, target, c, bodySizes.get(variant) ?? NaN);
      points.push(point);
      if (point.rowsWritten) {
        log(
          `${label(variant)} c=${c}: ${point.rowsWritten.rows} rows added to ${point.rowsWritten.table}` +
            ` for ${point.rowsWritten.answered} answers`,
        );
      }
      log(
        `${label(variant).padEnd(36)} c=${String(c).padStart(3)}  ${point.rps.toFixed(0).padStart(6)} req/s  p50 ${ms(point.p50)}  p99 ${ms(point.p99)}  errors ${point.errors}` +
          (point.firstError ? ` (first: ${point.firstError.slice(0, 120)})` : ''),
      );
    }
  }

  let pool: PoolCheck | null = null;
  if (options.poolCheck && wanted.has('ours-miss')) {
    // A fixed number of requests (not a duration), so every request counts: answered, failed or timed out.
    const { connections, requestsPerConnection } = options.poolCheck;
    const amount = connections * requestsPerConnection;
    log(`pool check: ours (cache bypassed), DB_POOL_MAX=10, c=${connections}, ${amount} requests`);
    await waitQuiet(ours);
    const breakerBefore = ours.count('breaker');
    const { result } = await load.run({
      url: ours.url,
      connections,
      warmupSeconds: 0,
      seconds: 3_600,
      amount,
      timeoutSeconds: 10,
      verify: true,
      requests: oursRequests(env, true),
    });
    const unanswered = Math.max(0, amount - result.requests - result.errors.timeouts - result.errors.socket);
    pool = {
      connections,
      poolMax: 10,
      requests: result.requests,
      seconds: result.seconds,
      rps: result.rps,
      p99: result.p99,
      errors: totalErrors(result) + unanswered,
      errorDetail: { ...result.errors, unanswered } as PoolCheck['errorDetail'],
      firstError: result.firstError,
      breakerOpens: ours.count('breaker') - breakerBefore,
    };
  }

  const notes: string[] = [];
  const missPoints = points.filter((p) => p.variant === 'ours-miss');
  if (missPoints.some((p) => (p.statementsPerRequest ?? 0) < 0.5)) {
    notes.push(
      'ours-miss ran < 0.5 SQL statements per request: this build answers `Cache-Control: no-cache` requests from the read cache, so the "miss" rows are hits.',
    );
  }
  const saturated = points.filter((p) => p.loadGeneratorCpuPercent >= 90);
  if (saturated.length) {
    notes.push(
      `the load generator used ≥ 90% of a core at ${saturated.map((p) => `${p.variant} c=${p.connections}`).join(', ')}: those rows are bounded by the client, not the server.`,
    );
  }
  for (const p of points) {
    if (p.requests < p.connections)
      notes.push(`${label(p.variant)} c=${p.connections}: only ${p.requests} responses in the ${p.seconds.toFixed(0)} s window.`);
  }
  for (const p of points)
    if (p.errors)
      notes.push(
        `${label(p.variant)} c=${p.connections}: ${p.errors} errors ${JSON.stringify(p.errorDetail)}${p.firstError ? `, first: ${p.firstError.slice(0, 200)}` : ''}`,
      );
  if (pool?.errors)
    notes.push(
      `pool check: ${pool.errors} errors ${JSON.stringify(pool.errorDetail)}${pool.firstError ? `, first: ${pool.firstError.slice(0, 200)}` : ''}`,
    );
  if (pool?.breakerOpens) notes.push(`pool check: ours' cache breaker opened ${pool.breakerOpens} times (Redis was healthy).`);

  // A smoke run measures nothing worth a goal: only that every row ran without error on checked data.
  const targetRows = options.smoke ? [] : targets(points, pool);
  const errors = points.reduce((n, p) => n + p.errors, 0);
  const finished = new Date();
  const machine = `${cpus()[0]?.model ?? 'CPU'} × ${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, PostgreSQL ${env.versions.postgres}, Redis ${env.versions.redis}`;
  const flag = options.smoke ? ' (--smoke)' : options.quick ? ' (--quick)' : '';
  const mode = `${options.warmupSeconds} s warm-up + ${options.seconds} s measured per point${flag}`;
  const text = [
    pointsTable(points),
    '',
    ...(options.smoke
      ? [`${errors ? 'FAIL' : 'PASS'} (smoke): ${points.length} points, data checks passed, ${errors} errors`]
      : [targetsTable(targetRows)]),
    '',
    `${finished.toISOString().slice(0, 16).replace('T', ' ')} UTC · ${machine} · ${mode} · ${env.users.length} users' tokens cycled · ` +
      `KB/resp is the body; SQL/req from ours' /metrics and from counting the peers' pg client calls (* = by design) · CPU from /proc/<pid>/stat over the measured window.`,
    ...(notes.length ? ['', 'Notes:', ...notes.map((n) => `- ${n}`)] : []),
  ].join('\n');
  process.stdout.write(`\n${text}\n`);

  // The CI smoke keeps its record out of the checkout.
  const dir = options.ci ? tmpdir() : join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${options.smoke ? 'smoke-' : ''}${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    file,
    JSON.stringify(
      {
        startedAt: started.toISOString(),
        finishedAt: finished.toISOString(),
        machine: { cpu: cpus()[0]?.model, cores: cpus().length, node: process.version, ...env.versions },
        options: { ...options, adminUrl: undefined, redisUrl: undefined },
        workload: {
          ...WORKLOAD,
          users: env.seededUsers,
          seedSeconds: env.seedSeconds,
          usersCycled: env.users.length,
          sampleUser: userId(1),
        },
        points,
        poolCheck: pool,
        targets: targetRows,
        notes,
      },
      null,
      2,
    ) + '\n',
  );
  log(`results: ${options.ci ? file : file.slice(ROOT.length + 1)}`);
  if (options.smoke) return errors ? 1 : 0;
  if (options.readme) {
    writeReadme(join(ROOT, 'docs', 'BENCHMARKS.md'), text);
    log('docs/BENCHMARKS.md "Performance" updated');
  }
  return 0;
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2), process.env);
    assertLoopback('BENCH_DATABASE_URL', options.adminUrl);
    assertLoopback('REDIS_URL', options.redisUrl);
  } catch (error) {
    if (error instanceof UsageError) {
      if (error.message) console.error(`bench: ${error.message}`);
      console.error(
        'usage: npm run bench -- [--quick | --smoke] [--variants=a,b] [--concurrency=1,10,50] [--warmup=S] [--seconds=S]\n' +
          '                        [--no-pool-check] [--readme] [--no-build]\n       npm run bench -- --soak [--requests=N] [--no-build]\n' +
          '       npm run bench -- --scale=N [--quick] [--no-baseline] [--spread] [--no-build]',
      );
      return 2;
    }
    throw error;
  }
  const cleanup = new Cleanup();
  const interrupt = () => {
    log('interrupted: cleaning up');
    void cleanup.run().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    if (options.soak) return await runSoak(options, cleanup);
    return options.scale !== 1 ? await runScale(options, cleanup) : await runBench(options, cleanup);
  } finally {
    await cleanup.run();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    console.error(`bench: ${message}`);
    for (const server of ServerProcess.all) {
      if (server.died()) console.error(`bench: ${server.spec.name} died (${server.died()}); its last output:\n${server.tail()}`);
      // Ours, and a server the error names (a peer masks its errors in its answers, and logs them).
      else if (server.spec.name === 'ours' || message.includes(`${server.spec.name}:`)) {
        console.error(`bench: ${server.spec.name}'s last output:\n${server.tail()}`);
      }
    }
    process.exit(1);
  },
);
