/**
 * Rate limiting over `rate-limiter-flexible`: fixed windows of points per key,
 * counted in Redis (shared by every instance) when `REDIS_URL` is set, in
 * process memory otherwise. Like the cache, this is the only place (with the
 * other files of `src/cache/`) that knows Redis.
 *
 * When Redis is down, slow or refuses a command, each instance counts in its
 * own memory instead (the same rule, per instance), logged once per outage
 * (again after a call succeeds) and counted through `onFailOpen`. A
 * limiter must never be the reason a request hangs or fails: commands are not
 * queued while disconnected (`rejectIfRedisNotReady`, no offline queue) and
 * every call is bounded by `operationTimeoutMs`.
 */
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Logger } from '../observability/logger';
import type { Allowance } from './cache.port';
import { closeRedisClient, createRedisClient, type RedisClient, type RedisSentinelTarget, redisTarget } from './redis-client';
import { withTimeout } from '../timeout';

export interface RateLimitRule {
  /** Points a key may spend per window; 0 turns the limit off. */
  points: number;
  windowSeconds: number;
}

/**
 * Where a limit keeps one key's count, under the cache prefix: `rl:<name>:<key>` (rate-limiter-flexible's
 * `<keyPrefix>:<key>`). The cache spends a point of a limit with a read under this key
 * (`CachePort.getVersionedSpending`, the anonymous edge's one round trip), so both count the same client.
 */
export function rateLimitKey(name: string, key: string): string {
  return `rl:${name}:${key}`;
}

/** One point of limit `name` for `key` as the cache spends it; undefined when the limit is off. */
export function allowanceOf(name: string, rule: RateLimitRule, key: string): Allowance | undefined {
  return rule.points > 0 ? { key: rateLimitKey(name, key), points: rule.points, windowSeconds: rule.windowSeconds } : undefined;
}

export type RateLimitVerdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/** One named limit (e.g. provider calls per user). Keys are opaque strings (user id, email, IP). */
export interface RateLimiter {
  /** Spends `points`; when that goes over the limit, nothing is spent and the verdict says when to retry. */
  consume(key: string, points?: number): Promise<RateLimitVerdict>;
  /** Gives `points` back (e.g. the work they paid for was refused for another reason). */
  refund(key: string, points: number): Promise<void>;
  /** Forgets the key (e.g. a successful login clears that account's failures). */
  reset(key: string): Promise<void>;
}

export interface RateLimiters {
  limiter(name: string, rule: RateLimitRule): RateLimiter;
  /** `redis` or `memory` (health, logs). */
  readonly store: 'redis' | 'memory';
  close(): Promise<void>;
}

export interface CreateRateLimitersOptions {
  redisUrl?: string;
  /** `Config.redisClusterNodes`: a Redis Cluster's seed nodes, instead of `redisUrl` (each limit is one key: one slot). */
  redisClusterNodes?: readonly string[];
  /** `Config.redisSentinel`: the master Redis Sentinel names, instead of `redisUrl`. */
  redisSentinel?: RedisSentinelTarget;
  /** `Config.cachePrefix`: keys are `${prefix}:rl:<name>:<key>`, so instances sharing a prefix share limits. */
  prefix: string;
  /** A Redis call slower than this is allowed (fail open). */
  operationTimeoutMs: number;
  logger: Logger;
  /** Called with the limit's name each time a call was allowed because Redis failed. */
  onFailOpen?: (name: string) => void;
}

export function createRateLimiters(opts: CreateRateLimitersOptions): RateLimiters {
  const log = opts.logger.child({ component: 'rate-limit' });
  let client: RedisClient | undefined;
  const target = redisTarget(opts);
  if (target) {
    client = createRedisClient({
      target,
      logger: opts.logger,
      name: `${opts.prefix.replace(/[^\w:.-]/g, '_')}:rate-limit`,
      disableOfflineQueue: true,
      connectTimeoutMs: Math.max(opts.operationTimeoutMs, 1000),
    });
  }
  let failing = false;
  const recovered = () => {
    if (!failing) return;
    failing = false;
    log.info('rate limits are enforced again (Redis answers)');
  };
  const failOpen = (name: string, err: unknown) => {
    opts.onFailOpen?.(name);
    if (failing) return;
    failing = true;
    // The error's class only: a connection error may quote the Redis URL.
    log.warn(
      { error: err instanceof Error ? err.name : typeof err, limit: name },
      'rate limit store unavailable: allowing requests (fail open) until Redis is back',
    );
  };

  return {
    store: client ? 'redis' : 'memory',
    limiter(name, rule) {
      if (!(rule.points > 0)) return UNLIMITED;
      const base = {
        keyPrefix: `${opts.prefix}:${rateLimitKey(name, '').slice(0, -1)}`,
        points: rule.points,
        duration: rule.windowSeconds,
      };
      const impl: RateLimiterAbstract = client
        ? new RateLimiterRedis({ ...base, storeClient: client, useRedisPackage: true, rejectIfRedisNotReady: true })
        : new RateLimiterMemory(base);
      // While Redis is unavailable, each instance counts in its own memory (the same rule, per instance).
      const fallback = client ? new RateLimiterMemory(base) : undefined;
      return new FlexibleLimiter(name, impl, fallback, opts.operationTimeoutMs, (err) => failOpen(name, err), recovered);
    },
    async close() {
      if (client) closeRedisClient(client);
    },
  };
}

const ALLOWED: RateLimitVerdict = { allowed: true };

const UNLIMITED: RateLimiter = {
  consume: async () => ALLOWED,
  refund: async () => undefined,
  reset: async () => undefined,
};

class FlexibleLimiter implements RateLimiter {
  constructor(
    private readonly name: string,
    private readonly impl: RateLimiterAbstract,
    private readonly fallback: RateLimiterAbstract | undefined,
    private readonly timeoutMs: number,
    private readonly failOpen: (err: unknown) => void,
    private readonly recovered: () => void,
  ) {}

  async consume(key: string, points = 1): Promise<RateLimitVerdict> {
    try {
      await this.bounded(this.impl.consume(key, points));
      this.recovered();
      return ALLOWED;
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) {
        this.failOpen(err);
        return this.fallback ? this.consumeIn(this.fallback, key, points) : ALLOWED;
      }
      this.recovered();
      // rate-limiter-flexible counts refused points too: give them back, so
      // only work that was served counts against the window.
      await this.refund(key, points);
      return refused(err);
    }
  }

  /** The in-memory count while Redis is unavailable. */
  private async consumeIn(limiter: RateLimiterAbstract, key: string, points: number): Promise<RateLimitVerdict> {
    try {
      await limiter.consume(key, points);
      return ALLOWED;
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) return ALLOWED;
      await limiter.reward(key, points);
      return refused(err);
    }
  }

  async refund(key: string, points: number): Promise<void> {
    await this.bounded(this.impl.reward(key, points)).catch((err: unknown) => this.failOpen(err));
  }

  async reset(key: string): Promise<void> {
    await this.bounded(this.impl.delete(key)).catch((err: unknown) => this.failOpen(err));
  }

  private bounded<T>(promise: Promise<T>): Promise<T> {
    return withTimeout(promise, this.timeoutMs, `rate limit ${this.name}`);
  }
}

function refused(res: RateLimiterRes): RateLimitVerdict {
  return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(res.msBeforeNext / 1000)) };
}
