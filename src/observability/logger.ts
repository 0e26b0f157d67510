/**
 * pino, with secrets redacted by path wherever they might be logged. Anything
 * that could carry a password, an API key or a JWT is listed here once.
 * Errors (`err`, `error`) go through `serializeError`, which writes a failed
 * SQL statement by its masked text and SQLSTATE only, never its values.
 *
 * Development logs are pretty-printed by `pino-pretty` (one readable line per
 * entry, local time, fields after the message); production and test logs stay
 * JSON, one object per line. pino-pretty is a development dependency: without
 * it, development logs are JSON too.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import { serializeError } from './error-serializer';

export type { Logger };

export const REDACT_PATHS = [
  'password',
  'apiKey',
  'token',
  'secret',
  'authorization',
  '*.password',
  '*.apiKey',
  '*.token',
  '*.secret',
  '*.authorization',
  'req.headers.authorization',
  'headers.authorization',
  'variables.password',
  'variables.apiKey',
  'variables.input.apiKey',
  'variables.input.password',
];

export function createLogger(level: string, destination: DestinationStream = stdoutDestination()): Logger {
  return pino(
    {
      level,
      base: { service: 'llmselect-api' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: { err: serializeError, error: serializeError },
    },
    destination,
  );
}

let stdout: ReturnType<typeof pino.destination> | undefined;

/**
 * Standard output, written asynchronously and in batches of about 4 KB (or
 * every 200 ms when quieter), so a busy server makes one write per ~15
 * request lines instead of one blocking write per line (measured: the
 * request log's synchronous write was ~7% of a cache hit's time, and a full
 * pipe stalled the event loop). What is still buffered is written
 * synchronously when the process exits.
 */
function stdoutDestination(): DestinationStream {
  if (!stdout) {
    // Up to 4 KB is gathered before a write, and whatever is gathered goes out within 200 ms.
    const destination = pino.destination({ dest: 1, sync: false, minLength: 4096 });
    stdout = destination;
    setInterval(() => {
      try {
        destination.flush();
      } catch {
        // not ready yet, or closed: the next tick or the exit flush writes it
      }
    }, 200).unref();
    process.once('exit', () => {
      try {
        destination.flushSync();
      } catch {
        // stdout already closed, or still not writable: nothing more can be done at exit
      }
    });
  }
  return stdout;
}

/** A pino-pretty stream for development (synchronous, to stdout), or undefined when pino-pretty is not installed. */
export function prettyStream(): DestinationStream | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pretty = require('pino-pretty') as (options: Record<string, unknown>) => DestinationStream;
    return pretty({
      colorize: process.stdout.isTTY === true,
      translateTime: 'SYS:HH:MM:ss.l',
      // The request line's message already says these (see request-log.ts); JSON logs keep them as fields.
      ignore: 'pid,hostname,service,method,path,operation,status,durationMs,sql,cache,userId',
      singleLine: true,
      sync: true,
    });
  } catch {
    return undefined;
  }
}
