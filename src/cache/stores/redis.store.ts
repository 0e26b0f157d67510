import type * as KeyvRedisModule from '@keyv/redis';
import type * as NodeRedis from '@redis/client';
import { createHash } from 'node:crypto';
import { Keyv } from 'keyv';
import { escapeGlob } from '../namespaces';
import { clusterOf, firstAttempt, isErrorReply, isReady, pingAll, type RedisClient, scanKeys, unlinkKeys } from '../redis-client';
import { deserializeEnvelope, serializeEnvelope } from './serialization';
import type { Store } from './store';
import type { Allowance } from '../cache.port';
import { SpanKind, withSpan } from '../../observability/tracing';

/** A span around one cache command (its name only: keys and values stay out of traces). */
function traced<T>(command: string, work: () => Promise<T>): Promise<T> {
  return withSpan(
    `redis ${command}`,
    { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'redis', 'db.operation.name': command } },
    work,
  );
}

/** Batch size for the admin namespace flush (SCAN COUNT and UNLINK batch). */
const FLUSH_BATCH = 500;

/**
 * The counter and the entry keyed by it, in one round trip. The entry's key is
 * computed from the counter inside Redis, so it cannot be declared in KEYS; on
 * a Redis Cluster a script may still touch an undeclared key of the slot of its
 * declared ones, so the two keys share a hash tag (`read-cache/keys.ts`: the
 * scope in braces) and always live in one slot.
 *
 * KEYS[1] the counter; ARGV: entry prefix, entry suffix, the counter and tag
 * the caller holds ('' for none). Answers { counter, 1 } when the held bytes
 * are still the entry (same counter, same leading tag), else { counter, entry or nil }.
 */
const GET_VERSIONED = script(`local c = redis.call('GET', KEYS[1]) or '0'
local key = ARGV[1] .. c .. ARGV[2]
if ARGV[3] == c and redis.call('GETRANGE', key, 0, #ARGV[4] - 1) == ARGV[4] then return { c, 1 } end
return { c, redis.call('GET', key) }`);

/**
 * {@link GET_VERSIONED} after one point of a fixed-window allowance is spent, in one round trip.
 * KEYS[1] the counter, KEYS[2] the allowance (`rate-limit.ts`'s key); ARGV[1..4] as GET_VERSIONED's, ARGV[5] the
 * points per window, ARGV[6] the window in seconds. The allowance is rate-limiter-flexible's own steps (SET NX EX,
 * INCRBY, PTTL, EXPIRE when it has none) and a point over the limit is given back at once (DECRBY), as
 * `FlexibleLimiter.consume` does: answers { -1 } (refused, the entry not read), else GET_VERSIONED's answer.
 */
const GET_VERSIONED_SPENDING = script(`redis.call('SET', KEYS[2], 0, 'EX', ARGV[6], 'NX')
local spent = redis.call('INCRBY', KEYS[2], 1)
if redis.call('PTTL', KEYS[2]) == -1 then redis.call('EXPIRE', KEYS[2], ARGV[6]) end
if spent > tonumber(ARGV[5]) then
  redis.call('DECRBY', KEYS[2], 1)
  return { -1 }
end
${GET_VERSIONED.source}`);

/** KEYS[1] the number; ARGV: the value, the TTL in ms. Sets it unless it is already at least the value; the TTL restarts. */
const RAISE = script(`local held = tonumber(redis.call('GET', KEYS[1]) or '')
if held == nil or held < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`);

interface Script {
  source: string;
  sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/** EVALSHA: a script is sent once per Redis (EVAL loads it again after a restart or SCRIPT FLUSH). */
function evalScript(client: RedisClient, { source, sha }: Script, options: { keys: string[]; arguments: Array<string | Buffer> }) {
  return client.evalSha(sha, options).catch((error: unknown) => {
    if (isErrorReply(error) && error.message.startsWith('NOSCRIPT')) return client.eval(source, options);
    throw error;
  });
}

/** The reply of GET_VERSIONED (also the tail of GET_VERSIONED_SPENDING's). */
function versionedReply(reply: [Buffer, Buffer | number | null]): { counter: number; raw: Buffer | undefined; held: boolean } {
  const counter = Number(reply[0].toString('latin1'));
  if (typeof reply[1] === 'number') return { counter, raw: undefined, held: reply[1] === 1 };
  return { counter, raw: reply[1] ?? undefined, held: false };
}

/** After a wait for a replica that timed out, how long bumps skip the wait (journaled at once). */
const REPLICA_RETRY_MS = 1_000;

/** {@link RedisStore.incr}'s wait for a replica (`Config.redisReplicaAckMs`; 0 = none). */
export interface ReplicaAcks {
  ackMs: number;
  /** The connection bumps and their WAITs go to (WAIT blocks it): required when `ackMs` > 0. */
  connection?: RedisClient;
  /** A bump that no replica acknowledged within `ackMs`: replay it after a failover. */
  unacknowledged?: (fullKey: string) => void;
}

/**
 * Redis store: Keyv + @keyv/redis over a client we own (created by
 * `createRedisClient`: error listener, background connect, endless backoff,
 * no offline queue). @keyv/redis is told to throw (`throwOnErrors`) and never
 * to connect by itself (`throwOnConnectError: false`; the client is already
 * open), so every failure reaches the resilience layer.
 */
export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  readonly firstAttempt: Promise<void>;
  private readonly keyv: Keyv;
  /** The same connection, answering bulk strings as Buffers: response bytes go to the socket without a decode/encode. */
  private readonly bytes: RedisClient;
  /** Until then, bumps do not wait for a replica (the last wait timed out). */
  private replicasQuietUntil = 0;

  constructor(
    private readonly client: RedisClient,
    private readonly replicas: ReplicaAcks = { ackMs: 0 },
  ) {
    // Required, not imported: they load node-redis, which a process without Redis never needs (`redis-client.ts`).
    const { RESP_TYPES } = require('@redis/client') as typeof NodeRedis;
    const { default: KeyvRedis } = require('@keyv/redis') as typeof KeyvRedisModule;
    this.bytes = client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }) as unknown as RedisClient;
    const adapter = new KeyvRedis(client, { throwOnConnectError: false, throwOnErrors: true, useUnlink: true });
    this.keyv = new Keyv(adapter, {
      namespace: undefined,
      useKeyPrefix: false,
      throwOnErrors: true,
      serialize: serializeEnvelope,
      deserialize: deserializeEnvelope,
    });
    this.firstAttempt = firstAttempt(client);
  }

  async get(fullKey: string): Promise<unknown> {
    this.assertOpen();
    return traced('GET', () => this.keyv.get(fullKey));
  }

  async set(fullKey: string, value: unknown, ttlMs?: number): Promise<void> {
    this.assertOpen();
    await traced('SET', () => this.keyv.set(fullKey, value, ttlMs === undefined ? undefined : Math.ceil(ttlMs)));
  }

  async delete(fullKey: string): Promise<void> {
    this.assertOpen();
    await traced('UNLINK', () => this.keyv.delete(fullKey));
  }

  async getVersioned(
    counterKey: string,
    entryPrefix: string,
    entrySuffix: string,
    held?: { counter: number; tag: Buffer },
  ): Promise<{ counter: number; raw: Buffer | undefined; held: boolean }> {
    this.assertOpen();
    const options = { keys: [counterKey], arguments: [entryPrefix, entrySuffix, held ? String(held.counter) : '', held?.tag ?? ''] };
    const reply = await traced('EVALSHA', () => evalScript(this.bytes, GET_VERSIONED, options));
    return versionedReply(reply as unknown as [Buffer, Buffer | number | null]);
  }

  async getVersionedSpending(
    counterKey: string,
    entryPrefix: string,
    entrySuffix: string,
    held: { counter: number; tag: Buffer } | undefined,
    allowance: Allowance,
  ): Promise<{ counter: number; raw: Buffer | undefined; held: boolean } | 'refused'> {
    this.assertOpen();
    const options = {
      keys: [counterKey, allowance.key],
      arguments: [
        entryPrefix,
        entrySuffix,
        held ? String(held.counter) : '',
        held?.tag ?? '',
        String(allowance.points),
        String(allowance.windowSeconds),
      ],
    };
    const reply = (await evalScript(this.bytes, GET_VERSIONED_SPENDING, options)) as unknown as [Buffer | number, Buffer | number | null];
    if (typeof reply[0] === 'number') return 'refused';
    return versionedReply(reply as [Buffer, Buffer | number | null]);
  }

  async setRaw(fullKey: string, raw: Buffer, ttlMs: number): Promise<void> {
    this.assertOpen();
    await traced('SET', () => this.client.set(fullKey, raw, { PX: Math.ceil(ttlMs) }));
  }

  async incr(fullKey: string): Promise<number> {
    const bumps = this.replicas.connection;
    if (this.replicas.ackMs <= 0 || !bumps) return traced('INCR', () => this.client.incr(fullKey));
    const value = await traced('INCR', () => bumps.incr(fullKey));
    await this.awaitReplica(bumps, fullKey);
    return value;
  }

  /**
   * `WAIT 1 <ackMs>` on the connection that sent the INCR (on a cluster: to the key's master), so the bump is on a
   * replica before the write is acknowledged: a failover then promotes a replica that holds it (Sentinel and the
   * cluster both promote the most advanced replica). A bump that no replica acknowledged in time goes to
   * `unacknowledged` (the invalidation journal), which replays it after the failover before any read is served.
   * After such a bump, the next ones skip the wait for {@link REPLICA_RETRY_MS} (journaled at once): while the
   * replicas are down, one bump per interval pays `ackMs`, not every bump.
   */
  private async awaitReplica(connection: RedisClient, fullKey: string): Promise<void> {
    if (Date.now() < this.replicasQuietUntil) return this.replicas.unacknowledged?.(fullKey);
    const args = ['WAIT', '1', String(this.replicas.ackMs)];
    const cluster = clusterOf(connection);
    const acks = await traced('WAIT', () => (cluster ? cluster.sendCommand(fullKey, false, args) : connection.sendCommand(args)));
    if (Number(acks) >= 1) return;
    this.replicasQuietUntil = Date.now() + REPLICA_RETRY_MS;
    this.replicas.unacknowledged?.(fullKey);
  }

  async raise(fullKey: string, value: number, ttlMs: number): Promise<void> {
    this.assertOpen();
    const options = { keys: [fullKey], arguments: [String(value), String(Math.max(1, Math.ceil(ttlMs)))] };
    await evalScript(this.client, RAISE, options);
  }

  async getNumber(fullKey: string): Promise<number | null> {
    this.assertOpen();
    const raw = await this.client.get(fullKey);
    if (raw === null || raw === undefined) return null;
    const value = Number(raw);
    return Number.isFinite(value) ? value : null;
  }

  /** SCAN MATCH + UNLINK in batches (every master of a cluster): O(keyspace), for admin flushes only. */
  async flushNamespace(nsPrefix: string): Promise<void> {
    await this.client.unlink(nsPrefix);
    const match = `${escapeGlob(nsPrefix)}:*`;
    for await (const keys of scanKeys(this.client, match, FLUSH_BATCH)) await unlinkKeys(this.client, keys);
  }

  async ping(): Promise<void> {
    await pingAll(this.client);
  }

  connected(): boolean {
    return isReady(this.client);
  }

  async close(): Promise<void> {
    // The client is owned by createCache, which closes it.
  }

  /**
   * @keyv/redis reconnects a closed client on use; after close() we must never
   * reach it (checked synchronously, before Keyv calls into the adapter).
   */
  private assertOpen(): void {
    if (!this.client.isOpen) throw new Error('redis client is closed');
  }
}
