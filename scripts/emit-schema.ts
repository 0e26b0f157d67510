/**
 * `npm run schema:emit` writes schema/schema.graphql; `npm run schema:check`
 * fails when the committed file differs from the code-first schema, or when
 * the schema breaks a client of the base schema without docs/API.md saying
 * so ("Breaking changes", `schema-breaking.ts`). The base: `baseSchema`.
 */
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { printSdl } from '../src/graphql/schema';
import { breakingChanges } from './schema-breaking';

const ROOT = join(__dirname, '..');
const SCHEMA_PATH = join(ROOT, 'schema', 'schema.graphql');

function git(args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return null;
  }
}

/**
 * What clients are known to use: `SCHEMA_BASE_REF`'s committed schema when set (a CI job on a branch: the
 * PR's base; an unknown ref fails), else `schema/released.graphql` (the schema as last released: replaced on
 * purpose at a release, so every breaking change since then must be documented).
 */
function baseSchema(): { ref: string; sdl: string } | null {
  const ref = process.env.SCHEMA_BASE_REF;
  if (ref) {
    const sdl = git(['show', '--end-of-options', `${ref}:schema/schema.graphql`]);
    if (sdl === null) {
      console.error(`SCHEMA_BASE_REF=${ref}: no schema/schema.graphql at that ref`);
      process.exit(1);
    }
    return { ref, sdl };
  }
  try {
    return { ref: 'schema/released.graphql', sdl: readFileSync(join(ROOT, 'schema', 'released.graphql'), 'utf8') };
  } catch {
    return null;
  }
}

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
    const base = baseSchema();
    if (!base) return;
    const breaking = await breakingChanges(base.sdl, sdl, readFileSync(join(ROOT, 'docs', 'API.md'), 'utf8'));
    const undocumented = breaking.filter((c) => !c.documented);
    if (undocumented.length) {
      console.error(`Breaking changes against ${base.ref} that docs/API.md "Breaking changes" does not name:`);
      for (const c of undocumented) console.error(`  \`${c.path}\`: ${c.message}`);
      process.exit(1);
    }
    console.log(`No undocumented breaking change against ${base.ref} (${breaking.length} documented).`);
    return;
  }
  writeFileSync(SCHEMA_PATH, sdl);
  console.log(`Wrote ${SCHEMA_PATH}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
