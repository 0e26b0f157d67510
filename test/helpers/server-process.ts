/**
 * The server as a separate process, started the way `npm start` starts it
 * (`node dist/src/main.js` after `tsc -b`, or `npm start` itself), for tests
 * of signals, exit codes, crashes and the embedded PostgreSQL.
 *
 * Waiting is event-driven: `started` resolves on the "listening" log line,
 * `exited` on the process's exit, `waitForLog` on a matching line.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { isAlive } from '../../src/db/embedded';

export const ROOT = join(__dirname, '..', '..');

/** Compiles `dist/` incrementally (about a second when nothing changed). */
export function buildDist(): void {
  const result = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', 'tsconfig.build.json'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`tsc -b failed:\n${result.stdout}${result.stderr}`);
}

export interface LogLine {
  msg?: string;
  level?: number;
  [key: string]: unknown;
}

export interface ServerProcess {
  child: ChildProcess;
  /** Base URL once listening. */
  url: string;
  /** Parsed JSON log lines (stdout) so far. */
  logs: LogLine[];
  /** Raw stderr so far. */
  stderr(): string;
  /** Resolves with the exit code (or the signal that killed it). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLog(predicate: (line: LogLine) => boolean): Promise<LogLine>;
  /** Sends a signal and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface StartOptions {
  env: Record<string, string | undefined>;
  /** `npm` runs `npm start` (prestart build included); default `node dist/src/main.js`. */
  via?: 'node' | 'npm';
  /** Do not wait for "listening" (for processes expected to fail at start). */
  expectFailure?: boolean;
}

export async function startServer(options: StartOptions): Promise<ServerProcess> {
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries({ PATH: process.env.PATH, HOME: process.env.HOME, PORT: '0', ...options.env }).filter(([, v]) => v !== undefined),
  );
  const child =
    options.via === 'npm'
      ? spawn('npm', ['start', '--silent'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(process.execPath, ['dist/src/main.js'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  const waiters = new Set<{ predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
  let stderr = '';
  let buffer = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    let end: number;
    while ((end = buffer.indexOf('\n')) >= 0) {
      const text = buffer.slice(0, end);
      buffer = buffer.slice(end + 1);
      if (!text.startsWith('{')) continue; // npm's banner
      const line = JSON.parse(text) as LogLine;
      logs.push(line);
      for (const waiter of waiters) {
        if (waiter.predicate(line)) {
          waiters.delete(waiter);
          waiter.resolve(line);
        }
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );

  const waitForLog = (predicate: (line: LogLine) => boolean) => {
    const seen = logs.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      waiters.add({ predicate, resolve });
      void exited.then(({ code, signal }) =>
        reject(new Error(`server exited (${code ?? signal}) before the expected log line; stderr: ${stderr}`)),
      );
    });
  };

  let url = '';
  if (!options.expectFailure) {
    const listening = await waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('LLMSelect API listening'));
    url = `http://127.0.0.1:${listening.port}`;
  }
  return {
    child,
    get url() {
      return url;
    },
    logs,
    stderr: () => stderr,
    exited,
    waitForLog,
    async stop(signal = 'SIGTERM') {
      child.kill(signal);
      return exited;
    },
  };
}

/** Minimal GraphQL over HTTP for a server process. */
export async function gqlAt<T = any>(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
  token?: string,
): Promise<{ status: number; data?: T; errors?: Array<{ message: string; extensions?: Record<string, any> }> }> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: T; errors?: Array<{ message: string; extensions?: Record<string, any> }> };
  return { status: response.status, ...body };
}

// True while a process with this pid exists and has not exited (a zombie counts as exited).
export { isAlive };

/**
 * Polls until `pid` has exited, for processes this test does not own (a
 * PostgreSQL server stopped by the app): bounded, then fails.
 */
export async function waitUntilExited(pid: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) throw new Error(`process ${pid} did not exit within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
