/**
 * Egress policy for endpoints users choose: the `baseUrl` of a saved API key
 * is where the server POSTs that user's key and prompts, so it must not be
 * turned against the server's own network (SSRF).
 *
 * An address is *public* when ipaddr.js classifies it as `unicast` (IPv4-
 * mapped IPv6 is unwrapped first). Everything else — loopback, RFC 1918,
 * link-local, CGNAT, unique-local, NAT64, 6to4, multicast, unspecified — is
 * *private*. Decision table:
 *
 * | address                                   | allowPrivateNetworks | in allowCidrs | verdict |
 * |-------------------------------------------|----------------------|---------------|---------|
 * | public                                    | any                  | any           | allowed |
 * | private (not a metadata endpoint)         | true                 | any           | allowed |
 * | private (not a metadata endpoint)         | false                | yes           | allowed |
 * | private (not a metadata endpoint)         | false                | no            | refused |
 * | cloud metadata (169.254.169.254, …)       | any                  | yes           | allowed |
 * | cloud metadata                            | any                  | no            | refused |
 *
 * It is enforced twice:
 * - at save time (`checkEndpoint`): the host is resolved and a refused address
 *   answers BAD_USER_INPUT at once (a host that does not resolve is accepted:
 *   the connect-time check still holds);
 * - at connect time (`createGuardedFetch`): an undici dispatcher whose
 *   connector checks IP literals and whose DNS `lookup` checks every resolved
 *   address before the socket opens. Every connection — the first, each
 *   redirect hop, a re-resolution after DNS rebinding — goes through it.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type * as Undici from 'undici';

/** Where a user's saved `baseUrl` may point (checked at save time and at connect time; `Config.egress`). */
export interface EgressPolicy {
  /** Loopback, private, link-local and other non-public addresses (never cloud metadata endpoints). */
  allowPrivateNetworks: boolean;
  /** Extra ranges allowed even when private, e.g. `10.1.0.0/16` for an in-house vLLM. */
  allowCidrs: readonly string[];
}

/** Cloud instance-metadata endpoints: refused unless a CIDR entry names them explicitly. */
const METADATA_ADDRESSES = ['169.254.169.254', '169.254.170.2', '100.100.100.200', 'fd00:ec2::254'].map((a) => ipaddr.parse(a).toString());

/** A connection the policy refused. `code` survives wrapping by fetch and the AI SDK (`cause` chains). */
export class EgressDeniedError extends Error {
  override name = 'EgressDeniedError';
  readonly code = 'EGRESS_DENIED';
  constructor(readonly host: string) {
    super(`refused to connect to ${host}: private, loopback, link-local or metadata address`);
  }
}

/** Why `address` is refused, or null when the policy allows it. */
export function refusal(policy: EgressPolicy, address: string): string | null {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.process(address);
  } catch {
    return 'not an IP address';
  }
  const listed = policy.allowCidrs.some((cidr) => {
    const [range, bits] = ipaddr.parseCIDR(cidr);
    return range.kind() === ip.kind() && ip.match(range, bits);
  });
  if (listed) return null;
  if (METADATA_ADDRESSES.includes(ip.toString())) return 'a cloud metadata endpoint';
  const range = ip.range();
  if (range === 'unicast' || policy.allowPrivateNetworks) return null;
  return `a ${range} address`;
}

type LookupFn = typeof dnsLookup;

export interface GuardOptions {
  /** DNS resolution (tests inject one to simulate rebinding). Default `dns.lookup`. */
  lookup?: LookupFn;
}

/** A `fetch` whose every connection obeys the policy; `close()` ends its pooled connections (at shutdown). */
export type GuardedFetch = typeof fetch & { close(): Promise<void> };

/**
 * A `fetch` whose every connection obeys the policy. Pass it to the AI SDK
 * providers (`fetch` option) and to model-list calls for user endpoints.
 *
 * undici (its own copy, not Node's bundled one: the dispatcher and connector
 * are not public in Node's) is required on the first call, and the agent made
 * then: only keys with a base URL call through here, and loading undici cost
 * every process about a tenth of its module-load CPU.
 */
export function createGuardedFetch(policy: EgressPolicy, options: GuardOptions = {}): GuardedFetch {
  const resolve = options.lookup ?? dnsLookup;
  const guardedLookup = ((hostname: string, opts: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    resolve(hostname, { ...opts, all: true }, (error, addresses) => {
      if (error) return callback(error);
      const list = addresses as unknown as LookupAddress[];
      if (list.length === 0 || list.some((a) => refusal(policy, a.address))) return callback(new EgressDeniedError(hostname));
      if (opts?.all) return callback(null, list);
      return callback(null, list[0]!.address, list[0]!.family);
    });
  }) as unknown as LookupFn;
  let agent: Undici.Agent | undefined;
  let closed = false;
  const guarded = ((input: Parameters<typeof fetch>[0], init?: RequestInit) => {
    const { Agent, buildConnector, fetch: undiciFetch } = require('undici') as typeof Undici;
    if (!agent) {
      const connect = buildConnector({ lookup: guardedLookup });
      agent = new Agent({
        connect: (opts, callback) => {
          // An IP literal skips DNS (and so `lookup`): check it here.
          const host = opts.hostname.replace(/^\[|\]$/g, '');
          if (isIP(host) && refusal(policy, host)) return callback(new EgressDeniedError(host), null);
          return connect(opts, callback);
        },
      });
      // A call after `close()` fails as it did when the agent was made up front (a closed dispatcher).
      if (closed) void agent.close();
    }
    return undiciFetch(input as Parameters<typeof undiciFetch>[0], { ...(init as object), dispatcher: agent });
  }) as unknown as GuardedFetch;
  guarded.close = async () => {
    closed = true;
    await agent?.close();
  };
  return guarded;
}

/** True when `error` (or anything in its `cause` chain) is an egress refusal. */
export function isEgressDenied(error: unknown): boolean {
  for (let e = error, depth = 0; e != null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === 'EGRESS_DENIED') return true;
  }
  return false;
}

/**
 * Save-time check of a user's endpoint: the host (IP literal, or every
 * address it resolves to within `timeoutMs`) must be allowed. Resolves to the
 * refusal reason, or null. DNS failures and timeouts resolve to null: the
 * connect-time check decides then.
 */
export async function checkEndpoint(
  policy: EgressPolicy,
  url: URL,
  timeoutMs = 2_000,
  resolve: LookupFn = dnsLookup,
): Promise<string | null> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host)) return refusal(policy, host);
  let timer: NodeJS.Timeout | undefined;
  const addresses = await Promise.race([
    new Promise<LookupAddress[]>((done) =>
      resolve(host, { all: true }, (error, list) => done(error ? [] : (list as unknown as LookupAddress[]))),
    ),
    new Promise<LookupAddress[]>((done) => {
      timer = setTimeout(() => done([]), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
  for (const { address } of addresses) {
    const reason = refusal(policy, address);
    if (reason) return reason;
  }
  return null;
}
