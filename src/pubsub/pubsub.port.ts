/**
 * The pub/sub port: fire-and-forget, at-most-once fan-out of JSON messages
 * (e.g. "user 42's settings changed", subscription events across instances).
 *
 * Contract:
 * - Channels are prefixed with the cache prefix (`${prefix}:${channel}`), so
 *   environments / test files sharing a Redis never see each other's messages.
 * - Messages are JSON: the subscriber receives the JSON round-tripped object,
 *   one copy shared by the subscribers of a process (treat it as read-only).
 * - Local first: subscribers in the publishing process get a message on the
 *   next microtask, whatever Redis does; other processes through Redis. Order
 *   holds per publisher and channel, and `publish` need not be awaited for it
 *   (it resolves once the message is handed on, never waiting for a reply).
 * - `publish(…, { local: true })` reaches this process's subscribers only (no
 *   Redis round trip, no JSON round trip: they get the object itself, which must
 *   be plain JSON data and is treated as read-only), in order with the other
 *   publications of the channel. For traffic no other instance has asked for.
 * - `publish` never rejects because Redis is unavailable: the message is logged
 *   and dropped (no buffering, no local fallback: a subscriber must tolerate loss).
 * - `subscribe` resolves once Redis acknowledged, or after a bounded wait if
 *   Redis is down; the subscription is then kept and (re)established by the
 *   client when Redis is back. Handler errors (sync or async) are logged, never
 *   propagated. The returned function unsubscribes only that handler (idempotent).
 */

export type MessageHandler<T = unknown> = (message: T) => void | Promise<void>;

export interface PublishOptions {
  /** This process's subscribers only (see the contract above). */
  local?: boolean;
}

export interface PubSub {
  publish(channel: string, message: object, options?: PublishOptions): Promise<void>;
  subscribe<T = unknown>(channel: string, onMessage: MessageHandler<T>): Promise<() => Promise<void>>;
  /** Drops every subscription and closes connections. Idempotent. */
  close(): Promise<void>;
}
