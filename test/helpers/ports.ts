/**
 * Ports for servers a test starts, stops and starts again on the same port
 * (a private Redis or PostgreSQL, the embedded PostgreSQL), or for a port that
 * must stay closed.
 *
 * Such a port is picked below the kernel's ephemeral range
 * (`/proc/sys/net/ipv4/ip_local_port_range`, 32768–60999 here). A port the
 * kernel hands out for `listen(0)` is in that range, and so is the local port
 * of every outgoing connection: with many tests running side by side, a port
 * picked that way and reused later could be taken in between by any client
 * socket, and a restarted server then failed with "Address already in use"
 * (the embedded PostgreSQL tests failed so under CPU load). Below the range
 * only an explicit bind can take it, and each pick checks it is free.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

const LOWEST = 10_000;

/** The first port of the kernel's ephemeral range (32768 when it cannot be read). */
export function ephemeralRangeStart(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > LOWEST + 1_000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A free port on 127.0.0.1 below the ephemeral range: no outgoing connection and no `listen(0)` can take it. */
export async function freePort(): Promise<number> {
  const high = ephemeralRangeStart();
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = LOWEST + Math.floor(Math.random() * (high - LOWEST));
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port between ${LOWEST} and ${high} after 100 tries`);
}
