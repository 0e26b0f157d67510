import { EventEmitter } from 'node:events';
import type * as NodeRedis from '@redis/client';
import type { RedisClientType, RedisClusterType } from '@redis/client';
import type { Logger } from '../observability/logger';

/**
 * node-redis, required when the first connection is made (or a reply is
 * checked), never imported: its 400-odd modules were about a tenth of the
 * app's module-load CPU, paid by every process, and one without Redis
 * (`REDIS_URL` / `REDIS_CLUSTER_NODES` unset: in-process stores) never uses it.
 */
function nodeRedis(): typeof NodeRedis {
  return require('@redis/client') as typeof NodeRedis;
}

/**
 * Whether `error` is a Redis error *reply* (WRONGTYPE, NOSCRIPT, OOM, …): an
 * answer from a healthy server, not a connection failure.
 */
export function isErrorReply(error: unknown): error is NodeRedis.ErrorReply {
  return error instanceof nodeRedis().ErrorReply;
}

/** A master watched by Redis Sentinel (`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`). */
export interface RedisSentinelTarget {
  /** The sentinels, as `redis://` or `rediss://` URLs (credentials in a URL are the sentinel's own). */
  sentinels: readonly string[];
  /** The name the sentinels monitor the master under (`sentinel monitor <name> …`). */
  masterName: string;
  /** AUTH for the master (and replicas), when it differs from none; TLS follows the sentinels' scheme. */
  username?: string;
  password?: string;
}

/**
 * Where Redis is: one server (`REDIS_URL`), a Redis Cluster (`REDIS_CLUSTER_NODES`, its seed nodes) or the
 * master that Redis Sentinel names (`REDIS_SENTINELS`). Every Redis connection of the app (cache, persisted
 * documents, pub/sub, rate limits) is made here.
 */
export type RedisTarget =
  | { url: string; clusterNodes?: undefined; sentinel?: undefined }
  | { clusterNodes: readonly string[]; url?: undefined; sentinel?: undefined }
  | { sentinel: RedisSentinelTarget; url?: undefined; clusterNodes?: undefined };

/** The target the options name (`redisUrl`, `redisClusterNodes` or `redisSentinel`), or undefined for none (in-process stores). */
export function redisTarget(opts: {
  redisUrl?: string;
  redisClusterNodes?: readonly string[];
  redisSentinel?: RedisSentinelTarget;
}): RedisTarget | undefined {
  if (opts.redisSentinel) return { sentinel: opts.redisSentinel };
  if (opts.redisClusterNodes?.length) return { clusterNodes: opts.redisClusterNodes };
  return opts.redisUrl ? { url: opts.redisUrl } : undefined;
}

export interface RedisClientOptions {
  target: RedisTarget;
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

type SingleClient = RedisClientType;
type ClusterClient = RedisClusterType;

/**
 * The commands of a Redis connection. On a cluster the keyed commands have the
 * same signatures (node-redis routes each by its first key's slot), so callers
 * use one type; what differs (readiness, PING, SCAN, multi-key commands) goes
 * through the functions below, which look at the connection's kind.
 */
export type RedisClient = SingleClient;

/** The cluster behind a {@link RedisClient} made by {@link createRedisClient}, if it is one. */
const clusters = new WeakMap<object, ClusterClient>();
/**
 * A cluster's (un)subscriptions, in order, each after the first connection: unlike a single
 * client, which queues them while offline, node-redis's cluster fails them before it knows a node.
 */
const subscriptionQueues = new WeakMap<object, SubscriptionQueue>();

interface SubscriptionQueue {
  last: Promise<unknown>;
  closed: boolean;
}

/** How often the topology is read again while a node does not answer (a failover under way). */
const TOPOLOGY_RETRY_MS = 500;
/** How often it is read again anyway (slots moved by an operator, a node added). */
const TOPOLOGY_REFRESH_MS = 30_000;

/**
 * A node-redis client that is safe to create while Redis is down: it has an
 * `error` listener (no process crash), connects in the background (never
 * throws here) and reconnects forever with backoff. Connection errors are
 * logged at debug level; callers observe availability via events / `isReady`.
 *
 * On a cluster the client also follows failovers, which node-redis alone does
 * not: it reads the topology only after a MOVED or ASK reply, and a master
 * that died never sends one, so the slots it served would stay pointed at it
 * (node-redis issue #2806). Here, while any node is unreachable, the topology
 * is read again every {@link TOPOLOGY_RETRY_MS}: once a replica is promoted,
 * its slots move to it, the dead node's connection is dropped, and pub/sub
 * subscriptions on it are made again on a live node. The cluster emits
 * `error` on a node's error and `ready` once every master answers again,
 * as a single client does.
 */
export function createRedisClient(opts: RedisClientOptions): RedisClient {
  const maxDelay = opts.maxReconnectDelayMs ?? 2000;
  const socket = {
    connectTimeout: opts.connectTimeoutMs ?? 2000,
    reconnectStrategy: (retries: number) => reconnectDelay(retries, maxDelay),
  };
  const log = opts.logger.child({ component: opts.name });
  if (opts.target.clusterNodes) return createClusterClient(opts.target.clusterNodes, opts, socket, maxDelay, log);
  if (opts.target.sentinel) return createSentinelClient(opts.target.sentinel, opts, socket, log);
  const client = nodeRedis().createClient({ url: opts.target.url, name: opts.name, disableOfflineQueue: opts.disableOfflineQueue, socket });
  client.on('error', (err: unknown) => log.debug({ err }, 'redis connection error'));
  client.connect().catch((err: unknown) => log.debug({ err }, 'redis connect gave up'));
  return client;
}

function createClusterClient(
  nodes: readonly string[],
  opts: RedisClientOptions,
  socket: { connectTimeout: number; reconnectStrategy: (retries: number) => number },
  maxDelay: number,
  log: Logger,
): RedisClient {
  const cluster = nodeRedis().createCluster({
    rootNodes: nodes.map((url) => ({ url })),
    defaults: { name: opts.name, disableOfflineQueue: opts.disableOfflineQueue, socket },
  });
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let everyone: NodeJS.Timeout | undefined;
  let wasReady = false;
  // The `ready` a single client emits: every master answers (first connect, or a failover healed).
  const checkReady = () => {
    const ready = clusterReady(cluster);
    if (ready && !wasReady) cluster.emit('ready');
    wasReady = ready;
    return ready;
  };
  const refresh = async () => {
    retry = undefined;
    if (closed) return;
    if (!cluster.isOpen) {
      // The first connection never succeeded (no seed node answered): connect again.
      await cluster.connect().catch((err: unknown) => log.debug({ err }, 'redis cluster: no seed node answers'));
    } else {
      const live = cluster.masters.find((m) => m.client?.isReady)?.client;
      // node-redis reads CLUSTER SLOTS from the node given (its options), else from the seed nodes.
      const from = (live ?? { options: { url: nodes[0] } }) as unknown as Parameters<ClusterClient['_slots']['rediscover']>[0];
      await cluster._slots.rediscover(from).catch((err: unknown) => log.debug({ err }, 'redis cluster: topology not read'));
    }
    // Closed meanwhile: the reading may have connected new nodes after `destroy`; they go too.
    if (closed) return void cluster.destroy();
    if (!checkReady()) schedule();
  };
  const schedule = () => {
    if (closed || retry) return;
    retry = setTimeout(() => void refresh(), Math.min(TOPOLOGY_RETRY_MS, maxDelay));
    retry.unref();
  };
  const nodeDown = (err: unknown, node?: { host?: string; port?: number }) => {
    // A node the topology already dropped (a dead master after its replica's promotion) is no outage.
    if (node && !cluster.nodeByAddress.has(`${node.host}:${node.port}`)) return;
    log.debug({ err }, 'redis cluster node error');
    wasReady = false;
    if (!closed) cluster.emit('error', err);
    schedule();
  };
  // `error` has a listener before anything can emit it (an EventEmitter without one throws).
  cluster.on('error', (err: unknown) => log.debug({ err }, 'redis cluster error'));
  cluster.on('node-error', (err: unknown, node?: { host?: string; port?: number }) => nodeDown(err, node));
  cluster.on('node-reconnecting', (node?: { host?: string; port?: number }) =>
    nodeDown(new Error('redis cluster node reconnecting'), node),
  );
  cluster.on('node-ready', () => checkReady());
  cluster.on('disconnect', () => {
    closed = true;
    queue.closed = true;
    if (retry) clearTimeout(retry);
    if (everyone) clearInterval(everyone);
  });
  everyone = setInterval(() => void refresh(), TOPOLOGY_REFRESH_MS);
  everyone.unref();
  const queue: SubscriptionQueue = { last: Promise.resolve(), closed: false };
  let connected!: () => void;
  const connection = new Promise<void>((resolve) => (connected = resolve));
  cluster.on('connect', () => connected());
  cluster
    .connect()
    .then(() => (closed ? cluster.destroy() : checkReady() || schedule()))
    .catch((err: unknown) => {
      log.debug({ err }, 'redis cluster connect gave up');
      schedule();
    });
  const commands = cluster as unknown as RedisClient;
  clusters.set(commands, cluster);
  queue.last = connection;
  subscriptionQueues.set(commands, queue);
  return commands;
}

function clusterReady(cluster: ClusterClient): boolean {
  return cluster.isOpen && cluster.masters.length > 0 && cluster.masters.every((m) => m.client?.isReady === true);
}

/** How often the sentinels are asked for the master, at most, while its connection is down (a failover under way). */
const SENTINEL_RETRY_MS = 500;
/** How often they are asked anyway (a master switched while this connection stayed up). */
const SENTINEL_REFRESH_MS = 10_000;
/** What closes a client that follows a sentinel-watched master (its timers, its connection). */
const sentinelFollowers = new WeakMap<object, { close(): void }>();
const EMITTER_METHODS = new Set(['on', 'once', 'off', 'addListener', 'removeListener', 'removeAllListeners', 'emit', 'listenerCount']);

/**
 * A client of the master that Redis Sentinel names, following it through failovers: the sentinels are asked
 * for the master's address at start, every {@link SENTINEL_RETRY_MS} at most while its connection is down and
 * every {@link SENTINEL_REFRESH_MS} anyway; when the address changes, a new single client connects to it, takes
 * over the old one's pub/sub subscriptions, and the old one is destroyed (its pending commands fail: misses).
 *
 * Not node-redis's `createSentinel`: its commands loop on the sentinels while the master is down instead of
 * failing at once (the cache must miss fast), its first connect gives up after a few tries, and it has no
 * `ready` event, no SCAN iterator and no offline queue. Here the app gets the single client it already knows,
 * through a proxy that sends each call to the current master's client and keeps one set of event listeners.
 */
function createSentinelClient(
  target: RedisSentinelTarget,
  opts: RedisClientOptions,
  socket: { connectTimeout: number; reconnectStrategy: (retries: number) => number },
  log: Logger,
): RedisClient {
  const events = new EventEmitter();
  // `error` has a listener before anything can emit it (an EventEmitter without one throws).
  events.on('error', (err: unknown) => log.debug({ err }, 'redis sentinel: master connection error'));
  const tls = target.sentinels.some((url) => url.startsWith('rediss:'));
  const nodeOptions = {
    name: opts.name,
    disableOfflineQueue: opts.disableOfflineQueue,
    username: target.username,
    password: target.password,
  };
  // Until a sentinel names the master: a client never opened (its commands fail at once, as an offline one's do).
  let current = nodeRedis().createClient(nodeOptions) as SingleClient;
  let address: string | undefined;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let attempts = 0;
  let asking = false;
  let preferred = 0;
  let named!: () => void;
  const firstNamed = new Promise<void>((resolve) => (named = resolve));

  /** The master's address from the first sentinel that answers (the one that answered last time first). */
  const ask = async (): Promise<{ host: string; port: number } | undefined> => {
    for (let i = 0; i < target.sentinels.length; i++) {
      const at = (preferred + i) % target.sentinels.length;
      const sentinel = nodeRedis().createClient({
        url: target.sentinels[at],
        socket: { connectTimeout: socket.connectTimeout, reconnectStrategy: false },
      });
      sentinel.on('error', () => undefined);
      try {
        await sentinel.connect();
        const reply = (await sentinel.sendCommand(['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', target.masterName])) as string[] | null;
        if (!reply) continue; // this sentinel does not monitor that name
        preferred = at;
        return { host: reply[0], port: Number(reply[1]) };
      } catch (err) {
        // The index, not the URL: a URL may carry the sentinel's password.
        log.debug({ err, sentinel: at + 1 }, 'redis sentinel: no answer');
      } finally {
        if (sentinel.isOpen) sentinel.destroy();
      }
    }
    return undefined;
  };

  const follow = (host: string, port: number) => {
    const previous = current;
    const next = nodeRedis().createClient({
      ...nodeOptions,
      socket: { ...socket, host, port, ...(tls ? { tls: true as const } : {}) },
    }) as SingleClient;
    next.on('error', (err: unknown) => {
      if (next !== current) return;
      events.emit('error', err);
      schedule();
    });
    next.on('ready', () => {
      attempts = 0;
      if (next === current) events.emit('ready');
    });
    current = next;
    address = `${host}:${port}`;
    log.info({ master: address }, 'redis sentinel: following the master');
    // The subscriptions move to the new master's connection (queued until it is up).
    const channels = previous.getPubSubListeners('CHANNELS' as Parameters<SingleClient['getPubSubListeners']>[0]);
    if (channels.size > 0) {
      next
        .extendPubSubListeners('CHANNELS' as Parameters<SingleClient['getPubSubListeners']>[0], channels)
        .catch((err: unknown) => log.debug({ err }, 'redis sentinel: subscriptions not moved'));
    }
    if (previous.isOpen) previous.destroy();
    next.connect().catch((err: unknown) => log.debug({ err }, 'redis sentinel: connect gave up'));
    named();
  };

  const refresh = async () => {
    retry = undefined;
    if (closed || asking) return;
    asking = true;
    try {
      const master = await ask();
      if (closed) return;
      if (!master) events.emit('error', new Error(`redis sentinel: no sentinel names master ${target.masterName}`));
      else if (`${master.host}:${master.port}` !== address) follow(master.host, master.port);
    } finally {
      asking = false;
    }
    if (!current.isReady) schedule();
  };
  const schedule = () => {
    if (closed || retry) return;
    retry = setTimeout(() => void refresh(), reconnectDelay(attempts++, SENTINEL_RETRY_MS));
    retry.unref();
  };
  const every = setInterval(() => void refresh(), SENTINEL_REFRESH_MS);
  every.unref();
  void refresh();

  const queue: SubscriptionQueue = { last: firstNamed, closed: false };
  const client = facade(events, () => current);
  subscriptionQueues.set(client, queue);
  sentinelFollowers.set(client, {
    close() {
      closed = true;
      queue.closed = true;
      named(); // subscriptions queued behind the first answer run now, and fail (closed) instead of waiting forever
      if (retry) clearTimeout(retry);
      clearInterval(every);
      if (current.isOpen) current.destroy();
    },
  });
  return client;
}

/**
 * A {@link RedisClient} whose calls go to `current()` (the client of the moment) and whose event listeners
 * live on `events`. `withTypeMapping` / `withCommandOptions` give facades too, so a view made once keeps
 * following the current client.
 */
function facade(events: EventEmitter, current: () => object): RedisClient {
  const methods = new WeakMap<object, Map<PropertyKey, unknown>>();
  return new Proxy(Object.create(null), {
    get(_target, prop) {
      if (typeof prop === 'string' && EMITTER_METHODS.has(prop)) {
        return (events[prop as keyof EventEmitter] as (...args: unknown[]) => unknown).bind(events);
      }
      if (prop === 'withTypeMapping' || prop === 'withCommandOptions') {
        return (arg: unknown) => {
          const views = new WeakMap<object, object>();
          return facade(events, () => {
            const client = current() as Record<string, (arg: unknown) => object>;
            let view = views.get(client);
            if (!view) views.set(client, (view = client[prop](arg)));
            return view;
          });
        };
      }
      const client = current();
      const value: unknown = Reflect.get(client, prop);
      if (typeof value !== 'function') return value;
      let bound = methods.get(client);
      if (!bound) methods.set(client, (bound = new Map()));
      let method = bound.get(prop);
      if (!method) bound.set(prop, (method = value.bind(client)));
      return method;
    },
  }) as RedisClient;
}

/** The cluster behind `client`, or undefined for a single server. */
export function clusterOf(client: RedisClient): ClusterClient | undefined {
  return clusters.get(client);
}

/** Connected and answering: a single server's connection is ready; on a cluster, every master's. */
export function isReady(client: RedisClient): boolean {
  const cluster = clusterOf(client);
  return cluster ? clusterReady(cluster) : client.isReady;
}

/** PING: the server, or every master of a cluster (a probe passes only once every slot has a live master). */
export async function pingAll(client: RedisClient): Promise<void> {
  const cluster = clusterOf(client);
  if (!cluster) {
    await client.ping();
    return;
  }
  if (!cluster.isOpen || cluster.masters.length === 0) throw new Error('redis cluster not connected');
  await Promise.all(cluster.masters.map(async (master) => (await cluster.nodeClient(master)).ping()));
}

/**
 * SCAN MATCH over the whole keyspace: the server's, or every master's of a
 * cluster (each holds its own slots), in batches of about `count` keys.
 */
export async function* scanKeys(client: RedisClient, match: string, count: number): AsyncGenerator<string[]> {
  const cluster = clusterOf(client);
  if (!cluster) {
    yield* client.scanIterator({ MATCH: match, COUNT: count });
    return;
  }
  for (const master of [...cluster.masters]) {
    const node = await cluster.nodeClient(master);
    yield* node.scanIterator({ MATCH: match, COUNT: count });
  }
}

/**
 * UNLINK of keys that may live in different slots: one command on a single
 * server; on a cluster one per key (a multi-key command must stay in one
 * slot), sent together and pipelined per node by node-redis.
 */
export async function unlinkKeys(client: RedisClient, keys: string[]): Promise<void> {
  if (keys.length === 0) return;
  if (!clusterOf(client)) {
    await client.unlink(keys);
    return;
  }
  await Promise.all(keys.map((key) => client.unlink(key)));
}

type Listener = (message: string, channel: string) => void;

/**
 * SUBSCRIBE `channel`, delivering to `listener`. A single client queues it while
 * disconnected and subscribes again after a reconnect; a cluster subscribes once
 * connected (on one node: PUBLISH reaches every node's subscribers) and again on a
 * live node when that one is dropped from the topology. Resolves when subscribed.
 */
export function subscribeChannel(client: RedisClient, channel: string, listener: Listener): Promise<void> {
  const queue = subscriptionQueues.get(client);
  if (!queue) return client.subscribe(channel, listener);
  return inOrder(queue, async () => {
    // A node that died before the topology dropped it refuses the connection: try again (as a client's offline queue would).
    for (let attempt = 0; ; attempt++) {
      try {
        return await client.subscribe(channel, listener);
      } catch (err) {
        if (queue.closed) throw err;
        await new Promise((r) => setTimeout(r, reconnectDelay(attempt, TOPOLOGY_RETRY_MS)));
      }
    }
  });
}

/** UNSUBSCRIBE `listener` from `channel` (after the subscriptions asked for before it). */
export function unsubscribeChannel(client: RedisClient, channel: string, listener: Listener): Promise<void> {
  const queue = subscriptionQueues.get(client);
  if (!queue) return client.unsubscribe(channel, listener);
  return inOrder(queue, () => client.unsubscribe(channel, listener));
}

function inOrder(queue: { last: Promise<unknown> }, op: () => Promise<void>): Promise<void> {
  const next = queue.last.then(op);
  queue.last = next.catch(() => undefined);
  return next;
}

/**
 * Closes the connection at once (pending commands reject, which the cache
 * treats as misses). `destroy` rather than `close`: `close` waits for replies
 * forever when Redis hangs. Idempotent.
 */
export function closeRedisClient(client: RedisClient): void {
  const follower = sentinelFollowers.get(client);
  if (follower) {
    follower.close();
    return;
  }
  const cluster = clusterOf(client);
  if (cluster) {
    cluster.emit('disconnect');
    if (cluster.isOpen) cluster.destroy();
    return;
  }
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
    if (isReady(client)) return resolve();
    const done = () => {
      client.off('ready', done);
      client.off('error', done);
      resolve();
    };
    client.on('ready', done);
    client.on('error', done);
  });
}
