/**
 * pino, with secrets redacted by path wherever they might be logged. Anything
 * that could carry a password, an API key or a JWT is listed here once.
 * Errors (`err`, `error`) go through `serializeError`, which writes a failed
 * SQL statement by its masked text and SQLSTATE only, never its values.
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

export function createLogger(level: string, destination?: DestinationStream): Logger {
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
