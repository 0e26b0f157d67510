/**
 * Commands on one node of a private Redis set (a cluster's, a sentinel set's), each on a new connection:
 * node-redis is required on first use, not imported (test-app.ts imports the helpers that use this, and most
 * test files never start such a set).
 */
import type * as NodeRedis from '@redis/client';

/** A node a helper started: its loopback port, and whether its process still runs. */
export interface RedisNodeRef {
  port: number;
  readonly alive: boolean;
}

/** A client for one node (not connected): no reconnects, a 5 s connect timeout. */
export function nodeClient(node: RedisNodeRef, password?: string) {
  return (require('@redis/client') as typeof NodeRedis).createClient({
    socket: { host: '127.0.0.1', port: node.port, connectTimeout: 5_000, reconnectStrategy: false },
    password,
  });
}

/** One command on a new connection; a connection that fails (a loaded machine) is tried again, twice, while the node runs. */
export async function nodeCommand(node: RedisNodeRef, args: string[], password?: string, attempt = 0): Promise<unknown> {
  const client = nodeClient(node, password);
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    if (attempt >= 2 || !node.alive) throw err;
    return nodeCommand(node, args, password, attempt + 1);
  }
  try {
    return await client.sendCommand(args);
  } finally {
    client.destroy();
  }
}
