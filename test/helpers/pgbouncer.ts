/**
 * A PgBouncer (Debian's `pgbouncer`, 1.18 here) in transaction pooling on a free loopback port, in front of a
 * PostgreSQL on loopback: every database of that server is reachable through it under the same name. It runs
 * as the `postgres` user when we are root (it refuses to run as root). The startup parameters our pool sends
 * (`statement_timeout`, `lock_timeout`) are ignored by it: behind PgBouncer the server's (or the database
 * line's) settings apply, and the request deadline's `SET LOCAL` still bounds each statement.
 *
 * `pgbouncerMissing()` says why it cannot run (not installed), for a visible skip outside CI.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports';

const CANDIDATES = [process.env.PGBOUNCER_BIN, '/usr/sbin/pgbouncer', '/usr/bin/pgbouncer'].filter(Boolean) as string[];

export function pgbouncerMissing(): string | null {
  return CANDIDATES.some((p) => existsSync(p)) ? null : 'pgbouncer is not installed (apt-get install -y pgbouncer)';
}

export interface PgBouncer {
  /** `url`'s database through the bouncer. */
  via(url: string): string;
  /** The bouncer's log so far. */
  log(): string;
  stop(): Promise<void>;
}

export async function startPgBouncer(serverUrl: string, opts: { poolSize?: number } = {}): Promise<PgBouncer> {
  const bin = CANDIDATES.find((p) => existsSync(p));
  if (!bin) throw new Error(pgbouncerMissing()!);
  const server = new URL(serverUrl);
  const dir = mkdtempSync(join(tmpdir(), 'llmselect-pgbouncer-'));
  const port = await freePort();
  const user = decodeURIComponent(server.username || 'postgres');
  writeFileSync(join(dir, 'users.txt'), `"${user}" "${decodeURIComponent(server.password)}"\n`);
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${server.hostname} port=${server.port || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'users.txt')}`,
      'pool_mode = transaction',
      'max_client_conn = 1000',
      `default_pool_size = ${opts.poolSize ?? 20}`,
      'ignore_startup_parameters = extra_float_digits,statement_timeout,lock_timeout,idle_in_transaction_session_timeout',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      'log_connections = 0',
      'log_disconnections = 0',
    ].join('\n'),
  );
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    for (const f of ['', 'users.txt', 'pgbouncer.ini']) chownSync(join(dir, f), uid, gid);
  }
  const child: ChildProcess = spawn(bin, [...(asRoot ? ['-u', 'postgres'] : []), join(dir, 'pgbouncer.ini')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  // Ready at its "process up" line (listening by then), or gone, with its output as the reason.
  await new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer) => {
      output += String(c);
      if (/process up/.test(output)) resolve();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`pgbouncer exited (${code}) before it was up: ${output}`)));
  });
  const exited = new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve)));
  return {
    via(url: string) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    log: () => output,
    async stop() {
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 5_000)))]);
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
