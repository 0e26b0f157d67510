/**
 * Compiled reads: the hot read queries answered as JSON text built by PostgreSQL.
 *
 * The history page is a few owner-scoped lists and their children. Executing
 * it the ordinary way costs, per request, parsing ~200 rows into JS objects,
 * walking them through the executor and `JSON.stringify`-ing ~130 KB again.
 * A compiled read does what PostGraphile does instead: once per validated
 * document it turns the operation into one SQL statement per root field whose
 * rows are already the JSON text of that field, and at request time it only
 * runs those statements (in parallel) and splices their text into
 * `{"data":{…}}`. No resolver runs and no row becomes an object.
 *
 * It is an optimisation with a strict fallback, never a second implementation
 * of the API:
 * - only documents Apollo has parsed, validated and planned before are
 *   compiled (the compiled-reads plugin hands them over), and only when
 *   every field of the operation is understood here; anything else (a field
 *   with a resolver this file does not know, arguments on a scalar, `@skip`,
 *   duplicate response keys, `Float`s, interfaces…) keeps the ordinary path;
 * - a scalar field is compiled only when GraphQL would read it straight off
 *   the plain row (`resolve` undefined: `simpleResolvers`) and it is a column
 *   of the entity of the same name; the value is then the column, serialised
 *   in SQL exactly as the scalar would (ISO dates, enum names, JSON strings);
 * - list and relation fields are compiled from their read plans
 *   (`RELATIONS` in `db/read-plan.ts`: the one declaration of their table,
 *   owner filter or foreign key, order, page bounds and cursor, which the
 *   services, loaders and look-ahead derive their SQL from too); this file
 *   knows no table;
 * - the root fields `conversation(id)` and `comparison(id)` and child pages
 *   with `first`/`after` from variables are compiled too: values become bound
 *   parameters (one SQL text per document), and a child page's `endCursor` is
 *   signed here from the position PostgreSQL puts in the text (between
 *   U+0002 marks, which the JSON built here always escapes otherwise);
 * - argument values are checked as the resolvers check them; a value they
 *   would refuse (a page size out of range, a cursor that does not verify)
 *   sends the request down the ordinary path, which answers the error;
 * - with variables, the document guard's checks (text inputs, cost) run first;
 * - `test/compiled-read.test.ts` runs a corpus of documents both ways and
 *   `test/read-plan-documents.test.ts` thousands of random ones, requiring
 *   byte-identical responses; `test/read-plan-sql.test.ts` snapshots the SQL
 *   of every field compiled here;
 * - fields a row may have to hide (a blind comparison's responses before the
 *   vote: the `REVEALED` rule's `conceals`, `db/read-plan.ts`) are never served from here: the
 *   compiled SQL puts a sentinel (U+0001, which the JSON built here always
 *   escapes otherwise) in place of a hidden value, and a body holding one
 *   takes the ordinary path, whose services present the row as it may be seen.
 *
 * `COMPILED_READS=off` turns it off (the benchmark's comparison row).
 */
import {
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  getArgumentValues,
  getNullableType,
  getVariableValues,
  type GraphQLField,
  GraphQLID,
  GraphQLInt,
  GraphQLBoolean,
  GraphQLString,
  type GraphQLObjectType,
  type GraphQLOutputType,
  type GraphQLSchema,
  isEnumType,
  isListType,
  isNonNullType,
  isObjectType,
  isScalarType,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { ReferenceKind, type EntityMetadata } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import { type CursorCodec, isUuid } from '../db/pagination';
import {
  afterSql,
  type ChildListPlan,
  type ChildPagePlan,
  childListFromSql,
  childRowsSql,
  COMPUTED,
  cursorScope,
  isPageSizeOf,
  orderSql,
  ownerSql,
  type OwnedListPlan,
  type OwnedRowPlan,
  RELATIONS,
  type RelationPlan,
} from '../db/read-plan';
import type { PreparedStatements } from '../db/prepared';
import { LruMap } from '../lru-map';
import { documentWeight } from './document-cache';
import { isByteCountingResolver, responseTooLarge } from './response-bytes';

/** Stands for a hidden value in the compiled JSON; `to_json` escapes it everywhere else, so it never occurs otherwise. */
const HIDDEN_SENTINEL = '\u0001';

/** A cursor to sign, inside a JSON string: U+0002 scope U+0003 epoch ms U+0003 id U+0002 (never otherwise in the text, as above). */
const CURSOR_MARK = /\u0002([^\u0002\u0003]*)\u0003([^\u0002\u0003]*)\u0003([^\u0002]*)\u0002/g;

/** Stands for the n-th parameter while a statement is built; `finish` turns these into `?` in text order. */
const TOKEN = /\u00a4(\d+)\u00a4/g;

/** Response keys and how each is produced, for one selection set on one object type. */
type Selected = Array<{ key: string; node: FieldNode; field: GraphQLField<unknown, unknown> | null }>;

/** What one request hands a compiled statement: its parameters are read from here. */
interface Runtime {
  userId: string;
  /** The root field's arguments. */
  args: Record<string, unknown>;
  /** The operation's coerced variables, for arguments below the root. */
  variables: Record<string, unknown>;
  /** A root list's page size and cursor position, once checked. */
  limit?: number;
  position?: { createdAt: Date; id: string };
  /** A child page's size and cursor position, per field node, once checked. */
  pages: Map<FieldNode, { first: number; position: { createdAt: Date; id: string } | null }>;
}

/** A parameter of a compiled statement, read at request time; throws {@link Fallback} when the request must take the ordinary path. */
type Param = (rt: Runtime) => unknown;

/** The request takes the ordinary path, which answers it (an argument the resolvers refuse, a cursor that does not verify…). */
class Fallback extends Error {}
const fallback = (): never => {
  throw new Fallback();
};

/** The parent row of a relation when the request knows its id (a root `conversation(id)`): a child page may then follow a cursor. */
interface ParentScope {
  id: Param;
}

export interface CompiledReadDeps {
  schema: GraphQLSchema;
  /** For the entities' metadata (column names and types). */
  em: EntityManager;
  /** How the statements run: named prepared statements on the ORM's pool (`db/prepared.ts`). */
  prepared: PreparedStatements;
  cursors: CursorCodec;
  /**
   * `MAX_RESPONSE_BYTES`: a root list whose JSON passes its share of it answers RESPONSE_TOO_LARGE,
   * and no more rows than that share reach this process.
   */
  maxResponseBytes?: number;
  /** The document guard's variable checks (text inputs, cost); throws when the request must be refused. */
  checkOperation(document: DocumentNode, operationName: string | null, variables: Record<string, unknown>): void;
}

class Unsupported extends Error {}
const unsupported = (why: string): never => {
  throw new Unsupported(why);
};

/** One root field, ready to run: its statements and how to turn their rows into its JSON text. */
interface RootStep {
  key: string;
  run(rt: Runtime): Promise<string | undefined>;
  node: FieldNode;
  /** Null for `__typename`. */
  field: GraphQLField<unknown, unknown> | null;
  /** The statements' text (`?` placeholders), for review (`test/read-plan-sql.test.ts`). */
  sql: string[];
}

export class CompiledRead {
  constructor(
    private readonly deps: CompiledReadDeps,
    private readonly document: DocumentNode,
    private readonly operation: OperationDefinitionNode,
    private readonly steps: RootStep[],
    /** The root fields' arguments when the operation has no variables (computed once). */
    private readonly staticArgs: Array<Record<string, unknown>> | undefined,
    /** Whether the text holds cursors to sign (child pages' `endCursor`). */
    private readonly signsCursors: boolean,
  ) {}

  /** Estimated bytes held: the document (as `document-cache.ts` weighs it) and the compiled steps. */
  get weight(): number {
    return documentWeight(this.document.loc?.end ?? 1000) + 4096 * this.steps.length;
  }

  /** The SQL text of every statement this read may send, by root response key. */
  get sql(): Record<string, string[]> {
    return Object.fromEntries(this.steps.map((s) => [s.key, s.sql]));
  }

  /** The response body, or undefined when this request must take the ordinary path. */
  async run(userId: string, variables: Record<string, unknown>): Promise<string | undefined> {
    let args = this.staticArgs;
    let coerced: Record<string, unknown> = {};
    if (!args) {
      const result = getVariableValues(this.deps.schema, this.operation.variableDefinitions ?? [], variables);
      if (result.errors) return undefined;
      try {
        this.deps.checkOperation(this.document, this.operation.name?.value ?? null, variables);
      } catch {
        return undefined;
      }
      coerced = result.coerced;
      args = this.steps.map((s) => (s.field ? getArgumentValues(s.field, s.node, coerced) : {}));
    }
    const values = await Promise.all(this.steps.map((s, i) => s.run({ userId, args: args![i]!, variables: coerced, pages: new Map() })));
    let body = '{"data":{';
    for (let i = 0; i < this.steps.length; i++) {
      const value = values[i];
      // A hidden value: the ordinary path presents the row as the reader may see it.
      if (value === undefined || value.includes(HIDDEN_SENTINEL)) return undefined;
      body += `${i ? ',' : ''}${JSON.stringify(this.steps[i]!.key)}:${value}`;
    }
    if (this.signsCursors) {
      const cursors = this.deps.cursors;
      body = body.replace(CURSOR_MARK, (_, scope: string, ms: string, id: string) =>
        cursors.encode(scope, { createdAt: new Date(Number(ms)), id }),
      );
    }
    // Apollo ends a JSON body with a newline: the same bytes either way.
    return `${body}}}\n`;
  }
}

/** Compiled reads per (document, operation name), learnt once from Apollo's validated operation. */
export class CompiledReads {
  /** Bounded by entries and by estimated bytes (`maxBytes`, a share of `DOCUMENT_CACHE_MB`): a plan holds its document and SQL. */
  private readonly plans: LruMap<string, CompiledRead | null>;

  constructor(
    private readonly deps: CompiledReadDeps,
    maxBytes = 8 * 2 ** 20,
  ) {
    this.plans = new LruMap(2_000, { maxWeight: maxBytes, weigh: (plan, key) => 256 + 2 * key.length + (plan ? plan.weight : 0) });
  }

  learn(documentHash: string, operationName: string | null, document: DocumentNode, operation: OperationDefinitionNode): void {
    const key = operationName ? `${documentHash}:${operationName}` : documentHash;
    if (this.plans.get(key) !== undefined) return;
    this.plans.set(key, compileRead(this.deps, document, operation));
  }

  get(documentHash: string, operationName: string | null): CompiledRead | undefined {
    return this.plans.get(operationName ? `${documentHash}:${operationName}` : documentHash) ?? undefined;
  }
}

/** The compiled form of a validated query operation, or null when any part of it is not understood here. */
export function compileRead(deps: CompiledReadDeps, document: DocumentNode, operation: OperationDefinitionNode): CompiledRead | null {
  if (operation.operation !== 'query' || operation.directives?.length) return null;
  const fragments: Record<string, FragmentDefinitionNode> = {};
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments[d.name.value] = d;
  const compiler = new Compiler(deps, fragments);
  try {
    const query = deps.schema.getQueryType()!;
    const selected = compiler.select(query, operation.selectionSet);
    // Root fields run in parallel: each may send this process its share of the byte budget.
    const share =
      deps.maxResponseBytes !== undefined ? Math.max(1, Math.floor(deps.maxResponseBytes / Math.max(1, selected.length))) : undefined;
    const steps = selected.map(({ key, node, field }) => {
      if (!field) return typenameStep(key, node, query.name);
      return compiler.rootStep(key, node, field, share);
    });
    if (steps.length === 0) return null;
    const staticArgs = operation.variableDefinitions?.length
      ? undefined
      : steps.map((s) => (s.field ? getArgumentValues(s.field, s.node, {}) : {}));
    return new CompiledRead(deps, document, operation, steps, staticArgs, compiler.signsCursors);
  } catch (error) {
    if (error instanceof Unsupported) return null;
    throw error;
  }
}

function typenameStep(key: string, node: FieldNode, typeName: string): RootStep {
  const text = JSON.stringify(typeName);
  return { key, node, field: null, sql: [], run: async () => text };
}

/** The parameters' values for one request, or undefined when it must take the ordinary path. */
function bind(params: readonly Param[], rt: Runtime): unknown[] | undefined {
  try {
    return params.map((p) => p(rt));
  } catch (error) {
    if (error instanceof Fallback) return undefined;
    throw error;
  }
}

const ISO = `'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'`;

type PageRows = Array<{ j: string; ms: number; id: string; total?: string | number }>;

class Compiler {
  private aliasCount = 0;
  /** Parameters of the statements being built, by token number. */
  private readonly params: Param[] = [];
  /** Set when a child page's `endCursor` is compiled: the body holds cursors to sign. */
  signsCursors = false;

  constructor(
    private readonly deps: CompiledReadDeps,
    private readonly fragments: Record<string, FragmentDefinitionNode>,
  ) {}

  private alias(): string {
    return `t${this.aliasCount++}`;
  }

  /** A placeholder for a parameter read at request time. */
  private param(get: Param): string {
    this.params.push(get);
    return `\u00a4${this.params.length - 1}\u00a4`;
  }

  /** A statement ready to run: its tokens become `?` in text order, with the parameters in that order. */
  private statement(text: string): { sql: string; params: Param[]; prepared: ReturnType<PreparedStatements['prepare']> } {
    const params: Param[] = [];
    const sql = text.replace(TOKEN, (_, n: string) => {
      params.push(this.params[Number(n)]!);
      return '?';
    });
    return { sql, params, prepared: this.deps.prepared.prepare(sql) };
  }

  private meta(entity: string): EntityMetadata {
    return this.deps.em.getMetadata().find(entity) ?? unsupported(`no entity ${entity}`);
  }

  /** The fields of `set` on `type`, in response order (fragments on the same type flattened). */
  select(type: GraphQLObjectType, set: SelectionSetNode, into: Selected = [], seen = new Set<string>()): Selected {
    for (const selection of set.selections) {
      if (selection.directives?.length) unsupported('directive');
      if (selection.kind === Kind.FIELD) {
        const key = selection.alias?.value ?? selection.name.value;
        if (seen.has(key)) unsupported('duplicate response key');
        seen.add(key);
        if (selection.name.value === '__typename') {
          into.push({ key, node: selection, field: null });
          continue;
        }
        const field = type.getFields()[selection.name.value] ?? unsupported('unknown field');
        into.push({ key, node: selection, field });
      } else {
        const condition =
          selection.kind === Kind.INLINE_FRAGMENT ? selection.typeCondition : this.fragments[selection.name.value]?.typeCondition;
        if (condition && condition.name.value !== type.name) unsupported('fragment on another type');
        const inner =
          selection.kind === Kind.INLINE_FRAGMENT
            ? selection.selectionSet
            : (this.fragments[selection.name.value] ?? unsupported('unknown fragment')).selectionSet;
        this.select(type, inner, into, seen);
      }
    }
    return into;
  }

  rootStep(key: string, node: FieldNode, field: GraphQLField<unknown, unknown>, byteShare?: number): RootStep {
    const relation = RELATIONS[`Query.${field.name}`] ?? unsupported(`root field ${field.name}`);
    const type = getNullableType(field.type);
    if (!isObjectType(type) || !node.selectionSet) return unsupported('root type');
    if (relation.kind === 'viewer' || relation.kind === 'ownedRow') return this.rowStep(key, node, field, type, relation);
    if (relation.kind === 'ownedList') return this.listStep(key, node, field, type, relation, byteShare);
    return unsupported(`root relation ${relation.kind}`);
  }

  /** `me`, `conversation(id)`, `comparison(id)`: one row (the viewer's own, or one of theirs by id) or null. */
  private rowStep(
    key: string,
    node: FieldNode,
    field: GraphQLField<unknown, unknown>,
    type: GraphQLObjectType,
    relation: RelationPlan,
  ): RootStep {
    const a = this.alias();
    const byId = relation.kind === 'ownedRow';
    const object = this.objectSql(type, node.selectionSet!, relation.entity, a, byId ? { id: (rt) => rt.args.id } : undefined);
    const where = byId
      ? `${a}.id = ${this.param((rt) => rt.args.id)}::uuid and ${ownerSql(
          relation as OwnedRowPlan,
          a,
          this.param((rt) => rt.userId),
        )}`
      : `${a}.id = ${this.param((rt) => rt.userId)}`;
    const { sql, params, prepared } = this.statement(`select ${object} as j from ${relation.table} ${a} where ${where}`);
    const statements = this.deps.prepared;
    return {
      key,
      node,
      field,
      sql: [sql],
      run: async (rt) => {
        // Not an id: the resolver's loader finds nothing either.
        if (byId && (typeof rt.args.id !== 'string' || !isUuid(rt.args.id))) return 'null';
        const values = bind(params, rt);
        if (!values) return undefined;
        const rows = await statements.query<{ j: string }>(prepared, values);
        return rows[0]?.j ?? 'null';
      },
    };
  }

  /** A root connection of the viewer's own rows: `nodes`, `pageInfo { hasNextPage endCursor }`, `__typename`. */
  private listStep(
    key: string,
    node: FieldNode,
    field: GraphQLField<unknown, unknown>,
    type: GraphQLObjectType,
    relation: OwnedListPlan,
    byteShare?: number,
  ): RootStep {
    const parts = this.select(type, node.selectionSet!);
    const a = this.alias();
    let nodesSql: string | undefined;
    const pieces: Array<(rows: PageRows, limit: number, scope: string) => string> = [];
    for (const part of parts) {
      const name = part.field?.name ?? '__typename';
      const k = JSON.stringify(part.key);
      if (name === '__typename') {
        const t = JSON.stringify(type.name);
        pieces.push(() => `${k}:${t}`);
      } else if (name === 'nodes') {
        if (nodesSql !== undefined) unsupported('nodes twice');
        nodesSql = this.objectSql(
          itemType(part.field!.type),
          part.node.selectionSet ?? unsupported('nodes without selection'),
          relation.entity,
          a,
        );
        pieces.push((rows, limit) => {
          let out = `${k}:[`;
          const n = Math.min(rows.length, limit);
          for (let i = 0; i < n; i++) out += i ? `,${rows[i]!.j}` : rows[i]!.j;
          return `${out}]`;
        });
      } else if (name === 'pageInfo') {
        const infoType = getNullableType(part.field!.type);
        if (!isObjectType(infoType) || !part.node.selectionSet) return unsupported('pageInfo type');
        const cursors = this.deps.cursors;
        const infoPieces = this.select(infoType, part.node.selectionSet).map((p) => {
          const ik = JSON.stringify(p.key);
          const iname = p.field?.name ?? '__typename';
          if (iname === '__typename') return () => `${ik}:${JSON.stringify(infoType.name)}`;
          if (iname === 'hasNextPage') return (rows: PageRows, limit: number) => `${ik}:${rows.length > limit}`;
          if (iname === 'endCursor')
            return (rows: PageRows, limit: number, scope: string) => {
              const last = rows[Math.min(rows.length, limit) - 1];
              const cursor = last && cursors.encode(scope, { createdAt: new Date(Number(last.ms)), id: last.id });
              return `${ik}:${cursor ? JSON.stringify(cursor) : 'null'}`;
            };
          return unsupported(`pageInfo.${iname}`);
        });
        pieces.push((rows, limit, scope) => `${k}:{${infoPieces.map((p) => p(rows, limit, scope)).join(',')}}`);
      } else {
        return unsupported(`connection field ${name}`);
      }
    }
    const select = `${nodesSql ?? `'null'`} as j, (extract(epoch from ${a}.created_at) * 1000)::float8 as ms, ${a}.id as id`;
    const rowsSql = (where: string, extra = '') =>
      `select ${select}${extra} from ${relation.table} ${a} where ${where} ` +
      `order by ${orderSql(relation, a)} limit ${this.param((rt) => rt.limit! + 1)}`;
    // With a byte share, PostgreSQL sends rows only while their JSON fits in it (and the one that passes it, to tell).
    const page = (where: string) =>
      this.statement(
        byteShare === undefined
          ? rowsSql(where)
          : `select j, ms, id, total from (select s.*, sum(octet_length(s.j)) over (order by ${orderSql(relation, 's')}) as total ` +
              `from (${rowsSql(where, `, ${a}.created_at as created_at`)}) s) w ` +
              `where w.total - octet_length(w.j) <= ${byteShare} order by ${orderSql(relation, 'w')}`,
      );
    const owner = () =>
      ownerSql(
        relation,
        a,
        this.param((rt) => rt.userId),
      );
    const firstPage = page(owner());
    const laterPage = page(
      `${owner()} and ${afterSql(
        relation,
        a,
        this.param((rt) => rt.position!.createdAt),
        this.param((rt) => rt.position!.id),
      )}`,
    );
    const maxBytes = this.deps.maxResponseBytes;
    const cursors = this.deps.cursors;
    const statements = this.deps.prepared;
    return {
      key,
      node,
      field,
      sql: [firstPage.sql, laterPage.sql],
      run: async (rt) => {
        const first = rt.args.first ?? relation.page.default;
        if (!isPageSizeOf(relation, first)) return undefined;
        const scope = cursorScope(relation, rt.userId);
        let statement = firstPage;
        if (rt.args.after !== undefined && rt.args.after !== null) {
          if (typeof rt.args.after !== 'string') return undefined;
          try {
            rt.position = cursors.decode(scope, rt.args.after);
          } catch {
            return undefined;
          }
          statement = laterPage;
        }
        rt.limit = first;
        const values = bind(statement.params, rt);
        if (!values) return undefined;
        const rows = await statements.query<PageRows[number]>(statement.prepared, values);
        const last = rows[rows.length - 1];
        if (byteShare !== undefined && last && Number(last.total) > byteShare) throw responseTooLarge(maxBytes ?? byteShare);
        return `{${pieces.map((p) => p(rows, first, scope)).join(',')}}`;
      },
    };
  }

  /** SQL text expression: the JSON object of row `a` (entity `entity`) for `set` on `type`. */
  objectSql(
    type: GraphQLObjectType,
    set: SelectionSetNode,
    entity: string,
    a: string,
    scope?: ParentScope,
    concealed?: { fields: readonly string[]; when: string },
  ): string {
    const meta = this.meta(entity);
    if (meta.className !== type.name) unsupported(`type ${type.name} is not entity ${entity}`);
    const members: string[] = [];
    for (const { key, node, field } of this.select(type, set)) {
      const k = JSON.stringify(key).replace(/'/g, "''");
      if (!field) {
        members.push(`'${k}:${JSON.stringify(type.name)}'`);
        continue;
      }
      const relation = RELATIONS[`${type.name}.${field.name}`];
      let value = relation ? this.relationSql(relation, field, node, a, scope) : this.columnSql(meta, field, node, a);
      if (concealed?.fields.includes(field.name)) value = `(case when ${concealed.when} then chr(1) else ${value} end)`;
      members.push(`'${k}:' || ${value}`);
    }
    if (members.length === 0) unsupported('empty selection');
    return `'{' || ${members.join(` || ',' || `)} || '}'`;
  }

  private columnSql(meta: EntityMetadata, field: GraphQLField<unknown, unknown>, node: FieldNode, a: string): string {
    const computed = COMPUTED[`${meta.className}.${field.name}`];
    if (computed && !node.arguments?.length) return computed.json(a);
    if ((field.resolve !== undefined && !isByteCountingResolver(field.resolve)) || node.arguments?.length || field.args.length) {
      unsupported(`${meta.className}.${field.name} has a resolver or arguments`);
    }
    const prop =
      meta.properties[field.name as keyof typeof meta.properties] ?? unsupported(`${meta.className}.${field.name} is not a column`);
    if (prop.kind !== ReferenceKind.SCALAR || prop.persist === false || prop.lazy || prop.formula || prop.fieldNames?.length !== 1) {
      unsupported(`${meta.className}.${field.name} is not a plain column`);
    }
    const column = `${a}.${prop.fieldNames[0]}`;
    const nullable = !isNonNullType(field.type);
    const type = getNullableType(field.type) as GraphQLOutputType;
    const orNull = (expr: string) => (nullable ? `coalesce(${expr}, 'null')` : expr);
    if (isEnumType(type)) {
      const cases = type.getValues().map((v) => `when ${sqlString(String(v.value))} then ${sqlString(JSON.stringify(v.name))}`);
      return `(case ${column}::text ${cases.join(' ')} else 'null' end)`;
    }
    if (!isScalarType(type)) return unsupported('not a scalar');
    if (type === GraphQLString || type === GraphQLID) return orNull(`to_json(${column}::text)::text`);
    if (type === GraphQLInt) return orNull(`${column}::int::text`);
    if (type === GraphQLBoolean) return `(case ${column} when true then 'true' when false then 'false' else 'null' end)`;
    if (type.name === 'DateTime') return orNull(`('"' || to_char(${column} at time zone 'UTC', ${ISO}) || '"')`);
    return unsupported(`scalar ${type.name}`);
  }

  private relationSql(
    relation: RelationPlan,
    field: GraphQLField<unknown, unknown>,
    node: FieldNode,
    parent: string,
    scope?: ParentScope,
  ): string {
    if (!node.selectionSet) return unsupported('relation without selection');
    if (relation.kind === 'childList') return this.childListSql(relation, field, node, parent);
    if (relation.kind === 'childPage') return this.childPageSql(relation, field, node, parent, scope);
    return unsupported(`relation ${relation.kind} below the root`);
  }

  /** All of a parent's children, in the plan's order; fields its rule conceals hold the sentinel when it does not hold. */
  private childListSql(relation: ChildListPlan, field: GraphQLField<unknown, unknown>, node: FieldNode, parent: string): string {
    if (node.arguments?.length) return unsupported('child list arguments');
    const b = this.alias();
    const rule = relation.concealedUnless;
    const concealed = rule && { fields: Object.keys(rule.conceals.fields), when: `(not ${rule.sql(parent)})` };
    const item = this.objectSql(itemType(field.type), node.selectionSet!, relation.entity, b, undefined, concealed);
    const rows = childListFromSql(relation, b, `${parent}.id`);
    return `('[' || coalesce((select string_agg(${item}, ',' order by ${orderSql(relation, b)}) ${rows}), '') || ']')`;
  }

  /**
   * A parent's page of children: `nodes`, `pageInfo`, `__typename`. `first`
   * and `after` may be variables (bound parameters, checked per request as the
   * resolver checks them); `after` is followed only when the request knows
   * the parent (`scope`), the cursor's scope.
   */
  private childPageSql(
    relation: ChildPagePlan,
    field: GraphQLField<unknown, unknown>,
    node: FieldNode,
    parent: string,
    scope?: ParentScope,
  ): string {
    const type = getNullableType(field.type);
    if (!isObjectType(type)) return unsupported('child page shape');
    const cursors = this.deps.cursors;
    const pageOf = (rt: Runtime) => {
      let page = rt.pages.get(node);
      if (!page) {
        const args = getArgumentValues(field, node, rt.variables);
        const first = args.first ?? relation.page.default;
        if (!isPageSizeOf(relation, first)) return fallback();
        let position = null;
        if (args.after !== null && args.after !== undefined) {
          if (!scope || typeof args.after !== 'string') return fallback();
          try {
            position = cursors.decode(cursorScope(relation, String(scope.id(rt))), args.after);
          } catch {
            return fallback();
          }
        }
        page = { first, position };
        rt.pages.set(node, page);
      }
      return page;
    };
    const parts = this.select(type, node.selectionSet!);
    const paged = parts.some((p) => p.field?.name === 'pageInfo');
    const b = this.alias();
    const c = this.alias();
    const after = node.arguments?.some((arg) => arg.name.value === 'after')
      ? ([this.param((rt) => pageOf(rt).position?.createdAt ?? null), this.param((rt) => pageOf(rt).position?.id ?? null)] as const)
      : undefined;
    // With pageInfo, one row more than the page tells whether another page follows.
    const limit = this.param((rt) => pageOf(rt).first + (paged ? 1 : 0));
    const rows = childRowsSql(relation, c, `${parent}.id`, {
      limit: `${limit}::int`,
      after: after && [`${after[0]}::timestamptz`, `${after[1]}::uuid`],
      parentRow: parent,
    });
    const first = () => `${this.param((rt) => pageOf(rt).first)}::int`;
    const members: string[] = [];
    for (const part of parts) {
      const k = JSON.stringify(part.key).replace(/'/g, "''");
      const name = part.field?.name ?? '__typename';
      if (name === '__typename') members.push(`'${k}:${JSON.stringify(type.name)}'`);
      else if (name === 'nodes') {
        const item = this.objectSql(
          itemType(part.field!.type),
          part.node.selectionSet ?? unsupported('nodes without selection'),
          relation.entity,
          b,
        );
        const filter = paged ? ` filter (where ${b}.rn <= ${first()})` : '';
        members.push(
          `'${k}:[' || coalesce(string_agg(${item}, ',' order by ${paged ? `${b}.rn` : orderSql(relation, b)})${filter}, '') || ']'`,
        );
      } else if (name === 'pageInfo') {
        const infoType = getNullableType(part.field!.type);
        if (!isObjectType(infoType) || !part.node.selectionSet) return unsupported('pageInfo type');
        const info = this.select(infoType, part.node.selectionSet).map((p) => {
          const ik = JSON.stringify(p.key).replace(/'/g, "''");
          const iname = p.field?.name ?? '__typename';
          if (iname === '__typename') return `'${ik}:${JSON.stringify(infoType.name)}'`;
          if (iname === 'hasNextPage') return `'${ik}:' || (case when count(*) > ${first()} then 'true' else 'false' end)`;
          if (iname === 'endCursor') {
            this.signsCursors = true;
            // The last row of the page, as a cursor to sign (see CURSOR_MARK), scoped to the parent as the resolver scopes it.
            const mark =
              `'"' || chr(2) || ${sqlString(cursorScope(relation, ''))} || ${parent}.id || chr(3) || ` +
              `((extract(epoch from ${b}.created_at) * 1000)::float8)::text || chr(3) || ${b}.id || chr(2) || '"'`;
            return `'${ik}:' || coalesce((array_agg(${mark} order by ${b}.rn desc) filter (where ${b}.rn <= ${first()}))[1], 'null')`;
          }
          return unsupported(`pageInfo.${iname}`);
        });
        members.push(`'${k}:{' || ${info.length ? info.join(` || ',' || `) : unsupported('empty pageInfo')} || '}'`);
      } else return unsupported(`child connection field ${name}`);
    }
    if (members.length === 0) unsupported('empty');
    const source = paged
      ? `(select ${c}.*, row_number() over (order by ${orderSql(relation, c)}) as rn from (${rows}) ${c}) ${b}`
      : `(${rows}) ${b}`;
    // One row, even for no children or a selection without aggregates.
    return `(select '{' || ${members.join(` || ',' || `)} || '}' from ${source} group by ())`;
  }
}

/** The object type of a `[T!]` / `[T!]!` field; anything else is not compiled. */
function itemType(type: GraphQLOutputType): GraphQLObjectType {
  const list = getNullableType(type);
  if (!isListType(list) || !isNonNullType(list.ofType) || !isObjectType(list.ofType.ofType)) return unsupported('not a list of objects');
  return list.ofType.ofType;
}

function sqlString(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
