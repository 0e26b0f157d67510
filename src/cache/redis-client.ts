import { createClient } from '@redis/client';
import type { Logger } from '../observability/logger';

export interface RedisClientOptions {
  url: string;
  logger: Logger;
  /** Shown in logs and `CLIENT LIST` (e.g. `llmselect:cache`). */
  name: string;
  /** Fail commands at once while disconnected (true for cache and publisher). */
  disableOfflineQueue: boolean;
  /** Upper bound of the reconnect backoff. Default 2000 ms. */
  maxReconnectDelayMs?: number;
  /** TCP connect timeout per attempt. Default 2000 ms. */
  connectTimeoutMs?: number;
}

/**
 * Exponential backoff with jitter, capped, never giving up: the client stays
 * "open" and reconnects by itself when Redis comes back.
 */
export function reconnectDelay(retries: number, maxMs: number): number {
  const base = Math.min(50 * 2 ** Math.min(retries, 16), maxMs);
  return Math.round(base / 2 + Math.random() * (base / 2));
}

/**
 * A node-redis client that is safe to create while Redis is down: it has an
 * `error` listener (no process crash), connects in the background (never
 * throws here) and reconnects forever with backoff. Connection errors are
 * logged at debug level; callers observe availability via events / `isReady`.
 */
export function createRedisClient(opts: RedisClientOptions) {
  const maxDelay = opts.maxReconnectDelayMs ?? 2000;
  const client = createClient({
    url: opts.url,
    name: opts.name,
    disableOfflineQueue: opts.disableOfflineQueue,
    socket: {
      connectTimeout: opts.connectTimeoutMs ?? 2000,
      reconnectStrategy: (retries: number) => reconnectDelay(retries, maxDelay),
    },
  });
  const log = opts.logger.child({ component: opts.name });
  client.on('error', (err: unknown) => log.debug({ err }, 'redis connection error'));
  client.connect().catch((err: unknown) => log.debug({ err }, 'redis connect gave up'));
  return client;
}

export type RedisClient = ReturnType<typeof createRedisClient>;

/**
 * Closes the connection at once (pending commands reject, which the cache
 * treats as misses). `destroy` rather than `close`: `close` waits for replies
 * forever when Redis hangs. Idempotent.
 */
export function closeRedisClient(client: RedisClient): void {
  if (!client.isOpen) return;
  try {
    client.destroy();
  } catch {
    // already closed
  }
}

/**
 * Resolves once the client's first connection attempt has succeeded or
 * failed (immediately if already ready), so early operations neither race the
 * initial connect nor wait longer than one attempt.
 */
export function firstAttempt(client: RedisClient): Promise<void> {
  return new Promise<void>((resolve) => {
    if (client.isReady) return resolve();
    const done = () => {
      client.off('ready', done);
      client.off('error', done);
      resolve();
    };
    client.on('ready', done);
    client.on('error', done);
  });
}
