/**
 * A headless Chromium driven over the DevTools protocol (no extra package:
 * undici's WebSocket), for the explorer and CORS checks. Offline by construction: every
 * host name except 127.0.0.1 / localhost fails to resolve, and every request the
 * page makes is recorded so a test can assert none left this machine; every
 * request that failed is recorded with Chromium's reason (a CORS refusal says which).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'undici';

/** The Chromium binary: CHROMIUM_PATH, else the first of the usual names on PATH; undefined when none. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const candidates = [env.CHROMIUM_PATH, 'chromium', 'chromium-browser', 'google-chrome'].filter(Boolean) as string[];
  for (const name of candidates) {
    const found = spawnSync('sh', ['-c', `command -v "${name}"`], {
      encoding: 'utf8',
      env: { ...process.env, PATH: env.PATH ?? process.env.PATH },
    });
    if (found.status === 0 && found.stdout.trim()) return found.stdout.trim();
  }
  return undefined;
}

/** True when a missing browser must fail the run instead of skipping: `REQUIRE_BROWSER=1` (CI), or its older name `REQUIRE_CHROMIUM=1`. */
export function browserRequired(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.REQUIRE_BROWSER === '1' || env.REQUIRE_CHROMIUM === '1';
}

/**
 * The Chromium a browser test file runs with. When there is none: throws when
 * {@link browserRequired} (the file fails), else warns that `file` is skipped
 * and answers undefined (the file's `describe` becomes `describe.skip`).
 */
export function browserOrSkip(file: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const chromium = findChromium(env);
  if (chromium) return chromium;
  if (browserRequired(env))
    throw new Error(`${file}: REQUIRE_BROWSER=1 but no Chromium was found (install chromium, or set CHROMIUM_PATH)`);
  console.warn(`${file}: no Chromium found (install chromium, or set CHROMIUM_PATH; REQUIRE_BROWSER=1 makes this a failure): skipped`);
  return undefined;
}

/** A request of the page that failed, as `Network.loadingFailed` reports it. */
export interface FailedRequest {
  url: string;
  method: string;
  /** e.g. `net::ERR_FAILED` */
  errorText: string;
  /** Set when CORS refused it, e.g. `PreflightInvalidStatus`, `MissingAllowOriginHeader`. */
  corsError?: string;
}

export interface Page {
  /** Every URL the page requested. */
  requests: string[];
  /** Every request that failed (preflights included), in order. */
  failures: FailedRequest[];
  send<T = any>(method: string, params?: Record<string, unknown>): Promise<T>;
  /** Evaluates an expression in the page and returns its (JSON) value. */
  evaluate<T = any>(expression: string): Promise<T>;
  /** Polls `expression` until it is truthy (or `timeoutMs`), returning its value. */
  waitFor<T = any>(expression: string, timeoutMs?: number): Promise<T>;
  close(): Promise<void>;
}

export async function openPage(binary: string): Promise<Page> {
  const profile = mkdtempSync(join(tmpdir(), 'llmselect-chromium-'));
  const child: ChildProcess = spawn(
    binary,
    [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // Offline: nothing but this machine resolves.
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost',
      `--user-data-dir=${profile}`,
      '--remote-debugging-port=0',
      'about:blank',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const browserWs = await new Promise<string>((resolve, reject) => {
    let text = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const match = /DevTools listening on (ws:\/\/\S+)/.exec(text);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`chromium exited (${code}) before listening:\n${text.slice(-2000)}`)));
  });
  const port = new URL(browserWs).port;
  const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{
    type: string;
    webSocketDebuggerUrl: string;
  }>;
  const target = targets.find((t) => t.type === 'page');
  if (!target) throw new Error('chromium has no page target');

  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('error', () => reject(new Error('could not connect to chromium')));
  });
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  const requests: string[] = [];
  const failures: FailedRequest[] = [];
  const sent = new Map<string, { url: string; method: string }>();
  ws.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data));
    if (message.id && pending.has(message.id)) {
      const waiter = pending.get(message.id)!;
      pending.delete(message.id);
      if (message.error) waiter.reject(new Error(`${message.error.message}`));
      else waiter.resolve(message.result);
    } else if (message.method === 'Network.requestWillBeSent') {
      requests.push(message.params.request.url);
      sent.set(message.params.requestId, { url: message.params.request.url, method: message.params.request.method });
    } else if (message.method === 'Network.loadingFailed') {
      const request = sent.get(message.params.requestId) ?? { url: '?', method: '?' };
      failures.push({
        ...request,
        errorText: message.params.errorText,
        ...(message.params.corsErrorStatus ? { corsError: message.params.corsErrorStatus.corsError } : {}),
      });
    }
  });
  const send: Page['send'] = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  const evaluate: Page['evaluate'] = async (expression) => {
    const result = await send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
    if (result.exceptionDetails)
      throw new Error(`page threw: ${result.exceptionDetails.exception?.description ?? result.exceptionDetails.text}`);
    return result.result.value;
  };
  await send('Network.enable');
  await send('Runtime.enable');
  await send('Page.enable');

  return {
    requests,
    failures,
    send,
    evaluate,
    async waitFor(expression, timeoutMs = 45_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const value = await evaluate(expression);
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out waiting for: ${expression}`);
        // Polling the page: the DevTools protocol has no "until this DOM state" event.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    async close() {
      ws.close();
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      // Chromium's helper processes may still be writing the profile for a moment after the browser exits.
      try {
        rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
      } catch (error) {
        console.warn(`could not remove the temporary Chromium profile ${profile}: ${(error as Error).message}`);
      }
    },
  };
}
