import type { Logger } from '../observability/logger';
import type { MessageHandler } from './pubsub.port';

/** Invokes a handler, logging (never rethrowing) sync and async failures. */
export function deliver(handler: MessageHandler<never>, message: unknown, log: Logger, channel: string): void {
  try {
    const result = (handler as MessageHandler)(message);
    if (result && typeof result.then === 'function') {
      result.then(undefined, (err: unknown) => log.error({ err, channel }, 'pub/sub handler failed'));
    }
  } catch (err) {
    log.error({ err, channel }, 'pub/sub handler failed');
  }
}
