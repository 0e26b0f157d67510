import type { Logger } from '../observability/logger';
import type { MessageHandler, PubSub } from './pubsub.port';
import { deliver } from './deliver';
import { closeRedisClient, createRedisClient, firstAttempt, type RedisClient } from '../cache/redis-client';
import { sleep, withTimeout } from '../timeout';

/**
 * Redis pub/sub over two dedicated connections: `pub` (no offline queue, so
 * publishing while down fails fast and is dropped) and `sub` (subscriber mode;
 * node-redis re-subscribes every channel after a reconnect).
 */
export class RedisPubSub implements PubSub {
  private readonly pub: RedisClient;
  private readonly sub: RedisClient;
  private readonly log: Logger;
  private readonly listeners = new Set<{ name: string; listener: (raw: string) => void }>();
  private readonly pubFirstAttempt: Promise<void>;
  private pubAttempted = false;
  private lastDropWarning = 0;
  private closed = false;

  constructor(
    url: string,
    private readonly prefix: string,
    logger: Logger,
    private readonly timeoutMs: number,
  ) {
    this.log = logger.child({ component: 'pubsub' });
    const name = prefix.replace(/[^\w:.-]/g, '_');
    this.pub = createRedisClient({ url, logger, name: `${name}:pub`, disableOfflineQueue: true });
    this.sub = createRedisClient({ url, logger, name: `${name}:sub`, disableOfflineQueue: false });
    this.pubFirstAttempt = firstAttempt(this.pub).then(() => void (this.pubAttempted = true));
  }

  async publish(channel: string, message: object): Promise<void> {
    if (this.closed) return;
    // Right after start, wait (bounded) for the first connection attempt instead of dropping.
    if (!this.pubAttempted) await Promise.race([this.pubFirstAttempt, sleep(this.timeoutMs)]);
    try {
      await withTimeout(this.pub.publish(`${this.prefix}:${channel}`, JSON.stringify(message)), this.timeoutMs, 'publish');
    } catch (err) {
      // One warning per 10 s during an outage; the rest at debug.
      const now = Date.now();
      const level = now - this.lastDropWarning > 10_000 ? 'warn' : 'debug';
      if (level === 'warn') this.lastDropWarning = now;
      this.log[level]({ err, channel }, 'pub/sub publish failed: message dropped');
    }
  }

  async subscribe<T = unknown>(channel: string, onMessage: MessageHandler<T>): Promise<() => Promise<void>> {
    const name = `${this.prefix}:${channel}`;
    const entry = { name, listener: (raw: string) => this.onRaw(raw, onMessage, channel) };
    const unsubscribe = async () => {
      if (!this.listeners.delete(entry) || !this.sub.isOpen) return;
      await this.settle(this.sub.unsubscribe(name, entry.listener), `unsubscribe ${channel}`);
    };
    if (this.closed) return unsubscribe;
    this.listeners.add(entry);
    await this.settle(this.sub.subscribe(name, entry.listener), `subscribe ${channel}`);
    return unsubscribe;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    closeRedisClient(this.pub);
    closeRedisClient(this.sub);
  }

  private onRaw<T>(raw: string, onMessage: MessageHandler<T>, channel: string): void {
    let message: T;
    try {
      message = JSON.parse(raw) as T;
    } catch (err) {
      this.log.warn({ err, channel }, 'pub/sub message is not JSON: ignored');
      return;
    }
    deliver(onMessage, message, this.log, channel);
  }

  /** Waits (bounded) for a (un)subscribe acknowledgement; failures are logged, not thrown. */
  private async settle(promise: Promise<unknown>, what: string): Promise<void> {
    try {
      await withTimeout(promise, this.timeoutMs, what);
    } catch (err) {
      this.log.warn({ err }, `pub/sub ${what} not acknowledged (Redis unavailable?); applies once reconnected`);
    }
  }
}
