import { randomBytes } from 'node:crypto';
import type { Logger } from '../observability/logger';
import type { MessageHandler, PublishOptions, PubSub } from './pubsub.port';
import { deliver } from './deliver';
import {
  closeRedisClient,
  createRedisClient,
  firstAttempt,
  type RedisClient,
  type RedisTarget,
  subscribeChannel,
  unsubscribeChannel,
} from '../cache/redis-client';
import { sleep, withTimeout } from '../timeout';
import { failSpan, SpanKind, startSpan } from '../observability/tracing';

/** Field spliced into every message this process sends, naming it; stripped on receipt. Old releases ignore it. */
const ORIGIN_FIELD = '~o';
/**
 * Publications handed to Redis and not yet answered. Past this (a hung Redis
 * that still holds the socket open) new ones are dropped, not queued without bound.
 */
const MAX_PUBLISHES_IN_FLIGHT = 20_000;

/**
 * Redis pub/sub over two dedicated connections: `pub` (no offline queue, so
 * publishing while down fails fast and is dropped) and `sub` (subscriber mode;
 * node-redis re-subscribes every channel after a reconnect).
 *
 * **Local first.** A message reaches this process's own subscribers at once
 * (next microtask, one JSON round trip shared by them), whatever Redis does;
 * other instances get it through Redis. Each message carries this process's
 * random origin id, so the copy Redis echoes back is dropped unread.
 * Publications are never awaited one after another: `publish` hands the
 * command to the connection synchronously (node-redis pipelines what is written
 * in one tick, in order), so a caller may fire and forget and order holds.
 */
export class RedisPubSub implements PubSub {
  private readonly pub: RedisClient;
  private readonly sub: RedisClient;
  private readonly log: Logger;
  private readonly listeners = new Map<string, Set<(message: unknown) => void>>();
  private readonly origin = randomBytes(6).toString('base64url');
  /** `{"~o":"<origin>"`: how this process's own messages start on the wire. */
  private readonly ownPrefix: string;
  /** Publications made before the first connection attempt finished, sent in order once it has. */
  private startupBacklog: Array<{ name: string; raw: string; sent: () => void }> | undefined = [];
  private inFlight = 0;
  private lastDropWarning = 0;
  private closed = false;

  constructor(
    target: RedisTarget,
    private readonly prefix: string,
    logger: Logger,
    private readonly timeoutMs: number,
  ) {
    this.log = logger.child({ component: 'pubsub' });
    this.ownPrefix = `{"${ORIGIN_FIELD}":"${this.origin}"`;
    const name = prefix.replace(/[^\w:.-]/g, '_');
    this.pub = createRedisClient({ target, logger, name: `${name}:pub`, disableOfflineQueue: true });
    this.sub = createRedisClient({ target, logger, name: `${name}:sub`, disableOfflineQueue: false });
    // Right after start, publications wait (bounded) for the first connection attempt instead of being dropped.
    void Promise.race([firstAttempt(this.pub), sleep(this.timeoutMs)]).then(() => {
      const backlog = this.startupBacklog ?? [];
      this.startupBacklog = undefined;
      for (const item of backlog) {
        this.send(item.name, item.raw);
        item.sent();
      }
    });
  }

  async publish(channel: string, message: object, options?: PublishOptions): Promise<void> {
    if (this.closed) return;
    if (options?.local) {
      this.deliverLocally(`${this.prefix}:${channel}`, () => message);
      return;
    }
    let json: string;
    try {
      json = JSON.stringify(message);
    } catch (err) {
      this.log.error({ err, channel }, 'pub/sub message not JSON-serializable: dropped');
      return;
    }
    const name = `${this.prefix}:${channel}`;
    this.deliverLocally(name, () => JSON.parse(json));
    const raw = json === '{}' ? `${this.ownPrefix}}` : `${this.ownPrefix},${json.slice(1)}`;
    if (this.startupBacklog) {
      await new Promise<void>((sent) => this.startupBacklog!.push({ name, raw, sent }));
      return;
    }
    this.send(name, raw);
  }

  async subscribe<T = unknown>(channel: string, onMessage: MessageHandler<T>): Promise<() => Promise<void>> {
    const name = `${this.prefix}:${channel}`;
    const listener = (message: unknown) => deliver(onMessage as MessageHandler, message, this.log, channel);
    const remote = (raw: string) => this.onRaw(raw, listener, channel);
    let subscribed = false;
    const unsubscribe = async () => {
      const set = this.listeners.get(name);
      if (!subscribed || !set?.delete(listener)) return;
      subscribed = false;
      if (!set.size) this.listeners.delete(name);
      if (!this.sub.isOpen) return;
      await this.settle(unsubscribeChannel(this.sub, name, remote), `unsubscribe ${channel}`);
    };
    if (this.closed) return unsubscribe;
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener);
    subscribed = true;
    await this.settle(subscribeChannel(this.sub, name, remote), `subscribe ${channel}`);
    return unsubscribe;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    closeRedisClient(this.pub);
    closeRedisClient(this.sub);
  }

  /**
   * This process's subscribers, on the next microtask (never inside `publish`),
   * sharing one copy: parsed from the JSON, or (a local-only publication) the object itself.
   */
  private deliverLocally(name: string, message: () => unknown): void {
    const set = this.listeners.get(name);
    if (!set?.size) return;
    const targets = [...set];
    queueMicrotask(() => {
      const copy = message();
      for (const listener of targets) listener(copy);
    });
  }

  private send(name: string, raw: string): void {
    if (this.closed) return;
    if (this.inFlight >= MAX_PUBLISHES_IN_FLIGHT) {
      this.dropped(new Error(`${MAX_PUBLISHES_IN_FLIGHT} publications unanswered`), name);
      return;
    }
    this.inFlight++;
    // Never awaited: the span ends when Redis answers (the channel without the prefix; never the message).
    const span = startSpan('redis PUBLISH', {
      kind: SpanKind.PRODUCER,
      attributes: {
        'db.system.name': 'redis',
        'db.operation.name': 'PUBLISH',
        'messaging.destination.name': name.slice(this.prefix.length + 1),
      },
    });
    let sent: Promise<unknown>;
    try {
      sent = this.pub.publish(name, raw);
    } catch (err) {
      this.inFlight--;
      this.dropped(err, name);
      if (span) failSpan(span, err);
      span?.end();
      return;
    }
    sent.then(
      () => {
        this.inFlight--;
        span?.end();
      },
      (err: unknown) => {
        this.inFlight--;
        this.dropped(err, name);
        if (span) failSpan(span, err);
        span?.end();
      },
    );
  }

  /** One warning per 10 s during an outage; the rest at debug. */
  private dropped(err: unknown, name: string): void {
    const now = Date.now();
    const level = now - this.lastDropWarning > 10_000 ? 'warn' : 'debug';
    if (level === 'warn') this.lastDropWarning = now;
    this.log[level]({ err, channel: name.slice(this.prefix.length + 1) }, 'pub/sub publish failed: message dropped for other instances');
  }

  private onRaw(raw: string, listener: (message: unknown) => void, channel: string): void {
    if (raw.startsWith(this.ownPrefix)) return; // our own, already delivered locally
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(raw) as Record<string, unknown>;
    } catch (err) {
      this.log.warn({ err, channel }, 'pub/sub message is not JSON: ignored');
      return;
    }
    if (message && typeof message === 'object') delete message[ORIGIN_FIELD];
    listener(message);
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
