/**
 * A real Redis Sentinel setup on loopback for tests: a master, one replica and three sentinels, each a private
 * `redis-server` child (`--sentinel` for the sentinels) on a free port, with its files in a private directory
 * under the OS temp dir. Non-persistent, short timeouts: a killed master is failed over in a few seconds.
 *
 * - `describeRedisSentinel`: `describe` when redis-server is on PATH, else skipped with the reason;
 *   REQUIRE_REDIS_SENTINEL=1 (CI) throws instead.
 * - `startRedisSentinel()`: start once per file, `stop()` in afterAll. With `passwords`, the master and replica
 *   (`requirepass`, `masterauth`) and the sentinels (`requirepass`, one password for all) want AUTH.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports';
import { nodeClient, nodeCommand } from './redis-node';
import { until as untilPolled } from './until';

/** `./until.ts`, its message naming this helper. */
const until = <T>(what: string, timeoutMs: number, check: () => Promise<T | undefined | false>) =>
  untilPolled(`redis sentinel: ${what}`, timeoutMs, check);

/** The name the sentinels monitor the master under. */
export const SENTINEL_MASTER = 'llmselect-test';
/** Milliseconds without an answer before a sentinel calls the master down (Redis default: 30 000). */
const DOWN_AFTER_MS = 1_000;

export const describeRedisSentinel: jest.Describe = (() => {
  if (typeof describe !== 'function') return undefined as never; // imported outside jest (bench/replica-ack.ts)
  const missing = ['redis-server'].filter((bin) => spawnSync(bin, ['--version']).status !== 0);
  if (missing.length === 0) return describe;
  const why = `${missing.join(' and ')} not on PATH (needed to start a private Redis master, replica and sentinels)`;
  if (process.env.REQUIRE_REDIS_SENTINEL === '1') throw new Error(`REQUIRE_REDIS_SENTINEL=1 but ${why}`);
  console.warn(`Skipping Redis Sentinel tests: ${why}. Set REQUIRE_REDIS_SENTINEL=1 to fail instead.`);
  return describe.skip as unknown as jest.Describe;
})();

export interface SentinelNode {
  port: number;
  kind: 'data' | 'sentinel';
  /** `127.0.0.1:<port>` */
  address: string;
  readonly alive: boolean;
}

export interface RedisSentinelForTests {
  /** The data nodes (first the master at start, then its replica) and the three sentinels. */
  servers: SentinelNode[];
  sentinels: SentinelNode[];
  /** For an app's env. */
  env: { REDIS_SENTINELS: string; REDIS_SENTINEL_MASTER: string; REDIS_SENTINEL_MASTER_PASSWORD?: string };
  /** The data node the sentinels name as master now (asked of a live sentinel). */
  master(): Promise<SentinelNode>;
  /** SIGKILL one process (no shutdown, nothing flushed to anyone). */
  kill(node: SentinelNode): Promise<void>;
  /** SIGSTOP / SIGCONT one process (a replica that stops reading its master's stream). */
  pause(node: SentinelNode): void;
  resume(node: SentinelNode): void;
  /**
   * Resolves once the sentinels name a live master other than `old`, and that node says `role:master`.
   * Bounded poll: no event tells a test that an election ended.
   */
  promoted(old: SentinelNode, timeoutMs?: number): Promise<SentinelNode>;
  /** Every write made so far on the master is on the replica (a write of its own, then WAIT 1). */
  replicated(): Promise<void>;
  /** One command on one node. */
  command(node: SentinelNode, args: string[]): Promise<unknown>;
  stop(): Promise<void>;
}

export interface RedisSentinelOptions {
  passwords?: { master: string; sentinel: string };
}

export async function startRedisSentinel(options: RedisSentinelOptions = {}): Promise<RedisSentinelForTests> {
  const passwords = options.passwords;
  const dir = mkdtempSync(join(tmpdir(), 'redis-sentinel-'));
  const children = new Map<number, ChildProcess>();
  const taken = new Set<number>();
  const node = (port: number, kind: SentinelNode['kind']): SentinelNode => ({
    port,
    kind,
    address: `127.0.0.1:${port}`,
    get alive() {
      const child = children.get(port);
      return !!child && child.exitCode === null && child.signalCode === null;
    },
  });

  const password = (target: SentinelNode) => passwords?.[target.kind === 'data' ? 'master' : 'sentinel'];
  const connection = (target: SentinelNode) => nodeClient(target, password(target));
  const command = (target: SentinelNode, args: string[]) => nodeCommand(target, args, password(target));

  /** A server on a free port; one that exits at once (a port another worker took meanwhile) is started again. */
  const launch = async (kind: SentinelNode['kind'], args: (port: number) => string[]): Promise<SentinelNode> => {
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      if (taken.has(port)) continue;
      taken.add(port);
      const child = spawn('redis-server', args(port), { stdio: 'ignore' });
      children.set(port, child);
      const started = node(port, kind);
      const up = await until(`127.0.0.1:${port} up`, 10_000, async () => {
        if (!started.alive) return 'exited';
        return (await command(started, ['PING'])) === 'PONG' && 'up';
      });
      if (up === 'up') return started;
      if (attempt >= 3) throw new Error(`redis sentinel: redis-server exited at start (port ${port})`);
    }
  };
  const dataNode = (port: number, extra: string[] = []) => [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--dbfilename',
    `dump-${port}.rdb`,
    ...(passwords ? ['--requirepass', passwords.master, '--masterauth', passwords.master] : []),
    ...extra,
  ];

  const stop = async () => {
    await Promise.all(
      [...children.values()].map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGCONT'); // a paused process must run to die
        child.kill('SIGKILL');
        await exited;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };

  const servers: SentinelNode[] = [];
  const sentinels: SentinelNode[] = [];
  try {
    const master = await launch('data', (port) => dataNode(port));
    servers.push(master);
    servers.push(await launch('data', (port) => dataNode(port, ['--replicaof', '127.0.0.1', String(master.port)])));
    for (let i = 0; i < 3; i++) {
      sentinels.push(
        await launch('sentinel', (port) => {
          // A sentinel rewrites its own config file (what it learnt): one writable file each.
          const file = join(dir, `sentinel-${port}.conf`);
          writeFileSync(
            file,
            [
              `port ${port}`,
              'bind 127.0.0.1',
              `dir ${dir}`,
              `sentinel monitor ${SENTINEL_MASTER} 127.0.0.1 ${master.port} 2`,
              `sentinel down-after-milliseconds ${SENTINEL_MASTER} ${DOWN_AFTER_MS}`,
              `sentinel failover-timeout ${SENTINEL_MASTER} 5000`,
              `sentinel parallel-syncs ${SENTINEL_MASTER} 1`,
              ...(passwords ? [`sentinel auth-pass ${SENTINEL_MASTER} ${passwords.master}`, `requirepass ${passwords.sentinel}`] : []),
              '',
            ].join('\n'),
          );
          return [file, '--sentinel'];
        }),
      );
    }
    // A failover needs each sentinel to know the replica (from the master's INFO) and the two other sentinels
    // (from their hello messages, every 2 s), and the replica in sync.
    await until('every sentinel knows the replica and the other sentinels', 30_000, async () => {
      const views = await Promise.all(sentinels.map((s) => command(s, ['SENTINEL', 'MASTER', SENTINEL_MASTER])));
      return views.every((view) => {
        const fields = fieldsOf(view);
        return fields['num-slaves'] === '1' && fields['num-other-sentinels'] === '2';
      });
    });
    await until('replica in sync', 20_000, async () =>
      String(await command(servers[1], ['INFO', 'replication'])).includes('master_link_status:up'),
    );
  } catch (err) {
    await stop();
    throw err;
  }

  const master = async (): Promise<SentinelNode> => {
    for (const sentinel of sentinels.filter((s) => s.alive)) {
      const reply = (await command(sentinel, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER])) as string[] | null;
      const found = reply && servers.find((s) => s.port === Number(reply[1]));
      if (found) return found;
    }
    throw new Error('redis sentinel: no sentinel names a master');
  };
  const signal = (target: SentinelNode, name: NodeJS.Signals) => {
    const child = children.get(target.port);
    if (!child || !target.alive) throw new Error(`redis sentinel: ${target.address} is not running`);
    child.kill(name);
  };

  return {
    servers,
    sentinels,
    env: {
      REDIS_SENTINELS: sentinels.map((s) => (passwords ? `redis://:${passwords.sentinel}@${s.address}` : s.address)).join(','),
      REDIS_SENTINEL_MASTER: SENTINEL_MASTER,
      ...(passwords ? { REDIS_SENTINEL_MASTER_PASSWORD: passwords.master } : {}),
    },
    command,
    master,
    async kill(target) {
      const child = children.get(target.port);
      if (!child || !target.alive) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
    pause: (target) => signal(target, 'SIGSTOP'),
    resume: (target) => signal(target, 'SIGCONT'),
    async promoted(old, timeoutMs = 30_000) {
      return until(`a master other than ${old.address}`, timeoutMs, async () => {
        // Every live sentinel agrees (a client may ask any of them), and the node knows it is the master.
        const named = await Promise.all(
          sentinels
            .filter((s) => s.alive)
            .map(async (s) => ((await command(s, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER])) as string[])[1]),
        );
        if (new Set(named).size !== 1) return undefined;
        const next = servers.find((s) => s.port === Number(named[0]));
        if (!next || next === old || !next.alive) return undefined;
        return String(await command(next, ['ROLE'])).startsWith('master') && next;
      });
    },
    async replicated() {
      const now = await master();
      const client = connection(now);
      client.on('error', () => undefined);
      await client.connect();
      try {
        await client.set(`sentinel-test:mark:${Date.now()}`, '1', { PX: 60_000 });
        const acks = Number(await client.sendCommand(['WAIT', '1', '10000']));
        if (acks < 1) throw new Error('redis sentinel: the replica did not acknowledge within 10 s');
      } finally {
        client.destroy();
      }
    },
    stop,
  };
}

/** A flat `[field, value, …]` reply (SENTINEL MASTER) as an object. */
function fieldsOf(reply: unknown): Record<string, string> {
  const flat = (Array.isArray(reply) ? reply : []).map(String);
  const fields: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
  return fields;
}
