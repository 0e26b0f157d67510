/**
 * Makes the pub/sub (the port is `pubsub.port.ts`): Redis when configured,
 * else in-process. Implementations import only the port, never this file.
 */
import type { Logger } from '../observability/logger';
import { MemoryPubSub } from './memory';
import type { PubSub } from './pubsub.port';
import { RedisPubSub } from './redis';
import { type RedisSentinelTarget, redisTarget } from '../cache/redis-client';

export interface CreatePubSubOptions {
  /** Unset: in-process EventEmitter (single instance / tests). */
  redisUrl?: string;
  /** A Redis Cluster's seed nodes, instead of `redisUrl` (PUBLISH reaches every node's subscribers). */
  redisClusterNodes?: readonly string[];
  /** The master Redis Sentinel names, instead of `redisUrl` (subscriptions move with it on a failover). */
  redisSentinel?: RedisSentinelTarget;
  prefix: string;
  logger: Logger;
  /** Bound on publish / subscribe round trips. Default 1000 ms. */
  operationTimeoutMs?: number;
}

/** Redis pub/sub (two dedicated connections) when `redisUrl` is set, else in-memory. Never throws for an unreachable Redis. */
export function createPubSub(opts: CreatePubSubOptions): PubSub {
  if (!opts.prefix) throw new TypeError('pub/sub prefix must be non-empty');
  const timeoutMs = opts.operationTimeoutMs ?? 1000;
  const target = redisTarget(opts);
  return target ? new RedisPubSub(target, opts.prefix, opts.logger, timeoutMs) : new MemoryPubSub(opts.prefix, opts.logger);
}
