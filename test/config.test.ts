import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../src/config';

const KEY = Buffer.alloc(32, 1).toString('base64');
const SECRET = 'x'.repeat(40);

describe('loadConfig', () => {
  it('turns tracing on only with OTEL_EXPORTER_OTLP_ENDPOINT, with a service name and a parent-based sample ratio', () => {
    expect(loadConfig({ NODE_ENV: 'test' }).tracing).toEqual({ endpoint: undefined, serviceName: 'llmselect-api', sampleRatio: 1 });
    expect(
      loadConfig({
        NODE_ENV: 'test',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
        OTEL_SERVICE_NAME: 'api-eu',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
      }).tracing,
    ).toEqual({ endpoint: 'http://collector:4318', serviceName: 'api-eu', sampleRatio: 0.25 });
    expect(loadConfig({ NODE_ENV: 'test', OTEL_TRACES_SAMPLER: 'parentbased_always_off' }).tracing.sampleRatio).toBe(0);
    expect(() => loadConfig({ NODE_ENV: 'test', OTEL_EXPORTER_OTLP_ENDPOINT: 'grpc://collector:4317' })).toThrow(
      /OTEL_EXPORTER_OTLP_ENDPOINT/,
    );
    expect(() => loadConfig({ NODE_ENV: 'test', OTEL_TRACES_SAMPLER: 'always_on' })).toThrow(/OTEL_TRACES_SAMPLER must be one of/);
    expect(() => loadConfig({ NODE_ENV: 'test', OTEL_TRACES_SAMPLER_ARG: '2' })).toThrow(/OTEL_TRACES_SAMPLER_ARG/);
  });

  it('EVAL_PREFETCH: no cells claimed ahead by default, a number turns it on, past 1000 is refused', () => {
    expect(loadConfig({ NODE_ENV: 'test' }).evals.prefetch).toBe(0);
    expect(loadConfig({ NODE_ENV: 'test', EVAL_CONCURRENCY: '8', EVAL_PREFETCH: '8' }).evals.prefetch).toBe(8);
    expect(() => loadConfig({ NODE_ENV: 'test', EVAL_PREFETCH: '1001' })).toThrow(/EVAL_PREFETCH must be an integer between 0 and 1000/);
  });

  it('requires JWT_SECRET and ENCRYPTION_KEY in production, naming the missing one', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', ENCRYPTION_KEY: KEY })).toThrow(
      new ConfigError('JWT_SECRET is required when NODE_ENV=production'),
    );
    expect(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET })).toThrow(
      new ConfigError('ENCRYPTION_KEY is required when NODE_ENV=production'),
    );
  });

  it.each([
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL/],
    [{ REDIS_URL: 'not a url' }, /REDIS_URL/],
    [{ REDIS_CLUSTER_NODES: '127.0.0.1:7000,http://x:1' }, /^REDIS_CLUSTER_NODES \(node 2\) must use redis: or rediss:, got http:$/],
    [{ REDIS_CLUSTER_NODES: '127.0.0.1:7000', REDIS_URL: 'redis://127.0.0.1:6379' }, /^set REDIS_URL or REDIS_CLUSTER_NODES, not both$/],
    [{ REDIS_CLUSTER_NODES: '127.0.0.1:7000', CACHE_PREFIX: 'app{1}' }, /^CACHE_PREFIX must not contain \{ or \}/],
    [{ REDIS_SENTINELS: '127.0.0.1:26379' }, /^REDIS_SENTINELS needs REDIS_SENTINEL_MASTER/],
    [{ REDIS_SENTINEL_MASTER: 'main' }, /^REDIS_SENTINEL_MASTER needs REDIS_SENTINELS$/],
    [{ REDIS_SENTINELS: 'h:1,http://h:2', REDIS_SENTINEL_MASTER: 'm' }, /^REDIS_SENTINELS \(sentinel 2\) must use redis: or rediss:/],
    [
      { REDIS_SENTINELS: 'h:1', REDIS_SENTINEL_MASTER: 'm', REDIS_URL: 'redis://127.0.0.1:6379' },
      /^set one of REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS$/,
    ],
    [{ REDIS_REPLICA_ACK_MS: 'soon' }, /REDIS_REPLICA_ACK_MS/],
    [{ ENCRYPTION_KEY: 'c2hvcnQ=' }, /ENCRYPTION_KEY must be 32 bytes/],
    [{ DB_POOL_MAX: 'lots' }, /DB_POOL_MAX/],
    [{ DB_POOL_MIN: '9', DB_POOL_MAX: '3' }, /DB_POOL_MIN must not exceed DB_POOL_MAX/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ JWT_SECRET: 'short' }, /JWT_SECRET must be at least 32/],
    [{ USER_DAILY_BUDGET_USD: '-1' }, /USER_DAILY_BUDGET_USD must be a number >= 0/],
    [{ RATE_LIMIT_PROVIDER_CALLS: 'many' }, /RATE_LIMIT_PROVIDER_CALLS/],
    [{ TRUST_PROXY: 'maybe' }, /TRUST_PROXY/],
    [{ DB_STATEMENT_TIMEOUT_MS: '5s' }, /^DB_STATEMENT_TIMEOUT_MS must be an integer >= 0, got "5s"$/],
    [{ DB_LOCK_TIMEOUT_MS: '-1' }, /^DB_LOCK_TIMEOUT_MS must be an integer >= 0, got "-1"$/],
    [{ REQUEST_DEADLINE_MS: '15s' }, /^REQUEST_DEADLINE_MS must be an integer >= 0, got "15s"$/],
    [
      { DATABASE_URL: 'postgres://u:pw@db/x?sslmode=sometimes' },
      /^DATABASE_URL has sslmode=sometimes: it must be one of disable, allow, prefer, require, verify-ca, verify-full$/,
    ],
    [{ DATABASE_URL: 'postgres://u:pw@db/x?sslmode=verify-full' }, /^DATABASE_URL has sslmode=verify-full, which needs DATABASE_CA_FILE/],
    [
      { DATABASE_URL: 'postgres://u:pw@db/x?sslmode=verify-ca', DATABASE_CA_FILE: '/nonexistent/ca.crt' },
      /^DATABASE_URL has sslmode=verify-ca but DATABASE_CA_FILE \/nonexistent\/ca.crt cannot be read: ENOENT$/,
    ],
    [{ OPERATOR_ENDPOINTS: 'https://api.openai.com/v1,not a url' }, /OPERATOR_ENDPOINTS: "not a url" is not an http\(s\) base URL/],
    [{ OPERATOR_ENDPOINTS: 'ftp://proxy.internal/v1' }, /OPERATOR_ENDPOINTS/],
    [{ DATABASE_URL: 'postgres://u@db/x', DATABASE_REPLICA_URLS: 'postgres://u@r1/x,mysql://r2/x' }, /^DATABASE_REPLICA_URLS must be/],
    [{ DATABASE_REPLICA_URLS: 'postgres://u@r1/x' }, /^DATABASE_REPLICA_URLS needs DATABASE_URL/],
    [{ OPERATOR_ENDPOINTS: 'https://user:pw@proxy.internal/v1' }, /OPERATOR_ENDPOINTS: .* must not contain credentials/],
  ])('rejects a malformed value %p with one line naming it', (env, message) => {
    const error = (() => {
      try {
        loadConfig({ NODE_ENV: 'test', JWT_SECRET: SECRET, ENCRYPTION_KEY: KEY, ...env });
      } catch (e) {
        return e as Error;
      }
      throw new Error('expected a ConfigError');
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(message);
    expect(error.message).not.toContain('\n');
  });

  it('OPERATOR_ENDPOINTS defaults to the configured provider base URLs (public APIs where unset), normalised', () => {
    const base = { NODE_ENV: 'test', JWT_SECRET: SECRET, ENCRYPTION_KEY: KEY };
    expect(loadConfig(base).operatorEndpoints).toEqual([
      'https://api.openai.com/v1',
      'https://api.anthropic.com/v1',
      'https://generativelanguage.googleapis.com/v1beta',
      'https://api.mistral.ai/v1',
    ]);
    expect(loadConfig({ ...base, OPENAI_BASE_URL: 'http://Proxy.Internal:80/openai/' }).operatorEndpoints[0]).toBe(
      'http://proxy.internal/openai',
    );
    expect(
      loadConfig({ ...base, OPERATOR_ENDPOINTS: ' https://llm.example.com/v1/ , http://10.0.0.5:11434/v1' }).operatorEndpoints,
    ).toEqual(['https://llm.example.com/v1', 'http://10.0.0.5:11434/v1']);
  });

  it('in production, LLM metrics carry provider labels only behind METRICS_TOKEN', () => {
    const production = { NODE_ENV: 'production', JWT_SECRET: SECRET, ENCRYPTION_KEY: KEY };
    expect(loadConfig(production).metrics.providerLabels).toBe(false);
    expect(loadConfig({ ...production, METRICS_TOKEN: 'metrics-token-0123456789abcdef' }).metrics.providerLabels).toBe(true);
    expect(loadConfig({ NODE_ENV: 'test', JWT_SECRET: SECRET, ENCRYPTION_KEY: KEY }).metrics.providerLabels).toBe(true);
  });

  it('generates development secrets once into the data directory and reuses them', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'llmselect-config-'));
    const first = loadConfig({ NODE_ENV: 'development', DATA_DIR: dataDir });
    const second = loadConfig({ NODE_ENV: 'development', DATA_DIR: dataDir });
    expect(second.jwtSecret).toBe(first.jwtSecret);
    expect(second.encryptionKeys[0]!.key.equals(first.encryptionKeys[0]!.key)).toBe(true);
    expect(readFileSync(join(dataDir, 'jwt-secret'), 'utf8').trim()).toBe(first.jwtSecret);
  });

  it('reads DATABASE_REPLICA_URLS (none when unset) and DATABASE_REPLICA_POLL_MS', () => {
    const base = { NODE_ENV: 'test', JWT_SECRET: SECRET, ENCRYPTION_KEY: KEY, DATABASE_URL: 'postgres://u@db/x' };
    expect(loadConfig(base).databaseReplicas).toEqual({ urls: [], pollMs: 100 });
    const replicas = { DATABASE_REPLICA_URLS: ' postgres://u@r1/x , postgresql://u@r2:5433/x,', DATABASE_REPLICA_POLL_MS: '25' };
    expect(loadConfig({ ...base, ...replicas }).databaseReplicas).toEqual({
      urls: ['postgres://u@r1/x', 'postgresql://u@r2:5433/x'],
      pollMs: 25,
    });
  });

  it('reads rate limits, TRUST_PROXY and the default budget (0 = off / unlimited)', () => {
    const base = { NODE_ENV: 'test', JWT_SECRET: SECRET, ENCRYPTION_KEY: KEY };
    const defaults = loadConfig(base);
    expect(defaults.rateLimits).toEqual({
      providerCalls: { points: 60, windowSeconds: 60 },
      loginFailuresPerAccount: { points: 5, windowSeconds: 900 },
      authPerIp: { points: 30, windowSeconds: 900 },
      sharedPerIp: { points: 300, windowSeconds: 60 },
    });
    expect(defaults.shareLinks).toEqual({ baseUrl: '/shared', cacheTtlMs: 60_000, viewFlushMs: 1_000 });
    expect(loadConfig({ ...base, SHARE_LINK_BASE_URL: 'https://x.example/s/', RATE_LIMIT_SHARED_PER_IP: '0' })).toMatchObject({
      shareLinks: { baseUrl: 'https://x.example/s' },
      rateLimits: { sharedPerIp: { points: 0 } },
    });
    expect(defaults).toMatchObject({ trustProxy: 0, userDailyBudgetUsd: 0 });
    expect(loadConfig({ ...base, TRUST_PROXY: 'true', USER_DAILY_BUDGET_USD: '2.5' })).toMatchObject({
      trustProxy: 1,
      userDailyBudgetUsd: 2.5,
    });
    expect(loadConfig({ ...base, TRUST_PROXY: '2' }).trustProxy).toBe(2);
  });

  it('reads the vote integrity rules, refusing values out of range', () => {
    const base = { NODE_ENV: 'test', JWT_SECRET: SECRET, ENCRYPTION_KEY: KEY };
    expect(loadConfig(base).votes).toEqual({
      changeWindowSeconds: 600,
      dailyCap: 500,
      integrityMinVotes: 20,
      firstPositionShare: 0.95,
      consensusAgreementMax: 0.55,
      consensusGap: 100,
    });
    expect(
      loadConfig({ ...base, VOTE_CHANGE_WINDOW_SECONDS: '0', VOTE_DAILY_CAP: '0', VOTE_INTEGRITY_FIRST_POSITION_SHARE: '1.01' }).votes,
    ).toMatchObject({
      changeWindowSeconds: 0,
      dailyCap: 0,
      firstPositionShare: 1.01,
    });
    expect(() => loadConfig({ ...base, VOTE_DAILY_CAP: '-1' })).toThrow(
      new ConfigError('VOTE_DAILY_CAP must be an integer >= 0, got "-1"'),
    );
    expect(() => loadConfig({ ...base, VOTE_INTEGRITY_MIN_VOTES: '0' })).toThrow(/VOTE_INTEGRITY_MIN_VOTES must be an integer >= 1/);
    expect(() => loadConfig({ ...base, VOTE_INTEGRITY_CONSENSUS_AGREEMENT_MAX: '1.5' })).toThrow(
      new ConfigError('VOTE_INTEGRITY_CONSENSUS_AGREEMENT_MAX must be a number between 0 and 1, got "1.5"'),
    );
    expect(() => loadConfig({ ...base, VOTE_CHANGE_WINDOW_SECONDS: 'ten' })).toThrow(/VOTE_CHANGE_WINDOW_SECONDS must be an integer/);
  });

  it('reads CORS_ORIGINS: local dev servers and Apollo Sandbox outside production, nothing in production unless set', () => {
    const base = { JWT_SECRET: SECRET, ENCRYPTION_KEY: KEY };
    const local = ['http://localhost:*', 'http://127.0.0.1:*', 'http://[::1]:*', 'https://studio.apollographql.com'];
    expect(loadConfig({ ...base, NODE_ENV: 'test' }).cors.origins).toEqual(local);
    expect(
      loadConfig({ ...base, NODE_ENV: 'development', DATA_DIR: mkdtempSync(join(tmpdir(), 'llmselect-config-')) }).cors.origins,
    ).toEqual(local);
    expect(loadConfig({ ...base, NODE_ENV: 'production' }).cors.origins).toEqual([]);
    expect(
      loadConfig({
        ...base,
        NODE_ENV: 'production',
        CORS_ORIGINS: ' https://app.example.com , https://*.preview.example.com,https://app.example.com',
      }).cors.origins,
    ).toEqual(['https://app.example.com', 'https://*.preview.example.com']);
    // Set, it replaces the development default; `*` is accepted outside production.
    expect(loadConfig({ ...base, NODE_ENV: 'test', CORS_ORIGINS: 'http://localhost:5173' }).cors.origins).toEqual([
      'http://localhost:5173',
    ]);
    expect(loadConfig({ ...base, NODE_ENV: 'test', CORS_ORIGINS: '*' }).cors.origins).toEqual(['*']);
  });

  it.each([
    [
      { NODE_ENV: 'production', CORS_ORIGINS: '*' },
      'CORS_ORIGINS=* is refused in production: the API takes an Authorization header, so list the frontend origins that may send it',
    ],
    [{ NODE_ENV: 'production', CORS_ORIGINS: 'https://app.example.com,*' }, /CORS_ORIGINS=\* is refused in production/],
    [{ NODE_ENV: 'test', CORS_ORIGINS: 'https://app.example.com/app' }, /CORS_ORIGINS: "https:\/\/app.example.com\/app" is not an origin/],
    [{ NODE_ENV: 'test', CORS_ORIGINS: 'app.example.com' }, /CORS_ORIGINS: "app.example.com"/],
    [{ NODE_ENV: 'test', CORS_ORIGINS: 'ftp://app.example.com' }, /CORS_ORIGINS: .* must be http:\/\/ or https:\/\//],
    [{ NODE_ENV: 'test', CORS_ORIGINS: 'https://*' }, /CORS_ORIGINS: "https:\/\/\*": "\*" may only stand for/],
    [{ NODE_ENV: 'test', CORS_ORIGINS: 'null' }, /CORS_ORIGINS: "null" is not allowed/],
  ])('refuses CORS_ORIGINS %p with one line', (env, message) => {
    let error: Error | undefined;
    try {
      loadConfig({ JWT_SECRET: SECRET, ENCRYPTION_KEY: KEY, ...env });
    } catch (e) {
      error = e as Error;
    }
    expect(error).toBeInstanceOf(ConfigError);
    if (typeof message === 'string') expect(error!.message).toBe(message);
    else expect(error!.message).toMatch(message);
    expect(error!.message).not.toContain('\n');
  });

  it('reads the database statement and lock timeouts (defaults 5000 and 2000 ms; 0 = none)', () => {
    const base = { NODE_ENV: 'test', JWT_SECRET: SECRET, ENCRYPTION_KEY: KEY };
    expect(loadConfig(base).dbTimeouts).toEqual({ statementMs: 5_000, lockMs: 2_000 });
    expect(loadConfig({ ...base, DB_STATEMENT_TIMEOUT_MS: '0', DB_LOCK_TIMEOUT_MS: '750' }).dbTimeouts).toEqual({
      statementMs: 0,
      lockMs: 750,
    });
  });

  it('reads the request deadline (default 15000 ms; 0 = none)', () => {
    const base = { NODE_ENV: 'production', JWT_SECRET: SECRET, ENCRYPTION_KEY: KEY };
    expect(loadConfig(base).requestDeadlineMs).toBe(15_000);
    expect(loadConfig({ ...base, REQUEST_DEADLINE_MS: '0' }).requestDeadlineMs).toBe(0);
    expect(loadConfig({ ...base, REQUEST_DEADLINE_MS: '2500' }).requestDeadlineMs).toBe(2_500);
  });

  it('uses per-environment pool bounds', () => {
    const base = { JWT_SECRET: SECRET, ENCRYPTION_KEY: KEY };
    expect(loadConfig({ ...base, NODE_ENV: 'production' }).pool).toMatchObject({ min: 2, max: 20 });
    expect(loadConfig({ ...base, NODE_ENV: 'test' }).pool).toMatchObject({ max: 5 });
    expect(loadConfig({ ...base, NODE_ENV: 'test', DB_POOL_MAX: '7' }).pool.max).toBe(7);
  });
});

/**
 * The compiled server (`node dist/src/main.js`, what `npm start` runs; jest's global setup builds
 * dist/ once): starting it through ts-node cost about 5 s of CPU per start.
 */
const MAIN = join(__dirname, '..', 'dist', 'src', 'main.js');

it('stops startup with one line naming the missing variable', () => {
  const result = spawnSync(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH, NODE_ENV: 'production', ENCRYPTION_KEY: KEY },
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(result.status).toBe(1);
  expect(result.stderr.trim()).toBe('Configuration error: JWT_SECRET is required when NODE_ENV=production');
});

it('stops startup with one line when production is given CORS_ORIGINS=*', () => {
  const result = spawnSync(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH, NODE_ENV: 'production', JWT_SECRET: SECRET, ENCRYPTION_KEY: KEY, CORS_ORIGINS: '*' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(result.status).toBe(1);
  expect(result.stderr.trim()).toBe(
    'Configuration error: CORS_ORIGINS=* is refused in production: the API takes an Authorization header, so list the ' +
      'frontend origins that may send it',
  );
});
