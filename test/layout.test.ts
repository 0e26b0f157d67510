/**
 * The repository's "Layout" (a `# Layout` or `## Layout` section with a code
 * block, in README.md or one of docs/*.md: wherever the map lives, exactly
 * one file holds it) matches the tree: every path it lists exists, every
 * folder of src/ (and every file directly in src/) is listed, and the files a
 * folder's line names are in that folder. A line is `path  description`;
 * indentation (two spaces) nests a path under the folder above it;
 * continuation lines (description only) belong to the line above;
 * `<feature>/` stands for every folder of its parent.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..');
/** Where the layout is written down. */

interface Entry {
  path: string;
  description: string;
}

const LAYOUT_SECTION = /^#{1,2} Layout\n[\s\S]*?```\n([\s\S]*?)```/m;

/** The one markdown file (README.md or docs/*.md) with a "Layout" section, and that section's code block. */
function layoutBlock(): { file: string; block: string } {
  const candidates = [
    'README.md',
    ...readdirSync(join(ROOT, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ];
  const found = candidates.flatMap((file) => {
    const section = LAYOUT_SECTION.exec(readFileSync(join(ROOT, file), 'utf8'));
    return section ? [{ file, block: section[1]! }] : [];
  });
  if (found.length !== 1) {
    const where = found.map((f) => f.file).join(', ');
    throw new Error(`expected exactly one "# Layout" section with a code block in README.md or docs/*.md, found ${found.length}: ${where}`);
  }
  return found[0]!;
}

function layoutEntries(): Entry[] {
  const entries: Entry[] = [];
  const parents: string[] = [];
  for (const line of layoutBlock().block.split('\n')) {
    if (!line.trim()) continue;
    const indent = line.length - line.trimStart().length;
    const match = /^(\S+)(?:\s+(.*))?$/.exec(line.trimStart())!;
    // A continuation: deeper than any path column, or a description-only line.
    const isPath =
      indent % 2 === 0 &&
      indent / 2 <= parents.length &&
      /[/.]/.test(match[1]!) &&
      !/,$/.test(match[1]!) &&
      !line.startsWith(' '.repeat(16));
    if (!isPath) {
      entries[entries.length - 1]!.description += ` ${line.trim()}`;
      continue;
    }
    const depth = indent / 2;
    parents.length = depth;
    const path = [...parents, match[1]!].join('');
    entries.push({ path, description: match[2] ?? '' });
    if (match[1]!.endsWith('/')) parents.push(match[1]!);
  }
  return entries;
}

/** Expands `<feature>/` to every folder of its parent. */
function expand(path: string): string[] {
  const at = path.indexOf('<');
  if (at < 0) return [path];
  const parent = path.slice(0, at);
  const rest = path.slice(path.indexOf('/', at) + 1);
  return readdirSync(join(ROOT, parent), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) => expand(`${parent}${d.name}/${rest}`));
}

function foldersUnder(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) => [`${dir}${d.name}/`, ...foldersUnder(`${dir}${d.name}/`)]);
}

describe(`"Layout" (${layoutBlock().file})`, () => {
  const entries = layoutEntries();
  const listed = new Set(entries.flatMap((e) => expand(e.path)));

  it('lists paths that exist', () => {
    const missing = [...listed].filter((p) => !existsSync(join(ROOT, p)) || (p.endsWith('/') && !statSync(join(ROOT, p)).isDirectory()));
    expect(missing).toEqual([]);
    expect(listed.size).toBeGreaterThan(10);
  });

  it('lists every folder of src/ and every file directly in src/', () => {
    const folders = foldersUnder('src/').filter((f) => !listed.has(f) && ![...listed].some((p) => p.startsWith(f)));
    expect(folders).toEqual([]);
    const files = readdirSync(join(ROOT, 'src'), { withFileTypes: true })
      .filter((d) => d.isFile())
      .map((d) => `src/${d.name}`)
      .filter((f) => !listed.has(f));
    expect(files).toEqual([]);
  });

  it('names only files that are in the folder of the line (src/)', () => {
    const wrong: string[] = [];
    for (const entry of entries) {
      if (!entry.path.startsWith('src/') || !entry.path.endsWith('/') || entry.path.includes('<')) continue;
      for (const name of entry.description.match(/[\w.-]+\.ts\b/g) ?? []) {
        if (!existsSync(join(ROOT, entry.path, name))) wrong.push(`${entry.path}${name}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
