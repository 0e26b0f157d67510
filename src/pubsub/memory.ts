import { EventEmitter } from 'node:events';
import type { Logger } from '../observability/logger';
import type { MessageHandler, PublishOptions, PubSub } from './pubsub.port';
import { deliver } from './deliver';

/**
 * In-process pub/sub over an EventEmitter. Mirrors the Redis semantics:
 * JSON round trip (one parsed copy shared by the subscribers), asynchronous
 * delivery (the next microtask, never inside `publish`), prefixed channels.
 */
export class MemoryPubSub implements PubSub {
  private readonly emitter = new EventEmitter();
  private readonly log: Logger;
  private closed = false;

  constructor(
    private readonly prefix: string,
    logger: Logger,
  ) {
    this.emitter.setMaxListeners(0);
    this.log = logger.child({ component: 'pubsub' });
  }

  async publish(channel: string, message: object, options?: PublishOptions): Promise<void> {
    if (this.closed) return;
    if (options?.local) {
      const name = `${this.prefix}:${channel}`;
      if (this.emitter.listenerCount(name)) queueMicrotask(() => this.emitter.emit(name, message));
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
    // One parsed copy shared by every subscriber (they treat messages as read-only).
    if (this.emitter.listenerCount(name)) queueMicrotask(() => this.emitter.emit(name, JSON.parse(json)));
  }

  async subscribe<T = unknown>(channel: string, onMessage: MessageHandler<T>): Promise<() => Promise<void>> {
    const name = `${this.prefix}:${channel}`;
    const listener = (message: unknown) => deliver(onMessage, message, this.log, channel);
    if (!this.closed) this.emitter.on(name, listener);
    return async () => void this.emitter.off(name, listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.emitter.removeAllListeners();
  }
}
