/**
 * Child processes of the bench: every server runs in its own process on a
 * free loopback port; its CPU time and RSS are read from /proc/<pid>.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';

/** A free TCP port on 127.0.0.1 (the OS picks it; we close and hand it over). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** User + system CPU time of a process (all its threads), in ms. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond();
}

/** Resident set size in MB. */
export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return match ? Number(match[1]) / 1024 : NaN;
}

export interface ServerSpec {
  name: string;
  /** Executable and arguments (node scripts run with process.execPath). */
  args: string[];
  cwd: string;
  env: Record<string, string>;
  port: number;
  /** GET path that answers 2xx once the server is ready. */
  readyPath: string;
  readyTimeoutMs?: number;
}

export class ServerProcess {
  /** Every server started by this process (to report the ones that died). */
  static readonly all: ServerProcess[] = [];
  readonly url: string;
  private output = '';
  private readonly patterns = new Map<string, { re: RegExp; count: number }>();
  private exit?: { code: number | null; signal: NodeJS.Signals | null };
  private stopping = false;
  private readonly exited: Promise<void>;

  private constructor(
    readonly spec: ServerSpec,
    private readonly child: ChildProcess,
  ) {
    this.url = `http://127.0.0.1:${spec.port}`;
    // BENCH_SERVER_LOG_DIR=/tmp/x keeps each server's whole output in /tmp/x/<name>.log (e.g. with BENCH_OURS_NODE_ARGS=--trace-gc).
    const logFile = process.env.BENCH_SERVER_LOG_DIR ? join(process.env.BENCH_SERVER_LOG_DIR, `${spec.name}.log`) : undefined;
    const keep = (chunk: Buffer) => {
      if (logFile) appendFileSync(logFile, chunk);
      const text = chunk.toString('utf8');
      for (const p of this.patterns.values()) p.count += text.match(p.re)?.length ?? 0;
      this.output = (this.output + text).slice(-64 * 1024);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(spec: ServerSpec): Promise<ServerProcess> {
    const child = spawn(spec.args[0]!, spec.args.slice(1), {
      cwd: spec.cwd,
      env: spec.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const server = new ServerProcess(spec, child);
    ServerProcess.all.push(server);
    await server.waitReady(spec.readyTimeoutMs ?? 120_000);
    return server;
  }

  /** Polls the ready path (bounded: every 100 ms until the timeout, or until the process exits). */
  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.exit)
        throw new Error(`${this.spec.name} exited (${this.exit.code ?? this.exit.signal}) before it was ready:\n${this.tail()}`);
      try {
        const res = await fetch(`${this.url}${this.spec.readyPath}`, { signal: AbortSignal.timeout(2_000) });
        await res.arrayBuffer();
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await this.stop();
    throw new Error(`${this.spec.name} was not ready after ${timeoutMs} ms:\n${this.tail()}`);
  }

  /** Counts occurrences of `re` (global) in the process output from now on. */
  watch(key: string, re: RegExp): void {
    this.patterns.set(key, { re, count: 0 });
  }

  count(key: string): number {
    return this.patterns.get(key)?.count ?? 0;
  }

  cpuMs(): number {
    return cpuMs(this.pid);
  }

  rssMb(): number {
    return rssMb(this.pid);
  }

  alive(): boolean {
    return !this.exit;
  }

  /** How it exited without being stopped by the bench, or undefined. */
  died(): string | undefined {
    return this.exit && !this.stopping ? String(this.exit.code ?? this.exit.signal) : undefined;
  }

  tail(): string {
    return this.output.split('\n').slice(-40).join('\n');
  }

  /** SIGTERM, then SIGKILL after 10 s. */
  async stop(): Promise<void> {
    if (this.exit) return;
    this.stopping = true;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}
