/**
 * The client's address, for per-IP rate limits. By default the socket's peer
 * address: `X-Forwarded-For` is set by whoever sends the request, so it is only
 * read when the operator says how many proxies of theirs append to it
 * (`TRUST_PROXY=N`): the client is then the N-th address from the right, the
 * one the outermost trusted proxy saw. IPv4-mapped IPv6 addresses become IPv4;
 * IPv6 clients are keyed by their /64 (one host usually owns the whole prefix).
 */
import type { IncomingMessage } from 'node:http';
import ipaddr from 'ipaddr.js';
import { LruMap } from '../lru-map';

export function clientIp(req: IncomingMessage, trustProxy: number): string {
  const socket = req.socket.remoteAddress ?? '';
  if (trustProxy > 0) {
    const header = req.headers['x-forwarded-for'];
    const hops = (Array.isArray(header) ? header.join(',') : (header ?? ''))
      .split(',')
      .map((h) => h.trim())
      .filter(Boolean);
    const forwarded = hops.length ? hops[Math.max(0, hops.length - trustProxy)] : undefined;
    const parsed = forwarded && rateLimitKey(forwarded);
    if (parsed) return parsed;
  }
  return rateLimitKey(socket) ?? 'unknown';
}

/** Recent addresses' keys: a client's requests repeat its address (read with `peek`: no reordering per request). */
const keys = new LruMap<string, string | undefined>(10_000);

function rateLimitKey(address: string): string | undefined {
  if (keys.has(address)) return keys.peek(address);
  const key = parseKey(address);
  keys.set(address, key);
  return key;
}

function parseKey(address: string): string | undefined {
  if (!ipaddr.isValid(address)) return undefined;
  let ip = ipaddr.parse(address);
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) ip = (ip as ipaddr.IPv6).toIPv4Address();
  if (ip.kind() === 'ipv4') return ip.toString();
  return `${(ip as ipaddr.IPv6).parts
    .slice(0, 4)
    .map((p) => p.toString(16))
    .join(':')}::/64`;
}
