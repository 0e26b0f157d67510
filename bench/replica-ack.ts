/**
 * `npx ts-node --transpile-only bench/replica-ack.ts [-- --bumps=2000 --concurrency=16 --ack-ms=50]`: what the
 * wait for a replica costs a generation bump (`REDIS_REPLICA_ACK_MS`: INCR, then `WAIT 1 <ms>` on the same
 * connection, the cache's bump connection), on a private Redis Sentinel set on loopback (a master, one replica, three sentinels:
 * `test/helpers/redis-sentinel.ts`) reached the way the app reaches it (`createRedisClient`, `RedisStore`).
 *
 * Same run, same connection kind, blocks alternated (off, on, off, on…) so machine load hits both alike:
 * one bump at a time (p50 / p99 latency), then `--concurrency` at a time (bumps/s). Printed as ratios
 * on / off. No goal: the figure for the operator's choice of `REDIS_REPLICA_ACK_MS`.
 */
import { randomBytes } from 'node:crypto';
import { createRedisClient, closeRedisClient, isReady } from '../src/cache/redis-client';
import { RedisStore } from '../src/cache/stores/redis.store';
import { createLogger } from '../src/observability/logger';
import { SENTINEL_MASTER, startRedisSentinel } from '../test/helpers/redis-sentinel';

function arg(name: string, fallback: number): number {
  const found = process.argv.find((a) => a.startsWith(`--${name}=`));
  return found ? Number(found.slice(name.length + 3)) : fallback;
}

const BUMPS = arg('bumps', 2000);
const CONCURRENCY = arg('concurrency', 16);
const ACK_MS = arg('ack-ms', 50);
const BLOCKS = 4;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function main() {
  const set = await startRedisSentinel();
  const logger = createLogger('silent');
  const client = createRedisClient({
    target: { sentinel: { sentinels: set.sentinels.map((s) => `redis://${s.address}`), masterName: SENTINEL_MASTER } },
    logger,
    name: 'bench:replica-ack',
    disableOfflineQueue: true,
  });
  try {
    const deadline = Date.now() + 10_000;
    while (!isReady(client)) {
      if (Date.now() > deadline) throw new Error('the sentinels named no master within 10 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    let unacknowledged = 0;
    const stores = {
      off: new RedisStore(client),
      on: new RedisStore(client, { ackMs: ACK_MS, connection: client, unacknowledged: () => unacknowledged++ }),
    };
    const key = (i: number) => `bench-ack-${randomBytes(3).toString('hex')}:gen:{u${i % 500}}`;
    const latencies = { off: [] as number[], on: [] as number[] };
    const rates = { off: [] as number[], on: [] as number[] };
    for (let block = 0; block < BLOCKS * 2; block++) {
      const mode = block % 2 ? 'on' : 'off';
      const store = stores[mode];
      for (let i = 0; i < BUMPS / BLOCKS; i++) {
        const t = performance.now();
        await store.incr(key(i));
        latencies[mode].push(performance.now() - t);
      }
      const started = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < BUMPS / BLOCKS) await store.incr(key(next++));
        }),
      );
      rates[mode].push(BUMPS / BLOCKS / ((performance.now() - started) / 1000));
    }
    const row = (mode: 'off' | 'on') => {
      const sorted = [...latencies[mode]].sort((x, y) => x - y);
      const rate = rates[mode].reduce((s, r) => s + r, 0) / rates[mode].length;
      return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), rate };
    };
    const off = row('off');
    const on = row('on');
    const ms = (n: number) => `${n.toFixed(3)} ms`;
    console.log(`generation bump on Sentinel (1 replica), ${BUMPS} bumps per mode, WAIT 1 ${ACK_MS} when on`);
    console.log(`  INCR alone:     p50 ${ms(off.p50)}  p99 ${ms(off.p99)}  ${off.rate.toFixed(0)} bumps/s at c=${CONCURRENCY}`);
    console.log(`  INCR + WAIT 1:  p50 ${ms(on.p50)}  p99 ${ms(on.p99)}  ${on.rate.toFixed(0)} bumps/s at c=${CONCURRENCY}`);
    console.log(
      `  ratio on/off:   p50 ×${(on.p50 / off.p50).toFixed(2)}  p99 ×${(on.p99 / off.p99).toFixed(2)}  ` +
        `throughput ×${(on.rate / off.rate).toFixed(2)}; bumps no replica acknowledged in time: ${unacknowledged}`,
    );

    // The replica stopped (SIGSTOP): the first bump waits ACK_MS, the next ones for a second are journaled at once.
    const master = await set.master();
    const replica = set.servers.find((n) => n !== master)!;
    set.pause(replica);
    const pausedBumps = 200;
    const before = unacknowledged;
    const t = performance.now();
    for (let i = 0; i < pausedBumps; i++) await stores.on.incr(key(i));
    const elapsed = performance.now() - t;
    set.resume(replica);
    console.log(
      `  replica stopped: ${pausedBumps} bumps in ${elapsed.toFixed(1)} ms (${(elapsed / pausedBumps).toFixed(3)} ms each), ` +
        `${unacknowledged - before} journaled`,
    );
  } finally {
    closeRedisClient(client);
    await set.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
