/**
 * Apollo Server over Node's http module: body parsing, the hand-off to
 * `executeHTTPGraphQLRequest`, and HTTP caching of GET responses (`ETag`,
 * `304 Not Modified` on a matching `If-None-Match`; `Cache-Control` comes from
 * Apollo's cache-control plugin).
 */
import { type ApolloServer, HeaderMap } from '@apollo/server';
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context } from './context';

/** Default of `Config.limits.maxBodyBytes`. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function bodyTooLarge(maxBytes: number): HttpError {
  return new HttpError(413, `Request body too large: the limit is ${maxBytes} bytes`);
}

/**
 * The request body as text, refused with 413 as soon as it passes `maxBytes`:
 * at once when `Content-Length` says so, else when the bytes read pass it
 * (chunked uploads). Reading stops there; the connection is closed after the
 * 413 (see app.ts), so an oversized upload is never buffered nor drained.
 */
export function readBody(req: IncomingMessage, maxBytes = DEFAULT_MAX_BODY_BYTES): Promise<string> {
  if (Number(req.headers['content-length']) > maxBytes) return Promise.reject(bodyTooLarge(maxBytes));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) {
        chunks.push(chunk);
        return;
      }
      cleanup();
      req.pause();
      reject(bodyTooLarge(maxBytes));
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

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

function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((candidate) => candidate.trim() === etag || candidate.trim() === '*');
}

export async function handleGraphqlRequest(
  apollo: ApolloServer<Context>,
  req: IncomingMessage,
  res: ServerResponse,
  context: () => Promise<Context>,
  maxBodyBytes = DEFAULT_MAX_BODY_BYTES,
): Promise<void> {
  const headers = new HeaderMap();
  for (const [key, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(key, Array.isArray(value) ? value.join(', ') : value);
  }
  const url = new URL(req.url ?? '/', 'http://localhost');
  const body = parseJsonBody(req, await readBody(req, maxBodyBytes));
  const response = await apollo.executeHTTPGraphQLRequest({
    httpGraphQLRequest: { method: (req.method ?? 'GET').toUpperCase(), headers, search: url.search, body },
    context,
  });
  for (const [key, value] of response.headers) res.setHeader(key, value);

  if (response.body.kind === 'chunked') {
    res.statusCode = response.status ?? 200;
    for await (const chunk of response.body.asyncIterator) res.write(chunk);
    res.end();
    return;
  }
  const text = response.body.string;
  const status = response.status ?? 200;
  if (req.method === 'GET' && status === 200 && !response.headers.get('content-type')?.includes('text/html')) {
    const etag = weakEtag(text);
    res.setHeader('etag', etag);
    if (etagMatches(req.headers['if-none-match'], etag)) {
      res.statusCode = 304;
      res.end();
      return;
    }
  }
  res.statusCode = status;
  res.end(text);
}
