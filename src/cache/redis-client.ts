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

/**
 * Where Redis is: one server (`REDIS_URL`) or a Redis Cluster (`REDIS_CLUSTER_NODES`, its seed nodes).
 * Every Redis connection of the app (cache, persisted documents, pub/sub, rate limits) is made here.
 */
export type RedisTarget = { url: string; clusterNodes?: undefined } | { clusterNodes: readonly string[]; url?: undefined };

/** The target the options name (`redisUrl` or `redisClusterNodes`), or undefined for none (in-process stores). */
export function redisTarget(opts: { redisUrl?: string; redisClusterNodes?: readonly string[] }): RedisTarget | undefined {
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
