/**
 * The breaking-change check of `npm run schema:check` (scripts/schema-breaking.ts):
 * @graphql-inspector/core's verdicts, allowed only when docs/API.md names them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { breakingChanges, breakingChangesSection } from '../scripts/schema-breaking';

const BASE = `type Query { comparisons(first: Int): [String!]! me: String }
type Mutation { vote(id: ID!): Boolean! }`;

describe('schema breaking-change check', () => {
  it('reports a removed field and a new required argument, not an added field', async () => {
    const next = `type Query { comparisons(first: Int, after: String!): [String!]! fresh: Int }
type Mutation { vote(id: ID!): Boolean! }`;
    const changes = await breakingChanges(BASE, next, '## Breaking changes\n\nNone so far.\n');
    expect(changes.map((c) => c.path).sort()).toEqual(['Query.comparisons.after', 'Query.me']);
    expect(changes.every((c) => !c.documented)).toBe(true);
  });

  it('accepts a breaking change named in the "Breaking changes" section only (not elsewhere in the doc)', async () => {
    const next = `type Query { comparisons(first: Int): [String!]! }
type Mutation { vote(id: ID!): Boolean! }`;
    const doc = '## Schema\n\n`Query.me` is described here.\n\n## Breaking changes\n\n- `Query.me` removed: read `viewer`.\n\n## Later\n';
    expect(breakingChangesSection(doc)).toContain('`Query.me` removed');
    expect(await breakingChanges(BASE, next, doc)).toEqual([expect.objectContaining({ path: 'Query.me', documented: true })]);
    const elsewhere = '## Schema\n\n`Query.me` is described here.\n\n## Breaking changes\n\nNone so far.\n';
    expect(await breakingChanges(BASE, next, elsewhere)).toEqual([expect.objectContaining({ path: 'Query.me', documented: false })]);
  });

  it('finds no breaking change between the committed schema and itself, and docs/API.md has the section', async () => {
    const sdl = readFileSync(join(__dirname, '..', 'schema', 'schema.graphql'), 'utf8');
    expect(await breakingChanges(sdl, sdl, '')).toEqual([]);
    expect(readFileSync(join(__dirname, '..', 'docs', 'API.md'), 'utf8')).toMatch(/^## Breaking changes$/m);
  });
});
