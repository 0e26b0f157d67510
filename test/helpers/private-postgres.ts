/**
 * A private PostgreSQL cluster on a free loopback port (the system's
 * PostgreSQL binaries, `PG_BIN` or /usr/lib/postgresql/15/bin, run as the
 * `postgres` user when we are root), whose TLS can be turned on and off: for
 * tests of `sslmode`. `setSsl(true)` uses a self-signed
 * certificate (made with openssl, SAN `localhost` and `127.0.0.1`), also
 * returned as the CA file. `startReplica()` makes a streaming replica of it
 * (`pg_basebackup -R`, on another loopback port): initdb's own pg_hba.conf
 * already allows replication connections from 127.0.0.1, which the
 * machine's shared cluster does not.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { freePort } from './ports';

export interface PrivatePostgres {
  /** Plain URL (no sslmode) of its `llmselect` database. */
  url: string;
  /** The self-signed certificate the server presents when TLS is on. */
  caFile: string;
  /** Turns TLS on or off (reload) and returns once new connections see it. */
  setSsl(on: boolean): Promise<void>;
  /** Stops the server (fast: connections are cut), then starts it again on the same port; resolves once it accepts. */
  restart(): Promise<void>;
  stop(): Promise<void>;
  /**
   * A hot-standby streaming replica of this server (`pg_basebackup -R -X stream`) on a free loopback port,
   * applying commits `applyDelayMs` late (`recovery_min_apply_delay`). Stopped by {@link stop} too.
   */
  startReplica(options?: { applyDelayMs?: number }): Promise<PrivateReplica>;
}

export interface PrivateReplica {
  /** Plain URL of its `llmselect` database (read-only). */
  url: string;
  /** `pg_ctl stop -m fast`: its connections are cut and new ones refused. */
  stop(): Promise<void>;
  /** Starts it again on the same port; resolves once it accepts. */
  start(): Promise<void>;
  /** `pg_last_wal_replay_lsn()`, as PostgreSQL prints it (`0/3000148`). */
  replayLsn(): Promise<string>;
}

/** The byte position of a printed LSN (`16/B374D848`), as a number (exact below 2^53: 8 PiB of WAL). */
export function lsnBytes(lsn: string): number {
  const [high, low] = lsn.split('/');
  return Number.parseInt(high!, 16) * 2 ** 32 + Number.parseInt(low!, 16);
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dataDir = mkdtempSync(join(tmpdir(), 'llmselect-tls-'));
  const bin = process.env.PG_BIN || '/usr/lib/postgresql/15/bin';
  // PostgreSQL refuses to run as root.
  const asRoot = process.getuid?.() === 0;
  const uid = asRoot ? Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()) : process.getuid!();
  const gid = asRoot ? Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()) : process.getgid!();
  const run = (file: string, args: string[]) => execFileSync(join(bin, file), args, { uid, gid, stdio: 'pipe', encoding: 'utf8' });
  chownSync(dataDir, uid, gid);
  const databaseDir = join(dataDir, 'pgdata');
  mkdirSync(databaseDir, { mode: 0o700 });
  chownSync(databaseDir, uid, gid);
  run('initdb', ['-D', databaseDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  run('pg_ctl', [
    'start',
    '-D',
    databaseDir,
    '-l',
    join(dataDir, 'server.log'),
    '-o',
    `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off`,
    '-w',
    '-t',
    '60',
  ]);
  const replicaDirs: string[] = [];
  const stopServer = () => {
    for (const dir of replicaDirs) {
      try {
        run('pg_ctl', ['stop', '-D', dir, '-m', 'immediate', '-w', '-t', '60']);
      } catch {
        // Already stopped by its test.
      }
    }
    run('pg_ctl', ['stop', '-D', databaseDir, '-m', 'immediate', '-w', '-t', '60']);
  };
  const database = { url: `postgres://postgres@127.0.0.1:${port}/llmselect`, stop: async () => void stopServer() };
  try {
    const client = new Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
    await client.connect();
    await client.query('create database llmselect');
    await client.end();
  } catch (error) {
    stopServer();
    throw error;
  }
  const certFile = join(databaseDir, 'server.crt');
  const keyFile = join(databaseDir, 'server.key');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: 'ignore' },
  );
  for (const file of [certFile, keyFile]) chownSync(file, uid, gid);
  chmodSync(keyFile, 0o600);
  const caFile = join(dataDir, 'ca.crt');
  writeFileSync(caFile, readFileSync(certFile));

  const admin = async <T>(fn: (c: Client) => Promise<T>): Promise<T> => {
    const client = new Client({ connectionString: database.url });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  };
  // Asynchronously: the app under test (same process) keeps running while a server starts or stops.
  const runAsync = (file: string, args: string[]) =>
    new Promise<void>((resolve, reject) => execFile(join(bin, file), args, { uid, gid }, (error) => (error ? reject(error) : resolve())));
  const startAt = (dir: string, at: number) =>
    runAsync('pg_ctl', [
      'start',
      '-D',
      dir,
      '-l',
      join(dir, '..', `${at}.log`),
      '-o',
      `-p ${at} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off`,
      '-w',
      '-t',
      '60',
    ]);
  return {
    url: database.url,
    caFile,
    async startReplica(options = {}) {
      const replicaDir = join(dataDir, `replica-${replicaDirs.length}`);
      mkdirSync(replicaDir, { mode: 0o700 });
      chownSync(replicaDir, uid, gid);
      await runAsync('pg_basebackup', [
        '-h',
        '127.0.0.1',
        '-p',
        String(port),
        '-U',
        'postgres',
        '-D',
        replicaDir,
        '-R',
        '-X',
        'stream',
        '--checkpoint=fast',
      ]);
      // -R wrote primary_conninfo and standby.signal; the delay goes next to them.
      const settings = [`recovery_min_apply_delay = '${options.applyDelayMs ?? 0}ms'`, 'hot_standby = on'];
      writeFileSync(
        join(replicaDir, 'postgresql.auto.conf'),
        `${readFileSync(join(replicaDir, 'postgresql.auto.conf'), 'utf8')}\n${settings.join('\n')}\n`,
      );
      const replicaPort = await freePort();
      replicaDirs.push(replicaDir);
      await startAt(replicaDir, replicaPort);
      const url = `postgres://postgres@127.0.0.1:${replicaPort}/llmselect`;
      return {
        url,
        stop: () => runAsync('pg_ctl', ['stop', '-D', replicaDir, '-m', 'fast', '-w', '-t', '60']),
        start: () => startAt(replicaDir, replicaPort),
        async replayLsn() {
          const client = new Client({ connectionString: url });
          await client.connect();
          try {
            return (await client.query<{ lsn: string }>('select pg_last_wal_replay_lsn()::text as lsn')).rows[0]!.lsn;
          } finally {
            await client.end();
          }
        },
      };
    },
    async setSsl(on) {
      await admin(async (c) => {
        await c.query(`alter system set ssl = ${on ? 'on' : 'off'}`);
        await c.query('select pg_reload_conf()');
      });
      // The postmaster applies a reload asynchronously: bounded polling of new connections.
      for (let attempt = 0; attempt < 200; attempt++) {
        if ((await admin((c) => c.query<{ ssl: string }>('show ssl'))).rows[0]!.ssl === (on ? 'on' : 'off')) return;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      throw new Error(`ssl did not turn ${on ? 'on' : 'off'}`);
    },
    async restart() {
      await runAsync('pg_ctl', ['stop', '-D', databaseDir, '-m', 'fast', '-w', '-t', '60']);
      await runAsync('pg_ctl', [
        'start',
        '-D',
        databaseDir,
        '-l',
        join(dataDir, 'server.log'),
        '-o',
        `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off`,
        '-w',
        '-t',
        '60',
      ]);
    },
    async stop() {
      await database.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
