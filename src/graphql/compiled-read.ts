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
 *   compiled (the operation-cache plugin hands them over), and only when
 *   every field of the operation is understood here; anything else (a field
 *   with a resolver this file does not know, arguments on a scalar, `@skip`,
 *   duplicate response keys, `Float`s, interfaces…) keeps the ordinary path;
 * - a scalar field is compiled only when GraphQL would read it straight off
 *   the plain row (`resolve` undefined: `simpleResolvers`) and it is a column
 *   of the entity of the same name; the value is then the column, serialised
 *   in SQL exactly as the scalar would (ISO dates, enum names, JSON strings);
 * - list fields are compiled from the relations declared in {@link RELATIONS}
 *   (the same order, owner filter, default page size and cursor as the
 *   services');
 * - argument values are checked as the resolvers check them; a value they
 *   would refuse (a page size out of range, a cursor that does not verify)
 *   sends the request down the ordinary path, which answers the error;
 * - with variables, the document guard's checks (text inputs, cost) run first;
 * - `test/compiled-read.test.ts` runs a corpus of documents both ways and
 *   requires byte-identical responses;
 * - fields a row may have to hide (a blind comparison's responses before the
 *   vote: `modules/comparison/blind.ts`) are never served from here: the
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
import { type CursorCodec, isPageSize } from '../db/pagination';
import type { PreparedStatements } from '../db/prepared';
import { LruMap } from '../lru-map';
import { documentWeight } from './document-cache';
import { isByteCountingResolver, responseTooLarge } from './response-bytes';

/** How a list field of the schema reads its rows (mirrors the resolver and service behind it). */
type Relation =
  /** A root connection of the viewer's own rows, newest first, keyset-paged with signed cursors. */
  | { kind: 'ownedConnection'; entity: string; list: string; defaultFirst: number }
  /** The viewer's own row. */
  | { kind: 'viewer'; entity: string }
  /** A child connection's first page (`after` must be null): `nodes` only. */
  | { kind: 'childPage'; entity: string; foreignKey: string; order: string; defaultFirst: number }
  /** All children, in order; `concealed`: these fields are hidden when `when(parent alias)` holds (see the module comment). */
  | { kind: 'childList'; entity: string; foreignKey: string; order: string; concealed?: Concealed };

interface Concealed {
  fields: readonly string[];
  when(parent: string): string;
}

/** Stands for a hidden value in the compiled JSON; `to_json` escapes it everywhere else, so it never occurs otherwise. */
const HIDDEN_SENTINEL = '\u0001';

/** `Type.field` → relation. Each entry restates a resolver's read: keep them in step (the parity test checks). */
export const RELATIONS: Record<string, Relation> = {
  'Query.me': { kind: 'viewer', entity: 'User' },
  'Query.conversations': { kind: 'ownedConnection', entity: 'Conversation', list: 'conversations', defaultFirst: 20 },
  'Query.comparisons': { kind: 'ownedConnection', entity: 'ComparisonResult', list: 'comparisons', defaultFirst: 20 },
  'Conversation.messages': { kind: 'childPage', entity: 'Message', foreignKey: 'conversation_id', order: 'created_at, id', defaultFirst: 50 },
  'ComparisonResult.responses': {
    kind: 'childList',
    entity: 'ComparisonResponse',
    foreignKey: 'comparison_id',
    order: 'position',
    // A blind comparison not yet voted on (`revealedSql` in modules/comparison/blind.ts) hides these (the list `presentResponse` hides).
    concealed: {
      fields: ['provider', 'model', 'keyLabel', 'costUsd', 'promptTokens', 'completionTokens', 'customEndpoint', 'error'],
      when: (p) => `(not ${REVEALED(p)})`,
    },
  },
};

/**
 * `Type.field` → SQL text expression (the field's JSON) over the row alias, for
 * fields whose resolver computes from the row's own columns. Each restates a
 * resolver: keep them in step (the parity test checks).
 */
export const COMPUTED: Record<string, (a: string) => string> = {
  // ComparisonResponseResolver.label: the letter of the position (modules/comparison/blind.ts).
  'ComparisonResponse.label': (a) => `to_json(chr(65 + ${a}.position))::text`,
  // ComparisonResolver.revealed: not blind, or voted on (`revealedSql` in modules/comparison/blind.ts).
  'ComparisonResult.revealed': (a) => `(case when ${REVEALED(a)} then 'true' else 'false' end)`,
};

function REVEALED(a: string): string {
  return `(not ${a}.blind or exists (select 1 from votes rv where rv.comparison_id = ${a}.id))`;
}

/** Response keys and how each is produced, for one selection set on one object type. */
type Selected = Array<{ key: string; node: FieldNode; field: GraphQLField<unknown, unknown> | null }>;

export interface CompiledReadDeps {
  schema: GraphQLSchema;
  /** For the entities' metadata (table and column names). */
  em: EntityManager;
  /** How the statements run: named prepared statements on the ORM's pool (`db/prepared.ts`). */
  prepared: PreparedStatements;
  cursors: CursorCodec;
  /** `MAX_RESPONSE_BYTES`: a root list whose JSON passes its share of it answers RESPONSE_TOO_LARGE, and no more rows than that share reach this process. */
  maxResponseBytes?: number;
  /** The document guard's variable checks (text inputs, cost); throws when the request must be refused. */
  checkOperation(document: DocumentNode, operationName: string | null, variables: Record<string, unknown>): void;
}

class Unsupported extends Error {}
const unsupported = (why: string): never => {
  throw new Unsupported(why);
};

/** One root field, ready to run: its SQL (with `?` placeholders) and how to turn rows into its JSON text. */
interface RootStep {
  key: string;
  run(userId: string, args: Record<string, unknown>): Promise<string | undefined>;
  node: FieldNode;
  /** Null for `__typename`. */
  field: GraphQLField<unknown, unknown> | null;
}

export class CompiledRead {
  constructor(
    private readonly deps: CompiledReadDeps,
    private readonly document: DocumentNode,
    private readonly operation: OperationDefinitionNode,
    private readonly steps: RootStep[],
    /** The root fields' arguments when the operation has no variables (computed once). */
    private readonly staticArgs: Array<Record<string, unknown>> | undefined,
  ) {}

  /** Estimated bytes held: the document (as `document-cache.ts` weighs it) and the compiled steps. */
  get weight(): number {
    return documentWeight(this.document.loc?.end ?? 1000) + 4096 * this.steps.length;
  }

  /** The response body, or undefined when this request must take the ordinary path. */
  async run(userId: string, variables: Record<string, unknown>): Promise<string | undefined> {
    let args = this.staticArgs;
    if (!args) {
      const coerced = getVariableValues(this.deps.schema, this.operation.variableDefinitions ?? [], variables);
      if (coerced.errors) return undefined;
      try {
        this.deps.checkOperation(this.document, this.operation.name?.value ?? null, variables);
      } catch {
        return undefined;
      }
      args = this.steps.map((s) => (s.field ? getArgumentValues(s.field, s.node, coerced.coerced) : {}));
    }
    const values = await Promise.all(this.steps.map((s, i) => s.run(userId, args![i]!)));
    let body = '{"data":{';
    for (let i = 0; i < this.steps.length; i++) {
      const value = values[i];
      // A hidden value: the ordinary path presents the row as the reader may see it.
      if (value === undefined || value.includes(HIDDEN_SENTINEL)) return undefined;
      body += `${i ? ',' : ''}${JSON.stringify(this.steps[i]!.key)}:${value}`;
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
    const share = deps.maxResponseBytes !== undefined ? Math.max(1, Math.floor(deps.maxResponseBytes / Math.max(1, selected.length))) : undefined;
    const steps = selected.map(({ key, node, field }) => {
      if (!field) return typenameStep(key, node, query.name);
      return compiler.rootStep(key, node, field, share);
    });
    if (steps.length === 0) return null;
    const staticArgs = operation.variableDefinitions?.length ? undefined : steps.map((s) => (s.field ? getArgumentValues(s.field, s.node, {}) : {}));
    return new CompiledRead(deps, document, operation, steps, staticArgs);
  } catch (error) {
    if (error instanceof Unsupported) return null;
    throw error;
  }
}

function typenameStep(key: string, node: FieldNode, typeName: string): RootStep {
  const text = JSON.stringify(typeName);
  return { key, node, field: null, run: async () => text };
}

const ISO = `'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'`;

class Compiler {
  private aliasCount = 0;

  constructor(
    private readonly deps: CompiledReadDeps,
    private readonly fragments: Record<string, FragmentDefinitionNode>,
  ) {}

  private alias(): string {
    return `t${this.aliasCount++}`;
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
        const condition = selection.kind === Kind.INLINE_FRAGMENT ? selection.typeCondition : this.fragments[selection.name.value]?.typeCondition;
        if (condition && condition.name.value !== type.name) unsupported('fragment on another type');
        const inner = selection.kind === Kind.INLINE_FRAGMENT ? selection.selectionSet : (this.fragments[selection.name.value] ?? unsupported('unknown fragment')).selectionSet;
        this.select(type, inner, into, seen);
      }
    }
    return into;
  }

  rootStep(key: string, node: FieldNode, field: GraphQLField<unknown, unknown>, byteShare?: number): RootStep {
    const relation = RELATIONS[`Query.${field.name}`] ?? unsupported(`root field ${field.name}`);
    const type = getNullableType(field.type);
    if (relation.kind === 'viewer') {
      if (!isObjectType(type) || !node.selectionSet) return unsupported('viewer type');
      const a = this.alias();
      const prepared = this.deps.prepared;
      const statement = prepared.prepare(`select ${this.objectSql(type, node.selectionSet, relation.entity, a)} as j from ${this.meta(relation.entity).tableName} ${a} where ${a}.id = ?`);
      return {
        key,
        node,
        field,
        run: async (userId) => {
          const rows = await prepared.query<{ j: string }>(statement, [userId]);
          return rows[0]?.j ?? 'null';
        },
      };
    }
    if (relation.kind !== 'ownedConnection' || !isObjectType(type) || !node.selectionSet) return unsupported('root relation');
    // The connection object: `nodes`, `pageInfo { hasNextPage endCursor }`, `__typename`.
    const parts = this.select(type, node.selectionSet);
    const a = this.alias();
    const meta = this.meta(relation.entity);
    let nodesSql: string | undefined;
    const pieces: Array<(rows: Array<{ j: string; ms: number; id: string }>, limit: number, scope: string) => string> = [];
    for (const part of parts) {
      const name = part.field?.name ?? '__typename';
      const k = JSON.stringify(part.key);
      if (name === '__typename') {
        const t = JSON.stringify(type.name);
        pieces.push(() => `${k}:${t}`);
      } else if (name === 'nodes') {
        if (nodesSql !== undefined) unsupported('nodes twice');
        nodesSql = this.objectSql(itemType(part.field!.type), part.node.selectionSet ?? unsupported('nodes without selection'), relation.entity, a);
        pieces.push((rows, limit) => {
          let out = `${k}:[`;
          const n = Math.min(rows.length, limit);
          for (let i = 0; i < n; i++) out += i ? `,${rows[i]!.j}` : rows[i]!.j;
          return `${out}]`;
        });
      } else if (name === 'pageInfo') {
        const infoType = getNullableType(part.field!.type);
        if (!isObjectType(infoType) || !part.node.selectionSet) return unsupported('pageInfo type');
        const infoParts = this.select(infoType, part.node.selectionSet);
        const cursors = this.deps.cursors;
        const infoPieces = infoParts.map((p) => {
          const ik = JSON.stringify(p.key);
          const iname = p.field?.name ?? '__typename';
          if (iname === '__typename') return () => `${ik}:${JSON.stringify(infoType.name)}`;
          if (iname === 'hasNextPage') return (rows: Array<{ ms: number; id: string }>, limit: number) => `${ik}:${rows.length > limit}`;
          if (iname === 'endCursor')
            return (rows: Array<{ ms: number; id: string }>, limit: number, scope: string) => {
              const last = rows[Math.min(rows.length, limit) - 1];
              return `${ik}:${last ? JSON.stringify(cursors.encode(scope, { createdAt: new Date(Number(last.ms)), id: last.id })) : 'null'}`;
            };
          return unsupported(`pageInfo.${iname}`);
        });
        pieces.push((rows, limit, scope) => `${k}:{${infoPieces.map((p) => p(rows, limit, scope)).join(',')}}`);
      } else {
        return unsupported(`connection field ${name}`);
      }
    }
    const select = `${nodesSql ?? `'null'`} as j, (extract(epoch from ${a}.created_at) * 1000)::float8 as ms, ${a}.id as id`;
    const table = meta.tableName;
    const cursors = this.deps.cursors;
    const prepared = this.deps.prepared;
    const rowsSql = (where: string, extra = '') => `select ${select}${extra} from ${table} ${a} where ${where} order by ${a}.created_at desc, ${a}.id desc limit ?`;
    // With a byte share, PostgreSQL sends rows only while their JSON fits in it (and the one that passes it, to tell).
    const page = (where: string) =>
      prepared.prepare(
        byteShare === undefined
          ? rowsSql(where)
          : `select j, ms, id, total from (select s.*, sum(octet_length(s.j)) over (order by s.ca desc, s.id desc) as total from (${rowsSql(where, `, ${a}.created_at as ca`)}) s) w ` +
              `where w.total - octet_length(w.j) <= ${byteShare} order by w.ca desc, w.id desc`,
      );
    const maxBytes = this.deps.maxResponseBytes;
    const firstPage = page(`${a}.owner_id = ?`);
    const laterPage = page(`${a}.owner_id = ? and (${a}.created_at, ${a}.id) < (?, ?)`);
    return {
      key,
      node,
      field,
      run: async (userId, args) => {
        const first = args.first ?? relation.defaultFirst;
        if (!isPageSize(first)) return undefined;
        const scope = `${relation.list}:${userId}`;
        const params: unknown[] = [userId];
        let statement = firstPage;
        if (args.after !== undefined && args.after !== null) {
          if (typeof args.after !== 'string') return undefined;
          let position;
          try {
            position = cursors.decode(scope, args.after);
          } catch {
            return undefined;
          }
          statement = laterPage;
          params.push(position.createdAt, position.id);
        }
        params.push(first + 1);
        const rows = await prepared.query<{ j: string; ms: number; id: string; total?: string | number }>(statement, params);
        const last = rows[rows.length - 1];
        if (byteShare !== undefined && last && Number(last.total) > byteShare) throw responseTooLarge(maxBytes ?? byteShare);
        return `{${pieces.map((p) => p(rows, first, scope)).join(',')}}`;
      },
    };
  }

  /** SQL text expression: the JSON object of row `a` (entity `entity`) for `set` on `type`. */
  objectSql(type: GraphQLObjectType, set: SelectionSetNode, entity: string, a: string, concealed?: { fields: readonly string[]; when: string }): string {
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
      let value = relation ? this.relationSql(relation, field, node, a) : this.columnSql(meta, field, node, a);
      if (concealed?.fields.includes(field.name)) value = `(case when ${concealed.when} then chr(1) else ${value} end)`;
      members.push(`'${k}:' || ${value}`);
    }
    if (members.length === 0) unsupported('empty selection');
    return `'{' || ${members.join(` || ',' || `)} || '}'`;
  }

  private columnSql(meta: EntityMetadata, field: GraphQLField<unknown, unknown>, node: FieldNode, a: string): string {
    const computed = COMPUTED[`${meta.className}.${field.name}`];
    if (computed && !node.arguments?.length) return computed(a);
    if ((field.resolve !== undefined && !isByteCountingResolver(field.resolve)) || node.arguments?.length || field.args.length) unsupported(`${meta.className}.${field.name} has a resolver or arguments`);
    const prop = meta.properties[field.name as keyof typeof meta.properties] ?? unsupported(`${meta.className}.${field.name} is not a column`);
    if (prop.kind !== ReferenceKind.SCALAR || prop.persist === false || prop.lazy || prop.formula || prop.fieldNames?.length !== 1) unsupported(`${meta.className}.${field.name} is not a plain column`);
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

  private relationSql(relation: Relation, field: GraphQLField<unknown, unknown>, node: FieldNode, parent: string): string {
    if (!node.selectionSet) return unsupported('relation without selection');
    const b = this.alias();
    const meta = this.meta(relation.entity);
    const type = getNullableType(field.type);
    if (relation.kind === 'childList') {
      if (node.arguments?.length) return unsupported('child list arguments');
      const concealed = relation.concealed && { fields: relation.concealed.fields, when: relation.concealed.when(parent) };
      const item = this.objectSql(itemType(field.type), node.selectionSet, relation.entity, b, concealed);
      return `('[' || coalesce((select string_agg(${item}, ',' order by ${prefixed(b, relation.order)}) from ${meta.tableName} ${b} where ${b}.${relation.foreignKey} = ${parent}.id), '') || ']')`;
    }
    if (relation.kind === 'childPage') {
      if (!isObjectType(type)) return unsupported('child page shape');
      // Arguments must be literals here (a variable would make the SQL text depend on the request).
      if (node.arguments?.some((arg) => arg.value.kind === Kind.VARIABLE)) unsupported('variable argument below the root');
      const args = getArgumentValues(field, node, {});
      if (args.after !== null && args.after !== undefined) unsupported('child page after a cursor');
      const first = args.first ?? relation.defaultFirst;
      if (!isPageSize(first)) return unsupported('page size');
      const members: string[] = [];
      for (const part of this.select(type, node.selectionSet)) {
        const k = JSON.stringify(part.key).replace(/'/g, "''");
        const name = part.field?.name ?? '__typename';
        if (name === '__typename') members.push(`'${k}:${JSON.stringify(type.name)}'`);
        else if (name === 'nodes') {
          const item = this.objectSql(itemType(part.field!.type), part.node.selectionSet ?? unsupported('nodes without selection'), relation.entity, b);
          const c = this.alias();
          members.push(
            `'${k}:[' || coalesce((select string_agg(${item}, ',' order by ${prefixed(b, relation.order)}) from (select * from ${meta.tableName} ${c} where ${c}.${relation.foreignKey} = ${parent}.id order by ${prefixed(c, relation.order)} limit ${first}) ${b}), '') || ']'`,
          );
        } else return unsupported(`child connection field ${name}`);
      }
      return `(${members.length ? `'{' || ${members.join(` || ',' || `)} || '}'` : unsupported('empty')})`;
    }
    return unsupported(`relation ${relation.kind} below the root`);
  }
}

/** The object type of a `[T!]` / `[T!]!` field; anything else is not compiled. */
function itemType(type: GraphQLOutputType): GraphQLObjectType {
  const list = getNullableType(type);
  if (!isListType(list) || !isNonNullType(list.ofType) || !isObjectType(list.ofType.ofType)) return unsupported('not a list of objects');
  return list.ofType.ofType;
}

function prefixed(alias: string, order: string): string {
  return order
    .split(',')
    .map((c) => `${alias}.${c.trim()}`)
    .join(', ');
}

function sqlString(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
