/**
 * An app built in-process on its own database (and cache prefix), listening
 * on port 0, with a GraphQL client over real HTTP, captured logs, and a SQL
 * statement counter.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { buildApp, type App, type BuildAppOptions } from '../../src/app';
import { loadConfig } from '../../src/config';
import { BACKGROUND_SQL_TAG } from '../../src/modules/comparison/comparison-runner';
import { currentRequestSeq, requestsStarted } from '../../src/observability/request-log';
import { createTestDatabase, type TestDatabase } from './database';
import { type PgBouncer, startPgBouncer } from './pgbouncer';
import type * as NodeRedis from '@redis/client';
import { redisUrlForTests } from './redis';
import { type RedisClusterForTests, startRedisCluster } from './redis-cluster';
import { type RedisSentinelForTests, startRedisSentinel } from './redis-sentinel';

/**
 * `TEST_VIA_PGBOUNCER=1`: every app of this file reaches its database through one PgBouncer in transaction
 * pooling (`.ci/run` runs the multi-instance, compiled-read, comparison and eval suites so), with named
 * statements off as PgBouncer 1.18 needs (`DB_PREPARED_STATEMENTS=off`). Tests' own SQL (`withClient(db.url)`)
 * stays direct: setup and session features (advisory locks held across statements) never go through it.
 */
const viaPgBouncer = process.env.TEST_VIA_PGBOUNCER === '1';
let bouncer: Promise<PgBouncer> | undefined;
if (viaPgBouncer) afterAll(async () => (await bouncer)?.stop());

async function appDatabaseUrl(url: string): Promise<string> {
  if (!viaPgBouncer) return url;
  bouncer ??= startPgBouncer(url);
  return (await bouncer).via(url);
}

/**
 * `TEST_VIA_REDIS_CLUSTER=1`: every app of this file that would use the shared Redis (`REDIS_URL` of
 * `redisUrlForTests()`) uses one private Redis Cluster instead (3 masters, 3 replicas: `redis-cluster.ts`),
 * through `REDIS_CLUSTER_NODES`. `.ci/run` runs the cache, persisted-document, multi-instance, rate-limit and
 * budget suites so. Apps given a private Redis (outage tests) keep it.
 */
const viaRedisCluster = process.env.TEST_VIA_REDIS_CLUSTER === '1';
let redisCluster: Promise<RedisClusterForTests> | undefined;
if (viaRedisCluster) afterAll(async () => (await redisCluster)?.stop());

/**
 * `TEST_VIA_REDIS_SENTINEL=1`: the same, on one private master, replica and three sentinels (`redis-sentinel.ts`)
 * through `REDIS_SENTINELS` / `REDIS_SENTINEL_MASTER`.
 */
const viaRedisSentinel = process.env.TEST_VIA_REDIS_SENTINEL === '1';
let redisSentinel: Promise<RedisSentinelForTests> | undefined;
if (viaRedisSentinel) afterAll(async () => (await redisSentinel)?.stop());

async function appRedisEnv(env: Record<string, string | undefined>): Promise<Record<string, string | undefined>> {
  if (!env.REDIS_URL || env.REDIS_URL !== redisUrlForTests()) return env;
  if (viaRedisSentinel) {
    redisSentinel ??= startRedisSentinel();
    return { ...env, REDIS_URL: undefined, ...(await redisSentinel).env };
  }
  if (!viaRedisCluster) return env;
  redisCluster ??= startRedisCluster();
  return { ...env, REDIS_URL: undefined, ...(await redisCluster).env };
}

/**
 * The URL of the one Redis server the apps of this file share: the shared Redis, or under TEST_VIA_REDIS_SENTINEL
 * the sentinels' master (after the first app started it).
 */
export async function sharedServerUrl(): Promise<string> {
  if (viaRedisSentinel && redisSentinel) return `redis://${(await (await redisSentinel).master()).address}`;
  return redisUrlForTests();
}

/**
 * node-redis, required by the functions that use it: most files that import this helper never
 * reach Redis themselves, and loading its 400-odd modules cost each of them (as `redis-client.ts` says).
 */
function nodeRedis(): typeof NodeRedis {
  return require('@redis/client') as typeof NodeRedis;
}

/**
 * The keys matching `match` (a SCAN pattern) on the Redis the apps of this file share, with their
 * PTTL: the shared Redis, under TEST_VIA_REDIS_SENTINEL the sentinels' master, or under TEST_VIA_REDIS_CLUSTER
 * the cluster (every master scanned).
 */
export async function sharedRedisKeys(match: string): Promise<Array<{ key: string; pttl: number }>> {
  const { createClient, createCluster } = nodeRedis();
  // A client that connects before answering (the app's clients connect in the background and fail open).
  const client =
    viaRedisCluster && redisCluster
      ? await createCluster({
          rootNodes: (await redisCluster).nodes.filter((n) => n.alive).map((n) => ({ url: `redis://${n.address}` })),
        }).connect()
      : await createClient({ url: await sharedServerUrl() }).connect();
  try {
    const nodes = 'masters' in client ? await Promise.all(client.masters.map((m) => client.nodeClient(m))) : [client];
    const keys: string[] = [];
    for (const node of nodes) for await (const batch of node.scanIterator({ MATCH: match, COUNT: 1000 })) keys.push(...batch);
    return await Promise.all(keys.map(async (key) => ({ key, pttl: await client.pTTL(key) })));
  } finally {
    client.destroy();
  }
}

/** Subscribers of `channel` (PUBSUB NUMSUB) on the shared Redis, or summed over every node of the cluster. */
export async function sharedRedisSubscribers(channel: string): Promise<number> {
  if (viaRedisCluster && redisCluster) {
    const cluster = await redisCluster;
    const counts = await Promise.all(
      cluster.nodes
        .filter((n) => n.alive)
        .map(async (n) => Number(((await cluster.command(n, ['PUBSUB', 'NUMSUB', channel])) as unknown[])[1])),
    );
    return counts.reduce((sum, n) => sum + n, 0);
  }
  const client = nodeRedis().createClient({ url: await sharedServerUrl() });
  await client.connect();
  try {
    return Number((await client.pubSubNumSub(channel))[channel] ?? 0);
  } finally {
    client.destroy();
  }
}

export interface GqlResult<T = any> {
  status: number;
  headers: Headers;
  data?: T;
  errors?: Array<{ message: string; path?: string[]; extensions?: Record<string, any> }>;
  raw: string;
}

export interface TestApp {
  app: App;
  url: string;
  db: TestDatabase;
  /** Every log line written, as raw JSON text. */
  logs: string[];
  gql<T = any>(query: string, variables?: Record<string, unknown>, token?: string, headers?: Record<string, string>): Promise<GqlResult<T>>;
  /** Runs `fn` and returns how many SQL statements the app sent meanwhile (and their text), background lease upkeep left out. */
  countStatements<T>(fn: () => Promise<T>): Promise<{ count: number; statements: string[]; result: T }>;
  /** Registers a fresh user and returns their token and id. */
  signUp(prefix?: string): Promise<{ token: string; userId: string; email: string }>;
  close(): Promise<void>;
}

export interface TestAppOptions {
  env?: Record<string, string | undefined>;
  /** Reuse another test app's database (two instances sharing PostgreSQL). */
  db?: TestDatabase;
  /** Where spans go when the env turns tracing on (`OTEL_EXPORTER_OTLP_ENDPOINT`): an in-memory exporter. */
  spanExporter?: BuildAppOptions['spanExporter'];
}

export async function createTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const db = options.db ?? (await createTestDatabase());
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk, _enc, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const config = loadConfig({
    NODE_ENV: 'test',
    DATABASE_URL: await appDatabaseUrl(db.url),
    ...(viaPgBouncer ? { DB_PREPARED_STATEMENTS: 'off' } : {}),
    JWT_SECRET: 'test-secret-that-is-long-enough-for-hs256-0123456789',
    ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
    CACHE_PREFIX: `t-${randomBytes(5).toString('hex')}`,
    LOG_LEVEL: 'info',
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_TIME_COST: '1',
    // Suites sign up many users and run many comparisons from one address: limits are
    // off unless a test turns them on (test/rate-limits.test.ts).
    RATE_LIMIT_PROVIDER_CALLS: '0',
    RATE_LIMIT_LOGIN_FAILURES: '0',
    RATE_LIMIT_AUTH_PER_IP: '0',
    // Every database is a copy of the template global setup migrated (`mikro-orm migration:up`): nothing to apply,
    // and checking cost each app the migrator (loaded per file) and its reads. test/migrations.test.ts starts apps
    // with it on (an empty database, and a migrated one).
    MIGRATE_ON_START: 'false',
    ...(await appRedisEnv(options.env ?? {})),
  });
  const app = await buildApp(config, { logStream, spanExporter: options.spanExporter });
  await new Promise<void>((resolve) => app.httpServer.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(app.httpServer.address() as AddressInfo).port}`;

  const gql: TestApp['gql'] = async (query, variables, token, headers = {}) => {
    const response = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body: JSON.stringify({ query, variables }),
    });
    const raw = await response.text();
    const body = raw ? JSON.parse(raw) : {};
    return { status: response.status, headers: response.headers, data: body.data, errors: body.errors, raw };
  };

  let users = 0;
  return {
    app,
    url,
    db,
    logs,
    gql,
    async countStatements(fn) {
      const statements: string[] = [];
      // The comparison runner's own schedule (lease heartbeats and sweeps) is not the request's work.
      // Neither is what an earlier request left running (a settle finishing, a cache write): on a
      // busy machine it can land inside `fn`.
      const earlier = requestsStarted();
      const stop = app.queryObserver.onQuery((sql) => {
        const seq = currentRequestSeq();
        if (seq !== undefined && seq <= earlier) return;
        if (!sql.startsWith(BACKGROUND_SQL_TAG)) statements.push(sql);
      });
      try {
        const result = await fn();
        return { count: statements.length, statements, result };
      } finally {
        stop();
      }
    },
    async signUp(prefix = 'user') {
      const email = `${prefix}-${++users}-${randomBytes(3).toString('hex')}@example.com`;
      const res = await gql(`mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token user { id } } }`, {
        e: email,
        p: 'correct horse battery',
      });
      if (!res.data) throw new Error(`signUp failed: ${res.raw}`);
      return { token: res.data.register.token, userId: res.data.register.user.id, email };
    },
    async close() {
      await app.close();
      if (!options.db) await db.drop();
    },
  };
}

/**
 * For files that make apps with different settings as they go: `app(env)`
 * creates one, and every app made this way is closed after the file's tests.
 * Call it at the top level of a test file.
 */
export function appsClosedAfterAll(): (env?: Record<string, string>) => Promise<TestApp> {
  const apps: TestApp[] = [];
  afterAll(async () => {
    await Promise.all(apps.splice(0).map((a) => a.close()));
  });
  return async (env = {}) => {
    const t = await createTestApp({ env });
    apps.push(t);
    return t;
  };
}
