#!/usr/bin/env node
/**
 * No line of src/ or test/ (TypeScript and JavaScript) is longer than 140
 * characters (code points). Biome's formatter keeps code to the same width
 * (`lineWidth` in biome.json) when it runs, but not comments or strings; this
 * check holds the limit in `npm test` without reformatting anything, and names
 * every line past it.
 *
 * scripts/line-length-baseline.json lists the files that had long lines when
 * the check was introduced (issue 17), with how many: a file may keep at most
 * that many until it is wrapped, and every other file none. The list only
 * shrinks: after wrapping (`npm run format`, then comments and strings by
 * hand) run `node scripts/check-line-length.js --update-baseline`; delete the
 * file when it is `{}`.
 *
 *   node scripts/check-line-length.js [--max=140] [--update-baseline]
 */
const { existsSync, readdirSync, readFileSync, writeFileSync } = require('node:fs');
const { join, relative } = require('node:path');

const ROOT = join(__dirname, '..');
const DIRS = ['src', 'test'];
const BASELINE = join(__dirname, 'line-length-baseline.json');
const args = process.argv.slice(2);
const max = Number((args.find((a) => a.startsWith('--max=')) ?? '--max=140').slice('--max='.length));

function* sourceFiles(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sourceFiles(path);
    else if (/\.(?:ts|js)$/.test(entry.name)) yield path;
  }
}

/** file → its lines longer than `max`, as `file:line: n characters`. */
const long = new Map();
for (const dir of DIRS) {
  for (const file of sourceFiles(join(ROOT, dir))) {
    const lines = readFileSync(file, 'utf8').split('\n');
    const found = [];
    for (let i = 0; i < lines.length; i++) {
      const length = [...lines[i]].length;
      if (length > max) found.push(`${relative(ROOT, file)}:${i + 1}: ${length} characters`);
    }
    if (found.length > 0) long.set(relative(ROOT, file), found);
  }
}

const baseline = existsSync(BASELINE) ? JSON.parse(readFileSync(BASELINE, 'utf8')) : {};
if (args.includes('--update-baseline')) {
  // Only shrinks: a file keeps at most what it was allowed, and no file is added.
  const next = {};
  for (const [file, lines] of long) if (baseline[file]) next[file] = Math.min(baseline[file], lines.length);
  writeFileSync(BASELINE, `${JSON.stringify(next, null, 2)}\n`);
  console.log(`${relative(ROOT, BASELINE)}: ${Object.keys(next).length} files, ${Object.values(next).reduce((a, b) => a + b, 0)} lines`);
}

const over = [...long].filter(([file, lines]) => lines.length > (baseline[file] ?? 0));
if (over.length > 0) {
  const detail = over.map(
    ([file, lines]) => `${file}: ${lines.length} long lines, ${baseline[file] ?? 0} allowed\n  ${lines.join('\n  ')}`,
  );
  console.error(
    `lines longer than ${max} characters (wrap them; \`npm run format\` wraps code, not comments or strings):\n${detail.join('\n')}`,
  );
  process.exit(1);
}
const known = [...long.values()].reduce((n, lines) => n + lines.length, 0);
console.log(
  `no new line of ${DIRS.join('/, ')}/ is longer than ${max} characters (${known} older ones in scripts/line-length-baseline.json wait for wrapping)`,
);
