/**
 * `npm run schema:emit` writes schema/schema.graphql; `npm run schema:check`
 * fails when the committed file differs from the code-first schema, or when
 * the schema breaks a client of the base schema without docs/API.md saying
 * so ("Breaking changes", `schema-breaking.ts`). The base is the committed
 * schema at `SCHEMA_BASE_REF` (default: `origin/main` when this clone has
 * it and HEAD is not on it, else `HEAD`, so uncommitted changes are checked).
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

/** The base ref and its committed schema; null outside a git checkout or before the file existed. */
function baseSchema(): { ref: string; sdl: string } | null {
  let ref = process.env.SCHEMA_BASE_REF;
  if (!ref) {
    const main = git(['rev-parse', '--verify', '--quiet', 'origin/main'])?.trim();
    const onMain = main ? git(['merge-base', '--is-ancestor', 'HEAD', main]) !== null : false;
    ref = main && !onMain ? 'origin/main' : 'HEAD';
  }
  const sdl = git(['show', `${ref}:schema/schema.graphql`]);
  return sdl === null ? null : { ref, sdl };
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
