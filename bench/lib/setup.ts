/**
 * What the bench and the soak share: preflight of PostgreSQL and Redis, the
 * production build, the bench database (migrated by ours at start, then
 * seeded), ours started like `npm start` does, tokens, and cleanup of
 * everything (processes, database, Redis keys) at the end.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createClient } from '@redis/client';
import argon2 from 'argon2';
import { SignJWT } from 'jose';
import { createBenchDatabase, type BenchDatabase, withClient } from './db';
import type { Options } from './options';
import { freePort, ServerProcess } from './procs';
import { BENCH_PASSWORD, seed, userId, WORKLOAD } from './seed';

export const ROOT = join(__dirname, '..', '..');

export const log = (message: string) => process.stderr.write(`bench: ${message}\n`);

/** Runs registered cleanups in reverse order, once, also on Ctrl-C. */
export class Cleanup {
  private readonly steps: Array<{ name: string; fn: () => Promise<unknown> }> = [];
  private done = false;

  add(name: string, fn: () => Promise<unknown>): void {
    this.steps.push({ name, fn });
  }

  async run(): Promise<void> {
    if (this.done) return;
    this.done = true;
    for (const step of this.steps.reverse()) {
      try {
        await step.fn();
      } catch (error) {
        log(`cleanup "${step.name}" failed: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }
}

export interface Environment {
  db: BenchDatabase;
  redisUrl: string;
  cachePrefix: string;
  jwtSecret: string;
  encryptionKey: string;
  ours: ServerProcess;
  /** Tokens of bench users 1..options.users, signed like TokenService.sign. */
  users: Array<{ n: number; id: string; token: string }>;
  /** Users seeded (1..seededUsers). */
  seededUsers: number;
  seedSeconds: number;
  seedSteps: Record<string, number>;
  versions: { postgres: string; redis: string };
}

/** A minimal environment for child servers: no inherited DATABASE_URL, REDIS_URL, secrets or npm variables. */
export function baseEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of ['PATH', 'HOME', 'LANG', 'TMPDIR']) if (process.env[key]) env[key] = process.env[key]!;
  return { ...env, ...extra };
}

function run(command: string, args: string[], cwd: string, what: string): void {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (result.status !== 0) throw new Error(`${what} failed (${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}`);
}

/** `npm ci` in a peer's folder when its node_modules is missing. */
export function ensurePeerInstalled(folder: string): void {
  if (existsSync(join(folder, 'node_modules'))) return;
  log(`installing ${folder.slice(ROOT.length + 1)} (npm ci)`);
  run('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], folder, `npm ci in ${folder}`);
}

async function preflight(options: Options): Promise<{ postgres: string; redis: string }> {
  let postgres: string;
  try {
    postgres = await withClient(
      options.adminUrl,
      async (c) => (await c.query<{ v: string }>(`select current_setting('server_version') as v`)).rows[0]!.v,
    );
  } catch (error) {
    throw new Error(`PostgreSQL is not reachable at BENCH_DATABASE_URL (${options.adminUrl}): ${(error as Error).message}`);
  }
  const redis = createClient({ url: options.redisUrl, socket: { connectTimeout: 3_000, reconnectStrategy: false } });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const info = await redis.info('server');
    return { postgres, redis: /redis_version:(\S+)/.exec(info)?.[1] ?? '?' };
  } catch (error) {
    throw new Error(`Redis is not reachable at REDIS_URL (${options.redisUrl}): ${(error as Error).message}`);
  } finally {
    await redis.close().catch(() => undefined);
  }
}

/** Deletes every Redis key that contains `prefix` (ours' cache and the bench's own keys). */
export async function deleteRedisKeys(redisUrl: string, prefix: string): Promise<number> {
  const redis = createClient({ url: redisUrl });
  redis.on('error', () => undefined);
  await redis.connect();
  let deleted = 0;
  try {
    for await (const keys of redis.scanIterator({ MATCH: `*${prefix}*`, COUNT: 1000 })) {
      if (keys.length) deleted += await redis.unlink(keys);
    }
  } finally {
    await redis.close();
  }
  return deleted;
}

export async function signToken(secret: string, id: string): Promise<string> {
  // Exactly TokenService.sign (src/auth/tokens.ts): HS256, role claim, subject, issuer 'llmselect'.
  return new SignJWT({ role: 'USER' })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(id)
    .setIssuer('llmselect')
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(new TextEncoder().encode(secret));
}

export function oursEnv(
  e: { port: number; dbUrl: string; redisUrl: string; cachePrefix: string; jwtSecret: string; encryptionKey: string },
  extra: Record<string, string> = {},
) {
  return baseEnv({
    NODE_ENV: 'production',
    PORT: String(e.port),
    DATABASE_URL: e.dbUrl,
    REDIS_URL: e.redisUrl,
    CACHE_PREFIX: e.cachePrefix,
    JWT_SECRET: e.jwtSecret,
    ENCRYPTION_KEY: e.encryptionKey,
    DB_POOL_MAX: '10',
    // PROVIDER_THREADS=0 npm run bench:stream: ours with answers read in-process (the default is a thread).
    ...(process.env.PROVIDER_THREADS ? { PROVIDER_THREADS: process.env.PROVIDER_THREADS } : {}),
    ...(process.env.PROVIDER_THREAD_BATCH_MS ? { PROVIDER_THREAD_BATCH_MS: process.env.PROVIDER_THREAD_BATCH_MS } : {}),
    // BENCH_OURS_ENV="A=1,B=2": more settings for ours (an A/B of one setting in the same bench).
    ...Object.fromEntries(
      (process.env.BENCH_OURS_ENV ?? '')
        .split(',')
        .filter((pair) => pair.includes('='))
        .map((pair) => [pair.slice(0, pair.indexOf('=')).trim(), pair.slice(pair.indexOf('=') + 1).trim()]),
    ),
    ...extra,
  });
}

export async function prepare(options: Options, cleanup: Cleanup, oursExtraEnv: Record<string, string> = {}): Promise<Environment> {
  const versions = await preflight(options);
  if (options.build) {
    log('npm run build');
    run('npm', ['run', 'build', '--silent'], ROOT, 'npm run build');
  } else if (!existsSync(join(ROOT, 'dist', 'src', 'main.js'))) {
    throw new Error('--no-build, but dist/src/main.js does not exist: run npm run build');
  }

  const db = await createBenchDatabase(options.adminUrl);
  cleanup.add('drop the bench database', () => db.drop());
  log(`database ${db.name}`);
  const cachePrefix = `llmselect-bench-${randomBytes(4).toString('hex')}`;
  cleanup.add('delete the bench Redis keys', async () =>
    log(`deleted ${await deleteRedisKeys(options.redisUrl, cachePrefix)} Redis keys (${cachePrefix})`),
  );
  const jwtSecret = randomBytes(48).toString('base64url');
  const encryptionKey = randomBytes(32).toString('base64');

  // Ours applies the migrations at start (MIGRATE_ON_START defaults to true): the schema is exactly the app's.
  log('starting ours (node dist/src/main.js, NODE_ENV=production; applies the migrations)');
  const ours = await startOurs('ours', { dbUrl: db.url, redisUrl: options.redisUrl, cachePrefix, jwtSecret, encryptionKey }, oursExtraEnv);
  cleanup.add('stop ours', () => ours.stop());

  const hashOptions = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;
  const passwordHash = await argon2.hash(BENCH_PASSWORD, hashOptions);
  const workload = { ...WORKLOAD, users: options.seedUsers * options.scale };
  log(
    `seeding ${workload.users} users × (${WORKLOAD.conversations} conversations × ${WORKLOAD.messages} messages, ${WORKLOAD.comparisons} comparisons × ${WORKLOAD.responses} responses, ${WORKLOAD.votes} votes)`,
  );
  const seeded = await withClient(db.url, (c) => seed(c, workload, passwordHash));
  log(
    `seeded in ${seeded.seconds.toFixed(1)} s: ${Object.entries(seeded.rows)
      .map(([t, n]) => `${n} ${t}`)
      .join(', ')}; ANALYZE done (${Object.entries(seeded.stepSeconds)
      .map(([t, n]) => `${t} ${n.toFixed(1)} s`)
      .join(', ')})`,
  );

  // The hot set (users 1..options.users), or with --spread the same count spread evenly over every seeded user.
  const step = options.spread ? Math.max(1, Math.floor(workload.users / options.users)) : 1;
  const users = await Promise.all(
    Array.from({ length: Math.min(options.users, workload.users) }, async (_, i) => {
      const n = 1 + i * step;
      const id = userId(n);
      return { n, id, token: await signToken(jwtSecret, id) };
    }),
  );
  return {
    db,
    redisUrl: options.redisUrl,
    cachePrefix,
    jwtSecret,
    encryptionKey,
    ours,
    users,
    seededUsers: workload.users,
    seedSeconds: seeded.seconds,
    seedSteps: seeded.stepSeconds,
    versions,
  };
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  body: Buffer;
}

export async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

/** A GraphQL call that must succeed; returns `data`. */
export async function graphql<T = any>(url: string, query: string, variables: object, token?: string): Promise<T> {
  const answer = await post(`${url}/graphql`, { query, variables }, token ? { authorization: `Bearer ${token}` } : {});
  const parsed = JSON.parse(answer.body.toString('utf8')) as { data?: T; errors?: unknown[] };
  if (answer.status !== 200 || parsed.errors?.length)
    throw new Error(`GraphQL call failed (${answer.status}): ${JSON.stringify(parsed.errors ?? parsed).slice(0, 500)}`);
  return parsed.data as T;
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i]!);
      }
    }),
  );
  return results;
}

/** Starts a production build of ours (`node dist/src/main.js`) on a free port, on the given database and cache. */
export async function startOurs(
  name: string,
  e: { dbUrl: string; redisUrl: string; cachePrefix: string; jwtSecret: string; encryptionKey: string },
  extra: Record<string, string> = {},
  /** Node flags for this process (e.g. `--cpu-prof`); default: BENCH_OURS_NODE_ARGS. */
  nodeArgs?: string[],
): Promise<ServerProcess> {
  const port = await freePort();
  // BENCH_OURS_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles ours inside a bench run (node refuses --cpu-prof in NODE_OPTIONS).
  nodeArgs ??= process.env.BENCH_OURS_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [];
  return ServerProcess.start({
    name,
    args: [process.execPath, ...nodeArgs, 'dist/src/main.js'],
    cwd: ROOT,
    port,
    readyPath: '/health',
    env: oursEnv({ port, ...e }, extra),
  });
}

/**
 * Waits (bounded, `maxMs`) until every server has used < 5% of a core for
 * 200 ms: work abandoned by the previous point (requests, streams) is still
 * being processed and must not be billed to the next window. Returns false
 * when a server was still busy at the deadline.
 */
export async function waitQuiet(servers: ServerProcess | ServerProcess[], maxMs = 10_000): Promise<boolean> {
  const list = Array.isArray(servers) ? servers : [servers];
  const deadline = Date.now() + maxMs;
  let last = list.map((s) => s.cpuMs());
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    const now = list.map((s) => s.cpuMs());
    if (now.every((cpu, i) => cpu - last[i]! <= 10)) return true;
    last = now;
  }
  log(`${list.map((s) => s.spec.name).join(', ')} still busy ${Math.round(maxMs / 1000)} s after the load stopped`);
  return false;
}
