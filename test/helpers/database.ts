/**
 * One database per test file, copied from a migrated template so files run in
 * parallel without sharing rows.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Client } from 'pg';

/**
 * The template's name is per run (set by global setup, inherited by workers),
 * so two test runs on one PostgreSQL never drop each other's template.
 */
export function templateDb(): string {
  const name = process.env.LLMSELECT_TEST_TEMPLATE;
  if (!name) throw new Error('LLMSELECT_TEST_TEMPLATE is not set: run the tests through jest (global setup names the template)');
  return name;
}

export function newTemplateName(): string {
  return `llmselect_tpl_${randomBytes(4).toString('hex')}`;
}

export function adminUrl(): string {
  return process.env.TEST_DATABASE_URL || process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
}

export function databaseUrl(name: string, base = adminUrl()): string {
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

async function withAdmin<T>(fn: (client: Client) => Promise<T>, base = adminUrl()): Promise<T> {
  const client = new Client({ connectionString: base });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * (Re)creates the template database and applies every migration to it with the
 * MikroORM CLI (`mikro-orm migration:up`), in a child process: this proves the
 * CLI works from a checkout, and keeps ORM metadata out of Jest's parent realm.
 */
export async function migrateTemplate(base: string, template: string): Promise<void> {
  await withAdmin((admin) => admin.query(`create database ${template}`), base);
  const root = join(__dirname, '..', '..');
  const result = spawnSync(process.execPath, [join(root, 'node_modules', '@mikro-orm', 'cli', 'cli.js'), 'migration:up'], {
    cwd: root,
    env: { ...process.env, NODE_ENV: 'test', DATABASE_URL: databaseUrl(template, base), DATA_DIR: join(root, '.data', 'test') },
    encoding: 'utf8',
  });
  if (result.status !== 0) {
    throw new Error(`mikro-orm migration:up failed (${result.status}):\n${result.stdout}\n${result.stderr}`);
  }
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** This run's tag (the template's random part): every database the run makes carries it, so teardown finds them all. */
export function runTag(template = templateDb()): string {
  return template.slice('llmselect_tpl_'.length);
}

/** A copy of the migrated template; `{ empty: true }`: a database with no table at all (what a first start migrates). */
export async function createTestDatabase(label = 't', options: { empty?: boolean } = {}): Promise<TestDatabase> {
  const name = `llmselect_${label.replace(/\W/g, '_').slice(0, 20)}_${runTag()}_${randomBytes(4).toString('hex')}`.toLowerCase();
  await withAdmin((admin) => admin.query(`create database ${name}${options.empty ? '' : ` template ${templateDb()}`}`));
  return {
    name,
    url: databaseUrl(name),
    drop: () => withAdmin((admin) => admin.query(`drop database if exists ${name} with (force)`)).then(() => undefined),
  };
}

/** Drops a database this run made (global teardown: the template). */
export async function dropDatabase(name: string, base = adminUrl()): Promise<void> {
  await withAdmin((admin) => admin.query(`drop database if exists ${name} with (force)`), base);
}

/**
 * Drops every database this run made that is still there (a test that failed
 * before its own drop, or a crashed app): names `llmselect_<label>_<runTag>_<random>`.
 * Returns the names it dropped.
 */
export async function dropRunDatabases(template: string, base = adminUrl()): Promise<string[]> {
  const tag = runTag(template);
  return withAdmin(async (admin) => {
    const { rows } = await admin.query<{ datname: string }>(`select datname from pg_database where datname like $1 and datname <> $2`, [
      `llmselect\\_%\\_${tag}\\_%`,
      template,
    ]);
    for (const { datname } of rows) await admin.query(`drop database if exists ${admin.escapeIdentifier(datname)} with (force)`);
    return rows.map((r) => r.datname);
  }, base);
}
