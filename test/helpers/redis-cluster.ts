/**
 * A real Redis Cluster on loopback for tests: 3 masters and 3 replicas, each a
 * private `redis-server --cluster-enabled yes` child on a free port, joined as
 * `redis-cli --cluster create … --cluster-replicas 1` would. Non-persistent, short
 * node timeout (a killed master is failed over in a few seconds).
 *
 * - `describeRedisCluster`: `describe` when redis-server is on PATH, else skipped with
 *   the reason; REQUIRE_REDIS_CLUSTER=1 (CI) throws instead.
 * - `startRedisCluster()`: start once per file (a few seconds), `stop()` in afterAll.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports';
import { nodeCommand } from './redis-node';
import { until as untilPolled } from './until';

/** `./until.ts`, its message naming this helper. */
const until = <T>(what: string, timeoutMs: number, check: () => Promise<T | undefined | false>) =>
  untilPolled(`redis cluster: ${what}`, timeoutMs, check);

/** Milliseconds without an answer before a node is failed over (Redis default: 15 000). */
const NODE_TIMEOUT_MS = 1_000;

export const describeRedisCluster: jest.Describe = (() => {
  const missing = ['redis-server'].filter((bin) => spawnSync(bin, ['--version']).status !== 0);
  if (missing.length === 0) return describe;
  const why = `${missing.join(' and ')} not on PATH (needed to start a private Redis Cluster)`;
  if (process.env.REQUIRE_REDIS_CLUSTER === '1') throw new Error(`REQUIRE_REDIS_CLUSTER=1 but ${why}`);
  console.warn(`Skipping Redis Cluster tests: ${why}. Set REQUIRE_REDIS_CLUSTER=1 to fail instead.`);
  return describe.skip as unknown as jest.Describe;
})();

export interface ClusterNode {
  port: number;
  /** `127.0.0.1:<port>` */
  address: string;
  readonly alive: boolean;
}

export interface RedisClusterForTests {
  nodes: ClusterNode[];
  /** For an app's env: every node as a seed. */
  env: { REDIS_CLUSTER_NODES: string };
  /** The node serving `key`'s slot as master now. */
  masterOf(key: string): Promise<ClusterNode>;
  /** SIGKILL one node (no shutdown, no last write flushed to anyone). */
  kill(node: ClusterNode): Promise<void>;
  /**
   * Resolves once every live node says cluster_state:ok and `key`'s slot is
   * served by a live master (a killed master's replica promoted). Bounded poll:
   * no event tells a client that an election ended.
   */
  healed(key: string, timeoutMs?: number): Promise<ClusterNode>;
  /** One command on one node (e.g. `['CLUSTER', 'INFO']`). */
  command(node: ClusterNode, args: string[]): Promise<unknown>;
  stop(): Promise<void>;
}

export async function startRedisCluster(): Promise<RedisClusterForTests> {
  const dir = mkdtempSync(join(tmpdir(), 'redis-cluster-'));
  const children = new Map<number, ChildProcess>();
  const nodes: ClusterNode[] = [];
  const node = (port: number): ClusterNode => ({
    port,
    address: `127.0.0.1:${port}`,
    get alive() {
      const child = children.get(port);
      return !!child && child.exitCode === null && child.signalCode === null;
    },
  });
  /**
   * A node on a free port whose bus port (+10 000) is free too; a server that exits at once (a port another
   * worker took meanwhile) is started again on another port.
   */
  const launch = async (): Promise<ClusterNode> => {
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      if (port + 10_000 >= 65_536 || nodes.some((n) => n.port === port || Math.abs(n.port - port) === 10_000)) continue;
      const child = spawn(
        'redis-server',
        [
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
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          `nodes-${port}.conf`,
          '--cluster-node-timeout',
          String(NODE_TIMEOUT_MS),
          '--cluster-require-full-coverage',
          'no',
        ],
        { stdio: 'ignore' },
      );
      children.set(port, child);
      const started = node(port);
      const up = await until(`127.0.0.1:${port} up`, 10_000, async () => {
        if (!started.alive) return 'exited';
        return (await command(started, ['PING'])) === 'PONG' && 'up';
      });
      if (up === 'up') return started;
      if (attempt >= 3) throw new Error(`redis cluster: redis-server exited at start (port ${port})`);
    }
  };

  const command = (node: ClusterNode, args: string[]) => nodeCommand(node, args);
  const stop = async () => {
    await Promise.all(
      [...children.values()].map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    for (let i = 0; i < 6; i++) nodes.push(await launch());
    // What `redis-cli --cluster create … --cluster-replicas 1` does, without its one-second waits: slots to
    // the first three, one handshake, then each of the others replicates one of them.
    const ids = (await Promise.all(nodes.map((node) => command(node, ['CLUSTER', 'MYID'])))).map(String);
    const masters = nodes.slice(0, 3);
    await Promise.all(
      masters.map(async (node, i) => {
        const from = Math.floor((16_384 * i) / 3);
        const to = Math.floor((16_384 * (i + 1)) / 3) - 1;
        await command(node, ['CLUSTER', 'ADDSLOTSRANGE', String(from), String(to)]);
        await command(node, ['CLUSTER', 'SET-CONFIG-EPOCH', String(i + 1)]);
      }),
    );
    await Promise.all(nodes.slice(1).map((node) => command(nodes[0], ['CLUSTER', 'MEET', '127.0.0.1', String(node.port)])));
    await until('every node knows the others', 20_000, async () => {
      const views = await Promise.all(nodes.map((node) => command(node, ['CLUSTER', 'NODES'])));
      return views.every((view) => ids.every((id) => String(view).includes(id)) && !/handshake|noaddr/.test(String(view)));
    });
    await Promise.all(nodes.slice(3).map((node, i) => command(node, ['CLUSTER', 'REPLICATE', ids[i]])));
    await until('cluster_state:ok on every node', 20_000, async () => {
      const infos = await Promise.all(nodes.map((node) => command(node, ['CLUSTER', 'INFO'])));
      return infos.every((info) => String(info).includes('cluster_state:ok'));
    });
    // Replicas in sync: a master killed before its replica's first sync could not be failed over.
    await until('every replica in sync, known as one by every node', 20_000, async () => {
      const infos = await Promise.all(nodes.map((node) => command(node, ['INFO', 'replication'])));
      const replicas = infos.filter((info) => String(info).includes('role:slave'));
      if (replicas.length !== 3 || !replicas.every((info) => String(info).includes('master_link_status:up'))) return false;
      const views = await Promise.all(nodes.map((node) => command(node, ['CLUSTER', 'NODES'])));
      return views.every((view) => (String(view).match(/\bslave\b/g) ?? []).length === 3);
    });
  } catch (err) {
    await stop();
    throw err;
  }

  const slotOwner = async (key: string): Promise<ClusterNode | undefined> => {
    const live = nodes.filter((n) => n.alive);
    const slot = Number(await command(live[0], ['CLUSTER', 'KEYSLOT', key]));
    const ranges = (await command(live[0], ['CLUSTER', 'SLOTS'])) as Array<[number, number, [string, number, string]]>;
    const range = ranges.find(([from, to]) => from <= slot && slot <= to);
    return range && nodes.find((n) => n.port === Number(range[2][1]));
  };

  return {
    nodes,
    env: { REDIS_CLUSTER_NODES: nodes.map((n) => n.address).join(',') },
    command,
    async masterOf(key) {
      const owner = await slotOwner(key);
      if (!owner) throw new Error(`redis cluster: no master serves ${key}`);
      return owner;
    },
    async kill(node) {
      const child = children.get(node.port);
      if (!child || !node.alive) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
    async healed(key, timeoutMs = 30_000) {
      return until(`failover of ${key}'s slot`, timeoutMs, async () => {
        const live = nodes.filter((n) => n.alive);
        const infos = await Promise.all(live.map((node) => command(node, ['CLUSTER', 'INFO'])));
        if (!infos.every((info) => String(info).includes('cluster_state:ok'))) return undefined;
        const owner = await slotOwner(key);
        return owner?.alive ? owner : undefined;
      });
    },
    stop,
  };
}
