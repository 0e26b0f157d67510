/**
 * The one parser of PostgreSQL connection URLs (`DATABASE_URL`, and any
 * replica URL to come): where to connect, and TLS as libpq's `sslmode` asks.
 *
 * MikroORM splits `clientUrl` into host / port / user / password / database
 * and drops the query string, so `?sslmode=require` reached nobody and the
 * server connected in plaintext. Here the mode becomes node-postgres `ssl`
 * options, passed to every pooled connection (`orm.ts`):
 *
 * | sslmode      | TLS                      | certificate checked                 |
 * | ------------ | ------------------------ | ----------------------------------- |
 * | (absent)     | no (as before; libpq's default would be `prefer`) | — |
 * | `disable`    | no                       | —                                   |
 * | `allow`      | plaintext; TLS if the server refuses plaintext (probed at start) | no |
 * | `prefer`     | TLS; plaintext if the server has no TLS (probed at start) | no |
 * | `require`    | yes, or startup stops    | no (with `DATABASE_CA_FILE`: as `verify-ca`, like libpq with a root.crt) |
 * | `verify-ca`  | yes, or startup stops    | chain against `DATABASE_CA_FILE`    |
 * | `verify-full`| yes, or startup stops    | chain and host name                 |
 *
 * `verify-ca` / `verify-full` without `DATABASE_CA_FILE` stop startup (libpq
 * refuses them without a root certificate too). `sslrootcert` in the URL is
 * accepted as the CA file when `DATABASE_CA_FILE` is unset.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

export type SslOptions = false | ConnectionOptions;

export interface DatabaseTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** Absent when the URL names none. */
  sslmode?: SslMode;
  /** TLS options to connect with; for `allow` / `prefer` the first choice, the other tried by {@link resolveSsl}. */
  ssl: SslOptions;
  /** `host:port/database`, never the password: for error lines. */
  description: string;
}

export class DatabaseUrlError extends Error {
  override name = 'DatabaseUrlError';
}

/**
 * Parses `url` (named `name` in errors) and reads the CA file for the modes
 * that check certificates. Throws a one-line {@link DatabaseUrlError}.
 */
export function parseDatabaseUrl(url: string, options: { name?: string; caFile?: string } = {}): DatabaseTarget {
  const name = options.name ?? 'DATABASE_URL';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new DatabaseUrlError(`${name} is not a valid URL`);
  }
  const database = decodeURIComponent(parsed.pathname).replace(/^\//, '');
  const port = Number(parsed.port || 5432);
  const target: DatabaseTarget = {
    host: decodeURIComponent(parsed.hostname),
    port,
    user: decodeURIComponent(parsed.username),
    password: decodeURIComponent(parsed.password),
    database,
    ssl: false,
    description: `${parsed.hostname}:${port}/${database}`,
  };
  const raw = parsed.searchParams.get('sslmode');
  if (raw === null || raw === '') return target;
  if (!(SSL_MODES as readonly string[]).includes(raw)) {
    throw new DatabaseUrlError(`${name} has sslmode=${raw}: it must be one of ${SSL_MODES.join(', ')}`);
  }
  const sslmode = raw as SslMode;
  const caFile = options.caFile || parsed.searchParams.get('sslrootcert') || undefined;
  target.sslmode = sslmode;
  target.ssl = sslOptions(sslmode, caFile, name);
  return target;
}

function sslOptions(mode: SslMode, caFile: string | undefined, name: string): SslOptions {
  switch (mode) {
    case 'disable':
    case 'allow':
      return false;
    case 'prefer':
      return { rejectUnauthorized: false };
    case 'require':
      // libpq: `require` with a root certificate present verifies the chain, as verify-ca.
      return caFile
        ? { ca: readCa(caFile, mode, name), rejectUnauthorized: true, checkServerIdentity: () => undefined }
        : { rejectUnauthorized: false };
    case 'verify-ca':
    case 'verify-full': {
      if (!caFile)
        throw new DatabaseUrlError(
          `${name} has sslmode=${mode}, which needs DATABASE_CA_FILE (the CA that signed the server's certificate)`,
        );
      const ca = readCa(caFile, mode, name);
      // verify-ca checks the chain only; verify-full also the host name (node's default check).
      return mode === 'verify-ca'
        ? { ca, rejectUnauthorized: true, checkServerIdentity: () => undefined }
        : { ca, rejectUnauthorized: true };
    }
  }
}

function readCa(file: string, mode: SslMode, name: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new DatabaseUrlError(
      `${name} has sslmode=${mode} but DATABASE_CA_FILE ${file} cannot be read: ` +
        `${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
}

/** What the server said when it has no TLS, or refuses a connection without it. */
const NO_TLS = /does not support SSL/i;
const NEEDS_TLS = /no pg_hba\.conf entry .*no encryption|SSL (connection is )?required|SSL off/i;

/**
 * The TLS options to use, decided once at start for `allow` and `prefer`
 * (libpq decides per connection; a pool opens them all alike): `prefer` tries
 * TLS and falls back to plaintext when the server has none; `allow` tries
 * plaintext and takes TLS when the server refuses plaintext. Other modes
 * return their options unchanged (a server that cannot give them fails the
 * startup connection check with its reason).
 */
export async function resolveSsl(target: DatabaseTarget, probe: (ssl: SslOptions) => Promise<void>): Promise<SslOptions> {
  if (target.sslmode !== 'allow' && target.sslmode !== 'prefer') return target.ssl;
  const first: SslOptions = target.sslmode === 'prefer' ? { rejectUnauthorized: false } : false;
  const second: SslOptions = target.sslmode === 'prefer' ? false : { rejectUnauthorized: false };
  try {
    await probe(first);
    return first;
  } catch (error) {
    const message = (error as Error).message ?? '';
    if (target.sslmode === 'prefer' ? NO_TLS.test(message) : NEEDS_TLS.test(message)) return second;
    // Anything else (wrong password, missing database) is reported by the connection check.
    return first;
  }
}
