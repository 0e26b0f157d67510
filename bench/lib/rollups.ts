/**
 * The usage rollups of a database seeded in bulk, built by the app's own SQL:
 * the backfill statements of the migrations that created them. A bulk seed
 * inserts with the rollups' row triggers off, because one statement adding
 * thousands of calls of one model makes every row's trigger update the same
 * model-day rollup row in one transaction, each update a new version at the end
 * of a chain the next one walks (200,000 seeded messages took over 13 minutes).
 */
import type { Migration } from '@mikro-orm/migrations';
import type { Client } from 'pg';
import { Migration20261207130000_usage_rollup } from '../../migrations/Migration20261207130000_usage_rollup';
import { COARSER, Migration20261207220000_usage_rollups_coarser } from '../../migrations/Migration20261207220000_usage_rollups_coarser';

/** The app's backfill of a rollup: the migration's own statement that starts `insert into <table>`. */
export function rollupBackfillSql(Class: new (driver: never, config: never) => Migration, table: string): string {
  const migration = new Class(undefined as never, undefined as never);
  void migration.up();
  const found = migration.getQueries().find((q) => typeof q === 'string' && new RegExp(`^\\s*insert into ${table}\\b`).test(q));
  if (typeof found !== 'string') throw new Error(`${Class.name} has no backfill statement of ${table} any more`);
  return found;
}

/** The row triggers that add seeded calls to the rollups, per table (what a bulk seed turns off). */
export const USAGE_TRIGGERS: Record<string, string[]> = {
  messages: ['usage_on_message'],
  comparison_responses: ['usage_on_response_insert'],
};

/** Turns the usage triggers of `tables` off (`false`) or back on. Inside the seed's transaction. */
export async function setUsageTriggers(client: Client, tables: readonly string[], enabled: boolean): Promise<void> {
  for (const table of tables)
    for (const trigger of USAGE_TRIGGERS[table] ?? [])
      await client.query(`alter table "${table}" ${enabled ? 'enable' : 'disable'} trigger ${trigger}`);
}

/** Builds every usage rollup from the seeded calls (the rollups must be empty): the per-user one, then the coarser ones from it. */
export async function buildUsageRollups(client: Client): Promise<void> {
  await client.query(rollupBackfillSql(Migration20261207130000_usage_rollup, 'usage_rollup'));
  for (const { table } of COARSER) await client.query(rollupBackfillSql(Migration20261207220000_usage_rollups_coarser, table));
}
