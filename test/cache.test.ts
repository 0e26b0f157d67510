/**
 * Cache infrastructure against real stores: the in-memory store always, the
 * shared Redis (REDIS_URL) when it answers, and private redis-server processes
 * for outage scenarios (killed / paused / absent). Every test has its own prefix.
 */
import { randomUUID } from 'node:crypto';
import { createClient } from '@redis/client';
import { Registry } from 'prom-client';
import { createApqCache } from '../src/cache/apq';
import type { CachePort } from '../src/cache/cache.port';
import { createCache, type CreateCacheOptions } from '../src/cache/create-cache';
import { registerCacheMetrics } from '../src/cache/metrics';
import { singleFlight } from '../src/cache/single-flight';
import { RESPONSE_NAMESPACE, readCacheKeys } from '../src/read-cache/keys';
import { LruMap } from '../src/lru-map';
import { createPubSub } from '../src/pubsub/create-pubsub';
import type { PubSub } from '../src/pubsub/pubsub.port';
import { createLogger, type Logger } from '../src/observability/logger';
import { describeRedis, describeRedisServer, freePort, redisUrlForTests, startRedisServer, type PrivateRedis } from './helpers/redis';

const silent = createLogger('silent');
const newPrefix = () => `test:${randomUUID()}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A logger whose lines can be inspected. */
function capturingLogger(): { logger: Logger; lines: () => Array<{ msg: string; level: number }> } {
  const out: string[] = [];
  const logger = createLogger('debug', { write: (s: string) => void out.push(s) });
  return { logger, lines: () => out.map((l) => JSON.parse(l)) };
}

/** Polls `check` until it returns true; for waiting on external processes only. */
/**
 * "Fails fast" bounds: a call or a batch of calls that must not wait on Redis. 3 s is ten times the
 * 300 ms operation timeout these tests use and far below what the calls would take if each paid it,
 * so a loaded machine (four workers on two cores, another process busy) slows them without failing them.
 */
const BOUNDED_MS = 3_000;

async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(50);
  }
  return Date.now() - start;
}

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const open: Array<{ close(): Promise<void> }> = [];
function track<T extends { close(): Promise<void> }>(x: T): T {
  open.push(x);
  return x;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((x) => x.close()));
});

function cacheOptions(over: Partial<CreateCacheOptions> = {}): CreateCacheOptions {
  return { prefix: newPrefix(), breakerCooldownMs: 200, operationTimeoutMs: 300, logger: silent, ...over };
}

/** Behaviour every store must have. */
function storeContract(make: (over?: Partial<CreateCacheOptions>) => CachePort) {
  it('raise() only ever raises a number (commit marks); getNumber() tells absent (null) from a value', async () => {
    const cache = make();
    expect(await cache.getNumber('gen:lsn:u1')).toBeNull();
    expect(await cache.raise('gen:lsn:u1', 2 ** 40 + 7, 60_000)).toBe(true);
    expect(await cache.raise('gen:lsn:u1', 5, 60_000)).toBe(true);
    expect(await cache.getNumber('gen:lsn:u1')).toBe(2 ** 40 + 7);
    await Promise.all([9, 3, 12, 1].map((n) => cache.raise('gen:lsn:u2', n, 60_000)));
    expect(await cache.getNumber('gen:lsn:u2')).toBe(12);
    await cache.delete('gen:lsn:u2');
    expect(await cache.getNumber('gen:lsn:u2')).toBeNull();
  });

  it('get / set / delete round-trip JSON; undefined is a miss, null is cached', async () => {
    const cache = make();
    const at = new Date('2024-05-01T10:00:00.000Z');
    expect(await cache.get('kv:u1:a')).toBeUndefined();
    await cache.set('kv:u1:a', { n: 1, at, nested: [1, 'x'], gone: undefined });
    expect(await cache.get('kv:u1:a')).toEqual({ n: 1, at: at.toISOString(), nested: [1, 'x'] });
    await cache.set('kv:u1:null', null);
    expect(await cache.get('kv:u1:null')).toBeNull();
    await cache.set('kv:u1:undef', undefined);
    expect(await cache.get('kv:u1:undef')).toBeUndefined();
    await cache.delete('kv:u1:a');
    expect(await cache.get('kv:u1:a')).toBeUndefined();
    expect(cache.stats().kv).toEqual({ hits: 2, misses: 3 });
  });

  it('incr is an atomic counter readable with get', async () => {
    const cache = make();
    expect(await cache.incr('counter:u1')).toBe(1);
    expect(await cache.incr('counter:u1')).toBe(2);
    const many = await Promise.all(Array.from({ length: 20 }, () => cache.incr('counter:u2')));
    expect([...many].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(await cache.get('counter:u1')).toBe(2);
    await cache.delete('counter:u1');
    expect(await cache.incr('counter:u1')).toBe(1);
  });

  it('entries expire after their TTL; no TTL means no expiry', async () => {
    const cache = make();
    // Kept while its TTL runs (a minute: a busy machine cannot outrun it), gone after a short one (awaited, bounded).
    await cache.set('kv:u1:long', 'v', 60_000);
    await cache.set('kv:u1:short', 'v', 50);
    await cache.set('kv:u1:forever', 'v');
    await cache.set('kv:u1:zero', 'v', 0);
    expect(await cache.get('kv:u1:long')).toBe('v');
    expect(await cache.get('kv:u1:zero')).toBeUndefined();
    await eventually(async () => (await cache.get('kv:u1:short')) === undefined, 30_000, 'the 50 ms entry to expire');
    expect(await cache.get('kv:u1:long')).toBe('v');
    expect(await cache.get('kv:u1:forever')).toBe('v');
  });

  it('wrap: 50 concurrent cold wraps run load once; later calls hit', async () => {
    const cache = make();
    const gate = deferred<void>();
    const load = jest.fn(async () => {
      await gate.promise;
      return { answer: 42, at: new Date(0) };
    });
    const pending = Array.from({ length: 50 }, () => cache.wrap('kv:u1:q', 60_000, load));
    gate.resolve();
    const results = await Promise.all(pending);
    expect(load).toHaveBeenCalledTimes(1);
    // Miss and hit have the same (JSON) shape.
    for (const r of results) expect(r).toEqual({ answer: 42, at: new Date(0).toISOString() });
    expect(await cache.wrap('kv:u1:q', 60_000, load)).toEqual(results[0]);
    expect(load).toHaveBeenCalledTimes(1);
  });

  it('wrap: a failing load rejects every waiter and caches nothing', async () => {
    const cache = make();
    const load = jest.fn(async () => {
      await sleep(10);
      throw new Error('boom');
    });
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => cache.wrap('kv:u1:f', 60_000, load)));
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    expect(load).toHaveBeenCalledTimes(1);
    expect(await cache.wrap('kv:u1:f', 60_000, async () => 'ok')).toBe('ok');
  });

  it('wrapSwr: fresh is served; stale is served at once and refreshed once in the background', async () => {
    const cache = make();
    // Fresh for 1 s: the second call comes well within it, even on a busy machine.
    const opts = { freshMs: 1_000, maxAgeMs: 60_000 };
    expect(await cache.wrapSwr('models:registry', opts, async () => ['v1'])).toEqual(['v1']);
    const fresh = jest.fn(async () => ['never']);
    expect(await cache.wrapSwr('models:registry', opts, fresh)).toEqual(['v1']);
    expect(fresh).not.toHaveBeenCalled();

    await sleep(1_100); // time itself is what this test is about: past the freshness
    const gate = deferred<void>();
    const refresh = jest.fn(async () => {
      await gate.promise;
      return ['v2'];
    });
    const stale = await Promise.all(Array.from({ length: 10 }, () => cache.wrapSwr('models:registry', opts, refresh)));
    expect(stale).toEqual(Array.from({ length: 10 }, () => ['v1'])); // returned while the refresh is still blocked
    expect(await cache.wrapSwr('models:registry', opts, refresh)).toEqual(['v1']);
    expect(refresh).toHaveBeenCalledTimes(1);
    gate.resolve();
    // Polled with a long freshness, so a slow machine cannot make v2 stale (and start a second refresh) meanwhile.
    const pollOpts = { freshMs: 60_000, maxAgeMs: 60_000 };
    await eventually(async () => JSON.stringify(await cache.wrapSwr('models:registry', pollOpts, refresh)) === '["v2"]', 30_000, 'refresh');
    expect(refresh).toHaveBeenCalledTimes(1);
  });

  it('wrapSwr: a failing background refresh is logged, not thrown, and stale stays served', async () => {
    const { logger, lines } = capturingLogger();
    // A read slower than the 300 ms of the other tests is a miss (fail open), which would call the failing loader
    // in the foreground on a busy machine: this test is about the stale entry, so the store may take its time.
    const cache = make({ logger, operationTimeoutMs: 10_000 });
    const opts = { freshMs: 50, maxAgeMs: 60_000 };
    await cache.wrapSwr('models:r', opts, async () => 'v1');
    await sleep(100);
    const failing = jest.fn(async () => {
      throw new Error('provider down');
    });
    expect(await cache.wrapSwr('models:r', opts, failing)).toBe('v1');
    await eventually(async () => lines().some((l) => l.msg.includes('background refresh failed')), 30_000, 'log line');
    expect(await cache.wrapSwr('models:r', opts, async () => 'v3')).toBe('v1'); // still stale → served; refresh started
  });

  it('clearNamespace flushes one namespace of this prefix only', async () => {
    const prefix = newPrefix();
    const cache = make({ prefix });
    const other = make(); // another prefix on the same store
    await cache.set('kv:u1:a', 1);
    await cache.set('kv:u2:b', 2);
    await cache.set('kv', 3);
    await cache.set('models:all', 4);
    await cache.set('kvx:a', 5);
    await other.set('kv:u1:a', 6);
    await cache.clearNamespace('kv');
    expect(await cache.get('kv:u1:a')).toBeUndefined();
    expect(await cache.get('kv:u2:b')).toBeUndefined();
    expect(await cache.get('kv')).toBeUndefined();
    expect(await cache.get('models:all')).toBe(4);
    expect(await cache.get('kvx:a')).toBe(5);
    await expect(cache.clearNamespace('bad:ns')).rejects.toThrow(TypeError);
  });

  it('a load that straddles clearNamespace is returned but not cached', async () => {
    const cache = make();
    const gate = deferred<void>();
    const loading = deferred<void>();
    const pending = cache.wrap('kv:u1:slow', 60_000, async () => {
      loading.resolve();
      await gate.promise;
      return 'computed before the flush';
    });
    await loading.promise; // the load is under way
    await cache.clearNamespace('kv');
    gate.resolve();
    expect(await pending).toBe('computed before the flush');
    expect(await cache.get('kv:u1:slow')).toBeUndefined();
  });

  it('createApqCache: Apollo KeyValueCache in namespace apq, counted in stats', async () => {
    const cache = make();
    const apq = createApqCache(cache);
    expect(await apq.get('sha')).toBeUndefined();
    await apq.set('sha', 'query { me { id } }', { ttl: 60 });
    expect(await apq.get('sha')).toBe('query { me { id } }');
    await apq.delete('sha');
    expect(await apq.get('sha')).toBeUndefined();
    expect(cache.stats().apq).toEqual({ hits: 1, misses: 2 });
  });

  it('registerCacheMetrics: lookups feed llmselect_cache_{hits,misses}_total{cache}', async () => {
    const registry = new Registry();
    const cache = make({ onLookup: registerCacheMetrics(registry) });
    registerCacheMetrics(registry); // idempotent on the same registry
    await cache.get('kv:x');
    await cache.set('kv:x', 1);
    await cache.get('kv:x');
    await cache.get('models:y');
    const text = await registry.metrics();
    expect(text).toContain('llmselect_cache_hits_total{cache="kv"} 1');
    expect(text).toContain('llmselect_cache_misses_total{cache="kv"} 1');
    expect(text).toContain('llmselect_cache_misses_total{cache="models"} 1');
  });

  it('after close every operation is a miss / no-op', async () => {
    const cache = make();
    await cache.set('kv:a', 1);
    await cache.close();
    await cache.close();
    expect(await cache.get('kv:a')).toBeUndefined();
    await cache.set('kv:a', 2);
    expect(await cache.wrap('kv:a', 1000, async () => 3)).toBe(3);
  });
}

describe('singleFlight()', () => {
  it('shares one execution per key while in flight, then forgets it', async () => {
    const flights = singleFlight();
    const fn = jest.fn(async () => {
      await sleep(10);
      return Math.random();
    });
    const [a, b, c] = await Promise.all([flights.run('k', fn), flights.run('k', fn), flights.run('other', fn)]);
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    expect(fn).toHaveBeenCalledTimes(2);
    expect(flights.size).toBe(0);
    await flights.run('k', fn);
    expect(fn).toHaveBeenCalledTimes(3);
  });
});

describe('memory cache', () => {
  const make = (over?: Partial<CreateCacheOptions>) => track(createCache(cacheOptions(over)));
  storeContract(make);

  it('reports a healthy memory store', () => {
    expect(make().health()).toEqual({ store: 'memory', connected: true, breakerOpen: false });
  });

  it('is bounded (LRU) but never evicts counters', async () => {
    const cache = make({ memoryMaxEntries: 10 });
    await cache.incr('counter:u1');
    for (let i = 0; i < 50; i++) await cache.set(`kv:${i}`, i);
    expect(await cache.get('kv:0')).toBeUndefined();
    expect(await cache.get('kv:49')).toBe(49);
    expect(await cache.get('counter:u1')).toBe(1);
  });
});

describeRedis('redis cache (shared REDIS_URL)', () => {
  const url = redisUrlForTests();
  const make = (over?: Partial<CreateCacheOptions>) => track(createCache(cacheOptions({ redisUrl: url, ...over })));
  storeContract(make);

  // biome-ignore lint/suspicious/noTemplateCurlyInString: the title shows the key's shape, not a value
  it('stores keys as `${prefix}:${key}` with the TTL as PTTL', async () => {
    const prefix = newPrefix();
    const cache = make({ prefix });
    await cache.set('kv:u1:k', { a: 1 }, 30_000);
    await cache.incr('counter:u1');
    const raw = createClient({ url });
    await raw.connect();
    try {
      const pttl = await raw.pTTL(`${prefix}:kv:u1:k`);
      expect(pttl).toBeGreaterThan(25_000);
      expect(pttl).toBeLessThanOrEqual(30_000);
      expect(JSON.parse((await raw.get(`${prefix}:kv:u1:k`)) as string)).toMatchObject({ value: { a: 1 } });
      expect(await raw.get(`${prefix}:counter:u1`)).toBe('1');
      expect(await raw.pTTL(`${prefix}:counter:u1`)).toBe(-1);
    } finally {
      raw.destroy();
    }
    expect(cache.health()).toEqual({ store: 'redis', connected: true, breakerOpen: false });
  });

  it('Redis down at start: createCache works, everything is a miss, nothing throws', async () => {
    const port = await freePort();
    const cache = make({ redisUrl: `redis://127.0.0.1:${port}` });
    const started = Date.now();
    expect(await cache.get('kv:a')).toBeUndefined();
    await cache.set('kv:a', 1);
    expect(await cache.get('kv:a')).toBeUndefined();
    await cache.delete('kv:a');
    const gen = await cache.incr('counter:u1');
    expect(gen).toBeLessThan(0); // never a value Redis would issue
    expect(await cache.incr('counter:u1')).not.toBe(gen);
    const load = jest.fn(async () => 'loaded');
    expect(await cache.wrap('kv:w', 1000, load)).toBe('loaded');
    expect(await cache.wrap('kv:w', 1000, load)).toBe('loaded');
    expect(load).toHaveBeenCalledTimes(2);
    expect(await cache.wrapSwr('models:m', { freshMs: 10, maxAgeMs: 100 }, load)).toBe('loaded');
    await cache.clearNamespace('kv');
    expect(Date.now() - started).toBeLessThan(BOUNDED_MS);
    expect(cache.health()).toEqual({ store: 'redis', connected: false, breakerOpen: true });
  });

  it('a Redis error reply (e.g. INCR on a JSON value) is a miss without opening the breaker', async () => {
    const { logger, lines } = capturingLogger();
    const cache = make({ logger });
    await cache.set('counter:oops', { not: 'a counter' });
    expect(await cache.incr('counter:oops')).toBeLessThan(0);
    expect(cache.health().breakerOpen).toBe(false);
    expect(await cache.get('counter:oops')).toEqual({ not: 'a counter' });
    expect(lines().some((l) => l.msg.includes('rejected by Redis'))).toBe(true);
  });

  // biome-ignore lint/suspicious/noTemplateCurlyInString: the title shows the key's shape, not a value
  it('APQ store on Redis lives under `${prefix}:apq:`', async () => {
    const prefix = newPrefix();
    const apq = createApqCache(make({ prefix }));
    await apq.set('abc', 'query Q { x }', { ttl: 60 });
    const raw = createClient({ url });
    await raw.connect();
    try {
      expect(await raw.pTTL(`${prefix}:apq:abc`)).toBeGreaterThan(55_000);
    } finally {
      raw.destroy();
    }
    expect(await apq.get('abc')).toBe('query Q { x }');
  });
});

describeRedisServer('redis outage (private redis-server)', () => {
  let server: PrivateRedis;
  beforeEach(async () => {
    server = await startRedisServer();
  });
  afterEach(async () => {
    await server.stop();
  });

  it('killed Redis: misses fast, breaker opens, caching resumes by itself after restart', async () => {
    const cache = track(createCache(cacheOptions({ redisUrl: server.url, operationTimeoutMs: 300, breakerCooldownMs: 200 })));
    await cache.set('kv:u1:a', 'before');
    expect(await cache.get('kv:u1:a')).toBe('before');

    await server.kill();
    let t = Date.now();
    expect(await cache.get('kv:u1:a')).toBeUndefined();
    expect(Date.now() - t).toBeLessThan(BOUNDED_MS);
    expect(cache.health()).toEqual({ store: 'redis', connected: false, breakerOpen: true });

    // Short-circuited: no connection or command timeouts paid per call.
    t = Date.now();
    for (let i = 0; i < 100; i++) expect(await cache.get('kv:u1:a')).toBeUndefined();
    await cache.set('kv:u1:b', 1);
    expect(await cache.incr('counter:u1')).toBeLessThan(0);
    expect(await cache.wrap('kv:u1:w', 1000, async () => 'fresh')).toBe('fresh');
    expect(Date.now() - t).toBeLessThan(BOUNDED_MS); // 100 calls paying the 300 ms timeout would take 30 s

    await server.restart();
    const waited = await eventually(
      async () => {
        await cache.set('kv:u1:c', 'after');
        return (await cache.get('kv:u1:c')) === 'after';
      },
      15_000,
      'caching to resume',
    );
    expect(waited).toBeLessThan(15_000);
    expect(cache.health()).toEqual({ store: 'redis', connected: true, breakerOpen: false });
  });

  it('hung Redis (SIGSTOP): operations time out into misses; journaled invalidations replay on recovery', async () => {
    const cache = track(createCache(cacheOptions({ redisUrl: server.url, operationTimeoutMs: 250, breakerCooldownMs: 200 })));
    await cache.set('kv:u1:a', 'A');
    await cache.set('kv:u1:b', 'B');
    await cache.set('kv:u2:c', 'C');
    expect(await cache.incr('counter:u1')).toBe(1);

    server.pause();
    let t = Date.now();
    expect(await cache.get('kv:u1:a')).toBeUndefined();
    const elapsed = Date.now() - t;
    expect(elapsed).toBeGreaterThanOrEqual(240);
    expect(elapsed).toBeLessThan(BOUNDED_MS);
    // The call was a miss at once; its answer never coming is what opens the breaker (a few timeouts later).
    await eventually(async () => cache.health().breakerOpen, 30_000, 'the breaker to open');

    // Breaker open: these never reach Redis, so they are journaled.
    t = Date.now();
    await cache.delete('kv:u1:b');
    expect(await cache.incr('counter:u1')).toBeLessThan(0);
    await cache.clearNamespace('kv');
    for (let i = 0; i < 50; i++) await cache.get('kv:u1:a');
    expect(Date.now() - t).toBeLessThan(BOUNDED_MS); // 50 calls paying the 300 ms timeout would take 15 s

    server.resume();
    await eventually(async () => !cache.health().breakerOpen, 30_000, 'breaker to close');
    // The flush and delete were replayed before the breaker closed: no stale hits.
    expect(await cache.get('kv:u1:a')).toBeUndefined();
    expect(await cache.get('kv:u1:b')).toBeUndefined();
    expect(await cache.get('kv:u2:c')).toBeUndefined();
    // The lost increment was replayed too: the counter moved past every pre-outage generation.
    expect(await cache.get('counter:u1')).toBe(2);
  });

  it('pub/sub: publish while Redis is down does not throw; subscriptions resume after restart', async () => {
    const prefix = newPrefix();
    const a = track(createPubSub({ redisUrl: server.url, prefix, logger: silent, operationTimeoutMs: 300 }));
    const b = track(createPubSub({ redisUrl: server.url, prefix, logger: silent, operationTimeoutMs: 300 }));
    const got: unknown[] = [];
    await b.subscribe('events', (m) => void got.push(m));
    // Live once a message comes through: on a loaded machine the SUBSCRIBE can outlast the 300 ms operation
    // timeout (subscribe then resolves, fail-open) and a message published before Redis applied it is lost.
    await eventually(
      async () => {
        await a.publish('events', { n: 1 });
        return got.length > 0;
      },
      30_000,
      'first message',
    );

    await server.kill();
    const t = Date.now();
    await expect(a.publish('events', { n: 2 })).resolves.toBeUndefined();
    expect(Date.now() - t).toBeLessThan(BOUNDED_MS);

    await server.restart();
    await eventually(
      async () => {
        await a.publish('events', { n: 3 });
        return got.some((m) => (m as { n: number }).n === 3);
      },
      30_000,
      'delivery after restart',
    );
    expect(got).not.toContainEqual({ n: 2 });
  });
});

function pubSubContract(make: (prefix: string) => PubSub) {
  it('delivers JSON messages to subscribers of the same prefix; unsubscribe stops delivery', async () => {
    const prefix = newPrefix();
    const publisher = make(prefix);
    const subscriber = make(prefix);
    const stranger = make(newPrefix());
    const events: unknown[] = [];
    const sentinel = deferred<void>();
    const strangerGot: unknown[] = [];
    const unsubscribe = await subscriber.subscribe<{ n: number; at: string }>('events', (m) => void events.push(m));
    await subscriber.subscribe('sentinel', () => sentinel.resolve());
    await stranger.subscribe('events', (m) => void strangerGot.push(m));

    await publisher.publish('events', { n: 1, at: new Date(0) });
    await eventually(async () => events.length === 1, 30_000, 'delivery');
    expect(events[0]).toEqual({ n: 1, at: new Date(0).toISOString() });

    await unsubscribe();
    await unsubscribe(); // idempotent
    await publisher.publish('events', { n: 2 });
    await publisher.publish('sentinel', {});
    await sentinel.promise; // published after n:2 on the same connection → n:2 would have arrived first
    expect(events).toHaveLength(1);
    expect(strangerGot).toEqual([]);
  });

  it('a throwing handler does not affect other handlers', async () => {
    const ps = make(newPrefix());
    const got = deferred<unknown>();
    await ps.subscribe('c', () => {
      throw new Error('handler bug');
    });
    await ps.subscribe('c', async () => Promise.reject(new Error('async handler bug')));
    await ps.subscribe('c', (m) => got.resolve(m));
    await ps.publish('c', { ok: true });
    expect(await got.promise).toEqual({ ok: true });
  });
}

describe('in-memory pub/sub', () => {
  pubSubContract((prefix) => {
    const shared = sharedMemoryPubSubs.get(prefix) ?? track(createPubSub({ prefix, logger: silent }));
    sharedMemoryPubSubs.set(prefix, shared);
    return shared;
  });
});
/** In-memory pub/sub is per process: "two instances" of one prefix share one bus. */
const sharedMemoryPubSubs = new Map<string, PubSub>();

describeRedis('redis pub/sub (shared REDIS_URL)', () => {
  pubSubContract((prefix) => track(createPubSub({ redisUrl: redisUrlForTests(), prefix, logger: silent })));

  it('Redis down at start: publish and subscribe resolve without throwing', async () => {
    const ps = track(
      createPubSub({ redisUrl: `redis://127.0.0.1:${await freePort()}`, prefix: newPrefix(), logger: silent, operationTimeoutMs: 200 }),
    );
    const t = Date.now();
    await expect(ps.publish('x', { a: 1 })).resolves.toBeUndefined();
    const unsubscribe = await ps.subscribe('x', () => undefined);
    await unsubscribe();
    expect(Date.now() - t).toBeLessThan(BOUNDED_MS);
  });
});

describeRedisServer('local copies of response bytes (private redis-server)', () => {
  let server: PrivateRedis;
  let raw: ReturnType<typeof createClient>;
  beforeEach(async () => {
    server = await startRedisServer();
    raw = createClient({ url: server.url });
    raw.on('error', () => undefined);
    await raw.connect();
  });
  afterEach(async () => {
    if (raw.isOpen) raw.destroy();
    await server.stop();
  });

  /** Bytes Redis has sent to all its clients so far. */
  const sentByRedis = async () => Number(/total_net_output_bytes:(\d+)/.exec(await raw.info('stats'))![1]);
  const body = (fill: string) => Buffer.alloc(64 * 1024, fill);

  it('a copy confirmed by the round trip is a hit whose reply carries no body; without copies the body comes from Redis', async () => {
    const prefix = newPrefix();
    const a = track(createCache(cacheOptions({ redisUrl: server.url, prefix, localCopiesMaxBytes: 2 ** 20 })));
    const b = track(createCache(cacheOptions({ redisUrl: server.url, prefix, localCopiesMaxBytes: 0 })));
    await a.setVersioned(readCacheKeys.response('u1', 'd1'), 0, body('a'), 60_000);

    let before = await sentByRedis();
    expect(await a.getVersioned(readCacheKeys.response('u1', 'd1'))).toEqual({ version: 0, bytes: body('a') });
    expect((await sentByRedis()) - before).toBeLessThan(8 * 1024);
    expect(a.health().localCopies).toMatchObject({ entries: 1, served: 1 });

    before = await sentByRedis();
    expect(await b.getVersioned(readCacheKeys.response('u1', 'd1'))).toEqual({ version: 0, bytes: body('a') });
    expect((await sentByRedis()) - before).toBeGreaterThan(64 * 1024);
    expect(b.health().localCopies).toBeUndefined();
  });

  it('a copy is never served after a change: new generation, re-stored elsewhere, expired, flushed, legacy value, Redis down', async () => {
    const prefix = newPrefix();
    const a = track(createCache(cacheOptions({ redisUrl: server.url, prefix, localCopiesMaxBytes: 2 ** 20 })));
    const b = track(createCache(cacheOptions({ redisUrl: server.url, prefix, localCopiesMaxBytes: 0 })));
    const key = (generation: number) => `${prefix}:${readCacheKeys.responseAt('u1', generation, 'd1')}`;
    await a.setVersioned(readCacheKeys.response('u1', 'd1'), 0, body('a'), 60_000);

    // A write on another instance: the generation moved on, so the copy (generation 0) is not the entry.
    expect(await b.incr(readCacheKeys.generation('u1'))).toBe(1);
    expect(await a.getVersioned(readCacheKeys.response('u1', 'd1'))).toEqual({ version: 1, bytes: undefined });

    // Stored again by another instance under the same key: its bytes, not the copy's.
    await a.setVersioned(readCacheKeys.response('u1', 'd1'), 1, body('b'), 60_000);
    await b.setVersioned(readCacheKeys.response('u1', 'd1'), 1, body('c'), 60_000);
    expect(await a.getVersioned(readCacheKeys.response('u1', 'd1'))).toEqual({ version: 1, bytes: body('c') });
    const served = a.health().localCopies!.served;
    expect(await a.getVersioned(readCacheKeys.response('u1', 'd1'))).toEqual({ version: 1, bytes: body('c') });
    expect(a.health().localCopies!.served).toBe(served + 1);

    // Expired in Redis (the TTL ran out): a miss.
    await raw.del(key(1));
    expect(await a.getVersioned(readCacheKeys.response('u1', 'd1'))).toEqual({ version: 1, bytes: undefined });

    // Flushed by an admin: a miss.
    await a.setVersioned(readCacheKeys.response('u1', 'd1'), 1, body('d'), 60_000);
    await b.clearNamespace(RESPONSE_NAMESPACE);
    expect(await a.getVersioned(readCacheKeys.response('u1', 'd1'))).toEqual({ version: 1, bytes: undefined });

    // An untagged value: a miss, never bytes with their head cut off. An older release's entry (untagged, under
    // `resp:<scope>:<generation>:<digest>`) is not even read, and that release never reads ours (rolling deploys).
    await raw.set(`${prefix}:resp:u1:1:d1`, '{"data":{"me":"older release"}}');
    expect(await a.getVersioned(readCacheKeys.response('u1', 'd1'))).toEqual({ version: 1, bytes: undefined });
    await raw.set(key(1), '{"data":{"me":null}}');
    expect(await a.getVersioned(readCacheKeys.response('u1', 'd1'))).toEqual({ version: 1, bytes: undefined });
    expect(await b.getVersioned(readCacheKeys.response('u1', 'd1'))).toEqual({ version: 1, bytes: undefined });

    // Redis unavailable: the generation is unknown, so the copy cannot be confirmed: a miss.
    await a.setVersioned(readCacheKeys.response('u1', 'd1'), 1, body('e'), 60_000);
    expect(await a.getVersioned(readCacheKeys.response('u1', 'd1'))).toEqual({ version: 1, bytes: body('e') });
    // The older release's key still holds its own body: it never gets ours, tag and all.
    expect(await raw.get(`${prefix}:resp:u1:1:d1`)).toBe('{"data":{"me":"older release"}}');
    await server.kill();
    expect(await a.getVersioned(readCacheKeys.response('u1', 'd1'))).toBeUndefined();
  });

  it('keeps at most localCopiesMaxBytes of copies (least recently used out), and never a body larger than that', async () => {
    const a = track(createCache(cacheOptions({ redisUrl: server.url, localCopiesMaxBytes: 200 * 1024 })));
    for (const digest of ['d1', 'd2', 'd3', 'd4']) await a.setVersioned(readCacheKeys.response('u1', digest), 0, body('x'), 60_000);
    expect(a.health().localCopies).toMatchObject({ entries: 3, maxBytes: 200 * 1024 });
    expect(a.health().localCopies!.bytes).toBeLessThanOrEqual(200 * 1024);
    await a.setVersioned(readCacheKeys.response('u1', 'big'), 0, Buffer.alloc(300 * 1024, 'y'), 60_000);
    expect(a.health().localCopies!.entries).toBe(3);
    // Still answered, from Redis.
    expect((await a.getVersioned(readCacheKeys.response('u1', 'big')))?.bytes?.length).toBe(300 * 1024);
    expect((await a.getVersioned(readCacheKeys.response('u1', 'd1')))?.bytes).toEqual(body('x'));
  });

  it('a body laid out by versionedBody is sent, stored and kept without a copy; any other buffer is copied', async () => {
    const a = track(createCache(cacheOptions({ redisUrl: server.url, localCopiesMaxBytes: 2 ** 20 })));
    const body = a.versionedBody('{"data":{"me":{"id":"ü"}}}');
    expect(body.toString()).toBe('{"data":{"me":{"id":"ü"}}}');
    await a.setVersioned(readCacheKeys.response('u1', 'laid-out'), 0, body, 60_000);
    const hit = await a.getVersioned(readCacheKeys.response('u1', 'laid-out'));
    expect(hit?.bytes?.buffer).toBe(body.buffer);
    // Same shape, not ours: its leading 12 bytes are not a tag we made.
    const foreign = Buffer.concat([Buffer.alloc(12, 0), Buffer.from('{"data":null}')]).subarray(12);
    await a.setVersioned(readCacheKeys.response('u1', 'foreign'), 0, foreign, 60_000);
    const other = await a.getVersioned(readCacheKeys.response('u1', 'foreign'));
    expect(other?.bytes?.toString()).toBe('{"data":null}');
    expect(other?.bytes?.buffer).not.toBe(foreign.buffer);
  });

  it('counts a copy by the memory it keeps alive: a small entry read from Redis is copied out of the socket buffer', async () => {
    const prefix = newPrefix();
    const a = track(createCache(cacheOptions({ redisUrl: server.url, prefix, localCopiesMaxBytes: 2 ** 20 })));
    const b = track(createCache(cacheOptions({ redisUrl: server.url, prefix, localCopiesMaxBytes: 0 })));
    await b.setVersioned(readCacheKeys.response('u1', 'small'), 0, Buffer.from('{"data":{"me":null}}'), 60_000);
    await b.setVersioned(readCacheKeys.response('u1', 'other'), 0, Buffer.alloc(1000, 'z'), 60_000);
    // Both replies arrive in one socket read; the kept copy must not pin it.
    const [small] = await Promise.all([
      a.getVersioned(readCacheKeys.response('u1', 'small')),
      a.getVersioned(readCacheKeys.response('u1', 'other')),
    ]);
    expect(small?.bytes?.toString()).toBe('{"data":{"me":null}}');
    expect(a.health().localCopies).toMatchObject({ entries: 2, bytes: 12 + 20 + 1024 + 12 + 1000 + 1024 });
  });
});

describe('LruMap', () => {
  it('bounds entries and, with a weight, the total weight; delete and clear keep the total right', () => {
    const lru = new LruMap<string, string>(3, { maxWeight: 10, weigh: (v) => v.length });
    lru.set('a', 'aaaa').set('b', 'bbbb');
    expect(lru.totalWeight).toBe(8);
    lru.get('a');
    lru.set('c', 'cc');
    expect([...lru.keys()]).toEqual(['b', 'a', 'c']);
    lru.set('d', 'dd');
    expect([...lru.keys()]).toEqual(['a', 'c', 'd']);
    expect(lru.totalWeight).toBe(8);
    lru.set('e', 'e'.repeat(11));
    expect(lru.has('e')).toBe(false);
    lru.set('c', 'cccccc');
    expect([...lru.keys()]).toEqual(['d', 'c']);
    expect(lru.totalWeight).toBe(8);
    lru.delete('d');
    expect(lru.totalWeight).toBe(6);
    lru.clear();
    expect(lru.totalWeight).toBe(0);
    const counted = new LruMap<number, number>(2);
    counted.set(1, 1).set(2, 2).set(3, 3);
    expect([...counted.keys()]).toEqual([2, 3]);
    expect(counted.totalWeight).toBe(0);
  });
});
