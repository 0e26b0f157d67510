/**
 * pino, with secrets redacted by path wherever they might be logged. Anything
 * that could carry a password, an API key or a JWT is listed here once.
 */
import pino, { type DestinationStream, type Logger } from 'pino';

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
      serializers: { err: pino.stdSerializers.err },
    },
    destination,
  );
}
