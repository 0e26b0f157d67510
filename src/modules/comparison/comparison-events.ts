/**
 * The live channel of one comparison, over the pub/sub port (Redis across
 * instances, in-process otherwise).
 *
 * Publisher (the runner), per response and in order: `status` → `delta`s
 * (each with the offset of its first character) → `settled` (full content).
 * Before publishing a delta it stores the content so far under
 * `stream:<responseId>` in the cache, so a subscriber that reads the snapshot
 * *after* subscribing has every delta either in the snapshot or on the
 * channel; offsets drop the overlap. Settled state lives in PostgreSQL.
 *
 * Subscriber (`comparisonEvents`): subscribe → read state → replay one event per
 * response carrying the content so far → live deltas (never the whole text
 * again) → the full content once at settle → complete when every response
 * has settled.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { CachePort } from '../../cache/cache.port';
import type { PubSub } from '../../cache/pubsub';
import { ComparisonResponse, ResponseStatus, SETTLED_STATUSES } from './comparison.entity';

export type ChannelMessage =
  | { kind: 'status'; responseId: string; status: ResponseStatus }
  | { kind: 'delta'; responseId: string; offset: number; delta: string }
  | { kind: 'settled'; responseId: string; status: ResponseStatus; content: string; error: string | null };

export interface ComparisonEvent {
  comparisonId: string;
  responseId: string;
  status: ResponseStatus;
  delta: string | null;
  content: string | null;
  error: string | null;
}

export const channelOf = (comparisonId: string) => `comparison:${comparisonId}`;
export const CONTROL_CHANNEL = 'comparison-control';
const snapshotKey = (responseId: string) => `stream:${responseId}`;
const SNAPSHOT_TTL_MS = 60 * 60_000;

/** Serialises one response's publications so they reach the channel in order without blocking the token loop. */
export class ResponsePublisher {
  private chain: Promise<void> = Promise.resolve();
  private content = '';

  constructor(
    private readonly pubsub: PubSub,
    private readonly cache: CachePort,
    private readonly comparisonId: string,
    private readonly responseId: string,
  ) {}

  status(status: ResponseStatus): void {
    this.enqueue(() => this.pubsub.publish(channelOf(this.comparisonId), { kind: 'status', responseId: this.responseId, status }));
  }

  delta(delta: string): void {
    const offset = this.content.length;
    this.content += delta;
    const snapshot = this.content;
    this.enqueue(async () => {
      await this.cache.set(snapshotKey(this.responseId), snapshot, SNAPSHOT_TTL_MS);
      await this.pubsub.publish(channelOf(this.comparisonId), { kind: 'delta', responseId: this.responseId, offset, delta });
    });
  }

  /** Waits for earlier publications, then announces the settled state (already written to PostgreSQL). */
  async settled(status: ResponseStatus, content: string, error: string | null): Promise<void> {
    this.enqueue(() => this.pubsub.publish(channelOf(this.comparisonId), { kind: 'settled', responseId: this.responseId, status, content, error }));
    await this.chain;
    await this.cache.delete(snapshotKey(this.responseId));
  }

  private enqueue(step: () => Promise<void>): void {
    // The pub/sub and cache ports never reject for an outage; a bug must not break the chain either.
    this.chain = this.chain.then(step).catch(() => undefined);
  }
}

const CLOSED = Symbol('closed');

/** A tiny unbounded async queue bridging pub/sub callbacks to an async iterator; `close()` wakes a waiting reader. */
class MessageQueue<T> {
  private items: T[] = [];
  private waiting: ((value: T | typeof CLOSED) => void) | undefined;
  private closed = false;

  push(item: T): void {
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = undefined;
      resolve(item);
    } else this.items.push(item);
  }

  next(): Promise<T | typeof CLOSED> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    if (this.closed) return Promise.resolve(CLOSED);
    return new Promise((resolve) => (this.waiting = resolve));
  }

  close(): void {
    this.closed = true;
    this.waiting?.(CLOSED);
    this.waiting = undefined;
  }
}

interface ResponseView {
  status: ResponseStatus;
  length: number;
  settled: boolean;
}

/**
 * The subscription's event stream for an (already authorised) comparison.
 * `em` must be a fresh fork: responses are read after subscribing. When the
 * client goes away, `return()` wakes the stream at once so it unsubscribes
 * without waiting for the next message.
 */
export function comparisonEventStream(
  deps: { pubsub: PubSub; cache: CachePort },
  em: EntityManager,
  comparisonId: string,
): AsyncIterableIterator<ComparisonEvent> {
  const queue = new MessageQueue<ChannelMessage>();
  const events = streamEvents(deps, em, comparisonId, queue);
  return {
    next: () => events.next(),
    return: (value?: unknown) => {
      queue.close();
      return events.return(value as undefined);
    },
    throw: (error?: unknown) => {
      queue.close();
      return events.throw(error);
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

async function* streamEvents(
  deps: { pubsub: PubSub; cache: CachePort },
  em: EntityManager,
  comparisonId: string,
  queue: MessageQueue<ChannelMessage>,
): AsyncGenerator<ComparisonEvent, undefined> {
  const unsubscribe = await deps.pubsub.subscribe<ChannelMessage>(channelOf(comparisonId), (m) => queue.push(m));
  try {
    const views = new Map<string, ResponseView>();
    const event = (responseId: string, status: ResponseStatus, fields: Partial<ComparisonEvent>): ComparisonEvent => ({
      comparisonId,
      responseId,
      status,
      delta: null,
      content: null,
      error: null,
      ...fields,
    });

    const responses = await em.find(ComparisonResponse, { comparison: comparisonId }, { orderBy: { position: 'asc' } });
    for (const r of responses) {
      const settled = SETTLED_STATUSES.includes(r.status);
      const content = settled ? r.content : ((await deps.cache.get<string>(snapshotKey(r.id))) ?? '');
      views.set(r.id, { status: r.status, length: content.length, settled });
      yield event(r.id, r.status, { content, error: r.error ?? null });
    }

    const open = () => [...views.values()].some((v) => !v.settled);
    while (open()) {
      const message = await queue.next();
      if (message === CLOSED) return undefined;
      const view = views.get(message.responseId);
      if (!view || view.settled) continue;
      if (message.kind === 'settled') {
        view.settled = true;
        yield event(message.responseId, message.status, { content: message.content, error: message.error });
      } else if (message.kind === 'status') {
        if (message.status === view.status) continue;
        view.status = message.status;
        yield event(message.responseId, message.status, {});
      } else {
        const end = message.offset + message.delta.length;
        if (end <= view.length) continue; // already in the snapshot we replayed
        const fresh = message.delta.slice(Math.max(0, view.length - message.offset));
        view.length = end;
        view.status = ResponseStatus.STREAMING;
        yield event(message.responseId, ResponseStatus.STREAMING, { delta: fresh });
      }
    }
  } finally {
    await unsubscribe();
  }
  return undefined;
}
