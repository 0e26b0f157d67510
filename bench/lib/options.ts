/**
 * Command line and environment of `npm run bench`:
 *
 *   npm run bench                          full run (5 s warm-up + 15 s measured per point)
 *   npm run bench -- --quick               short run (1 s + 3 s per point)
 *   npm run bench -- --smoke               every row for 1 s + 2 s at c=10, data checks only, no goals (exit 1 on errors)
 *   npm run bench -- --smoke --ci          (npm run bench:smoke) the CI-sized smoke, under a minute: 60 seeded users, 20 cycled,
 *                                          every row but PostGraphile's (no peer to install) for 0.5 s at c=10, no warm-up, no
 *                                          waiting for idle servers; the same data checks, against ours' resolvers
 *   npm run bench -- --variants=ours-miss,postgraphile5 --concurrency=10
 *   npm run bench -- --soak [--requests=20000]
 *   npm run bench -- --readme              also write the table into docs/BENCHMARKS.md "Performance"
 *   npm run bench -- --scale=5 --quick     data growth (issue 20 item 3): the seed × 5 users, plans checked, ratios to scale 1
 *                                          (lib/scale.ts; --no-baseline skips the scale-1 database, --spread cycles users over all)
 *
 * Env: BENCH_DATABASE_URL (admin URL; default postgres://postgres@127.0.0.1:5432/postgres),
 * REDIS_URL (default redis://127.0.0.1:6379), BENCH_VARIANTS, BENCH_CONCURRENCY,
 * BENCH_WARMUP_SECONDS, BENCH_SECONDS, BENCH_SOAK_REQUESTS, BENCH_VOTES_PER_SECOND (votable comparisons seeded per
 * second of a vote point, default 3000: raise it if a vote row fails its row count).
 */
import { DEFAULT_ADMIN_URL } from './db';
import { WORKLOAD } from './seed';

export const VARIANTS = [
  'ours-miss',
  'ours-miss-resolvers',
  'ours-miss-js',
  // ours-miss with OpenTelemetry traces on (issue 21.4), exported to a local OTLP/HTTP sink (lib/otlp-sink.ts).
  'ours-miss-traced',
  // The same with one new trace in ten kept (OTEL_TRACES_SAMPLER_ARG=0.1).
  'ours-miss-traced-10pct',
  'ours-hit',
  'ours-hit-remote',
  // Ours (cache bypassed) reaching PostgreSQL through a PgBouncer in transaction pooling, named statements off.
  'ours-miss-pgbouncer',
  'postgraphile5',
  'postgraphile4',
  'bare-sql',
  'bare-redis',
  // The conversation view (a conversation's second page of messages, the cursor a variable) and the comparison view.
  'ours-conversation',
  'postgraphile5-conversation',
  'ours-comparison',
  'postgraphile5-comparison',
  // A hot shared page (issue 19): anonymous `shared(token)`, one link per cycled user, beside its like-for-like limit:
  // node:http + one Redis GET of ours' exact shared-page bytes, keyed by the body's token (~2 KB, not the 124 KB history page).
  'ours-shared',
  'bare-redis-shared',
  // The views' limit (issue 20 item 2): one prepared statement building the whole document (bench/limits/bare-views.js).
  'bare-conversation',
  'bare-comparison',
  // Writes (issue 20 item 4), each beside node:http + pg doing the same INSERTs in one transaction (bench/limits/bare-writes.js).
  'ours-send-message',
  'bare-send-message',
  'ours-vote',
  'bare-vote',
  'ours-create-conversation',
  'bare-create-conversation',
] as const;
export type Variant = (typeof VARIANTS)[number];

export interface Options {
  quick: boolean;
  /** Every row briefly at c=10 (data checks and row counts, no goals): a regression guard, not a measurement. */
  smoke: boolean;
  /** The CI-sized smoke (implies smoke): small seed, short points, no PostGraphile, no waiting for idle servers. */
  ci: boolean;
  /** Wait for a server to go idle before a point and its window (CPU per request is only meaningful then). */
  waitIdle: boolean;
  /** Users seeded (× scale); the read rows cycle over the first `users`, the write rows over the next 2 × `users`. */
  seedUsers: number;
  soak: boolean;
  soakRequests: number;
  variants: Variant[];
  concurrency: number[];
  warmupSeconds: number;
  seconds: number;
  /** Ours (cache bypassed) at this many connections on a pool of 10: every request must be answered without error. */
  poolCheck: { connections: number; requestsPerConnection: number } | null;
  /** Users whose tokens the requests cycle over (of the 1,000 seeded). */
  users: number;
  adminUrl: string;
  redisUrl: string;
  build: boolean;
  readme: boolean;
  /** Seeded users × scale (same per-user shape); above 1, `npm run bench` runs the scale bench (lib/scale.ts). */
  scale: number;
  /** Scale bench: also seed and measure a scale-1 database in the same invocation (default on). */
  baseline: boolean;
  /** Cycle requests over users spread across all seeded users instead of the first `users` (the hot set). */
  spread: boolean;
}

export class UsageError extends Error {}

function list(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function positive(name: string, raw: string, integer = true): number {
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value)))
    throw new UsageError(`${name} must be a positive ${integer ? 'integer' : 'number'}, got "${raw}"`);
  return value;
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): Options {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!match) throw new UsageError(`unknown argument "${arg}"`);
    flags.set(match[1]!, match[2] ?? 'true');
  }
  const known = [
    'quick',
    'smoke',
    'soak',
    'requests',
    'variants',
    'concurrency',
    'warmup',
    'seconds',
    'no-build',
    'readme',
    'no-pool-check',
    'help',
    'scale',
    'no-baseline',
    'spread',
    'ci',
  ];
  for (const key of flags.keys())
    if (!known.includes(key)) throw new UsageError(`unknown flag --${key} (known: ${known.map((k) => `--${k}`).join(' ')})`);
  if (flags.has('help')) throw new UsageError('');

  const ci = flags.has('ci');
  const smoke = flags.has('smoke') || ci;
  const quick = flags.has('quick');
  const variantsRaw = flags.get('variants') ?? env.BENCH_VARIANTS;
  // CI has no PostGraphile: its peers are installed by their own `npm ci`, outside the lockfile CI installs.
  const variants = variantsRaw ? list(variantsRaw) : VARIANTS.filter((v) => !ci || !v.startsWith('postgraphile'));
  for (const v of variants)
    if (!(VARIANTS as readonly string[]).includes(v)) throw new UsageError(`unknown variant "${v}" (known: ${VARIANTS.join(', ')})`);
  const concurrencyRaw = flags.get('concurrency') ?? env.BENCH_CONCURRENCY;
  const concurrency = concurrencyRaw ? list(concurrencyRaw).map((c) => positive('--concurrency', c)) : smoke ? [10] : [1, 10, 50];
  const warmupRaw = flags.get('warmup') ?? env.BENCH_WARMUP_SECONDS;
  const secondsRaw = flags.get('seconds') ?? env.BENCH_SECONDS;
  const requestsRaw = flags.get('requests') ?? env.BENCH_SOAK_REQUESTS;
  return {
    quick,
    smoke,
    soak: flags.has('soak'),
    soakRequests: requestsRaw ? positive('--requests', requestsRaw) : 100_000,
    variants: variants as Variant[],
    concurrency,
    ci,
    waitIdle: !ci,
    seedUsers: ci ? 60 : WORKLOAD.users,
    warmupSeconds: warmupRaw ? positive('--warmup', warmupRaw, false) : ci ? 0 : quick || smoke ? 1 : 5,
    seconds: secondsRaw ? positive('--seconds', secondsRaw, false) : ci ? 0.5 : smoke ? 2 : quick ? 3 : 15,
    poolCheck: flags.has('no-pool-check') || smoke ? null : { connections: 200, requestsPerConnection: quick ? 2 : 5 },
    users: ci ? 20 : 200,
    adminUrl: env.BENCH_DATABASE_URL || DEFAULT_ADMIN_URL,
    redisUrl: env.REDIS_URL || 'redis://127.0.0.1:6379',
    build: !flags.has('no-build'),
    readme: flags.has('readme'),
    scale: flags.has('scale') ? positive('--scale', flags.get('scale')!) : 1,
    baseline: !flags.has('no-baseline'),
    spread: flags.has('spread'),
  };
}

/** Only loopback targets: the bench never sends load anywhere else. */
export function assertLoopback(name: string, url: string): void {
  const host = new URL(url).hostname;
  if (!/^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(host)) throw new UsageError(`${name} must point at a loopback address, got ${host}`);
}
