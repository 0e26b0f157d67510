/**
 * A private PostgreSQL cluster on a free loopback port (the system's
 * PostgreSQL binaries, `PG_BIN` or /usr/lib/postgresql/15/bin, run as the
 * `postgres` user when we are root), whose TLS can be turned on and off: for
 * tests of `sslmode`. `setSsl(true)` uses a self-signed
 * certificate (made with openssl, SAN `localhost` and `127.0.0.1`), also
 * returned as the CA file.
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
  const stopServer = () => run('pg_ctl', ['stop', '-D', databaseDir, '-m', 'immediate', '-w', '-t', '60']);
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
  return {
    url: database.url,
    caFile,
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
      // Asynchronously: the app under test (same process) keeps running while the server is away.
      const runAsync = (file: string, args: string[]) =>
        new Promise<void>((resolve, reject) =>
          execFile(join(bin, file), args, { uid, gid }, (error) => (error ? reject(error) : resolve())),
        );
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
