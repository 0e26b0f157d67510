/**
 * The only reader of `process.env`. `loadConfig()` parses, validates and
 * freezes; everything else receives a `Config` object (tests build their own).
 *
 * A missing or malformed variable throws `ConfigError` whose message is one
 * line naming the variable; `main.ts` prints it and exits.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import ipaddr from 'ipaddr.js';
import { DatabaseUrlError, parseDatabaseUrl } from './db/database-url';
import { DEVELOPMENT_CORS_ORIGINS, parseOriginRule } from './http/cors';
import type { RedisSentinelTarget } from './cache/redis-client';
import type { EgressPolicy } from './llm/egress';
import { DEFAULT_BASE_URLS, normalizeEndpoint } from './llm/language-models';
import { endpointKey, type ModelId, parseModelId } from './llm/model-id';

export type Environment = 'development' | 'production' | 'test';

export interface EncryptionKey {
  /** Stored beside every ciphertext so old rows stay readable after rotation. */
  id: string;
  key: Buffer;
}

export interface PoolConfig {
  min: number;
  max: number;
  /** How long a query waits for a free connection before failing with SERVICE_UNAVAILABLE. */
  acquireTimeoutMs: number;
  idleTimeoutMs: number;
}

/**
 * Limits on what one request may ask for (see `graphql/document-limits.ts`).
 * Every refusal happens before execution and answers `QUERY_TOO_COMPLEX`
 * (or 413 for the body).
 */
export interface DocumentLimits {
  /** Request bodies larger than this answer 413 on every route. */
  maxBodyBytes: number;
  /** `/graphql` bodies of a signed-in caller (a verified token) may be this large (an import of prompt items: 5 MB of data). */
  maxSignedInBodyBytes: number;
  /** Parsing stops after this many lexical tokens. */
  maxTokens: number;
  maxAliases: number;
  maxDirectives: number;
  /** Field nesting depth (fragments count by what they contain, once each). */
  maxDepth: number;
  /**
   * Fields the response may hold, with `first` (variables included)
   * multiplying its subtree; a field that may return many bytes weighs more
   * (`operation-cost.ts`).
   */
  maxCost: number;
  /** `MAX_RESPONSE_BYTES`: a GraphQL response growing past it while being built is cut off with RESPONSE_TOO_LARGE. */
  maxResponseBytes: number;
  /**
   * `DOCUMENT_CACHE_MB` in bytes: what every per-document cache (parsed
   * documents, compiled executors, compiled reads, policies) may hold together.
   */
  documentCacheBytes: number;
}

/** A fixed window of points per key; `points: 0` turns the limit off. */
export interface RateLimitRule {
  points: number;
  windowSeconds: number;
}

/**
 * See docs/OPERATIONS.md "Rate limits and budgets". Counted in Redis when
 * `REDIS_URL` is set (shared by instances), in memory otherwise.
 */
export interface RateLimits {
  /** Per user: model calls (a comparison of 3 models costs 3) by startComparison, runComparison, retryComparisonResponse, sendMessage. */
  providerCalls: RateLimitRule;
  /** Per account (email): failed logins. A successful login clears it. */
  loginFailuresPerAccount: RateLimitRule;
  /** Per client IP: failed logins plus registrations. */
  authPerIp: RateLimitRule;
  /** Per client IP: reads of shared pages (`shared(token)`), hits included. */
  sharedPerIp: RateLimitRule;
}

/** Share links (issue 19 item 5; `modules/share-link/`). */
export interface ShareLinkSettings {
  /** The page a link opens, the token appended (`<base>/<token>`); default `/shared`. */
  baseUrl: string;
  /** How long a built snapshot stays in the shared cache (never past the link's expiry). */
  cacheTtlMs: number;
  /** How often an instance writes the views it counted (one statement for every link). */
  viewFlushMs: number;
}

/** Vote integrity rules (docs/LEADERBOARD.md "Vote integrity"). */
export interface VoteRules {
  /** A vote may be changed for this long after it was first cast; 0 = a vote is final. */
  changeWindowSeconds: number;
  /** New votes per user over a rolling 24 h; 0 = unlimited. Changing a vote does not count. */
  dailyCap: number;
  /** Implausible-pattern exclusion: a rule judges a user only on at least this many votes (battles for the consensus rule). */
  integrityMinVotes: number;
  /**
   * Excluded when at least this share of decisive votes went to the first
   * position shown. 1 = only always-first; above 1 turns the rule off.
   */
  firstPositionShare: number;
  /**
   * Excluded when the share of decisive battles agreeing with the consensus is
   * at or below this (0.5 = coin flip); 0 turns the rule off.
   */
  consensusAgreementMax: number;
  /** Only battles between models at least this many rating points apart on the GLOBAL board count as having a consensus. */
  consensusGap: number;
}

export interface Config {
  env: Environment;
  port: number;
  version: string;
  /** Unset: an embedded PostgreSQL under `dataDir` is started. Its `sslmode` is honoured (`db/database-url.ts`). */
  databaseUrl?: string;
  /** `DATABASE_CA_FILE`: the CA for `sslmode=verify-ca` / `verify-full` (and `require`, which then checks the chain as libpq does). */
  databaseCaFile?: string;
  /**
   * Read replicas (`db/replicas.ts`). `DATABASE_REPLICA_URLS`: comma-separated
   * `postgres://` URLs of streaming replicas of `databaseUrl` (hot standbys).
   * Queries read from a replica, except that a signed-in user who has written
   * reads only from a replica that has replayed that user's last commit (else
   * from the primary); mutations, transactions and background work use the
   * primary. Each replica gets a pool of `pool`'s bounds, the primary's TLS
   * options and timeouts (the URL's own query string is ignored, as for
   * MikroORM), and a replica that stops answering is skipped until it answers
   * again. `DATABASE_REPLICA_POLL_MS` (default 100): how often each replica's
   * replayed WAL position is read (a writer's reads return to a replica at most
   * this long after it caught up). Unset or empty: no replicas, no polling,
   * every statement on the primary (as before).
   */
  databaseReplicas: { urls: string[]; pollMs: number };
  /**
   * Per pooled connection (sent as startup parameters): a statement running
   * longer, or waiting for a lock longer, is cancelled and the request answers
   * SERVICE_UNAVAILABLE. 0 = none. Migrations run without either.
   */
  dbTimeouts: { statementMs: number; lockMs: number };
  /**
   * `REQUEST_DEADLINE_MS`: a `/graphql` request's statements together end by
   * this long after its body was read, however many it runs (`db/request-deadline.ts`).
   * Past it a statement is not sent (nor a pooled connection waited for), and
   * one that starts with less time left than `statementMs` runs with its
   * timeout lowered to what is left; the request answers SERVICE_UNAVAILABLE
   * (503 with Retry-After when it failed as a whole). Time spent waiting for
   * model providers does not count (LLM_TIMEOUT_MS bounds it); event streams
   * (`/graphql/stream`) and background work have none. 0 = none.
   */
  requestDeadlineMs: number;
  dataDir: string;
  /** Port of the embedded PostgreSQL (only used when `databaseUrl` is unset). */
  embeddedPostgresPort: number;
  pool: PoolConfig;
  migrateOnStart: boolean;
  redisUrl?: string;
  /**
   * `REDIS_CLUSTER_NODES`: seed nodes of a Redis Cluster (`redis://host:port` URLs, or `host:port`), instead of
   * `REDIS_URL`. The cache, persisted documents, pub/sub and rate limits then use the cluster (`cache/redis-client.ts`).
   */
  redisClusterNodes?: string[];
  /**
   * `REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER` (+ `REDIS_SENTINEL_MASTER_USERNAME` / `_PASSWORD`): the master that
   * Redis Sentinel names, followed through failovers (`cache/redis-client.ts`), instead of `REDIS_URL`.
   */
  redisSentinel?: RedisSentinelTarget;
  /**
   * `REDIS_REPLICA_ACK_MS`: after a generation bump, wait this long at most for one replica to acknowledge it
   * (`WAIT 1 <ms>`); a bump no replica acknowledged is journaled and applied again after a failover. 0 = off.
   * Default 50 with `REDIS_SENTINELS` or `REDIS_CLUSTER_NODES` (a replica may be promoted), 0 otherwise.
   */
  redisReplicaAckMs: number;
  /** Every cache / pub-sub key starts with this; tests use one per file. */
  cachePrefix: string;
  jwtSecret: string;
  jwtExpiresIn: string;
  /** First key encrypts; all of them decrypt (rotation). */
  encryptionKeys: EncryptionKey[];
  adminEmails: string[];
  providerBaseUrls: Partial<Record<'openai' | 'anthropic' | 'google' | 'mistral', string>>;
  /**
   * Base URLs (normalised: `normalizeEndpoint`) whose answers count on the
   * GLOBAL and JUDGE boards when a user's key points at one of them
   * (`OPERATOR_ENDPOINTS`; default: the configured provider base URLs, or the
   * public APIs). An answer from any other key `baseUrl` is `customEndpoint`.
   */
  operatorEndpoints: string[];
  llm: {
    requestTimeoutMs: number;
    listTimeoutMs: number;
    /** A response longer than this (UTF-8) is cut and settles FAILED. */
    maxOutputBytes: number;
    /** At most this many names are kept from one provider's model list. */
    maxListedModels: number;
    /** Worker threads that stream comparison answers (`provider-threads.ts`); 0: in-process. */
    providerThreads: number;
    /** Starts, subscription opens and provider calls run at most 3 ms of each event-loop turn in a burst (`turns.ts`). */
    burstTurns: boolean;
    /** Comparison provider calls start only while the event loop keeps up (`CalmGate`, `src/turns.ts`). */
    paceProviderCalls: boolean;
    /** How long a provider thread gathers deltas before posting them to the main loop. */
    providerThreadBatchMs: number;
    /** A /graphql/ws socket with no subscription running for this long is closed. */
    wsIdleMs: number;
  };
  egress: EgressPolicy;
  cache: { responseTtlMs: number; registryTtlMs: number; breakerCooldownMs: number; operationTimeoutMs: number; localCopiesMb: number };
  /** Arena leaderboard statistics (see docs/LEADERBOARD.md "How the leaderboard is computed"). */
  leaderboard: {
    /** Bootstrap resamples per board (0 = the closed-form sandwich intervals only: the default). */
    bootstrapSamples: number;
    /** Seed of the bootstrap resampling: the same votes and seed give the same board. */
    seed: number;
    /** After a vote, a read waits this long for the refit before it serves the previous board. */
    refreshWaitMs: number;
    /** How long a computed shared board is kept (served stale while a refit runs). */
    maxAgeMs: number;
  };
  /** Vote integrity (docs/LEADERBOARD.md "Vote integrity"). */
  votes: VoteRules;
  /** Arena battles (`startArenaBattle`). */
  arena: {
    /**
     * `ARENA_MODELS`: the operator's pool of model ids (`provider:name[@label]`,
     * comma-separated, at least two, distinct); empty: each user's battles pick
     * among the catalog models of the providers they hold keys for.
     */
    models: string[];
  };
  apq: { manifestPath?: string; trustedDocumentsOnly: boolean };
  slowQueryMs: number;
  slowRequestMs: number;
  logLevel: string;
  /** `jit`: operations run as code compiled once per document (graphql-jit); `graphql-js`: the reference executor. */
  graphqlExecutor: 'jit' | 'graphql-js';
  /** Hot reads answered as JSON built by PostgreSQL (`graphql/compiled-read.ts`); `COMPILED_READS=off` disables. */
  compiledReads: boolean;
  /** `DB_PREPARED_STATEMENTS`: compiled reads as named prepared statements (off behind a transaction-pooling PgBouncer older than 1.21). */
  preparedStatements: boolean;
  limits: DocumentLimits;
  /**
   * OpenTelemetry traces (`observability/tracing.ts`): off unless
   * `OTEL_EXPORTER_OTLP_ENDPOINT` (http(s), traces sent as OTLP/HTTP JSON to
   * `<endpoint>/v1/traces`) is set; `OTEL_SERVICE_NAME` names the service
   * (default `llmselect-api`). Sampling is always parent-based (a caller's
   * sampled `traceparent` is recorded); new traces are kept with probability
   * `OTEL_TRACES_SAMPLER_ARG` (default 1) under `OTEL_TRACES_SAMPLER=parentbased_traceidratio`
   * (the default), all under `parentbased_always_on`, none under `parentbased_always_off`.
   */
  tracing: { endpoint?: string; serviceName: string; sampleRatio: number };
  metrics: {
    /** When set, `/metrics` needs `Authorization: Bearer <token>`. */
    token?: string;
    /** Operation names (beyond the trusted documents') that may become a metric label; others are `other`. */
    maxOperationLabels: number;
    /**
     * Whether LLM call series carry the real `provider` label. False in
     * production without a token: a public `/metrics` would show which
     * providers a blind battle called as it runs, so the label reads `hidden`.
     */
    providerLabels: boolean;
  };
  /** argon2id cost (OWASP: 19 MiB, 2 passes, 1 lane). */
  passwordHashing: { memoryCostKib: number; timeCost: number };
  /** On SIGTERM, how long running comparisons may finish before they are settled FAILED "Interrupted by shutdown". */
  shutdownGraceMs: number;
  /**
   * A running comparison response is leased by its instance, which refreshes
   * the lease every quarter of this; any instance settles a response whose
   * lease is older than this as FAILED (its instance crashed).
   */
  comparisonLeaseMs: number;
  /** Eval runs (`modules/eval/`): cells run as pg-boss jobs by every instance whose workers are on. */
  evals: EvalConfig;
  rateLimits: RateLimits;
  shareLinks: ShareLinkSettings;
  /**
   * How many reverse proxies in front of the server append to `X-Forwarded-For`:
   * 0 (default) uses the socket's address; N takes the N-th address from the right.
   */
  trustProxy: number;
  /** Default per-user spend budget in USD over a rolling 24 h; 0 = unlimited. An admin may set a user's own. */
  userDailyBudgetUsd: number;
  /** Cross-origin access to `/graphql` and `/graphql/stream` (`http/cors.ts`). */
  cors: {
    /**
     * `CORS_ORIGINS`: the origins whose pages may call the API: exact origins,
     * patterns (`http://localhost:*`, `https://*.example.com`) or `*` (never in
     * production). Default: local dev servers and Apollo Sandbox outside
     * production, none in production.
     */
    origins: readonly string[];
  };
}

/** See `modules/eval/eval-worker.ts`. */
export interface EvalConfig {
  /** `EVAL_WORKERS`: off: this instance serves the API but takes no cells. */
  workers: boolean;
  /** `EVAL_CONCURRENCY_PER_USER`: cells of one user in flight across every instance. */
  concurrencyPerUser: number;
  /** `EVAL_CONCURRENCY`: cells in flight in this instance. */
  concurrency: number;
  /** `EVAL_PREFETCH`: cells claimed ahead (reserved, not called) so a freed slot starts its next call at once; 0: none. */
  prefetch: number;
  /** `EVAL_LEASE_MS`: a running cell whose instance has not renewed it for this long is queued again (kill -9). */
  leaseMs: number;
  /** `EVAL_POLL_MS`: how often an idle worker looks for cells (new runs also wake the instance that started them). */
  pollMs: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

const DEFAULT_POOLS: Record<Environment, PoolConfig> = {
  development: { min: 0, max: 10, acquireTimeoutMs: 5_000, idleTimeoutMs: 30_000 },
  production: { min: 2, max: 20, acquireTimeoutMs: 3_000, idleTimeoutMs: 30_000 },
  test: { min: 0, max: 5, acquireTimeoutMs: 5_000, idleTimeoutMs: 5_000 },
};

function int(env: Env, name: string, fallback: number, min = 0): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new ConfigError(`${name} must be an integer >= ${min}, got "${raw}"`);
  }
  return value;
}

/** An integer in [min, max]. */
function between(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = int(env, name, fallback, min);
  if (value > max) throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${env[name]}"`);
  return value;
}

function decimal(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new ConfigError(`${name} must be a number >= 0, got "${raw}"`);
  return value;
}

/** A number in [0, max]. */
function fraction(env: Env, name: string, fallback: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || value > max)
    throw new ConfigError(`${name} must be a number between 0 and ${max}, got "${raw}"`);
  return value;
}

/** `TRUST_PROXY`: false / 0 (default), true (= 1 proxy), or a number of proxies. */
function trustProxy(env: Env): number {
  const raw = (env.TRUST_PROXY ?? '').trim();
  if (/^(1|true|yes|on)$/i.test(raw)) return 1;
  if (raw === '' || /^(0|false|no|off)$/i.test(raw)) return 0;
  return int(env, 'TRUST_PROXY', 0, 0);
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!(allowed as readonly string[]).includes(raw)) throw new ConfigError(`${name} must be one of ${allowed.join(', ')}, got "${raw}"`);
  return raw as T;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

/** REDIS_CLUSTER_NODES: comma-separated seed nodes (`host:port` or redis(s):// URLs), never with REDIS_URL. */
function redisClusterNodes(env: Env): string[] | undefined {
  const entries = (env.REDIS_CLUSTER_NODES ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  if (entries.length === 0) return undefined;
  if (env.REDIS_URL) throw new ConfigError('set REDIS_URL or REDIS_CLUSTER_NODES, not both');
  const nodes = entries.map((entry) => (entry.includes('://') ? entry : `redis://${entry}`));
  for (const [i, node] of nodes.entries()) {
    const name = `REDIS_CLUSTER_NODES (node ${i + 1})`;
    url({ [name]: node }, name, ['redis:', 'rediss:']);
  }
  // The first {…} of a key is its hash tag: one in the prefix would pull every key into one slot, or split a tag.
  if (/[{}]/.test(env.CACHE_PREFIX ?? '')) throw new ConfigError('CACHE_PREFIX must not contain { or } with REDIS_CLUSTER_NODES');
  return nodes;
}

/**
 * REDIS_SENTINELS: comma-separated sentinels (`host:port` or redis(s):// URLs, whose credentials are the
 * sentinels'), with REDIS_SENTINEL_MASTER (the monitored name); never with REDIS_URL or REDIS_CLUSTER_NODES.
 */
function redisSentinel(env: Env): RedisSentinelTarget | undefined {
  const entries = (env.REDIS_SENTINELS ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  if (entries.length === 0) {
    if (env.REDIS_SENTINEL_MASTER) throw new ConfigError('REDIS_SENTINEL_MASTER needs REDIS_SENTINELS');
    return undefined;
  }
  if (env.REDIS_URL || env.REDIS_CLUSTER_NODES) throw new ConfigError('set one of REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS');
  const masterName = env.REDIS_SENTINEL_MASTER?.trim();
  if (!masterName) throw new ConfigError('REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the name the sentinels monitor)');
  const sentinels = entries.map((entry) => (entry.includes('://') ? entry : `redis://${entry}`));
  for (const [i, sentinel] of sentinels.entries()) {
    const name = `REDIS_SENTINELS (sentinel ${i + 1})`;
    url({ [name]: sentinel }, name, ['redis:', 'rediss:']);
  }
  return {
    sentinels,
    masterName,
    username: env.REDIS_SENTINEL_MASTER_USERNAME || undefined,
    password: env.REDIS_SENTINEL_MASTER_PASSWORD || undefined,
  };
}

function url(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${name} is not a valid URL`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(`${name} must use ${protocols.join(' or ')}, got ${parsed.protocol}`);
  }
  return raw.replace(/\/+$/, '');
}

/**
 * `PROVIDER_ALLOW_PRIVATE_NETWORKS`: `true`, `false`, or a comma-separated
 * CIDR list (only those private ranges). Default: allowed outside production,
 * so a local Ollama keeps working in development.
 */
/**
 * OPERATOR_ENDPOINTS: comma-separated http(s) base URLs without credentials,
 * normalised (`normalizeEndpoint`). Unset or empty: the configured provider
 * base URLs, each provider's public API where none is configured.
 */
function operatorEndpoints(env: Env, providerBaseUrls: Config['providerBaseUrls']): string[] {
  const entries = (env.OPERATOR_ENDPOINTS ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  const raw = entries.length
    ? entries
    : (Object.keys(DEFAULT_BASE_URLS) as Array<keyof typeof DEFAULT_BASE_URLS>).map((p) => providerBaseUrls[p] || DEFAULT_BASE_URLS[p]);
  const out = new Set<string>();
  for (const entry of raw) {
    const normalized = normalizeEndpoint(entry);
    if (normalized === null) throw new ConfigError(`OPERATOR_ENDPOINTS: ${JSON.stringify(entry)} is not an http(s) base URL`);
    if (/^[a-z]+:\/\/[^/]*@/i.test(entry))
      throw new ConfigError(`OPERATOR_ENDPOINTS: ${JSON.stringify(entry)} must not contain credentials`);
    out.add(normalized);
  }
  return [...out];
}

/** `ARENA_MODELS`: comma-separated model ids, each valid, no endpoint twice, none or at least two. */
function arenaModels(env: Env): string[] {
  const raw = (env.ARENA_MODELS ?? '')
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean);
  const models: string[] = [];
  for (const id of raw) {
    let parsed: ModelId;
    try {
      parsed = parseModelId(id);
    } catch (error) {
      throw new ConfigError(`ARENA_MODELS: ${(error as Error).message}`);
    }
    const key = endpointKey(parsed);
    if (models.includes(key)) throw new ConfigError(`ARENA_MODELS lists ${key} twice`);
    models.push(key);
  }
  if (models.length === 1) throw new ConfigError('ARENA_MODELS needs at least two models (a battle is between two), or none');
  return models;
}

/**
 * `CORS_ORIGINS`: comma-separated origins or patterns, each valid; `*` is refused
 * in production (the token travels in a header any page could then send).
 */
function corsOrigins(env: Env, production: boolean): string[] {
  const name = 'CORS_ORIGINS';
  const entries = (env[name] ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  if (entries.length === 0) return production ? [] : [...DEVELOPMENT_CORS_ORIGINS];
  for (const entry of entries) {
    let rule: ReturnType<typeof parseOriginRule>;
    try {
      rule = parseOriginRule(entry);
    } catch (error) {
      throw new ConfigError(`${name}: ${(error as Error).message}`);
    }
    if (rule.kind === 'any' && production) {
      throw new ConfigError(
        `${name}=* is refused in production: the API takes an Authorization header, so list the frontend origins that may send it`,
      );
    }
  }
  return [...new Set(entries)];
}

function egressPolicy(env: Env, production: boolean): EgressPolicy {
  const name = 'PROVIDER_ALLOW_PRIVATE_NETWORKS';
  const raw = (env[name] ?? '').trim();
  if (raw === '') return { allowPrivateNetworks: !production, allowCidrs: [] };
  if (/^(1|true|yes|on|0|false|no|off)$/i.test(raw)) return { allowPrivateNetworks: /^(1|true|yes|on)$/i.test(raw), allowCidrs: [] };
  const allowCidrs = raw
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  for (const cidr of allowCidrs) {
    try {
      ipaddr.parseCIDR(cidr);
    } catch {
      throw new ConfigError(`${name} must be true, false or a comma-separated CIDR list, got "${cidr}"`);
    }
  }
  return { allowPrivateNetworks: false, allowCidrs };
}

export function parseEncryptionKey(name: string, raw: string): Buffer {
  const key = Buffer.from(raw, 'base64');
  if (key.length !== 32) throw new ConfigError(`${name} must be 32 bytes encoded as base64`);
  return key;
}

/**
 * A development secret generated once into `.data/` so restarts keep sessions
 * and encrypted keys readable. Never used in production.
 */
function devSecret(dataDir: string, file: string, make: () => string): string {
  const path = join(dataDir, file);
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  mkdirSync(dataDir, { recursive: true });
  const value = make();
  writeFileSync(path, value + '\n', { mode: 0o600 });
  return value;
}

export function loadConfig(env: Env = process.env): Readonly<Config> {
  const nodeEnv = env.NODE_ENV ?? 'development';
  if (!['development', 'production', 'test'].includes(nodeEnv)) {
    throw new ConfigError(`NODE_ENV must be development, production or test, got "${nodeEnv}"`);
  }
  const envName = nodeEnv as Environment;
  const production = envName === 'production';
  const dataDir = resolve(env.DATA_DIR ?? '.data');

  const required = (name: string, generate: () => string, file: string): string => {
    const value = env[name];
    if (value) return value;
    if (production) throw new ConfigError(`${name} is required when NODE_ENV=production`);
    return devSecret(dataDir, file, generate);
  };

  const jwtSecret = required('JWT_SECRET', () => randomBytes(48).toString('base64url'), 'jwt-secret');
  if (jwtSecret.length < 32) throw new ConfigError('JWT_SECRET must be at least 32 characters');

  const currentKey = required('ENCRYPTION_KEY', () => randomBytes(32).toString('base64'), 'encryption-key');
  const encryptionKeys: EncryptionKey[] = [{ id: env.ENCRYPTION_KEY_ID || 'k1', key: parseEncryptionKey('ENCRYPTION_KEY', currentKey) }];
  // Rotation: ENCRYPTION_KEYS_PREVIOUS="k0:<base64>,..." keeps older keys readable.
  for (const entry of (env.ENCRYPTION_KEYS_PREVIOUS ?? '').split(',').filter(Boolean)) {
    const [id, raw] = entry.split(':');
    if (!id || !raw) throw new ConfigError('ENCRYPTION_KEYS_PREVIOUS must be "id:base64key,..."');
    encryptionKeys.push({ id, key: parseEncryptionKey('ENCRYPTION_KEYS_PREVIOUS', raw) });
  }

  const basePool = DEFAULT_POOLS[envName];
  const pool: PoolConfig = {
    min: int(env, 'DB_POOL_MIN', basePool.min),
    max: int(env, 'DB_POOL_MAX', basePool.max, 1),
    acquireTimeoutMs: int(env, 'DB_POOL_ACQUIRE_TIMEOUT_MS', basePool.acquireTimeoutMs, 1),
    idleTimeoutMs: int(env, 'DB_POOL_IDLE_TIMEOUT_MS', basePool.idleTimeoutMs, 1),
  };
  if (pool.min > pool.max) throw new ConfigError('DB_POOL_MIN must not exceed DB_POOL_MAX');

  const databaseUrl = url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']);
  const databaseCaFile = env.DATABASE_CA_FILE || undefined;
  if (databaseUrl) {
    // sslmode and the CA file are checked here, so a typo stops startup with one line.
    try {
      parseDatabaseUrl(databaseUrl, { caFile: databaseCaFile });
    } catch (error) {
      if (error instanceof DatabaseUrlError) throw new ConfigError(error.message);
      throw error;
    }
  }

  const replicaUrls = (env.DATABASE_REPLICA_URLS ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  for (const replicaUrl of replicaUrls) {
    let parsed: URL;
    try {
      parsed = new URL(replicaUrl);
    } catch {
      throw new ConfigError('DATABASE_REPLICA_URLS must be comma-separated postgres:// URLs');
    }
    if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
      throw new ConfigError('DATABASE_REPLICA_URLS must be comma-separated postgres:// URLs');
    }
  }
  if (replicaUrls.length && !databaseUrl) throw new ConfigError('DATABASE_REPLICA_URLS needs DATABASE_URL (the primary)');

  const providerBaseUrls: Config['providerBaseUrls'] = {
    openai: url(env, 'OPENAI_BASE_URL', ['http:', 'https:']),
    anthropic: url(env, 'ANTHROPIC_BASE_URL', ['http:', 'https:']),
    google: url(env, 'GOOGLE_BASE_URL', ['http:', 'https:']),
    mistral: url(env, 'MISTRAL_BASE_URL', ['http:', 'https:']),
  };
  const config: Config = {
    env: envName,
    port: int(env, 'PORT', 4000),
    version: env.npm_package_version ?? '0.1.0',
    databaseUrl,
    databaseCaFile,
    databaseReplicas: { urls: replicaUrls, pollMs: int(env, 'DATABASE_REPLICA_POLL_MS', 100, 1) },
    dbTimeouts: {
      statementMs: int(env, 'DB_STATEMENT_TIMEOUT_MS', 5_000, 0),
      lockMs: int(env, 'DB_LOCK_TIMEOUT_MS', 2_000, 0),
    },
    requestDeadlineMs: int(env, 'REQUEST_DEADLINE_MS', 15_000, 0),
    dataDir,
    embeddedPostgresPort: int(env, 'EMBEDDED_POSTGRES_PORT', 54329, 1),
    pool,
    migrateOnStart: bool(env, 'MIGRATE_ON_START', true),
    redisUrl: url(env, 'REDIS_URL', ['redis:', 'rediss:']),
    redisClusterNodes: redisClusterNodes(env),
    redisSentinel: redisSentinel(env),
    redisReplicaAckMs: int(env, 'REDIS_REPLICA_ACK_MS', env.REDIS_SENTINELS || env.REDIS_CLUSTER_NODES ? 50 : 0, 0),
    cachePrefix: env.CACHE_PREFIX || 'llmselect',
    jwtSecret,
    jwtExpiresIn: env.JWT_EXPIRES_IN || '7d',
    encryptionKeys,
    adminEmails: (env.ADMIN_EMAILS ?? '')
      .split(',')
      .map((e) => e.trim().toLowerCase())
      .filter(Boolean),
    providerBaseUrls,
    operatorEndpoints: operatorEndpoints(env, providerBaseUrls),
    llm: {
      requestTimeoutMs: int(env, 'LLM_TIMEOUT_MS', 60_000, 1),
      listTimeoutMs: int(env, 'LLM_LIST_TIMEOUT_MS', 2_000, 1),
      maxOutputBytes: int(env, 'LLM_MAX_OUTPUT_BYTES', 256 * 1024, 1024),
      maxListedModels: int(env, 'LLM_MAX_LISTED_MODELS', 1_000, 1),
      providerThreads: int(env, 'PROVIDER_THREADS', 0, 0),
      providerThreadBatchMs: int(env, 'PROVIDER_THREAD_BATCH_MS', 2, 0),
      burstTurns: bool(env, 'BURST_TURNS', false),
      paceProviderCalls: bool(env, 'PACE_PROVIDER_CALLS', true),
      wsIdleMs: int(env, 'WS_IDLE_MS', 60_000, 1),
    },
    egress: egressPolicy(env, production),
    cache: {
      responseTtlMs: int(env, 'CACHE_TTL_MS', 5 * 60_000, 1),
      registryTtlMs: int(env, 'MODEL_REGISTRY_TTL_MS', 24 * 60 * 60_000, 1),
      breakerCooldownMs: int(env, 'CACHE_BREAKER_COOLDOWN_MS', 5_000, 1),
      operationTimeoutMs: int(env, 'CACHE_TIMEOUT_MS', 500, 1),
      localCopiesMb: int(env, 'CACHE_LOCAL_COPIES_MB', 64, 0),
    },
    leaderboard: {
      bootstrapSamples: int(env, 'LEADERBOARD_BOOTSTRAP_SAMPLES', 0, 0),
      seed: int(env, 'LEADERBOARD_SEED', 1, 0),
      refreshWaitMs: int(env, 'LEADERBOARD_REFRESH_WAIT_MS', 2_000, 0),
      maxAgeMs: int(env, 'LEADERBOARD_MAX_AGE_MS', 24 * 60 * 60_000, 1),
    },
    votes: {
      changeWindowSeconds: int(env, 'VOTE_CHANGE_WINDOW_SECONDS', 600, 0),
      dailyCap: int(env, 'VOTE_DAILY_CAP', 500, 0),
      integrityMinVotes: int(env, 'VOTE_INTEGRITY_MIN_VOTES', 20, 1),
      firstPositionShare: fraction(env, 'VOTE_INTEGRITY_FIRST_POSITION_SHARE', 0.95, 1.01),
      consensusAgreementMax: fraction(env, 'VOTE_INTEGRITY_CONSENSUS_AGREEMENT_MAX', 0.55, 1),
      consensusGap: decimal(env, 'VOTE_INTEGRITY_CONSENSUS_GAP', 100),
    },
    arena: { models: arenaModels(env) },
    apq: {
      manifestPath: env.PERSISTED_DOCUMENTS_PATH || undefined,
      trustedDocumentsOnly: bool(env, 'TRUSTED_DOCUMENTS_ONLY', false),
    },
    slowQueryMs: int(env, 'SLOW_QUERY_MS', 100),
    slowRequestMs: int(env, 'SLOW_REQUEST_MS', 500),
    logLevel: env.LOG_LEVEL || 'info',
    graphqlExecutor: oneOf(env, 'GRAPHQL_EXECUTOR', ['jit', 'graphql-js'] as const, 'jit'),
    compiledReads: oneOf(env, 'COMPILED_READS', ['on', 'off'] as const, 'on') === 'on',
    preparedStatements: oneOf(env, 'DB_PREPARED_STATEMENTS', ['on', 'off'] as const, 'on') === 'on',
    limits: {
      maxBodyBytes: int(env, 'MAX_BODY_BYTES', 1024 * 1024, 1024),
      maxSignedInBodyBytes: Math.max(
        int(env, 'MAX_BODY_BYTES', 1024 * 1024, 1024),
        int(env, 'MAX_SIGNED_IN_BODY_BYTES', 8 * 1024 * 1024, 1024),
      ),
      maxTokens: int(env, 'MAX_QUERY_TOKENS', 2_000, 100),
      maxAliases: int(env, 'MAX_QUERY_ALIASES', 15, 0),
      maxDirectives: int(env, 'MAX_QUERY_DIRECTIVES', 50, 0),
      maxDepth: int(env, 'MAX_QUERY_DEPTH', 10, 1),
      maxCost: int(env, 'MAX_QUERY_COST', 10_000, 1),
      maxResponseBytes: int(env, 'MAX_RESPONSE_BYTES', 32 * 1024 * 1024, 1024),
      documentCacheBytes: int(env, 'DOCUMENT_CACHE_MB', 64, 1) * 2 ** 20,
    },
    tracing: {
      endpoint: url(env, 'OTEL_EXPORTER_OTLP_ENDPOINT', ['http:', 'https:']),
      serviceName: env.OTEL_SERVICE_NAME || 'llmselect-api',
      sampleRatio: {
        parentbased_traceidratio: fraction(env, 'OTEL_TRACES_SAMPLER_ARG', 1, 1),
        parentbased_always_on: 1,
        parentbased_always_off: 0,
      }[
        oneOf(
          env,
          'OTEL_TRACES_SAMPLER',
          ['parentbased_traceidratio', 'parentbased_always_on', 'parentbased_always_off'],
          'parentbased_traceidratio',
        )
      ],
    },
    metrics: {
      token: env.METRICS_TOKEN || undefined,
      maxOperationLabels: int(env, 'METRICS_MAX_OPERATION_NAMES', 100, 0),
      providerLabels: !production || Boolean(env.METRICS_TOKEN),
    },
    passwordHashing: {
      memoryCostKib: int(env, 'ARGON2_MEMORY_KIB', 19_456, 1024),
      timeCost: int(env, 'ARGON2_TIME_COST', 2, 1),
    },
    shutdownGraceMs: int(env, 'SHUTDOWN_GRACE_MS', 10_000),
    comparisonLeaseMs: int(env, 'COMPARISON_LEASE_MS', 20_000, 100),
    evals: {
      workers: bool(env, 'EVAL_WORKERS', true),
      concurrencyPerUser: between(env, 'EVAL_CONCURRENCY_PER_USER', 4, 1, 1_000),
      concurrency: between(env, 'EVAL_CONCURRENCY', 32, 1, 1_000),
      prefetch: between(env, 'EVAL_PREFETCH', 0, 0, 1_000),
      leaseMs: between(env, 'EVAL_LEASE_MS', 15_000, 200, 600_000),
      pollMs: between(env, 'EVAL_POLL_MS', 500, 10, 60_000),
    },
    rateLimits: {
      providerCalls: {
        points: int(env, 'RATE_LIMIT_PROVIDER_CALLS', 60),
        windowSeconds: int(env, 'RATE_LIMIT_PROVIDER_WINDOW_SECONDS', 60, 1),
      },
      loginFailuresPerAccount: {
        points: int(env, 'RATE_LIMIT_LOGIN_FAILURES', 5),
        windowSeconds: int(env, 'RATE_LIMIT_AUTH_WINDOW_SECONDS', 15 * 60, 1),
      },
      authPerIp: {
        points: int(env, 'RATE_LIMIT_AUTH_PER_IP', 30),
        windowSeconds: int(env, 'RATE_LIMIT_AUTH_WINDOW_SECONDS', 15 * 60, 1),
      },
      sharedPerIp: {
        points: int(env, 'RATE_LIMIT_SHARED_PER_IP', 300),
        windowSeconds: int(env, 'RATE_LIMIT_SHARED_WINDOW_SECONDS', 60, 1),
      },
    },
    shareLinks: {
      baseUrl: (env.SHARE_LINK_BASE_URL ?? '/shared').replace(/\/+$/, ''),
      cacheTtlMs: int(env, 'SHARE_LINK_CACHE_TTL_MS', 60_000, 1),
      viewFlushMs: int(env, 'SHARE_LINK_VIEW_FLUSH_MS', 1_000, 10),
    },
    trustProxy: trustProxy(env),
    userDailyBudgetUsd: decimal(env, 'USER_DAILY_BUDGET_USD', 0),
    cors: { origins: corsOrigins(env, production) },
  };
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(config.logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be a pino level, got "${config.logLevel}"`);
  }
  return Object.freeze(config);
}
