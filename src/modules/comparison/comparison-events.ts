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
 *
 * A blind comparison not yet voted on (`revealed` false) streams provider
 * error texts as their reason code only (`hiddenError`, see `blind.ts`);
 * events carry no model, provider, cost or token counts in any case.
 *
 * When the server shuts down (`shutdown()`), a stream sends as final events
 * the settled state PostgreSQL holds for its open responses (the runner has
 * settled its own by then); if some are still running on another instance it
 * ends with a `SHUTDOWN_NOTICE` (SERVICE_UNAVAILABLE: subscribe again), then
 * completes.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import type { CachePort } from '../../cache/cache.port';
import type { PubSub } from '../../pubsub/pubsub.port';
import { hiddenError } from './blind';
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

/** The last item of a stream ended by a shutdown while responses still run elsewhere. */
export const SHUTDOWN_NOTICE = Object.freeze({ kind: 'shutdown' as const });
export type ShutdownNotice = typeof SHUTDOWN_NOTICE;
export type StreamItem = ComparisonEvent | ShutdownNotice;
export const isShutdownNotice = (item: unknown): item is ShutdownNotice => item === SHUTDOWN_NOTICE;

/** A subscriber's stream, which the runner can end at shutdown. */
export interface ComparisonEventStream extends AsyncIterableIterator<StreamItem> {
  /** Ends the stream with its final events; resolves once the stream has finished. */
  shutdown(): Promise<void>;
  /** Resolves once the stream has finished, however it ended. */
  readonly finished: Promise<void>;
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
  revealed: boolean,
): ComparisonEventStream {
  const queue = new MessageQueue<QueueItem>();
  let finished!: () => void;
  const done = new Promise<void>((resolve) => (finished = resolve));
  const events = streamEvents(deps, em, comparisonId, revealed, queue, finished);
  let started = false;
  return {
    finished: done,
    next: () => {
      started = true;
      return events.next();
    },
    shutdown: () => {
      queue.push(SHUTDOWN_NOTICE);
      return done;
    },
    return: (value?: unknown) => {
      queue.close();
      const result = events.return(value as undefined);
      // A generator that never started runs no `finally`.
      if (!started) finished();
      return result;
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

type QueueItem = ChannelMessage | ShutdownNotice;

async function* streamEvents(
  deps: { pubsub: PubSub; cache: CachePort },
  em: EntityManager,
  comparisonId: string,
  revealed: boolean,
  queue: MessageQueue<QueueItem>,
  finished: () => void,
): AsyncGenerator<StreamItem, undefined> {
  try {
    yield* followComparison(deps, em, comparisonId, revealed, queue);
  } finally {
    finished();
  }
  return undefined;
}

async function* followComparison(
  deps: { pubsub: PubSub; cache: CachePort },
  em: EntityManager,
  comparisonId: string,
  revealed: boolean,
  queue: MessageQueue<QueueItem>,
): AsyncGenerator<StreamItem, undefined> {
  const unsubscribe = await deps.pubsub.subscribe<ChannelMessage>(channelOf(comparisonId), (m) => queue.push(m));
  try {
    const views = new Map<string, ResponseView>();
    const event = (responseId: string, status: ResponseStatus, fields: Partial<ComparisonEvent>): ComparisonEvent => {
      const e: ComparisonEvent = { comparisonId, responseId, status, delta: null, content: null, error: null, ...fields };
      if (!revealed) e.error = hiddenError(e.error);
      return e;
    };

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
      if (isShutdownNotice(message)) {
        yield* finalEvents(em, views, event);
        return undefined;
      }
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

/** At shutdown: the settled state stored for each open response, then SHUTDOWN_NOTICE if any is still running. */
async function* finalEvents(
  em: EntityManager,
  views: Map<string, ResponseView>,
  event: (responseId: string, status: ResponseStatus, fields: Partial<ComparisonEvent>) => ComparisonEvent,
): AsyncGenerator<StreamItem> {
  const open = [...views].filter(([, v]) => !v.settled).map(([id]) => id);
  const rows = await em
    .fork()
    .find(ComparisonResponse, { id: { $in: open } }, { orderBy: { position: 'asc' } })
    .catch(() => [] as ComparisonResponse[]);
  let stillRunning = open.length;
  for (const r of rows) {
    if (!SETTLED_STATUSES.includes(r.status)) continue;
    stillRunning--;
    yield event(r.id, r.status, { content: r.content, error: r.error ?? null });
  }
  if (stillRunning > 0) yield SHUTDOWN_NOTICE;
}
