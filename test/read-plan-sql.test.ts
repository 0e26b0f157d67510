/**
 * The SQL every read plan produces, reviewed in diffs (as PostGraphile's
 * `.sql` snapshots are): `test/read-plan-sql/*.sql` are committed, and this
 * test fails when the SQL derived from `src/db/read-plan.ts` (or the compiler
 * in `src/graphql/compiled-read.ts`) no longer matches them.
 *
 * It walks the schema from every root field: for each object type it reaches
 * through fields the compiled read accepts, it compiles one document per
 * field to learn whether that field is compiled, then records the statements
 * of one document selecting every compiled leaf of the type, and the fields
 * that are not compiled. Relation fields with page arguments are walked with
 * literal defaults and with `first`/`after` from variables. `derived.sql`
 * holds the other derivations of the same declarations (the services' pages,
 * the DataLoader batches, the look-ahead's child queries, the rules' SQL).
 *
 * After an intended change: `UPDATE_SQL_SNAPSHOTS=1 npx jest test/read-plan-sql.test.ts`,
 * then review the diff of `test/read-plan-sql/` and commit it with the change.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MikroORM } from '@mikro-orm/postgresql';
import { getNamedType, type GraphQLField, type GraphQLObjectType, isLeafType, isNonNullType, isObjectType } from 'graphql';
import {
  childListBatchSql,
  childPagesBatchSql,
  childRowsSql,
  COMPUTED,
  ownedPageSql,
  ownedRowsSql,
  RELATIONS,
  SERVICE_ONLY_PLANS,
  type RelationPlan,
  SHARE_LINK_LIVE,
  SHARED_SNAPSHOT,
  VISIBILITY_RULES,
} from '../src/db/read-plan';
import { plainShape } from '../src/db/plain';
import type { CompiledReadDeps } from '../src/graphql/compiled-read';
import { compile, compileDeps, metadataOrm } from './helpers/read-plan';

const DIR = join(__dirname, 'read-plan-sql');
const UPDATE = process.env.UPDATE_SQL_SNAPSHOTS === '1';

let orm: MikroORM;
let deps: CompiledReadDeps;

beforeAll(async () => {
  orm = await metadataOrm();
  deps = await compileDeps(orm);
});
afterAll(() => orm?.close());

/** One step from a parent: `field(args)`, with the variables the arguments use. */
interface Hop {
  field: string;
  args?: string;
  vars?: string[];
}

function documentOf(path: Hop[], leaves: string): string {
  const vars = path.flatMap((h) => h.vars ?? []);
  let body = leaves;
  for (let i = path.length - 1; i >= 0; i--) body = `${path[i]!.field}${path[i]!.args ?? ''} { ${body} }`;
  return `query Walk${vars.length ? `(${vars.join(', ')})` : ''} { ${body} }`;
}

/** How a relation field may be asked for: page arguments as defaults and from variables; a required id from a variable. */
function variants(field: GraphQLField<unknown, unknown>, depth = 0): Hop[] {
  const n = depth ? String(depth) : '';
  const names = field.args.map((a) => a.name);
  if (field.args.some((a) => isNonNullType(a.type) && a.name !== 'id')) return [];
  if (names.includes('first') && names.includes('after')) {
    return [
      { field: field.name },
      { field: field.name, args: `(first: $first${n}, after: $after${n})`, vars: [`$first${n}: Int`, `$after${n}: String`] },
    ];
  }
  if (names.length === 1 && names[0] === 'id' && isNonNullType(field.args[0]!.type))
    return [{ field: field.name, args: '(id: $id)', vars: ['$id: ID!'] }];
  if (field.args.some((a) => isNonNullType(a.type))) return [];
  return [{ field: field.name }];
}

/** Line breaks before clauses, indented by parenthesis depth, outside string literals: enough to review a diff. */
function formatSql(sql: string): string {
  let out = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < sql.length; i++) {
    const ch = sql[i]!;
    if (ch === "'") quoted = !quoted;
    if (!quoted) {
      if (ch === '(') depth++;
      if (ch === ')') depth--;
      const rest = sql.slice(i);
      const clause = /^ (select|from|where|order by|group by|limit|cross join|join) /.exec(rest);
      // Not the `from` of `extract(epoch from …)`.
      if (clause && i > 0 && !(clause[1] === 'from' && out.endsWith('epoch'))) {
        out += `\n${'  '.repeat(Math.max(0, depth) + 1)}`;
        continue;
      }
    }
    out += ch;
  }
  return out;
}

interface Section {
  title: string;
  text: string;
}

function walk(type: GraphQLObjectType, path: Hop[], hops: number, into: Section[]): void {
  const compiled: string[] = [];
  const notCompiled: string[] = [];
  const relations: Array<{ hop: Hop; type: GraphQLObjectType }> = [];
  for (const field of Object.values(type.getFields()).sort((a, b) => a.name.localeCompare(b.name))) {
    const named = getNamedType(field.type);
    if (isLeafType(named)) {
      if (field.args.length) notCompiled.push(field.name);
      else if (compile(deps, documentOf(path, field.name)).read) compiled.push(field.name);
      else notCompiled.push(field.name);
      continue;
    }
    if (!isObjectType(named)) {
      notCompiled.push(field.name);
      continue;
    }
    const ways = variants(field, path.length);
    if (ways.length === 0) notCompiled.push(field.name);
    for (const hop of ways) {
      const label = `${hop.field}${hop.args ?? ''}`;
      if (compile(deps, documentOf([...path, hop], '__typename')).read && hops < 4) relations.push({ hop, type: named });
      else notCompiled.push(label);
    }
  }
  const title = path.map((h) => `${h.field}${h.args ?? ''}`).join(' › ') || 'Query';
  if (compiled.length) {
    const source = documentOf(path, compiled.join(' '));
    const read = compile(deps, source).read!;
    const sql = Object.values(read.sql).flat();
    into.push({
      title,
      text: [
        `-- ${title}`,
        `-- ${source}`,
        `-- not compiled: ${notCompiled.join(', ') || '(none)'}`,
        ...sql.map((s) => `${formatSql(s)};`),
      ].join('\n'),
    });
  } else {
    into.push({
      title,
      text: [`-- ${title}`, `-- compiled leaves: (none)`, `-- not compiled: ${notCompiled.join(', ') || '(none)'}`].join('\n'),
    });
  }
  for (const { hop, type: child } of relations) walk(child, [...path, hop], hops + 1, into);
}

function compiledReadFiles(): Map<string, string> {
  const query = deps.schema.getQueryType()!;
  const files = new Map<string, string>();
  const notCompiled: string[] = [];
  for (const field of Object.values(query.getFields()).sort((a, b) => a.name.localeCompare(b.name))) {
    const named = getNamedType(field.type);
    const hop = variants(field)[0];
    if (!hop || !isObjectType(named) || !compile(deps, documentOf([hop], '__typename')).read) {
      notCompiled.push(field.name);
      continue;
    }
    // A root field's own arguments are bound at request time: the SQL is the same whether they are literals or variables.
    const sections: Section[] = [];
    walk(named, [hop], 1, sections);
    files.set(`Query.${field.name}.sql`, `${sections.map((s) => s.text).join('\n\n')}\n`);
  }
  files.set('Query.not-compiled.txt', `${notCompiled.join('\n')}\n`);
  return files;
}

function derivedFile(): string {
  const lines: string[] = [];
  const shape = (entity: string) => plainShape<unknown>(orm.em, { name: entity });
  for (const plan of [...Object.values(RELATIONS), ...SERVICE_ONLY_PLANS] as RelationPlan[]) {
    lines.push(`-- ${plan.field}: ${JSON.stringify(plan, (k, v) => (k === 'concealedUnless' ? `rule ${v.name}` : v))}`);
    if (plan.kind === 'ownedList') {
      const page = (after: string | null) =>
        ownedPageSql(plan, {
          alias: 'a',
          select: 'a.id',
          ownerId: '<user>',
          first: null,
          after,
          decode: () => ({ createdAt: new Date(0), id: '<id>' }),
        }).sql;
      lines.push(`-- the service's page (readOwnedPage), first and later:`, `${formatSql(page(null))};`, `${formatSql(page('<cursor>'))};`);
    }
    if (plan.kind === 'ownedRow') lines.push(`-- the by-id DataLoader batch (where):`, `${ownedRowsSql(plan, 'a')};`);
    if (plan.kind === 'childPage') {
      lines.push(`-- the DataLoader batch (pages of many parents):`, `${formatSql(childPagesBatchSql(plan, shape(plan.entity).columns))};`);
      lines.push(
        `-- the look-ahead's child query:`,
        `${formatSql(childRowsSql(plan, 'm', 'parent.id', { limit: '11', parentRow: 'parent' }))};`,
      );
    }
    if (plan.kind === 'childList') {
      lines.push(
        `-- the DataLoader batch (children of many parents):`,
        `${formatSql(childListBatchSql(plan, shape(plan.entity).columns))};`,
      );
      lines.push(`-- the look-ahead's child query:`, `${formatSql(childRowsSql(plan, 'x2', 'parent.id'))};`);
    }
    lines.push('');
  }
  for (const rule of VISIBILITY_RULES) {
    lines.push(`-- rule ${rule.name} (${rule.entity}), SQL predicate:`, `${rule.sql('c')};`);
    lines.push(`-- rule ${rule.name} conceals on ${rule.conceals.entity}: ${Object.keys(rule.conceals.fields).join(', ')}`, '');
  }
  // What share links add (beside shared_revealed above): whether a link answers, and which responses its snapshot holds.
  lines.push(`-- rule ${SHARE_LINK_LIVE.name} (${SHARE_LINK_LIVE.entity}), SQL predicate:`, `${SHARE_LINK_LIVE.sql('l')};`);
  lines.push(`-- shared snapshot: a response of the snapshot (made at ?):`, `${SHARED_SNAPSHOT.responseSql('r', '?')};`, '');
  for (const [field, computed] of Object.entries(COMPUTED)) lines.push(`-- computed ${field}:`, `${computed.json('a')};`);
  return `${lines.join('\n')}\n`;
}

it('every compiled field and every derivation of the read plans matches its committed .sql (UPDATE_SQL_SNAPSHOTS=1 rewrites them)', () => {
  const files = compiledReadFiles();
  files.set('derived.sql', derivedFile());
  if (UPDATE) {
    mkdirSync(DIR, { recursive: true });
    for (const old of readdirSync(DIR)) if (!files.has(old)) writeFileSync(join(DIR, old), '');
    for (const [name, text] of files) writeFileSync(join(DIR, name), text);
  }
  const committed = existsSync(DIR) ? readdirSync(DIR).filter((f) => readFileSync(join(DIR, f), 'utf8') !== '') : [];
  expect(committed.sort()).toEqual([...files.keys()].sort());
  for (const [name, text] of files) expect([name, readFileSync(join(DIR, name), 'utf8')]).toEqual([name, text]);
});

it('every plan names its entity and table as MikroORM does, and its columns exist', () => {
  for (const plan of [...Object.values(RELATIONS), ...SERVICE_ONLY_PLANS] as RelationPlan[]) {
    const meta = orm.getMetadata().find(plan.entity);
    expect([plan.field, meta?.tableName]).toEqual([plan.field, plan.table]);
    const columns = new Set(Object.values(meta!.properties).flatMap((p) => p.fieldNames ?? []));
    const named = [
      ...('owner' in plan ? [plan.owner] : []),
      ...('foreignKey' in plan ? [plan.foreignKey] : []),
      ...(plan.kind === 'childList' ? plan.order : 'order' in plan ? plan.order.columns : []),
    ];
    for (const column of named) expect([plan.field, column, columns.has(column)]).toEqual([plan.field, column, true]);
  }
  for (const rule of [...VISIBILITY_RULES, SHARE_LINK_LIVE]) expect(orm.getMetadata().find(rule.entity)?.tableName).toBe(rule.table);
});

it('the schema states the page defaults the plans declare', () => {
  for (const plan of [...Object.values(RELATIONS), ...SERVICE_ONLY_PLANS] as RelationPlan[]) {
    if (!('page' in plan)) continue;
    const [typeName, fieldName] = plan.field.split('.') as [string, string];
    const type = deps.schema.getType(typeName) as GraphQLObjectType;
    const first = type.getFields()[fieldName]!.args.find((a) => a.name === 'first');
    expect([plan.field, first?.defaultValue]).toEqual([plan.field, plan.page.default]);
  }
});
