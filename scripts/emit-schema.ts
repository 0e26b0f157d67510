/**
 * `npm run schema:emit` writes schema/schema.graphql; `npm run schema:check`
 * fails when the committed file differs from the code-first schema.
 */
import 'reflect-metadata';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { printSdl } from '../src/graphql/schema';

const SCHEMA_PATH = join(__dirname, '..', 'schema', 'schema.graphql');

async function main(): Promise<void> {
  const sdl = await printSdl();
  if (process.argv.includes('--check')) {
    let committed = '';
    try {
      committed = readFileSync(SCHEMA_PATH, 'utf8');
    } catch {
      // missing file: reported as stale below
    }
    if (committed !== sdl) {
      console.error('schema/schema.graphql is stale: run `npm run schema:emit` and commit the result.');
      process.exit(1);
    }
    console.log('schema/schema.graphql is up to date.');
    return;
  }
  writeFileSync(SCHEMA_PATH, sdl);
  console.log(`Wrote ${SCHEMA_PATH}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
