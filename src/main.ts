/**
 * Listens, handles signals, shuts down gracefully. Nothing else.
 *
 * This file is the only owner of SIGTERM / SIGINT (Apollo's own handler is off,
 * the embedded PostgreSQL is not hooked to signals). On the first signal:
 * `app.close()` — stop accepting, let running comparisons finish within
 * SHUTDOWN_GRACE_MS and settle the rest, end event streams, close the pool and
 * Redis, stop the embedded PostgreSQL last — then exit 0. A second signal, or
 * a shutdown that outlives the grace period by SHUTDOWN_MARGIN_MS, exits 1 at once.
 *
 * An uncaught exception or unhandled rejection is logged and shuts the server
 * down the same way, exiting 1. A failure to start prints one line with the
 * underlying reason and exits 1; a busy port is found (and reported in one
 * line) before the database and migrations start.
 */
import 'reflect-metadata';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { type App, buildApp } from './app';
import { type Config, ConfigError, loadConfig } from './config';
import { loadProviderPackages } from './llm/language-models';

const SHUTDOWN_MARGIN_MS = 15_000;

let app: App | undefined;
let shuttingDown = false;

function shutdown(reason: string, exitCode: number, config?: Config): void {
  if (shuttingDown) {
    app?.logger.warn({ reason }, 'second stop request: exiting now');
    process.exit(1);
  }
  shuttingDown = true;
  const force = setTimeout(
    () => {
      (app?.logger ?? console).error({ reason }, 'shutdown did not finish in time: exiting');
      process.exit(1);
    },
    (config?.shutdownGraceMs ?? 10_000) + SHUTDOWN_MARGIN_MS,
  ).unref();
  if (!app) return; // still starting: main() stops what it built as soon as it is built
  const running = app;
  running.logger.info({ reason }, 'shutting down');
  running.close().then(
    () => {
      clearTimeout(force);
      running.logger.info({ exitCode }, 'stopped');
      process.exit(exitCode);
    },
    (err: unknown) => {
      running.logger.error({ err }, 'shutdown failed');
      process.exit(1);
    },
  );
}

/** One line, whatever was thrown (some libraries reject with `undefined` or an empty AggregateError). */
function describeStartupError(error: unknown): string {
  let text: string;
  if (error instanceof AggregateError && !error.message) {
    text = [...new Set(error.errors.map((e) => describeStartupError(e)))].join('; ');
  } else if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    text = error.message || (typeof code === 'string' ? code : error.name);
  } else {
    text = error === undefined ? 'unknown error (nothing was thrown)' : String(error);
  }
  // Never print a connection password.
  return text
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/(\w+:\/\/[^:/@\s]+:)[^@\s]+@/g, '$1***@');
}

/**
 * Listens on `port` for a moment and closes again: a one-line reason when it
 * cannot be had (in use, or not allowed), undefined when it is free. The real
 * listen happens after start-up; losing the port in between still fails there.
 */
async function portProblem(port: number): Promise<string | undefined> {
  const probe = createNetServer();
  return new Promise((resolve) => {
    probe.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE')
        resolve(`Port ${port} is already in use (another LLMSelect API or program listens there): stop it, or set PORT to a free port`);
      else if (error.code === 'EACCES') resolve(`Port ${port} needs privileges this process does not have: set PORT to a port above 1023`);
      else resolve(`Cannot listen on port ${port}: ${error.code ?? error.message}`);
    });
    probe.listen(port, () => probe.close(() => resolve(undefined)));
  });
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`Configuration error: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
  process.on('SIGTERM', () => shutdown('SIGTERM', 0, config));
  process.on('SIGINT', () => shutdown('SIGINT', 0, config));
  process.on('uncaughtException', (err) => {
    (app?.logger ?? console).error({ err }, 'uncaught exception');
    shutdown('uncaughtException', 1, config);
  });
  process.on('unhandledRejection', (err) => {
    (app?.logger ?? console).error({ err }, 'unhandled rejection');
    shutdown('unhandledRejection', 1, config);
  });

  // A busy port is reported in one line before the database and migrations start.
  const busy = await portProblem(config.port);
  if (busy) {
    console.error(busy);
    process.exit(1);
  }

  const built = await buildApp(config);
  // The AI SDK loads on first use (tests build apps that never call a model); a server loads it before it
  // listens, so its first comparison does not stop the event loop to load it.
  loadProviderPackages();
  try {
    await new Promise<void>((resolve, reject) => {
      built.httpServer.once('error', reject);
      built.httpServer.listen(config.port, () => {
        built.httpServer.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    await built.close();
    throw error;
  }
  if (shuttingDown) {
    // A signal arrived while starting: stop now that there is something to stop.
    await built.close();
    process.exit(0);
  }
  app = built;
  const port = (built.httpServer.address() as AddressInfo).port;
  // Which browser origins may call it, so a CORS failure can be understood from the log.
  built.logger.info(
    { port, env: config.env, pid: process.pid, corsOrigins: config.cors.origins },
    `LLMSelect API listening on http://localhost:${port}/graphql`,
  );
}

main().catch((error: unknown) => {
  console.error(`Failed to start: ${describeStartupError(error)}`);
  process.exit(1);
});
