/**
 * The layers of src/ hold (docs/ARCHITECTURE.md, "Layout"): no import cycle,
 * type imports included (`npx madge --circular --extensions ts --ts-config
 * tsconfig.json src`, through madge's API with the same options), and imports
 * go down the request flow only: no file under src/modules imports
 * src/graphql (services and resolvers take plain values; the GraphQL layer
 * wires them), and no infrastructure folder imports a feature or the GraphQL
 * layer.
 */
import { join } from 'node:path';

interface MadgeResult {
  /** file (relative to src/) → the files it imports */
  obj(): Record<string, string[]>;
  circular(): string[][];
}
// madge ships no type declarations.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const madge = require('madge') as (path: string, config: Record<string, unknown>) => Promise<MadgeResult>;

const ROOT = join(__dirname, '..');

let graph: MadgeResult;
beforeAll(async () => {
  graph = await madge(join(ROOT, 'src'), {
    fileExtensions: ['ts'],
    tsConfig: join(ROOT, 'tsconfig.json'),
    // Explicit: an `import type` is an edge too (it is madge's default).
    detectiveOptions: { ts: { skipTypeImports: false }, tsx: { skipTypeImports: false } },
  });
});

/** `from → to` for every import of a file under `from` of a file under `to` (folders relative to src/). */
function importsBetween(from: string, to: string): string[] {
  return Object.entries(graph.obj()).flatMap(([file, deps]) =>
    file.startsWith(`${from}/`) ? deps.filter((dep) => dep.startsWith(`${to}/`)).map((dep) => `${file} → ${dep}`) : [],
  );
}

it('has no import cycle (type imports included)', () => {
  expect(Object.keys(graph.obj()).length).toBeGreaterThan(100);
  expect(graph.circular()).toEqual([]);
});

it('sees type imports: the resolvers import the type of their context', () => {
  // If madge stopped following `import type`, the cycle check above would pass for the wrong reason.
  expect(importsBetween('modules', 'modules/common')).toContain('modules/user/user.resolver.ts → modules/common/context.ts');
});

it('no file under src/modules imports src/graphql', () => {
  expect(importsBetween('modules', 'graphql')).toEqual([]);
});

it.each(['auth', 'input', 'read-cache', 'cache', 'db', 'http', 'pubsub', 'observability', 'llm'])(
  'src/%s imports neither a feature (src/modules) nor the GraphQL layer',
  (folder) => {
    expect([...importsBetween(folder, 'modules'), ...importsBetween(folder, 'graphql')]).toEqual([]);
  },
);

it("graphql/context.ts names the modules only through the resolvers' Context type", () => {
  expect(importsBetween('graphql', 'modules').filter((edge) => edge.startsWith('graphql/context.ts'))).toEqual([
    'graphql/context.ts → modules/common/context.ts',
  ]);
});
