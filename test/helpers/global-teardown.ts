import { dropDatabase } from './database';

export default async function globalTeardown(): Promise<void> {
  const template = process.env.LLMSELECT_TEST_TEMPLATE;
  if (template) await dropDatabase(template).catch((error: unknown) => console.warn(`could not drop ${template}: ${(error as Error).message}`));
  const embedded = (globalThis as { __EMBEDDED_PG__?: { stop(): Promise<void> } }).__EMBEDDED_PG__;
  if (embedded) await embedded.stop();
}
