/**
 * GraphQL over Node's http module, top to bottom:
 *
 * 1. read and parse the body (bounded);
 * 2. verify the bearer token once (a JWT or a personal API token);
 * 3. the read cache's edge: a signed-in query whose document is known to be
 *    cacheable is looked up (one Redis round trip) and a hit is written to the
 *    socket as stored bytes, without Apollo (`read-cache/request.ts` has the
 *    steps the edge and the Apollo plugin take); for a personal token, only a
 *    document already checked against its scopes (`auth/token-scopes.ts`);
 *    an anonymous query whose every root field declares a public entry (a
 *    share link's page, `cacheHint({ publicEntry })`) is looked up the same way
 *    under that entry's scope, after the client's allowance is spent
 *    (`PublicReads`), and a hit is counted;
 * 4. a miss whose document compiles to SQL-built JSON (`compiled-read.ts`)
 *    is answered from PostgreSQL's text without Apollo, and stored;
 * 5. otherwise Apollo's `executeHTTPGraphQLRequest`; the bytes of a cacheable
 *    result are stored as sent;
 * 6. HTTP caching of GET responses (`ETag`, `304 Not Modified` on a matching
 *    `If-None-Match`).
 *
 * Steps 2 to 6 run under the request's deadline (`REQUEST_DEADLINE_MS`,
 * `../db/request-deadline.ts`): every statement they cause is bounded by it.
 */
import { type ApolloServer, HeaderMap } from '@apollo/server';
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { withDeadline } from '../db/request-deadline';
import { AppError } from '../errors';
import { HttpError, readBody } from '../http/respond';
import { noteOperation } from '../observability/request-log';
import type { TokenAccessPolicy } from '../auth/token-scopes';
import type { ReadRouter } from '../db/replicas';
import type { Principal } from '../auth/principal';
import type { GraphqlParams, OutgoingAnswer, StoredAnswer } from '../read-cache/request';
import type { ResponseCache } from '../read-cache/response-cache';
import type { CompiledReads } from './compiled-read';
import type { GraphqlContext, RequestContexts } from './context';
import type { DocumentCache } from './document-cache';
import { ResponseBytes, responseTooLargeBody } from './response-bytes';
import { activeSpan, withSpan } from '../observability/tracing';

function parseJsonBody(req: IncomingMessage, raw: string): unknown {
  if (req.method !== 'POST') return undefined;
  const type = req.headers['content-type'] ?? '';
  if (!type.includes('application/json')) return raw;
  if (raw === '') return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    throw new HttpError(400, 'Request body is not valid JSON');
  }
}

export function weakEtag(body: string): string {
  return `W/"${createHash('sha1').update(body).digest('base64url')}"`;
}

/** `If-None-Match` compares weakly (RFC 9110, 13.1.2): `W/"x"` and `"x"` match. */
function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  const opaque = etag.replace(/^W\//, '');
  return header.split(',').some((candidate) => {
    const tag = candidate.trim();
    return tag === '*' || tag.replace(/^W\//, '') === opaque;
  });
}

export interface GraphqlHttpDeps {
  apollo: ApolloServer<GraphqlContext>;
  /** The principal and the context, as for `/graphql/stream`. */
  contexts: RequestContexts;
  responseCache: ResponseCache;
  /** Personal tokens' scopes: the edge answers a personal token only for a document already allowed. */
  tokenScopes: TokenAccessPolicy;
  /** Hot reads answered as SQL-built JSON (`compiled-read.ts`); absent when COMPILED_READS=off. */
  compiledReads?: CompiledReads;
  /** Told how each compiled read ended: served, or sent back to the ordinary path (`error` when it failed). */
  onCompiledRead?(outcome: 'served' | 'fallback', error?: unknown): void;
  /** `Config.limits.maxBodyBytes`: a larger body answers 413. */
  maxBodyBytes?: number;
  /** `Config.limits.maxSignedInBodyBytes`: the limit for a caller whose token was verified (default: `maxBodyBytes`). */
  maxSignedInBodyBytes?: number;
  /** `Config.limits.maxResponseBytes`: a response growing past it answers RESPONSE_TOO_LARGE (`response-bytes.ts`). */
  maxResponseBytes?: number;
  /** The per-document caches: told whether a request is signed in, before Apollo looks its document up. */
  documents?: DocumentCache;
  /** `Config.requestDeadlineMs`: the request's statements together end by it (0 or absent: no deadline). */
  requestDeadlineMs?: number;
  /** Anonymous reads the read cache may answer at the edge (a share link's page): admitted and counted per request. */
  publicReads?: PublicReads;
  /** With read replicas: each request's route (`../db/replicas.ts`), settled before a compiled read or by the Apollo plugin. */
  readRouter?: ReadRouter;
}

/**
 * What the edge asks before and after answering an anonymous request from a
 * public read-cache entry (`cacheHint({ publicEntry })`), so a hit obeys the
 * same per-client limit and is counted like an answer computed by the resolver.
 */
export interface PublicReads {
  /** Spends the client's allowance for a read of `scope`; false: refused (Apollo then answers the refusal). */
  admit(scope: string, clientIp: string): Promise<boolean>;
  /** A read of `scope` was answered from the cache. */
  answered(scope: string): void;
}

/**
 * Anonymous requests whose point of the client's allowance was spent already, by the public edge's lookup that
 * missed (`public-edge.ts`): this route does not spend another.
 */
export const admittedAtEdge = new WeakSet<IncomingMessage>();

/** The `/graphql` route. */
export function createGraphqlHandler(
  deps: GraphqlHttpDeps,
): (req: IncomingMessage, res: ServerResponse, requestId: string) => Promise<void> {
  return (req, res, requestId) => handleGraphqlRequest(deps, req, res, requestId);
}

async function handleGraphqlRequest(deps: GraphqlHttpDeps, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  // The token first (no body read yet): a signed-in caller may send a larger body (an import), anyone else the small limit.
  // A bad token is Apollo's to report (through context creation), after the edge has stepped aside.
  const principal: Resolved = await deps.contexts.principal(req).then(
    (p) => ({ ok: true as const, value: p }),
    (error: unknown) => ({ ok: false as const, error }),
  );
  const limit = principal.ok && principal.value ? (deps.maxSignedInBodyBytes ?? deps.maxBodyBytes) : deps.maxBodyBytes;
  const body = parseJsonBody(req, await readBody(req, limit));
  // From here on the request's database work is bounded as a whole (the upload's time is the client's).
  const answer = () => answerGraphqlRequest(deps, req, res, requestId, url, body, principal);
  const router = deps.readRouter;
  // The operation's span (named by `graphqlTracingPlugin` once Apollo has resolved it; by the sent name otherwise).
  await withSpan('graphql', {}, () => withDeadline(deps.requestDeadlineMs ?? 0, router ? () => router.within(answer) : answer));
}

type Resolved = { ok: true; value: Principal | null } | { ok: false; error: unknown };

async function answerGraphqlRequest(
  deps: GraphqlHttpDeps,
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
  url: URL,
  body: unknown,
  principal: Resolved,
): Promise<void> {
  const method = (req.method ?? 'GET').toUpperCase();
  // For the request's log line (a cached answer never reaches Apollo).
  const sent =
    method === 'POST'
      ? (body as { operationName?: unknown; query?: unknown } | null)
      : { operationName: url.searchParams.get('operationName'), query: url.searchParams.get('query') };
  const head = typeof sent?.query === 'string' ? /^\s*(query|mutation|subscription)\s+(\w+)/.exec(sent.query) : null;
  const sentName = typeof sent?.operationName === 'string' ? sent.operationName : head?.[2];
  noteOperation(sentName);
  // Named as Apollo's plugin would (`<type> <name>`) when the text says the type: a cached or compiled answer
  // never reaches Apollo, and its span must read the same (`graphql <name>` when only a hash was sent).
  if (sentName)
    activeSpan()
      ?.setAttribute('graphql.operation.name', sentName)
      .updateName(`${head?.[2] === sentName ? head[1] : 'graphql'} ${sentName}`);

  // A signed-in request's read-cache state, shared with the Apollo plugin through the context; an anonymous
  // request's only for documents that declare public entries (a share link's page).
  const anonymous = principal.ok && principal.value === null;
  const reading =
    principal.ok && principal.value
      ? deps.responseCache.begin(principal.value.userId, req.headers['cache-control'])
      : anonymous && deps.publicReads
        ? deps.responseCache.beginPublic(req.headers['cache-control'])
        : undefined;

  let publicAdmitted = false;
  if (anonymous && reading && deps.publicReads) {
    const params = edgeParams(req, method, url, body, deps.responseCache);
    const entry = params && reading.entry(params);
    if (params && entry) {
      // The client's allowance and the entry asked together (two connections, one wait instead of two in a row);
      // a hit is sent only when the read was admitted, else Apollo answers the refusal (errors are never stored).
      // Admitted already: the public edge (`public-edge.ts`) spent the point with its lookup, which missed.
      const [admitted, hit] = await Promise.all([
        admittedAtEdge.has(req) || deps.publicReads.admit(entry.scope, deps.contexts.clientIp(req)),
        reading.atEdge(params),
      ]);
      if (admitted) {
        publicAdmitted = true;
        if (hit) {
          deps.publicReads.answered(entry.scope);
          sendHit(req, res, method, hit, `public, max-age=${entry.publicMaxAge ?? 0}`);
          return;
        }
      }
    }
  }

  if (principal.ok && principal.value && reading) {
    const sentParams = edgeParams(req, method, url, body, deps.responseCache);
    // A cached or compiled answer must not bypass a personal token's scopes: unknown or refused documents go through Apollo.
    const allowed = sentParams && deps.tokenScopes.allowsAtEdge(principal.value, sentParams.documentHash, sentParams.operationName);
    const params = allowed ? sentParams : undefined;
    const hit = params && (await reading.atEdge(params));
    if (hit) {
      sendHit(req, res, method, hit);
      return;
    }
    const compiled = params && deps.compiledReads?.get(params.documentHash, params.operationName);
    if (compiled) {
      // A compiled read is a query: its statements take the route the user's commit mark allows.
      await deps.readRouter?.settle(principal.value.userId);
      const text = await compiled.run(principal.value.userId, params.variables).catch((error: unknown) => {
        if (error instanceof AppError && error.code === 'RESPONSE_TOO_LARGE') return error;
        deps.onCompiledRead?.('fallback', error);
        return null;
      });
      if (text instanceof AppError) {
        deps.onCompiledRead?.('served');
        await sendTooLarge(res, deps.maxResponseBytes ?? 0);
        return;
      }
      if (text === undefined) deps.onCompiledRead?.('fallback');
      if (typeof text === 'string') {
        deps.onCompiledRead?.('served');
        if (deps.maxResponseBytes !== undefined && text.length > deps.maxResponseBytes) {
          await sendTooLarge(res, deps.maxResponseBytes);
          return;
        }
        res.setHeader('content-type', 'application/json; charset=utf-8');
        res.setHeader('cache-control', 'private, no-cache');
        await sendResult(req, res, method, 200, text, reading.outgoing(text, 'compiled'));
        return;
      }
    }
  }

  const headers = new HeaderMap();
  for (const [key, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(key, Array.isArray(value) ? value.join(', ') : value);
  }
  const budget = deps.maxResponseBytes !== undefined ? new ResponseBytes(deps.maxResponseBytes) : undefined;
  const limit: { expiresAt?: number } = {};
  const execute = () =>
    deps.apollo.executeHTTPGraphQLRequest({
      httpGraphQLRequest: { method, headers, search: url.search, body },
      context: async () => {
        if (!principal.ok) throw principal.error;
        const context: GraphqlContext = deps.contexts.create(req, requestId, principal.value);
        context.responseBytes = budget;
        context.readCache = reading;
        context.publicReadAdmitted = publicAdmitted;
        context.publicEntryLimit = limit;
        return context;
      },
    });
  // Anonymous documents get only a small share of the per-document caches (`document-cache.ts`).
  const response = deps.documents
    ? await deps.documents.within({ signedIn: principal.ok && principal.value !== null }, execute)
    : await execute();
  for (const [key, value] of response.headers) res.setHeader(key, value);

  if (response.body.kind === 'chunked') {
    res.statusCode = response.status ?? 200;
    for await (const chunk of response.body.asyncIterator) res.write(chunk);
    res.end();
    return;
  }
  const status = response.status ?? 200;
  // Cut off: the fields past the budget were never built; the partial body is not sent either.
  if (budget && (budget.exceeded || response.body.string.length > budget.maxBytes)) {
    await sendTooLarge(res, budget.maxBytes);
    return;
  }
  const text = response.body.string;
  // A public answer is not stored past what it shows (a share link's expiry, told by its resolver).
  if (reading && limit.expiresAt !== undefined) reading.limitLifetime(limit.expiresAt - Date.now());
  const answer = status === 200 && reading ? reading.outgoing(text, 'apollo') : { bytes: Buffer.from(text) };
  await sendResult(req, res, method, status, text, answer, response.headers.get('content-type'));
}

/** Writes a complete GraphQL response; the read cache stores the bytes of a cacheable one as they are sent. */
async function sendResult(
  req: IncomingMessage,
  res: ServerResponse,
  method: string,
  status: number,
  text: string,
  answer: OutgoingAnswer,
  contentType?: string,
): Promise<void> {
  const { bytes, stored } = answer;
  if (stored) res.setHeader('x-cache', 'MISS');
  if (method === 'GET' && status === 200 && !contentType?.includes('text/html')) {
    const etag = answer.etag ?? weakEtag(text);
    res.setHeader('etag', etag);
    if (etagMatches(req.headers['if-none-match'], etag)) {
      res.statusCode = 304;
      res.end();
      await stored;
      return;
    }
  }
  res.statusCode = status;
  res.setHeader('content-length', bytes.length);
  res.end(bytes);
  await stored;
}

/** The answer of a response cut off at `MAX_RESPONSE_BYTES`: one RESPONSE_TOO_LARGE error, never stored. */
async function sendTooLarge(res: ServerResponse, maxBytes: number): Promise<void> {
  const bytes = Buffer.from(responseTooLargeBody(maxBytes));
  res.statusCode = 200;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.removeHeader('etag');
  res.removeHeader('x-cache');
  res.setHeader('content-length', bytes.length);
  res.end(bytes);
}

function sendHit(
  req: IncomingMessage,
  res: ServerResponse,
  method: string,
  { bytes, etag }: StoredAnswer,
  cacheControl = 'private, no-cache',
): void {
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('cache-control', cacheControl);
  res.setHeader('x-cache', 'HIT');
  if (method === 'GET') {
    res.setHeader('etag', etag);
    if (etagMatches(req.headers['if-none-match'], etag)) {
      res.statusCode = 304;
      res.end();
      return;
    }
  }
  res.setHeader('content-length', bytes.length);
  res.statusCode = 200;
  res.end(bytes);
}

/**
 * The request's document hash, operation name and variables when the edge may
 * answer it: a single (not batched) operation, asked as JSON, over POST with a
 * JSON body or over GET with the CSRF-prevention headers Apollo requires.
 */
export function edgeParams(
  req: IncomingMessage,
  method: string,
  url: URL | undefined,
  body: unknown,
  cache: ResponseCache,
): GraphqlParams | undefined {
  const accept = req.headers.accept;
  if (accept && accept.includes('application/graphql-response+json')) return undefined;
  let query: unknown;
  let operationName: unknown;
  let variables: unknown;
  let extensions: unknown;
  if (method === 'POST') {
    if (!body || typeof body !== 'object' || Array.isArray(body)) return undefined;
    ({ query, operationName, variables, extensions } = body as Record<string, unknown>);
  } else if (method === 'GET' && url) {
    if (
      !req.headers['apollo-require-preflight'] &&
      !req.headers['x-apollo-operation-name'] &&
      !req.headers['content-type']?.includes('application/json')
    )
      return undefined;
    query = url.searchParams.get('query') ?? undefined;
    operationName = url.searchParams.get('operationName') ?? undefined;
    try {
      variables = JSON.parse(url.searchParams.get('variables') ?? 'null');
      extensions = JSON.parse(url.searchParams.get('extensions') ?? 'null');
    } catch {
      return undefined;
    }
  } else {
    return undefined;
  }
  if (operationName !== undefined && operationName !== null && typeof operationName !== 'string') return undefined;
  if (variables !== undefined && variables !== null && (typeof variables !== 'object' || Array.isArray(variables))) return undefined;
  let documentHash: string | undefined;
  if (typeof query === 'string') documentHash = cache.documentHash(query);
  else if (query === undefined || query === null) {
    const hash = (extensions as { persistedQuery?: { sha256Hash?: unknown } } | null)?.persistedQuery?.sha256Hash;
    if (typeof hash === 'string' && /^[0-9a-f]{64}$/.test(hash)) documentHash = hash;
  }
  if (!documentHash) return undefined;
  return { documentHash, operationName: operationName ?? null, variables: (variables ?? {}) as Record<string, unknown> };
}
