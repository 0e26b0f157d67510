/**
 * CORS: the one place the cross-origin policy is declared. A browser app on
 * another origin (a Vite dev server, the production frontend, Apollo Sandbox)
 * may call `/graphql` and `/graphql/stream`; which origins may is
 * `CORS_ORIGINS` (`config.ts` parses it with `parseOriginRule` below).
 *
 * `server.ts` calls `CorsPolicy.apply` for every request before anything else
 * answers it, so every answer on those routes carries the headers: read-cache
 * hits, 304s, 401s, 413s, Apollo's answers and event streams alike.
 *
 * - Every answer on a CORS route says `Vary: Origin` (what it carries depends
 *   on the origin; the read cache stores bodies only, so it is unaffected).
 * - A request from an allowed origin gets `Access-Control-Allow-Origin`
 *   echoing it, and `Access-Control-Expose-Headers`.
 * - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
 *   from an allowed origin answers 204 here, before Apollo's CSRF check, with
 *   the methods, request headers and max age below. From any other origin it
 *   answers 403 `FORBIDDEN` with no CORS header, so the browser refuses the
 *   request it was asking about.
 * - A request from a disallowed origin, or with no `Origin`, is answered as
 *   if CORS did not exist: no CORS header, Apollo's CSRF prevention as before.
 * - No `Access-Control-Allow-Credentials`: the API takes its token in the
 *   `Authorization` header and sets no cookie.
 * - A preflight that asks `Access-Control-Request-Private-Network: true`
 *   (Chromium, for a public page such as Sandbox calling a local server) is
 *   told `Access-Control-Allow-Private-Network: true` when the origin is allowed.
 *
 * The WebSocket route (`/graphql/ws`, `graphql/ws.ts`) checks `allowsOrigin` on upgrade.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** The routes a browser on another origin may call. */
export const CORS_PATHS: ReadonlySet<string> = new Set(['/graphql', '/graphql/stream']);

/** `GET` (queries, persisted queries, EventSource) and `POST` (everything, graphql-sse's fetch). */
export const CORS_ALLOWED_METHODS = ['GET', 'POST', 'OPTIONS'] as const;

/**
 * The request headers browser clients send: the token, JSON, Apollo's CSRF
 * headers, graphql-sse's reconnection id, Apollo Client's client-awareness
 * headers, a caller's request id, and a reload's `Cache-Control: no-cache`.
 */
export const CORS_ALLOWED_HEADERS = [
  'authorization',
  'content-type',
  'apollo-require-preflight',
  'x-apollo-operation-name',
  'apollographql-client-name',
  'apollographql-client-version',
  'last-event-id',
  'x-request-id',
  'cache-control',
  'if-none-match',
] as const;

/** The response headers a page may read besides the CORS-safelisted ones. */
export const CORS_EXPOSED_HEADERS = ['x-request-id', 'x-response-time', 'x-cache', 'etag', 'retry-after', 'www-authenticate'] as const;

/** How long a browser may reuse a preflight (Chromium caps it at 2 hours). */
export const CORS_MAX_AGE_SECONDS = 7200;

/** `CORS_ORIGINS`' default outside production: local dev servers on any port, and Apollo Sandbox. */
export const DEVELOPMENT_CORS_ORIGINS: readonly string[] = [
  'http://localhost:*',
  'http://127.0.0.1:*',
  'http://[::1]:*',
  'https://studio.apollographql.com',
];

/** One entry of `CORS_ORIGINS`, parsed. */
export type OriginRule = { kind: 'any' } | { kind: 'exact'; origin: string } | { kind: 'pattern'; pattern: string; regex: RegExp };

const PORT_WILDCARD = /:\*$/;
const HOST_WILDCARD = /^(https?):\/\/\*\./;

/**
 * Parses one `CORS_ORIGINS` entry: `*` (any origin), an exact origin
 * (`https://app.example.com`, `http://localhost:5173`; scheme, host and port,
 * no path), or a pattern with `*` as the port (`http://localhost:*`: any port,
 * or none) and/or as the leading labels of the host (`https://*.example.com`:
 * any subdomain, not the apex). Throws an Error saying what is wrong.
 */
export function parseOriginRule(entry: string): OriginRule {
  if (entry === '*') return { kind: 'any' };
  if (entry === 'null') throw new Error('"null" is not allowed (sandboxed and file:// pages all send it)');
  const anyPort = PORT_WILDCARD.test(entry);
  const anySubdomain = HOST_WILDCARD.test(entry);
  // Validate the rest as an origin, with the wildcards standing for something concrete.
  const sample = entry.replace(PORT_WILDCARD, '').replace(HOST_WILDCARD, '$1://sub.');
  if (sample.includes('*'))
    throw new Error(
      `"${entry}": "*" may only stand for the port (http://localhost:*) or the leading labels of the host (https://*.example.com)`,
    );
  let url: URL;
  try {
    url = new URL(sample);
  } catch {
    throw new Error(`"${entry}" is not an origin (scheme://host[:port])`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`"${entry}" must be http:// or https://`);
  if (url.username || url.password || url.search || url.hash || url.pathname !== '/' || /[?#]/.test(sample)) {
    throw new Error(`"${entry}" is not an origin: scheme://host[:port], without path, query or user`);
  }
  if (anyPort && url.port) throw new Error(`"${entry}" is not an origin (scheme://host[:port])`);
  if (!anyPort && !anySubdomain) return { kind: 'exact', origin: url.origin };
  // url.origin is lower case, with a default port dropped: as browsers send Origin.
  let host = escapeRegex(url.hostname);
  if (anySubdomain) host = `(?:[a-z0-9-]+\\.)+${escapeRegex(url.hostname.replace(/^sub\./, ''))}`;
  const port = anyPort ? '(?::\\d{1,5})?' : url.port ? `:${url.port}` : '';
  return { kind: 'pattern', pattern: entry, regex: new RegExp(`^${escapeRegex(url.protocol)}//${host}${port}$`) };
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** What `apply` did with a request. */
export type CorsOutcome = 'none' | 'allowed' | 'preflight' | 'refused-preflight';

export class CorsPolicy {
  private readonly exact: ReadonlySet<string>;
  private readonly patterns: readonly RegExp[];
  private readonly any: boolean;
  private readonly allowMethods = CORS_ALLOWED_METHODS.join(', ');
  private readonly allowHeaders = CORS_ALLOWED_HEADERS.join(', ');
  private readonly exposeHeaders = CORS_EXPOSED_HEADERS.join(', ');

  /** `origins`: `Config.cors.origins` (entries already validated by `parseOriginRule`). */
  constructor(origins: readonly string[]) {
    const rules = origins.map(parseOriginRule);
    this.any = rules.some((rule) => rule.kind === 'any');
    this.exact = new Set(rules.flatMap((rule) => (rule.kind === 'exact' ? [rule.origin] : [])));
    this.patterns = rules.flatMap((rule) => (rule.kind === 'pattern' ? [rule.regex] : []));
  }

  /** True when a page served from `origin` may call the API (also what a WebSocket upgrade checks). */
  allowsOrigin(origin: string): boolean {
    if (origin === 'null') return false;
    return this.any || this.exact.has(origin) || this.patterns.some((regex) => regex.test(origin));
  }

  /**
   * Sets the CORS headers of a request on a CORS route and says what it is.
   * On `preflight` and `refused-preflight` the caller answers with `answerPreflight`.
   */
  apply(req: IncomingMessage, res: ServerResponse): CorsOutcome {
    if (!CORS_PATHS.has(pathOf(req.url))) return 'none';
    res.setHeader('vary', 'Origin');
    const origin = req.headers.origin;
    if (origin === undefined) return 'none';
    const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
    if (!this.allowsOrigin(origin)) return preflight ? 'refused-preflight' : 'none';
    res.setHeader('access-control-allow-origin', origin);
    if (!preflight) {
      res.setHeader('access-control-expose-headers', this.exposeHeaders);
      return 'allowed';
    }
    res.setHeader('access-control-allow-methods', this.allowMethods);
    res.setHeader('access-control-allow-headers', this.allowHeaders);
    res.setHeader('access-control-max-age', String(CORS_MAX_AGE_SECONDS));
    // Chromium's Private Network Access: a page on a public origin (Apollo Sandbox) calling
    // a server on this machine or the LAN asks first; an allowed origin may.
    if (req.headers['access-control-request-private-network'] === 'true') res.setHeader('access-control-allow-private-network', 'true');
    return 'preflight';
  }

  /** Answers a preflight: 204 when allowed (headers set by `apply`), else 403 `FORBIDDEN` without CORS headers. */
  answerPreflight(req: IncomingMessage, res: ServerResponse, outcome: 'preflight' | 'refused-preflight'): void {
    if (outcome === 'preflight') {
      res.statusCode = 204;
      res.setHeader('content-length', '0');
      res.end();
      return;
    }
    const body = JSON.stringify({
      errors: [
        { message: `Origin ${req.headers.origin} is not allowed to call this API (CORS_ORIGINS)`, extensions: { code: 'FORBIDDEN' } },
      ],
    });
    res.statusCode = 403;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    res.setHeader('cache-control', 'no-store');
    res.setHeader('content-length', Buffer.byteLength(body));
    res.end(body);
  }
}

/** The path of a request target, without its query (browsers send normalised paths). */
function pathOf(url: string | undefined): string {
  if (!url) return '/';
  const query = url.indexOf('?');
  return query < 0 ? url : url.slice(0, query);
}
