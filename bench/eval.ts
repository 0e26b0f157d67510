/**
 * `npm run bench:eval`: an eval run of 100 items × 8 models × 1 repeat
 * against the fake provider answering every call after 200 ms, on servers
 * started like `npm start` (`node dist/src/main.js`) on a fresh database.
 *
 * 1. One instance: wall time of the run (the run's own `finishedAt -
 *    createdAt`) against the ideal, cells × 200 ms ÷ effective concurrency
 *    (min(EVAL_CONCURRENCY_PER_USER, EVAL_CONCURRENCY × instances)); the
 *    scheduling efficiency is ideal ÷ wall (goal ≥ 0.9); server CPU per cell
 *    (user + system time of the process over the run ÷ cells); SQL statements
 *    per cell (the server's query histogram, read before and after the run).
 * 2. Two instances, one `kill -9`ed once half the cells are done: the run
 *    completes; the fake's per-`Idempotency-Key` counters give the calls
 *    answered in full more than once (goal 0) and the cells called again
 *    (the ones the killed instance had in flight); resume time is from the
 *    kill to the first new call of a cell the killed instance held.
 *
 *   npm run bench:eval
 *   npm run bench:eval -- --no-build --items=100 --models=8 --delay=200 --concurrency=32 --lease=15000
 *   npm run bench:eval -- --no-kill      (the single-instance run only)
 * Results: bench/results/eval-<time>.json, and a table on stdout.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { FakeLlmServer } from '../test/helpers/fake-llm';
import { createBenchDatabase, DEFAULT_ADMIN_URL, withClient } from './lib/db';
import { freePort, ServerProcess } from './lib/procs';
import { fixed, markdownTable } from './lib/report';
import { baseEnv, Cleanup, graphql, log, ROOT } from './lib/setup';
import { spawnSync } from 'node:child_process';

interface Options {
  build: boolean;
  /** `--no-kill`: the single-instance run only (an A/B of scheduling needs no crash run). */
  kill: boolean;
  items: number;
  models: number;
  delayMs: number;
  concurrency: number;
  leaseMs: number;
}

function options(argv: string[]): Options {
  const flags = new Map(argv.map((a) => /^--([a-z-]+)(?:=(.*))?$/.exec(a)).map((m) => [m?.[1] ?? '', m?.[2] ?? 'true']));
  const num = (name: string, fallback: number) => (flags.has(name) ? Number(flags.get(name)) : fallback);
  return {
    build: !flags.has('no-build'),
    kill: !flags.has('no-kill'),
    items: num('items', 100),
    models: num('models', 8),
    delayMs: num('delay', 200),
    concurrency: num('concurrency', 32),
    leaseMs: num('lease', 15_000),
  };
}

const JWT_SECRET = randomBytes(32).toString('hex');
const METRICS_TOKEN = randomBytes(16).toString('hex');

/** SQL statements the server has sent (its `llmselect_db_query_duration_seconds` histogram's count, every outcome). */
async function statementsSent(url: string): Promise<number> {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  const text = await res.text();
  let sum = 0;
  for (const m of text.matchAll(/^llmselect_db_query_duration_seconds_count(?:\{[^}]*\})? (\d+(?:\.\d+)?)$/gm)) sum += Number(m[1]);
  return sum;
}
const ENCRYPTION_KEY = randomBytes(32).toString('base64');

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  const cleanup = new Cleanup();
  process.on('SIGINT', () => void cleanup.run().then(() => process.exit(130)));
  try {
    if (o.build) {
      log('building dist/ (tsc -b)');
      const built = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-b', 'tsconfig.build.json'], {
        cwd: ROOT,
      });
      if (built.status !== 0) throw new Error(`build failed: ${built.stdout}${built.stderr}`);
    }
    const fake = await FakeLlmServer.start();
    cleanup.add('fake provider', () => fake.close());
    const models = Array.from({ length: o.models }, (_, i) => `${i % 2 ? 'anthropic' : 'openai'}:bench-model-${i + 1}`);
    for (const m of models) fake.setBehavior(m.split(':')[1]!, { delayMs: o.delayMs, text: 'A short benchmark answer.', chunks: 1 });

    const loadBefore = loadavg();
    const single = await phase(o, fake, models, cleanup, 1, false);
    fake.reset();
    for (const m of models) fake.setBehavior(m.split(':')[1]!, { delayMs: o.delayMs, text: 'A short benchmark answer.', chunks: 1 });
    const crash = o.kill ? await phase(o, fake, models, cleanup, 2, true) : undefined;

    const result = {
      at: new Date().toISOString(),
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      loadAverage: { before: loadBefore, after: loadavg() },
      options: o,
      single,
      crash,
    };
    const dir = join(ROOT, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `eval-${result.at.replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    const rows = (crash ? [single, crash] : [single]).map((r) => [
      r.label,
      String(r.cells),
      fixed(r.wallMs / 1000, 2),
      fixed(r.idealMs / 1000, 2),
      fixed(r.efficiency, 3),
      fixed(r.cpuMsPerCell, 2),
      r.statementsPerCell === undefined ? '–' : fixed(r.statementsPerCell, 2),
      r.status,
      r.crash ? String(r.crash.completedTwice) : '–',
      r.crash ? `${r.crash.calledAgain} of ${r.crash.heldAtKill}` : '–',
      r.crash ? fixed(r.crash.resumeMs / 1000, 2) : '–',
    ]);
    process.stdout.write(
      `${markdownTable(
        [
          'run',
          'cells',
          'wall s',
          'ideal s',
          'efficiency',
          'CPU ms/cell',
          'SQL/cell',
          'status',
          'completed twice',
          'called again',
          'resume s',
        ],
        rows,
        ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'l', 'r', 'r', 'r'],
      )}\n\n${
        single.answerToCommitMs
          ? `answer → settle written (1 instance), ms: p50 ${fixed(single.answerToCommitMs.p50, 1)}, p95 ${fixed(
              single.answerToCommitMs.p95,
              1,
            )}, max ${fixed(single.answerToCommitMs.max, 1)}, mean ${fixed(single.answerToCommitMs.mean, 1)} at ${fixed(
              single.answerToCommitMs.answersPerSecond,
              0,
            )} answers/s\n`
          : ''
      }load average (1, 5, 15 min): before ${loadBefore.map((l) => fixed(l, 2)).join(', ')}, after ${result.loadAverage.after
        .map((l) => fixed(l, 2))
        .join(', ')}\n\nwritten to ${file}\n`,
    );
  } finally {
    await cleanup.run();
  }
}

interface PhaseResult {
  label: string;
  cells: number;
  wallMs: number;
  idealMs: number;
  efficiency: number;
  cpuMsPerCell: number;
  /** SQL statements per cell (one instance: the first phase). */
  statementsPerCell?: number;
  status: string;
  /**
   * One instance: from the fake's last byte of an answer to the settle that wrote it (the row's `finished_at`, the
   * settle statement's start: a lower bound of the commit), in ms. A `kill -9` inside this window makes the answer's
   * call repeated: `answersPerSecond × mean` is how many answers a kill at a random moment catches.
   */
  answerToCommitMs?: { p50: number; p95: number; max: number; mean: number; answersPerSecond: number };
  crash?: {
    twiceCalls: Array<{ held: boolean; calls: Array<{ at: number; end: number; done: boolean }> }>;
    completedTwice: number;
    calledAgain: number;
    heldAtKill: number;
    resumeMs: number;
    killedAtCellsDone: number;
  };
}

async function phase(
  o: Options,
  fake: FakeLlmServer,
  models: string[],
  cleanup: Cleanup,
  instances: number,
  kill: boolean,
): Promise<PhaseResult> {
  const db = await createBenchDatabase(process.env.BENCH_DATABASE_URL ?? DEFAULT_ADMIN_URL);
  cleanup.add(`database ${db.name}`, () => db.drop());
  const servers: ServerProcess[] = [];
  for (let i = 0; i < instances; i++) {
    const port = await freePort();
    const server = await ServerProcess.start({
      name: `ours-${instances}-${i}`,
      // BENCH_OURS_NODE_ARGS="--cpu-prof --cpu-prof-dir=…" profiles each instance (as in the other benches).
      args: [process.execPath, ...(process.env.BENCH_OURS_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? []), 'dist/src/main.js'],
      cwd: ROOT,
      port,
      readyPath: '/health',
      env: baseEnv({
        NODE_ENV: 'production',
        PORT: String(port),
        DATABASE_URL: db.url,
        JWT_SECRET,
        ENCRYPTION_KEY,
        LOG_LEVEL: 'warn',
        METRICS_TOKEN,
        CACHE_PREFIX: `bench-eval-${randomBytes(3).toString('hex')}`,
        OPENAI_BASE_URL: fake.baseUrls.openai,
        ANTHROPIC_BASE_URL: fake.baseUrls.anthropic,
        RATE_LIMIT_PROVIDER_CALLS: '0',
        RATE_LIMIT_AUTH_PER_IP: '0',
        EVAL_CONCURRENCY: String(o.concurrency),
        EVAL_CONCURRENCY_PER_USER: String(o.concurrency),
        EVAL_LEASE_MS: String(o.leaseMs),
        DB_POOL_MAX: '20',
      }),
    });
    servers.push(server);
    cleanup.add(server.spec.name, () => server.stop());
  }
  const url = servers[servers.length - 1]!.url;
  const email = `bench-${randomBytes(3).toString('hex')}@example.com`;
  const reg = await graphql(url, `mutation($e: String!) { register(email: $e, password: "correct horse battery") { token } }`, {
    e: email,
  });
  const token = reg.register.token as string;
  for (const provider of ['OPENAI', 'ANTHROPIC']) {
    await graphql(url, `mutation($i: SaveApiKeyInput!) { saveApiKey(input: $i) { id } }`, { i: { provider, apiKey: 'sk-bench' } }, token);
  }
  const items = Array.from({ length: o.items }, (_, i) => ({ prompt: `Benchmark question ${i + 1}: what is ${i} + ${i}?` }));
  const set = await graphql(
    url,
    `mutation($i: PromptSetInput!) { createPromptSet(input: $i) { id } }`,
    { i: { name: 'bench', items } },
    token,
  );
  const cpuBefore = servers.map((s) => s.cpuMs());
  const sqlBefore = kill ? 0 : await statementsSent(url);
  const started = await graphql(
    url,
    `mutation($i: EvalRunInput!) { startEvalRun(input: $i) { id } }`,
    { i: { promptSetId: set.createPromptSet.id, models } },
    token,
  );
  const runId = started.startEvalRun.id as string;
  const cells = o.items * models.length;
  const read = () =>
    graphql(url, `query($id: ID!) { evalRun(id: $id) { status createdAt finishedAt progress { cellsDone } } }`, { id: runId }, token);
  let crash: PhaseResult['crash'];
  let killedAt = 0;
  let heldKeys = new Set<string>();
  let killedAtCellsDone = 0;
  const deadline = Date.now() + 300_000;
  let cpuAfter: number[] = [];
  for (;;) {
    const run = (await read()).evalRun;
    if (kill && !killedAt && run.progress.cellsDone >= cells / 2) {
      const victim = servers[0]!;
      const rows = await withClient(
        db.url,
        async (c) =>
          (await c.query(`select idempotency_key, lease_owner from eval_cells where run_id = $1 and status = 'RUNNING'`, [runId])).rows,
      );
      heldKeys = new Set(rows.filter((r) => String(r.lease_owner).includes(`/${victim.pid}/`)).map((r) => r.idempotency_key));
      cpuAfter[0] = victim.cpuMs();
      process.kill(victim.pid, 'SIGKILL');
      killedAt = performance.now();
      killedAtCellsDone = run.progress.cellsDone;
      log(`killed ${victim.spec.name} (pid ${victim.pid}) at ${run.progress.cellsDone} cells done, holding ${heldKeys.size}`);
    }
    if (['COMPLETED', 'CANCELLED', 'FAILED'].includes(run.status)) {
      cpuAfter = servers.map((s, i) => (kill && i === 0 ? cpuAfter[0]! : s.cpuMs()));
      // One instance only (a killed one cannot be asked); the bench's own progress reads (every 100 ms) are included.
      const statementsPerCell = kill ? undefined : ((await statementsSent(url)) - sqlBefore) / cells;
      let answerToCommitMs: PhaseResult['answerToCommitMs'];
      if (!kill) {
        const written = await withClient(
          db.url,
          async (c) =>
            (
              await c.query(`select idempotency_key, extract(epoch from finished_at) * 1000 as at from eval_cells where run_id = $1`, [
                runId,
              ])
            ).rows,
        );
        const answeredAt = new Map(
          fake.requests
            .filter((r) => r.completed && r.idempotencyKey)
            .map((r) => [r.idempotencyKey!, performance.timeOrigin + (r.completedAt ?? r.finishedAt!)]),
        );
        const windows = written
          .filter((r) => answeredAt.has(r.idempotency_key))
          .map((r) => Number(r.at) - answeredAt.get(r.idempotency_key)!)
          .sort((a, b) => a - b);
        const at = (q: number) => windows[Math.min(windows.length - 1, Math.max(0, Math.ceil(q * windows.length) - 1))] ?? Number.NaN;
        const mean = windows.reduce((sum, w) => sum + w, 0) / windows.length;
        const wall = new Date(run.finishedAt).getTime() - new Date(run.createdAt).getTime();
        answerToCommitMs = { p50: at(0.5), p95: at(0.95), max: at(1), mean, answersPerSecond: (windows.length * 1000) / wall };
      }
      const wallMs = new Date(run.finishedAt).getTime() - new Date(run.createdAt).getTime();
      const effective = Math.min(o.concurrency, o.concurrency * instances);
      const idealMs = (cells * o.delayMs) / effective;
      if (kill) {
        const completed = fake.countsByIdempotencyKey('completed');
        const all = fake.countsByIdempotencyKey('all');
        const calledAgain = [...all.entries()].filter(([, n]) => n > 1).length;
        const resumed = fake.requests
          .filter((r) => heldKeys.has(r.idempotencyKey ?? '') && r.receivedAt > killedAt)
          .map((r) => r.receivedAt);
        // Each call of a key answered in full twice, relative to the kill (ms): when it arrived and ended, and whether the
        // killed instance held the cell (RUNNING under its lease) at the kill.
        const twice = [...completed.entries()].filter(([, n]) => n > 1).map(([k]) => k);
        const twiceCalls = twice.map((k) => ({
          held: heldKeys.has(k),
          calls: fake.requests
            .filter((r) => r.idempotencyKey === k)
            .map((r) => ({
              at: Math.round(r.receivedAt - killedAt),
              end: Math.round((r.completedAt ?? r.finishedAt ?? Number.NaN) - killedAt),
              done: r.completed,
            })),
        }));
        crash = {
          twiceCalls,
          completedTwice: [...completed.values()].filter((n) => n > 1).length,
          calledAgain,
          heldAtKill: heldKeys.size,
          resumeMs: resumed.length ? Math.min(...resumed) - killedAt : Number.NaN,
          killedAtCellsDone,
        };
      }
      const cpu = cpuAfter.reduce((sum, v, i) => sum + v - cpuBefore[i]!, 0);
      return {
        label: kill ? `${instances} instances, one kill -9ed at ${killedAtCellsDone} cells` : `${instances} instance`,
        cells,
        wallMs,
        idealMs,
        efficiency: idealMs / wallMs,
        cpuMsPerCell: cpu / cells,
        ...(statementsPerCell !== undefined ? { statementsPerCell } : {}),
        ...(answerToCommitMs ? { answerToCommitMs } : {}),
        status: run.status,
        ...(crash ? { crash } : {}),
      };
    }
    if (Date.now() > deadline) throw new Error(`run ${runId} did not finish: ${JSON.stringify(run)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

main().catch((error) => {
  process.stderr.write(`bench:eval failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
