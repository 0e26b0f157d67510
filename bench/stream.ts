/**
 * `npm run bench:stream`: streaming latency of comparisons, as a new user sees it.
 *
 * A fake provider in its own process (lib/stream-provider-child.ts) streams
 * every answer as `--deltas` deltas (100) `--interval` ms apart (20 ms: 50
 * tokens/s), each carrying its write time. Per level, N comparisons × 4 models
 * are started at once on instance A, each followed by one SSE subscriber on A,
 * and every 10th also by a subscriber on instance B (a second ours on the same
 * PostgreSQL and Redis) opened 1 s later, so it catches up by replay. The
 * subscribers run in their own process (lib/stream-load-child.ts).
 *
 * Variants: `redis` (ours A + B on Redis pub/sub), `memory` (ours alone,
 * REDIS_URL unset: in-process pub/sub and cache; no B), `relay` (the limit:
 * bench/limits/bare-relay.js relays the same upstream streams through bare
 * node:http). Columns and targets: docs/BENCHMARKS.md "Streaming benchmark".
 *
 *   npm run bench:stream
 *   npm run bench:stream -- --levels=20,100 --variants=redis,relay
 *   npm run bench:stream -- --profile --levels=100 --variants=redis   # ours A under --cpu-prof: top self-time frames
 *   flags: --deltas=100 --interval=20 --stream-timeout=60 (s) --b-delay=1000 (ms) --warmup=4 (comparisons, unrecorded) --top=15 --no-build
 *          --profile-first=800 (with --profile: only the first 800 ms of each level, e.g. the burst of starts)
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { formatFrames, type Frame, profileClockUs, profilesIn, readProfile, selfByOrigin, topFrames } from './lib/cpuprofile';
import { assertLoopback, parseOptions, UsageError } from './lib/options';
import { withClient } from './lib/db';
import { cpuMs, freePort, ServerProcess } from './lib/procs';
import { fixed, markdownTable } from './lib/report';
import { baseEnv, Cleanup, graphql, log, mapLimit, prepare, ROOT, startOurs, waitQuiet } from './lib/setup';
import { reconcile, StreamLoad, type StreamLoadResult, type SideResult } from './lib/stream-load';
import type { ProviderStats } from './lib/stream-provider-child';
import { modelName, promptOf } from './lib/stream-tokens';

const VARIANTS = ['relay', 'redis', 'memory'] as const;
type StreamVariant = (typeof VARIANTS)[number];
const LABELS: Record<StreamVariant, string> = {
  redis: 'ours, Redis pub/sub (A + B)',
  memory: 'ours, in-memory pub/sub',
  relay: 'bare node:http relay',
};
const MODELS = [1, 2, 3, 4].map((m) => `openai:${modelName(m)}`);
/** The issue's goals: p99 added latency within this many ms of the relay's, per level. */
const P99_GOAL: Record<number, number> = { 20: 10, 100: 50, 200: 250 };
const P50_GOAL: Record<number, number> = { 100: 5 };

interface StreamOptions {
  levels: number[];
  variants: StreamVariant[];
  profile: boolean;
  build: boolean;
  deltas: number;
  intervalMs: number;
  streamTimeoutMs: number;
  bDelayMs: number;
  bEvery: number;
  top: number;
  /** With --profile: only the first this many ms of each level (e.g. the burst of starts); 0: the whole level. */
  profileFirstMs: number;
  /** Comparisons of an unrecorded warm-up level per variant (JIT, pools, connections); 0: none. */
  warmup: number;
}

function parseStreamOptions(argv: string[]): StreamOptions {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!match) throw new UsageError(`unknown argument "${arg}"`);
    flags.set(match[1]!, match[2] ?? 'true');
  }
  const known = [
    'levels',
    'variants',
    'profile',
    'no-build',
    'deltas',
    'interval',
    'stream-timeout',
    'b-delay',
    'top',
    'warmup',
    'profile-first',
    'help',
  ];
  for (const key of flags.keys())
    if (!known.includes(key)) throw new UsageError(`unknown flag --${key} (known: ${known.map((k) => `--${k}`).join(' ')})`);
  if (flags.has('help')) throw new UsageError('');
  const num = (name: string, fallback: number, max = Infinity) => {
    const raw = flags.get(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value <= 0 || value > max)
      throw new UsageError(`--${name} must be an integer in 1..${max}, got "${raw}"`);
    return value;
  };
  const levels = (flags.get('levels') ?? '20,100,200')
    .split(',')
    .filter(Boolean)
    .map((l) => {
      const n = Number(l);
      if (!Number.isInteger(n) || n < 1 || n > 1000)
        throw new UsageError(`--levels: 1..1000 comparisons each (one per seeded user), got "${l}"`);
      return n;
    });
  const variants = (flags.get('variants') ?? VARIANTS.join(',')).split(',').filter(Boolean);
  for (const v of variants)
    if (!(VARIANTS as readonly string[]).includes(v)) throw new UsageError(`unknown variant "${v}" (known: ${VARIANTS.join(', ')})`);
  return {
    levels,
    variants: variants as StreamVariant[],
    profile: flags.has('profile'),
    build: !flags.has('no-build'),
    deltas: num('deltas', 100, 10_000),
    intervalMs: num('interval', 20, 10_000),
    streamTimeoutMs: num('stream-timeout', 60, 600) * 1000,
    bDelayMs: num('b-delay', 1000, 60_000),
    bEvery: 10,
    top: num('top', 15, 200),
    warmup: flags.get('warmup') === '0' ? 0 : num('warmup', 4, 1000),
    profileFirstMs: flags.has('profile-first') ? num('profile-first', 1000, 600_000) : 0,
  };
}

/** The fake provider's process: its URL, counters and CPU. */
class Provider {
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
  ) {}

  static async start(deltas: number, intervalMs: number): Promise<Provider> {
    const child = fork(join(__dirname, 'lib', 'stream-provider-child.ts'), [String(deltas), String(intervalMs)], {
      execArgv: ['--require', 'ts-node/register'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const url = await new Promise<string>((resolve, reject) => {
      child.once('message', (m: { url: string }) => resolve(m.url));
      child.once('exit', (code) => reject(new Error(`the fake provider exited (${code})`)));
    });
    return new Provider(child, url);
  }

  get pid(): number {
    return this.child.pid!;
  }

  stats(): Promise<ProviderStats> {
    return this.ask<{ stats: ProviderStats }>('stats').then((m) => m.stats);
  }

  /** Deltas written per answer ("k.m") since the last call. */
  written(): Promise<Map<string, number>> {
    return this.ask<{ written: Array<[string, number]> }>('written').then((m) => new Map(m.written));
  }

  private ask<T>(type: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the fake provider did not answer "${type}"`)), 10_000);
      const onMessage = (m: { type: string } & T) => {
        if (m.type !== type) return;
        clearTimeout(timer);
        this.child.off('message', onMessage);
        resolve(m);
      };
      this.child.on('message', onMessage);
      this.child.send({ type });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || !this.child.connected) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.disconnect();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

interface Point {
  variant: StreamVariant;
  comparisons: number;
  answers: number;
  /** Waited this long (bounded) for the servers to go idle before the level; false: still busy. */
  quietBefore: boolean;
  load: StreamLoadResult;
  /** Deltas the provider wrote during the level, and how late its timers fired. */
  provider: { deltas: number; streams: number; aborted: number; lagMsMean: number; lagMsMax: number; cpuPercent: number };
  loadGeneratorCpuPercent: number;
  /** From the burst to the servers going idle (bounded): what the CPU is billed over. */
  windowMs: number;
  quietAfter: boolean;
  cpuMs: Record<string, number>;
  cpuMsPerDelta: number;
  rssPeakMb: Record<string, number>;
  deltasPerSecond: number;
}

const sideCounts = (s: SideResult | undefined) =>
  s ? `${s.lost}/${s.duplicated}/${s.outOfOrder}${s.misrouted ? ` (+${s.misrouted} misrouted)` : ''}` : '–';

function sideProblems(s: SideResult | undefined): string {
  if (!s) return '–';
  return `${s.timedOut}/${s.errors}`;
}

function pointsTable(points: Point[], relay: Map<number, Point>): string {
  const rows = points.map((p) => {
    const a = p.load.a;
    const base = p.variant === 'relay' ? undefined : relay.get(p.comparisons)?.load.a.latencyMs;
    const settled = a.settled;
    const refused = p.load.starts ? Object.values(p.load.starts.refused).reduce((x, y) => x + y, 0) : undefined;
    return [
      LABELS[p.variant],
      String(p.comparisons),
      `${settled}/${p.answers}`,
      refused === undefined ? '–' : String(refused),
      p.load.starts ? fixed(p.load.starts.latencyMs.p99, 0) : '–',
      fixed(a.openMs.p99, 0),
      String(a.latencyMs.n),
      fixed(a.latencyMs.p50, 1),
      fixed(a.latencyMs.p99, 1),
      base ? `${a.latencyMs.p50 - base.p50 >= 0 ? '+' : ''}${fixed(a.latencyMs.p50 - base.p50, 1)}` : '–',
      base ? `${a.latencyMs.p99 - base.p99 >= 0 ? '+' : ''}${fixed(a.latencyMs.p99 - base.p99, 1)}` : '–',
      fixed(a.latencyInclOpenMs.p99, 1),
      fixed(p.deltasPerSecond, 0),
      fixed(p.cpuMsPerDelta, 3),
      Object.values(p.rssPeakMb)
        .map((r) => fixed(r, 0))
        .join(' / '),
      sideCounts(a),
      sideCounts(p.load.b),
      `${sideProblems(a)}${p.load.b ? ` · ${sideProblems(p.load.b)}` : ''}`,
    ];
  });
  return markdownTable(
    [
      'server (same run)',
      'comparisons',
      'answers settled (A)',
      'refused starts',
      'start p99 ms',
      'open p99 ms',
      'deltas timed',
      'p50 ms',
      'p99 ms',
      'p50 − relay',
      'p99 − relay',
      'p99 incl. open',
      'deltas/s',
      'CPU ms/delta',
      'RSS peak MB',
      'lost/dup/ooo A',
      'lost/dup/ooo B',
      'timeouts/errors A · B',
    ],
    rows,
    ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  );
}

function targetsTable(
  points: Point[],
  relay: Map<number, Point>,
): { text: string; rows: Array<{ target: string; measured: string; met: boolean | null }> } {
  const rows: Array<{ target: string; measured: string; met: boolean | null }> = [];
  for (const p of points) {
    if (p.variant === 'relay') continue;
    const base = relay.get(p.comparisons)?.load.a;
    const name = `${p.variant} @${p.comparisons}`;
    const a = p.load.a;
    // Met only when both hold: the deltas-only latency (the issue's definition) and the one that
    // also counts deltas written after the subscription request but replayed (a slow open must not look fast).
    const goalRow = (q: 'p50' | 'p99', goal: number) =>
      rows.push({
        target: `${name}: ${q} added latency ≤ relay + ${goal} ms (deltas; and incl. open)`,
        measured: base
          ? `${fixed(a.latencyMs[q], 1)} vs ${fixed(base.latencyMs[q], 1)} ms; incl. open ${fixed(a.latencyInclOpenMs[q], 1)} vs ${fixed(base.latencyInclOpenMs[q], 1)} ms`
          : 'no relay row',
        met: base ? a.latencyMs[q] - base.latencyMs[q] <= goal && a.latencyInclOpenMs[q] - base.latencyInclOpenMs[q] <= goal : null,
      });
    if (P99_GOAL[p.comparisons] !== undefined) goalRow('p99', P99_GOAL[p.comparisons]!);
    if (P50_GOAL[p.comparisons] !== undefined) goalRow('p50', P50_GOAL[p.comparisons]!);
    for (const [side, s] of [
      ['A', a],
      ['B', p.load.b],
    ] as const) {
      if (!s) continue;
      const bad = s.lost + s.duplicated + s.outOfOrder + s.misrouted;
      rows.push({
        target: `${name}: 0 lost/duplicated/out-of-order deltas on ${side}${side === 'B' ? ' (late subscriber, other instance)' : ''}`,
        measured: `${s.lost}/${s.duplicated}/${s.outOfOrder}${s.misrouted ? ` + ${s.misrouted} misrouted` : ''} (${s.answersWithLoss} answers with loss, ${s.answersEmpty} of them empty${s.unwritten ? `; ${s.unwritten} tokens never written: failed answers` : ''})`,
        met: bad === 0,
      });
      rows.push({
        target: `${name}: every answer settles, whole text, seen on ${side}`,
        measured: `${s.settled}/${s.answers} settled, ${s.settledTextOk} with the whole text; ${s.timedOut} timed out`,
        met: s.settled === s.answers && s.settledTextOk === s.answers,
      });
    }
    if (p.load.starts) {
      const refused = Object.values(p.load.starts.refused).reduce((x, y) => x + y, 0);
      rows.push({
        target: `${name}: 0 refused starts in the burst`,
        measured: `${refused} of ${p.load.starts.sent}${refused ? ` ${JSON.stringify(p.load.starts.refused)}` : ''}; all answered ${fixed(p.load.starts.spanMs, 0)} ms after the first was sent`,
        met: refused === 0,
      });
    }
  }
  const text = markdownTable(
    ['target (issue)', 'measured', 'met?'],
    rows.map((r) => [r.target, r.measured, r.met === null ? '—' : r.met ? 'yes' : 'NO']),
    ['l', 'r', 'l'],
  );
  return { text, rows };
}

async function startVariant(
  variant: StreamVariant,
  ctx: { secrets: Parameters<typeof startOurs>[1]; oursExtra: Record<string, string>; providerUrl: string; profileDir?: string },
): Promise<ServerProcess[]> {
  const profiled = ctx.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${ctx.profileDir}`] : undefined;
  if (variant === 'redis') {
    const a = await startOurs('ours-a', ctx.secrets, ctx.oursExtra, profiled);
    const b = await startOurs('ours-b', ctx.secrets, ctx.oursExtra);
    return [a, b];
  }
  if (variant === 'memory') return [await startOurs('ours-memory', ctx.secrets, { ...ctx.oursExtra, REDIS_URL: '' }, profiled)];
  const port = await freePort();
  return [
    await ServerProcess.start({
      name: 'bare-relay',
      args: [process.execPath, 'bare-relay.js'],
      cwd: join(ROOT, 'bench', 'limits'),
      port,
      readyPath: '/__bench/ready',
      env: baseEnv({ NODE_ENV: 'production', PORT: String(port), UPSTREAM_URL: `${ctx.providerUrl}/v1` }),
    }),
  ];
}

async function runStream(options: StreamOptions, cleanup: Cleanup): Promise<number> {
  const started = new Date();
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const benchOptions = parseOptions(options.build ? [] : ['--no-build'], process.env);
  assertLoopback('BENCH_DATABASE_URL', benchOptions.adminUrl);
  assertLoopback('REDIS_URL', benchOptions.redisUrl);
  benchOptions.users = Math.max(...options.levels);

  log(`fake provider: ${options.deltas} deltas ${options.intervalMs} ms apart per answer, in its own process`);
  const provider = await Provider.start(options.deltas, options.intervalMs);
  cleanup.add('stop the fake provider', () => provider.stop());
  // Ours calls the provider at OPENAI_BASE_URL (operator-configured, so allowed in production); no per-user model-call rate limit.
  const oursExtra = { OPENAI_BASE_URL: `${provider.url}/v1`, RATE_LIMIT_PROVIDER_CALLS: '0' };
  const env = await prepare(benchOptions, cleanup, oursExtra);
  log(`saving an OpenAI key for ${env.users.length} users`);
  await mapLimit(env.users, 8, (u) =>
    graphql(
      env.ours.url,
      'mutation($input: SaveApiKeyInput!) { saveApiKey(input: $input) { id } }',
      { input: { provider: 'OPENAI', apiKey: `sk-bench-stream-${u.n}` } },
      u.token,
    ),
  );
  await env.ours.stop();
  // The seed's inserts would otherwise set off autovacuum of the big tables in the first minutes, during the levels.
  const vacuumStarted = performance.now();
  await withClient(env.db.url, (c) => c.query('vacuum'));
  log(`VACUUM of the seeded database: ${((performance.now() - vacuumStarted) / 1000).toFixed(1)} s`);
  const secrets = {
    dbUrl: env.db.url,
    redisUrl: env.redisUrl,
    cachePrefix: env.cachePrefix,
    jwtSecret: env.jwtSecret,
    encryptionKey: env.encryptionKey,
  };

  const load = StreamLoad.start();
  cleanup.add('stop the stream load generator', () => load.stop());
  const points: Point[] = [];
  const profiles: Array<{
    variant: StreamVariant;
    file: string;
    levels: number[];
    windows: Array<[number, number]>;
    busyMs: number;
    top: Frame[];
    byOrigin: Frame[];
  }> = [];
  const died: string[] = [];
  let k = 0;
  const estimate = options.variants.length * options.levels.length;
  log(
    `measuring ${options.variants.join(', ')} × ${options.levels.join(', ')} comparisons (${estimate} levels; streams cut after ${options.streamTimeoutMs / 1000} s)`,
  );

  interface Running {
    variant: StreamVariant;
    servers: ServerProcess[];
    profileDir?: string;
    /** The measured levels (burst → idle), for the profile: not the start-up or the warm-up. */
    windows: Array<[number, number]>;
  }
  const next = (n: number) =>
    env.users.slice(0, n).map((u) => {
      k++;
      return { k, token: u.token, prompt: promptOf(k) };
    });
  const spec = (run: Running, comparisons: Array<{ k: number; token: string; prompt: string }>) => ({
    mode: run.variant === 'relay' ? ('relay' as const) : ('ours' as const),
    urlA: run.servers[0]!.url,
    urlB: run.servers[1]?.url,
    bEvery: options.bEvery,
    bDelayMs: options.bDelayMs,
    comparisons,
    models: MODELS,
    deltas: options.deltas,
    startTimeoutMs: 30_000,
    streamTimeoutMs: options.streamTimeoutMs,
  });

  // Every variant's servers run for the whole bench, and each level measures the variants back to back:
  // the machine is shared, so a level's rows (and their ratios to the relay) are taken minutes apart at most.
  const running: Running[] = [];
  for (const variant of options.variants) {
    const profileDir =
      options.profile && variant !== 'relay' ? join(ROOT, 'bench', 'results', 'profiles', `stream-${variant}-${stamp}`) : undefined;
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    const servers = await startVariant(variant, { secrets, oursExtra, providerUrl: provider.url, profileDir });
    for (const s of servers) cleanup.add(`stop ${s.spec.name}`, () => s.stop());
    const run: Running = { variant, servers, profileDir, windows: [] };
    running.push(run);
    if (options.warmup) {
      // A fresh process answers its first requests slowly (JIT, pools, connections): not what a level measures.
      const warm = reconcile(await load.run(spec(run, next(options.warmup))), new Map(), options.deltas);
      log(
        `${LABELS[variant]}: warm-up of ${options.warmup} comparisons, p50 ${fixed(warm.a.latencyMs.p50, 1)} ms, settled ${warm.a.settled}/${options.warmup * MODELS.length} (not recorded)`,
      );
    }
  }

  try {
    for (const n of options.levels) {
      for (const run of running) {
        const { variant, servers, windows } = run;
        // Every server idle, not just this variant's: no backlog of another variant runs during this level.
        const quietBefore = await waitQuiet(
          running.flatMap((r) => r.servers),
          30_000,
        );
        const comparisons = next(n);
        await provider.written(); // forget the warm-up's and earlier levels' answers
        const statsBefore = await provider.stats();
        const cpuBefore = servers.map((s) => s.cpuMs());
        const providerCpuBefore = cpuMs(provider.pid);
        const loadCpuBefore = cpuMs(load.pid);
        const rss = servers.map(() => 0);
        const sample = () => {
          for (const [i, s] of servers.entries()) if (s.alive()) rss[i] = Math.max(rss[i]!, s.rssMb());
        };
        sample();
        const sampler = setInterval(sample, 250);
        const t0 = performance.now();
        const windowStart = profileClockUs();
        let result: StreamLoadResult;
        try {
          result = await load.run(spec(run, comparisons));
        } finally {
          clearInterval(sampler);
        }
        const loadMs = performance.now() - t0;
        const loadCpuAfter = cpuMs(load.pid);
        // Bill the servers until they go idle (bounded): work queued by the level is the level's.
        const quietAfter = await waitQuiet(servers, 30_000);
        const windowMs = performance.now() - t0;
        windows.push([windowStart, options.profileFirstMs ? windowStart + options.profileFirstMs * 1000 : profileClockUs()]);
        const cpuAfter = servers.map((s) => s.cpuMs());
        const providerCpuAfter = cpuMs(provider.pid);
        const statsAfter = await provider.stats();
        reconcile(result, await provider.written(), options.deltas);
        const deltas = statsAfter.deltas - statsBefore.deltas;
        const cpu = Object.fromEntries(servers.map((s, i) => [s.spec.name, cpuAfter[i]! - cpuBefore[i]!]));
        const totalCpu = Object.values(cpu).reduce((x, y) => x + y, 0);
        const sides = [result.a, result.b].filter((s): s is SideResult => !!s && s.deltaTokens > 0);
        const first = Math.min(...sides.map((s) => s.firstDeltaAt!));
        const last = Math.max(...sides.map((s) => s.lastDeltaAt!));
        const delivered = sides.reduce((x, s) => x + s.deltaTokens, 0);
        const point: Point = {
          variant,
          comparisons: n,
          answers: n * MODELS.length,
          quietBefore,
          load: result,
          provider: {
            deltas,
            streams: statsAfter.started - statsBefore.started,
            aborted: statsAfter.aborted - statsBefore.aborted,
            lagMsMean: deltas ? (statsAfter.lagMsSum - statsBefore.lagMsSum) / deltas : 0,
            lagMsMax: statsAfter.lagMsMax,
            cpuPercent: ((providerCpuAfter - providerCpuBefore) / windowMs) * 100,
          },
          loadGeneratorCpuPercent: ((loadCpuAfter - loadCpuBefore) / loadMs) * 100,
          windowMs,
          quietAfter,
          cpuMs: cpu,
          cpuMsPerDelta: deltas ? totalCpu / deltas : NaN,
          rssPeakMb: Object.fromEntries(servers.map((s, i) => [s.spec.name, rss[i]!])),
          deltasPerSecond: sides.length && last > first ? delivered / ((last - first) / 1000) : 0,
        };
        points.push(point);
        const a = result.a;
        const refused = result.starts ? Object.values(result.starts.refused).reduce((x, y) => x + y, 0) : 0;
        log(
          `${LABELS[variant].padEnd(28)} ${String(n).padStart(4)} comparisons: p50 ${fixed(a.latencyMs.p50, 1)} ms p99 ${fixed(a.latencyMs.p99, 1)} ms (${a.latencyMs.n} deltas; incl. open ${fixed(a.latencyInclOpenMs.p99, 1)} ms), ` +
            `settled ${a.settled}/${point.answers}, lost/dup/ooo A ${sideCounts(a)} B ${sideCounts(result.b)}, refused ${refused}, timeouts ${a.timedOut}${result.b ? `+${result.b.timedOut}` : ''}, ` +
            `${fixed(point.cpuMsPerDelta, 3)} CPU ms/delta, ${(loadMs / 1000).toFixed(1)} s` +
            (a.firstError ? ` (first error: ${a.firstError.slice(0, 120)})` : '') +
            (result.starts?.firstError ? ` (first refused start: ${result.starts.firstError.slice(0, 120)})` : ''),
        );
      }
    }
  } finally {
    for (const { variant, servers } of running) {
      for (const s of servers)
        if (s.died()) died.push(`${s.spec.name} (${variant}) died (${s.died()}) during the run; its last output:\n${s.tail()}`);
      for (const s of servers) await s.stop();
    }
  }
  for (const { variant, profileDir, windows } of running) {
    if (!profileDir) continue;
    const file = profilesIn(profileDir)[0];
    if (!file) {
      log(`no .cpuprofile in ${profileDir}`);
      continue;
    }
    const profile = readProfile(file);
    const top = topFrames(profile, options.top, windows);
    const busyMs = topFrames(profile, Infinity, windows).reduce((sum, f) => sum + f.selfMs, 0);
    profiles.push({
      variant,
      file: file.slice(ROOT.length + 1),
      levels: options.levels,
      windows,
      busyMs,
      top,
      byOrigin: selfByOrigin(profile, options.top, windows),
    });
  }

  const relay = new Map(points.filter((p) => p.variant === 'relay').map((p) => [p.comparisons, p]));
  const targets = targetsTable(points, relay);
  const notes: string[] = died.map((d) => d.split('\n')[0]!);
  for (const d of died) log(d);
  for (const p of points) {
    const name = `${p.variant} @${p.comparisons}`;
    if (p.loadGeneratorCpuPercent >= 90)
      notes.push(
        `${name}: the subscribers' process used ${p.loadGeneratorCpuPercent.toFixed(0)}% of a core: that row may be bounded by the client.`,
      );
    if (p.provider.lagMsMean >= 2)
      notes.push(
        `${name}: the fake provider's timers fired ${p.provider.lagMsMean.toFixed(1)} ms late on average (max ${p.provider.lagMsMax.toFixed(0)} ms): the machine was saturated (latency is measured from the actual write).`,
      );
    if (!p.quietBefore) notes.push(`${name}: the servers were still busy from the previous level when it started (30 s wait).`);
    if (!p.quietAfter) notes.push(`${name}: the servers were still busy 30 s after the subscribers finished; CPU billed up to then.`);
    if (p.load.unsettledOnA?.comparisons)
      notes.push(
        `${name}: ${p.load.unsettledOnA.comparisons} comparisons with answers A's subscriber did not see settle; their answers in the database afterwards: ${JSON.stringify(p.load.unsettledOnA.dbStatuses)}.`,
      );
    for (const [side, s] of [
      ['A', p.load.a],
      ['B', p.load.b],
    ] as const)
      if (s?.firstError)
        notes.push(`${name} ${side}: ${s.errors} stream errors ${JSON.stringify(s.errorKinds)}, first: ${s.firstError.slice(0, 200)}`);
    if (p.load.starts?.firstError) notes.push(`${name}: first refused start: ${p.load.starts.firstError.slice(0, 200)}`);
  }
  if (options.profile)
    notes.push('--profile: ours A ran under --cpu-prof, which slows it: compare these rows with other profiled runs only.');
  const finished = new Date();
  const machine = `${cpus()[0]?.model ?? 'CPU'} × ${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, PostgreSQL ${env.versions.postgres}, Redis ${env.versions.redis}`;
  const text = [
    pointsTable(points, relay),
    '',
    targets.text,
    '',
    `${finished.toISOString().slice(0, 16).replace('T', ' ')} UTC · ${machine} · ${options.deltas} deltas × ${options.intervalMs} ms per answer, ${MODELS.length} models per comparison, ` +
      `every ${options.bEvery}th comparison also watched on B from ${options.bDelayMs} ms · start = startComparison answered, open = subscription request → headers (A) · ` +
      `latency (p50/p99) = subscriber read − provider write, over the "deltas timed": deltas read as deltas on A, written after A's headers arrived; ` +
      `"incl. open": every token written after A's subscription request was sent, read as a delta or in the replay · deltas/s = deltas read as deltas (A + B) per second from the first to the last · ` +
      `lost/dup/ooo over replay + deltas · CPU = servers' utime + stime (A + B) from the burst until idle, per delta the provider wrote · RSS peak sampled every 250 ms (A / B).`,
    ...(notes.length ? ['', 'Notes:', ...notes.map((n) => `- ${n}`)] : []),
  ].join('\n');
  process.stdout.write(`\n${text}\n`);
  for (const p of profiles) {
    process.stdout.write(
      `\ntop ${options.top} self-time frames of ours A, ${p.variant}, during the level(s) ${p.levels.join(', ')} (${fixed(p.busyMs, 0)} ms busy; ${p.file}):\n${formatFrames(p.top)}\n`,
    );
    process.stdout.write(`self time by origin:\n${formatFrames(p.byOrigin)}\n`);
  }

  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `stream-${options.profile ? 'profile-' : ''}${stamp}.json`);
  writeFileSync(
    file,
    JSON.stringify(
      {
        startedAt: started.toISOString(),
        finishedAt: finished.toISOString(),
        machine: { cpu: cpus()[0]?.model, cores: cpus().length, node: process.version, ...env.versions },
        options,
        models: MODELS,
        points,
        targets: targets.rows,
        profiles,
        notes,
        table: text,
      },
      null,
      2,
    ) + '\n',
  );
  log(`results: ${file.slice(ROOT.length + 1)}`);
  return 0;
}

async function main(): Promise<number> {
  let options: StreamOptions;
  try {
    options = parseStreamOptions(process.argv.slice(2));
  } catch (error) {
    if (error instanceof UsageError) {
      if (error.message) console.error(`bench: ${error.message}`);
      console.error(
        'usage: npm run bench:stream -- [--levels=20,100,200] [--variants=relay,redis,memory] [--profile] [--top=15] [--deltas=100] [--interval=20] [--stream-timeout=60] [--b-delay=1000] [--warmup=4] [--no-build]',
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
    return await runStream(options, cleanup);
  } finally {
    await cleanup.run();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    for (const server of ServerProcess.all)
      if (server.died()) console.error(`bench: ${server.spec.name} died (${server.died()}); its last output:\n${server.tail()}`);
    process.exit(1);
  },
);
