import { dropDatabase, dropRunDatabases } from './database';

/** Drops what this run made on PostgreSQL: any per-file database a test left behind, then the template. */
export default async function globalTeardown(): Promise<void> {
  const template = process.env.LLMSELECT_TEST_TEMPLATE;
  if (template) {
    const left = await dropRunDatabases(template).catch((error: unknown) => {
      console.warn(`could not list this run's databases: ${(error as Error).message}`);
      return [];
    });
    if (left.length) console.warn(`\nDropped ${left.length} test database(s) a test left behind: ${left.join(', ')}`);
    await dropDatabase(template).catch((error: unknown) => console.warn(`could not drop ${template}: ${(error as Error).message}`));
  }
  const embedded = (globalThis as { __EMBEDDED_PG__?: { stop(): Promise<void> } }).__EMBEDDED_PG__;
  if (embedded) await embedded.stop();
}
