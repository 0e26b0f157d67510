/**
 * The live channel of one comparison, over the pub/sub port (this process's
 * subscribers at once, other instances through Redis; in-process without Redis).
 *
 * Publisher (`ResponsePublisher`, one per running response, held by the runner
 * in `LiveResponses`), per response and in order: `status` → `delta`s (each
 * with the offset of its first character) → `settled` (full content, already
 * in PostgreSQL). Nothing waits on a store: a delta is handed to the pub/sub
 * and the token loop goes on. Deltas stay in this process (`local`) until a
 * subscriber on another instance asks for the response (`sync`): from then on
 * they go through Redis too, so a comparison nobody follows elsewhere costs
 * Redis nothing per delta (status and settled messages always go everywhere). The content so far lives in the publisher's
 * memory; a snapshot of it is written to the cache under `stream:<responseId>`
 * at most every {@link SNAPSHOT_INTERVAL_MS} (dropped at settle, when the row
 * in PostgreSQL holds the text), so nothing per delta grows with the length
 * of the answer.
 *
 * Subscriber (`comparisonEvents`): subscribe → read state → replay one event
 * per response carrying the content so far → live deltas (never the whole
 * text again) → the full content once at settle → complete when every
 * response has settled. The replay is exact (every delta exactly once, in
 * order, offsets drop the overlap):
 * - a response this process runs: its content is read from the publisher in
 *   memory, after subscribing (so a delta is in the content, on the channel,
 *   or both);
 * - a response another instance runs: the snapshot (up to a few hundred ms
 *   old) is replayed and a `sync` request on the control channel asks the
 *   instance running it to publish the rest from that offset as one delta,
 *   in order with its other deltas, and from then on publishes its deltas to
 *   other instances too. Live deltas past a gap wait for it
 *   (buffered, bounded), and a gap seen live asks again (the first request
 *   may have left before the subscription took effect in Redis); should the
 *   fill never come, the settled message carries the text: what the
 *   subscriber has not been sent goes out as a last delta before it.
 * Deltas of one response already waiting when the client is ready for more
 * are sent as one event; a client whose socket buffer is full is waited for
 * (`ready`), so a slow reader gets fewer, longer deltas, not a growing queue.
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
import { isRetryableDatabaseError } from '../../db/connection-errors';
import type { PubSub } from '../../pubsub/pubsub.port';
import { sleep } from '../../timeout';
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
/** A running response's catch-up snapshot is at most this old (plus one cache write). */
export const SNAPSHOT_INTERVAL_MS = 250;
/** Live deltas a subscriber holds behind a gap while the instance running the response fills it. */
const MAX_HELD_DELTAS = 10_000;
/**
 * A stream that heard nothing for this long looks at PostgreSQL: a response
 * settled there whose `settled` message it missed (pub/sub is at most once:
 * a Redis hiccup, a subscription acknowledged late under load) is sent as
 * settled, and a gap still open asks the running instance again. So no
 * subscriber waits forever, and a quiet model costs one read per interval.
 */
export const QUIET_CHECK_MS = 5_000;

/** What the control channel carries: a cancel, or a subscriber on another instance asking for a response's text from an offset. */
export type ControlMessage = { cancel: string } | { sync: string; comparisonId: string; from: number };

/** The publishers of the responses this process runs, by response id (the runner owns it). */
export type LiveResponses = ReadonlyMap<string, ResponsePublisher>;

/** Publishes one response's events in order without ever making the token loop wait. */
export class ResponsePublisher {
  private text = '';
  private snapshotTimer: NodeJS.Timeout | undefined;
  private snapshotWrite: Promise<void> = Promise.resolve();
  /** A subscriber on another instance asked for this response (`resend`): deltas go through Redis too. */
  private remote = false;
  /** The last status published, and once settled (`final`: no more deltas, snapshots or fills) what was announced. */
  private current: ResponseStatus = ResponseStatus.PENDING;
  private final: { status: ResponseStatus; content: string; error: string | null } | undefined;

  constructor(
    private readonly deps: { pubsub: PubSub; cache: CachePort },
    private readonly comparisonId: string,
    readonly responseId: string,
  ) {}

  /** The text published so far. */
  get content(): string {
    return this.text;
  }

  /** What a subscriber joining now replays: the status and text so far, or the settled state once announced. */
  get state(): { status: ResponseStatus; content: string; error: string | null; settled: boolean } {
    return this.final ? { ...this.final, settled: true } : { status: this.current, content: this.text, error: null, settled: false };
  }

  status(status: ResponseStatus): void {
    this.current = status;
    this.publish({ kind: 'status', responseId: this.responseId, status });
  }

  delta(delta: string): void {
    if (!delta) return;
    const offset = this.text.length;
    this.text += delta;
    this.publish({ kind: 'delta', responseId: this.responseId, offset, delta }, !this.remote);
    this.snapshotTimer ??= setTimeout(() => this.writeSnapshot(), SNAPSHOT_INTERVAL_MS);
  }

  /**
   * A subscriber elsewhere has the text up to `from`: publish the rest as one
   * delta, in order with the others, and every later delta to other instances too.
   */
  resend(from: number): void {
    if (this.final || !Number.isInteger(from) || from < 0) return;
    this.remote = true;
    if (from >= this.text.length) return;
    this.publish({ kind: 'delta', responseId: this.responseId, offset: from, delta: this.text.slice(from) });
  }

  /** Announces the settled state (already written to PostgreSQL, which late subscribers read from now on) and drops the snapshot. */
  async settled(status: ResponseStatus, content: string, error: string | null): Promise<void> {
    this.final = { status, content, error };
    clearTimeout(this.snapshotTimer);
    this.snapshotTimer = undefined;
    this.publish({ kind: 'settled', responseId: this.responseId, status, content, error });
    // After a write still under way, so no stale snapshot outlives the run (a retry starts from nothing).
    await this.snapshotWrite;
    await this.deps.cache.delete(snapshotKey(this.responseId));
  }

  private writeSnapshot(): void {
    this.snapshotTimer = undefined;
    if (this.final) return;
    // One write at a time: a slow cache delays the next snapshot, never a delta.
    this.snapshotWrite = this.snapshotWrite.then(() =>
      this.final ? undefined : this.deps.cache.set(snapshotKey(this.responseId), this.text, SNAPSHOT_TTL_MS),
    );
  }

  private publish(message: ChannelMessage, local = false): void {
    // The port never rejects for an outage and keeps order without being awaited.
    void this.deps.pubsub.publish(channelOf(this.comparisonId), message, local ? { local } : undefined);
  }
}

const CLOSED = Symbol('closed');

/** A small async queue bridging pub/sub callbacks to an async iterator; `close()` wakes a waiting reader. */
class MessageQueue<T> {
  private items: T[] = [];
  private waiting: (() => void) | undefined;
  private closed = false;

  push(item: T): void {
    this.items.push(item);
    const wake = this.waiting;
    this.waiting = undefined;
    wake?.();
  }

  /** Everything queued, once there is something (or CLOSED). */
  async takeAll(): Promise<T[] | typeof CLOSED> {
    while (!this.items.length) {
      if (this.closed) return CLOSED;
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
    const items = this.items;
    this.items = [];
    return items;
  }

  close(): void {
    this.closed = true;
    const wake = this.waiting;
    this.waiting = undefined;
    wake?.();
  }
}

interface ResponseView {
  status: ResponseStatus;
  /** Characters of the text this subscriber has been sent. */
  length: number;
  settled: boolean;
  /** Live deltas past a gap, waiting for the instance running the response to fill it (see `sync`). */
  held: Array<Extract<ChannelMessage, { kind: 'delta' }>>;
}

export interface EventStreamDeps {
  pubsub: PubSub;
  cache: CachePort;
  /** The responses this process runs: their text is replayed from memory. */
  live: LiveResponses;
}

/**
 * The subscription's event stream for an (already authorised) comparison.
 * `em` must be a fresh fork: responses are read after subscribing. When the
 * client goes away, `return()` wakes the stream at once so it unsubscribes
 * without waiting for the next message.
 */
export function comparisonEventStream(
  deps: EventStreamDeps,
  em: EntityManager,
  comparisonId: string,
  revealed: boolean,
  ready: () => Promise<void> | void = () => undefined,
  /** The comparison's responses in position order when this process runs them all (`ComparisonRunner.runsHere`). */
  localIds?: readonly string[],
): ComparisonEventStream {
  const queue = new MessageQueue<QueueItem>();
  let finished!: () => void;
  const done = new Promise<void>((resolve) => (finished = resolve));
  const events = streamEvents(deps, em, comparisonId, revealed, queue, ready, finished, localIds);
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

/** Pushed by a stream's own timer when nothing reached it for {@link QUIET_CHECK_MS}. */
const QUIET = Object.freeze({ kind: 'quiet' as const });
type QueueItem = ChannelMessage | ShutdownNotice | typeof QUIET;

async function* streamEvents(
  deps: EventStreamDeps,
  em: EntityManager,
  comparisonId: string,
  revealed: boolean,
  queue: MessageQueue<QueueItem>,
  ready: () => Promise<void> | void,
  finished: () => void,
  localIds: readonly string[] | undefined,
): AsyncGenerator<StreamItem, undefined> {
  try {
    yield* followComparison(deps, em, comparisonId, revealed, queue, ready, localIds);
  } finally {
    finished();
  }
  return undefined;
}

type EventOf = (responseId: string, status: ResponseStatus, fields: Partial<ComparisonEvent>) => ComparisonEvent;

async function* followComparison(
  deps: EventStreamDeps,
  em: EntityManager,
  comparisonId: string,
  revealed: boolean,
  queue: MessageQueue<QueueItem>,
  ready: () => Promise<void> | void,
  localIds: readonly string[] | undefined,
): AsyncGenerator<StreamItem, undefined> {
  let heard = true;
  const unsubscribe = await deps.pubsub.subscribe<ChannelMessage>(channelOf(comparisonId), (m) => {
    heard = true;
    queue.push(m);
  });
  const quiet = setInterval(() => {
    if (!heard) queue.push(QUIET);
    heard = false;
  }, QUIET_CHECK_MS).unref();
  try {
    const views = new Map<string, ResponseView>();
    const event: EventOf = (responseId, status, fields) => {
      const e: ComparisonEvent = { comparisonId, responseId, status, delta: null, content: null, error: null, ...fields };
      if (!revealed) e.error = hiddenError(e.error);
      return e;
    };

    const askForFill = (responseId: string, from: number) =>
      void deps.pubsub.publish(CONTROL_CHANNEL, { sync: responseId, comparisonId, from } satisfies ControlMessage);
    const replay: ComparisonEvent[] = [];
    // Every response runs here (read after subscribing, as below): the replay comes from the publishers, no SQL.
    const publishers = localIds?.map((id) => deps.live.get(id));
    // Otherwise the rows are read, and a response running here may settle and leave `live` (its snapshot
    // dropped) while they are: its row read unsettled, its text is in the publisher held from before the read.
    const all = publishers?.every((p) => p !== undefined) ? publishers : undefined;
    const runningHere = all ? undefined : new Map(deps.live);
    const responses = all
      ? all.map((p) => ({ id: p.responseId, ...p.state }))
      : // The stream has begun: a busy or briefly unreachable database is waited for (bounded), not answered with an error mid-stream.
        await retried(() => em.find(ComparisonResponse, { comparison: comparisonId }, { orderBy: { position: 'asc' } }));
    for (const row of responses) {
      let r: { id: string; status: ResponseStatus; content: string; error?: string | null } = row;
      if (!SETTLED_STATUSES.includes(r.status)) {
        // Read after subscribing: every delta is in this text, on the channel, or both (a settled one: the whole text).
        const local = deps.live.get(r.id) ?? runningHere?.get(r.id);
        if (local) r = { id: r.id, ...local.state };
        else {
          r = { id: r.id, status: r.status, error: r.error, content: (await deps.cache.get<string>(snapshotKey(r.id))) ?? '' };
          askForFill(r.id, r.content.length);
        }
      }
      const settled = SETTLED_STATUSES.includes(r.status);
      views.set(r.id, { status: r.status, length: r.content.length, settled, held: [] });
      replay.push(event(r.id, r.status, { content: r.content, error: r.error ?? null }));
    }
    yield* replay;

    while ([...views.values()].some((v) => !v.settled)) {
      // A client that is behind is waited for: what arrives meanwhile is joined into fewer events.
      await ready();
      const items = await queue.takeAll();
      if (items === CLOSED) return undefined;
      const batch = items.filter((item): item is ChannelMessage | ShutdownNotice => item !== QUIET);
      if (batch.length < items.length) batch.unshift(...(await recheck(em, views, deps.live, askForFill)));
      const shutdown = batch.findIndex(isShutdownNotice);
      yield* eventsOf((shutdown < 0 ? batch : batch.slice(0, shutdown)) as ChannelMessage[], views, event, askForFill);
      if (shutdown >= 0) {
        yield* finalEvents(em, views, event);
        return undefined;
      }
    }
  } finally {
    clearInterval(quiet);
    await unsubscribe();
  }
  return undefined;
}

/** How long a stream's first read retries a connection error or a pool / lock / statement timeout. */
const FIRST_READ_RETRY_MS = 15_000;

async function retried<T>(read: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + FIRST_READ_RETRY_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await read();
    } catch (error) {
      if (!isRetryableDatabaseError(error) || Date.now() >= deadline) throw error;
      await sleep(Math.min(1_000, 50 * 2 ** attempt));
    }
  }
}

/**
 * After {@link QUIET_CHECK_MS} of silence: a `settled` message for each open
 * response PostgreSQL holds settled (handled like one from the channel), and
 * another `sync` request for each one running on another instance.
 */
async function recheck(
  em: EntityManager,
  views: Map<string, ResponseView>,
  live: LiveResponses,
  askForFill: (responseId: string, from: number) => void,
): Promise<ChannelMessage[]> {
  const open = [...views].filter(([, v]) => !v.settled).map(([id]) => id);
  const rows = await em
    .fork()
    .find(ComparisonResponse, { id: { $in: open } }, { orderBy: { position: 'asc' } })
    .catch(() => [] as ComparisonResponse[]);
  const settled: ChannelMessage[] = [];
  for (const r of rows) {
    if (SETTLED_STATUSES.includes(r.status))
      settled.push({ kind: 'settled', responseId: r.id, status: r.status, content: r.content, error: r.error ?? null });
    // Running elsewhere and silent: our `sync` may have been lost, and without it no delta comes our way.
    else if (!live.has(r.id)) askForFill(r.id, views.get(r.id)!.length);
  }
  return settled;
}

/**
 * The events a batch of channel messages makes for this subscriber, in order
 * per response: overlaps dropped by offset, deltas past a gap held until it is
 * filled, and consecutive deltas of one response joined into one event.
 */
function eventsOf(
  batch: readonly ChannelMessage[],
  views: Map<string, ResponseView>,
  event: EventOf,
  onGap: (responseId: string, from: number) => void,
): ComparisonEvent[] {
  const out: ComparisonEvent[] = [];
  /** Per response, its last event in `out` when that is a delta (the next delta joins it). */
  const openDelta = new Map<string, ComparisonEvent>();
  const appendDelta = (responseId: string, view: ResponseView, message: Extract<ChannelMessage, { kind: 'delta' }>): boolean => {
    const end = message.offset + message.delta.length;
    if (end <= view.length) return true; // already sent (replay or an earlier delta)
    if (message.offset > view.length) return false; // a gap: wait for the fill
    const fresh = message.delta.slice(view.length - message.offset);
    view.length = end;
    view.status = ResponseStatus.STREAMING;
    const last = openDelta.get(responseId);
    if (last) last.delta += fresh;
    else {
      const e = event(responseId, ResponseStatus.STREAMING, { delta: fresh });
      out.push(e);
      openDelta.set(responseId, e);
    }
    return true;
  };
  for (const message of batch) {
    const view = views.get(message.responseId);
    if (!view || view.settled) continue;
    if (message.kind === 'delta') {
      if (!appendDelta(message.responseId, view, message)) {
        // A gap opens: ask for the fill now (the first request may have gone out before our subscription took effect).
        if (!view.held.length) onGap(message.responseId, view.length);
        if (view.held.length < MAX_HELD_DELTAS) view.held.push(message);
        continue;
      }
      // A fill may release held deltas (they arrived in order, so the first that still leaves a gap stops it).
      while (view.held.length && appendDelta(message.responseId, view, view.held[0]!)) view.held.shift();
      continue;
    }
    if (message.kind === 'settled') {
      // Text this subscriber has not been sent yet (a fill that never came, a race with the
      // settle while it joined) goes out as the last delta, in order, before the settled event.
      if (message.content.length > view.length)
        appendDelta(message.responseId, view, { kind: 'delta', responseId: message.responseId, offset: 0, delta: message.content });
      openDelta.delete(message.responseId);
      view.settled = true;
      view.held = [];
      out.push(event(message.responseId, message.status, { content: message.content, error: message.error }));
    } else if (message.status !== view.status) {
      openDelta.delete(message.responseId);
      view.status = message.status;
      out.push(event(message.responseId, message.status, {}));
    }
  }
  return out;
}

/** At shutdown: the settled state stored for each open response, then SHUTDOWN_NOTICE if any is still running. */
async function* finalEvents(em: EntityManager, views: Map<string, ResponseView>, event: EventOf): AsyncGenerator<StreamItem> {
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
