/**
 * Jest global setup: find a PostgreSQL for the tests, or start the embedded one.
 *
 * Tests use TEST_DATABASE_URL (default: DATABASE_URL, else
 * postgres://postgres@127.0.0.1:5432/postgres) as an admin connection to
 * create one database per test file. When nothing answers there, the embedded
 * PostgreSQL is started under .data/test-postgres so `npm test` passes on a
 * machine with nothing installed. A template database with every migration
 * applied is made once, so each file's database is a cheap copy.
 */
import 'reflect-metadata';
import { Client } from 'pg';
import { join } from 'node:path';
import { startEmbeddedPostgres } from '../../src/db/embedded';
import { adminUrl, migrateTemplate, newTemplateName } from './database';
import { buildDist } from './server-process';

async function answers(url: string): Promise<boolean> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export default async function globalSetup(): Promise<void> {
  let url = adminUrl();
  if (!(await answers(url))) {
    console.warn(`\nNo PostgreSQL answers at ${url.replace(/\/\/[^@/]*@/, '//***@')}: starting the embedded one for the tests.`);
    const embedded = await startEmbeddedPostgres({
      dataDir: join(__dirname, '..', '..', '.data', 'test'),
      port: 54330,
      database: 'postgres',
    });
    (globalThis as { __EMBEDDED_PG__?: unknown }).__EMBEDDED_PG__ = embedded;
    url = embedded.url;
  }
  // Workers are spawned after this and inherit the environment.
  process.env.TEST_DATABASE_URL = url;
  const template = newTemplateName();
  process.env.LLMSELECT_TEST_TEMPLATE = template;
  await migrateTemplate(url, template);
  console.log(`\nTest databases are copies of "${template}" (dropped at the end of the run).`);
  // dist/ once, before any file starts a server process (files building it side by side could race).
  buildDist();
}
