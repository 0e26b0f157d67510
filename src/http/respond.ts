/**
 * The small vocabulary every route answers with: a JSON body (`sendJson`), a
 * refusal with an HTTP status (`HttpError`, answered by `server.ts`), and a
 * bounded request body (`readBody`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Default of `Config.limits.maxBodyBytes`. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** Thrown by a route; `server.ts` answers it with `status` (a 5xx is logged as a failure). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** A 413's limit (the caller's: anonymous or signed in). */
    readonly maxBytes?: number,
  ) {
    super(message);
  }
}

export function bodyTooLarge(maxBytes: number): HttpError {
  return new HttpError(413, `Request body too large: the limit is ${maxBytes} bytes`, maxBytes);
}

/** A JSON answer that no cache keeps. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(JSON.stringify(body));
}

/** Bodies read before the route ran (`server.ts`'s shortcut), by request: `readBody` answers them. */
const readEarly = new WeakMap<IncomingMessage, string | Error>();

/** The body of `req` was read already (or failed to be): the route's `readBody` gets it. */
export function bodyReadEarly(req: IncomingMessage, body: string | Error): void {
  readEarly.set(req, body);
}

/**
 * The request body as text, refused with 413 as soon as it passes `maxBytes`:
 * at once when `Content-Length` says so, else when the bytes read pass it
 * (chunked uploads). Buffering stops there; after the 413 the rest of the
 * upload is read and dropped for a bounded time, then the connection closes
 * (`lingerAfter` in server.ts), so an oversized upload is never buffered.
 */
export function readBody(req: IncomingMessage, maxBytes = DEFAULT_MAX_BODY_BYTES): Promise<string> {
  const early = readEarly.get(req);
  if (early !== undefined) {
    readEarly.delete(req);
    return early instanceof Error ? Promise.reject(early) : Promise.resolve(early);
  }
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
