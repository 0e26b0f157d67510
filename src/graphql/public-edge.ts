/**
 * The public edge: a share link's page, asked anonymously, answered from the read cache before the general
 * machinery (`http/server.ts`'s shortcut). A hot shared page is the one read whose answer needs no principal,
 * deadline, span, replica route, request log record or Apollo: the bytes are stored, keyed by the link's own
 * generation. So, for `POST /graphql` without `Authorization`, a small JSON body, no `Cache-Control: no-cache`,
 * and tracing off:
 *
 * 1. the body is read and parsed once (`edgeParams`, as the `/graphql` route would);
 * 2. its document must be one whose policy names a public entry for these variables (`cacheHint({ publicEntry })`,
 *    learnt by Apollo: an unknown document goes the general way), a malformed token names none;
 * 3. ONE Redis round trip (`ResponseCache.lookupSpending`: a script) spends one point of the client's per-IP
 *    allowance (`RATE_LIMIT_SHARED_PER_IP`, the limiter's own key and steps) and reads the entry at the link's
 *    generation (the local copy's bytes when Redis says they still hold);
 * 4. a hit is written as `graphql/http.ts` writes it (`Cache-Control: public, max-age`, `x-cache: HIT`), and counted
 *    as a view (`answered`, flushed for live links only).
 *
 * Anything else is handed to the general path with the body already read (`bodyReadEarly`): a refusal is answered
 * there (the limiter asked again, then Apollo's RATE_LIMITED), Redis unavailable decides there (fail open), and a
 * miss goes there already admitted (`admittedAtEdge`: no second point), where Apollo computes and stores it.
 * Revocation and expiry hold as for the `/graphql` route's edge: the generation is read with the entry, and the
 * entry's TTL never passes the link's expiry.
 *
 * The access log: a hit here writes no line of its own (the line, its JSON and the pipe write were a fifth of a
 * hit's cost); every `SUMMARY_MS` one `info` line says how many pages were answered here, and at `debug` level each
 * hit still gets its line. The duration metric is observed for every hit.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Allowance } from '../cache/cache.port';
import { bodyReadEarly } from '../http/respond';
import type { Shortcut } from '../http/server';
import type { Logger } from '../observability/logger';
import type { EntryRef } from '../read-cache/request';
import type { ResponseCache } from '../read-cache/response-cache';
import { admittedAtEdge, edgeParams } from './http';
import { LruMap } from '../lru-map';

/**
 * Bodies whose entry is remembered (text → entry: the same text always names the same entry, as the policy of a
 * document never changes in a process), so a repeated page costs no JSON parse and no hashing. Bounded: bodies up
 * to `MEMO_BODY_CHARS`, `MEMO_ENTRIES` of them (about 10 MB at most), the oldest forgotten first (read with `peek`:
 * no reordering per hit).
 */
const MEMO_ENTRIES = 4_096;
const MEMO_BODY_CHARS = 1_024;

/** How often the hits answered here are summed up in the log. */
export const SUMMARY_MS = 10_000;

export interface PublicEdgeDeps {
  responseCache: ResponseCache;
  /** One point of the client's allowance for a public read (undefined: no limit). */
  allowance(clientIp: string): Allowance | undefined;
  clientIp(req: IncomingMessage): string;
  /** A read of `scope` was answered from the cache (a view). */
  answered(scope: string): void;
  /** `Config.limits.maxBodyBytes`: a larger declared body goes the general way (and is refused there). */
  maxBodyBytes: number;
  logger: Logger;
}

export interface PublicEdge {
  shortcut: Shortcut;
  close(): void;
}

export function createPublicEdge(deps: PublicEdgeDeps): PublicEdge {
  const { responseCache, logger } = deps;
  let hits = 0;
  const summary = setInterval(() => {
    if (hits === 0) return;
    logger.info({ route: 'graphql', hits, intervalMs: SUMMARY_MS }, `public edge: ${hits} shared pages answered from the read cache`);
    hits = 0;
  }, SUMMARY_MS);
  summary.unref();
  const perHit = logger.isLevelEnabled('debug');
  const known = new LruMap<string, EntryRef>(MEMO_ENTRIES);

  const send = (res: ServerResponse, entry: EntryRef, bytes: Buffer, requestId: string, answered: (route: string) => void) => {
    res.statusCode = 200;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    res.setHeader('cache-control', `public, max-age=${entry.publicMaxAge ?? 0}`);
    res.setHeader('x-cache', 'HIT');
    res.setHeader('content-length', bytes.length);
    res.end(bytes);
    deps.answered(entry.scope);
    answered('graphql');
    hits++;
    if (perHit)
      logger.debug({ requestId, method: 'POST', path: '/graphql', status: 200, cache: 'HIT' }, 'POST /graphql 200 cache=HIT (public edge)');
  };

  const shortcut: Shortcut = (req, res, requestId, general, answered) => {
    if (req.method !== 'POST' || req.url !== '/graphql') return false;
    const headers = req.headers;
    if (headers.authorization !== undefined) return false;
    const declared = Number(headers['content-length']);
    if (!(declared > 0 && declared <= deps.maxBodyBytes)) return false;
    if (!headers['content-type']?.includes('application/json')) return false;
    const cacheControl = headers['cache-control'];
    if (cacheControl && /\bno-cache\b/i.test(cacheControl)) return false;
    if (headers.accept?.includes('application/graphql-response+json')) return false;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.once('error', (error) => {
      bodyReadEarly(req, error);
      general();
    });
    req.once('end', () => {
      const text = (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8');
      const handOver = () => {
        bodyReadEarly(req, text);
        general();
      };
      let entry = known.peek(text);
      if (!entry) {
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          handOver();
          return;
        }
        const params = edgeParams(req, 'POST', undefined, body, responseCache);
        entry = params && responseCache.publicEntryOf(params);
        if (!entry) {
          handOver();
          return;
        }
        if (text.length <= MEMO_BODY_CHARS) known.set(text, entry);
      }
      const found = entry;
      responseCache.lookupSpending(found, deps.allowance(deps.clientIp(req))).then(
        (result) => {
          if (result === undefined || result === 'refused') handOver();
          else if (!result.bytes) {
            admittedAtEdge.add(req);
            handOver();
          } else send(res, found, result.bytes, requestId, answered);
        },
        () => handOver(),
      );
    });
    return true;
  };
  return { shortcut, close: () => clearInterval(summary) };
}
