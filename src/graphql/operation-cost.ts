/**
 * The cost of an operation: how many fields its response may hold, counted
 * with the variables it will run with. graphql-armor's cost limit only reads
 * integer literals, so `conversations(first: $n)` would look cheap; this one
 * resolves `first` the way execution will (variables coerced, argument
 * defaults applied).
 *
 * Rules:
 * - every field costs 1, plus its selection's cost times its multiplier;
 * - a field with a `first` argument that returns an object (a connection)
 *   hands `first` down as the size of its list children (`nodes`), so
 *   `conversations(first: 20) { totalCount nodes { id } }` costs
 *   1 + (1 + (1 + 20 × 1)) = 23;
 * - a list field multiplies by its own `first`, else the `first` handed down,
 *   else `defaultListSize` (unpaged lists such as `responses`);
 * - introspection fields cost 1 (they are bounded by the schema and disabled
 *   in production);
 * - fragments are merged per selection set the way execution collects
 *   fields: every fragment reachable at one level (spread directly, through
 *   inline fragments, or by another fragment at that level) counts once;
 * - work is linear-ish in the document: each fragment's own fields are costed
 *   once per handed-down `first` (memoised), and each selection set unions
 *   the memoised fragment closures, so chains and diamonds of fragments that
 *   spread each other twice cost no more than their size.
 * - same-named fields are not merged (each counts): an over-estimate only;
 * - a field that may return many bytes (`byteWeights`: an answer's text up
 *   to `LLM_MAX_OUTPUT_BYTES`, an export up to `MAX_RESPONSE_BYTES`) costs 1
 *   more per {@link BYTES_PER_COST_UNIT} it may hold: `content` of a 256 KB
 *   answer costs 5, so eight aliases of
 *   `comparisons(first: 100) { nodes { responses { content } } }` (up to
 *   2 GB) cost ~41,000 while the history page (300 texts) stays near 2,500
 *   and `comparisons(first: 50)` with every answer field under 10,000.
 * `visited` counts the selections looked at (tests assert it stays linear in
 * the document).
 */
import {
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  getArgumentValues,
  getNamedType,
  getNullableType,
  getOperationAST,
  getVariableValues,
  type GraphQLField,
  type GraphQLNamedType,
  type GraphQLSchema,
  isInterfaceType,
  isListType,
  isObjectType,
  Kind,
  type SelectionSetNode,
} from 'graphql';

export interface OperationCost {
  cost: number;
  /** Selections looked at, fragments counted once (a measure of the work done). */
  visited: number;
}

/**
 * The cost of `operationName` in `document` with `variables`, or null when it
 * cannot be costed because execution will refuse it anyway (no such
 * operation, variables that do not coerce).
 */
/** A field that may return this many bytes costs one more (64 KB). */
export const BYTES_PER_COST_UNIT = 64 * 1024;

export function operationCost(
  schema: GraphQLSchema,
  document: DocumentNode,
  operationName: string | null | undefined,
  variables: Record<string, unknown> | null | undefined,
  defaultListSize: number,
  byteWeights: Readonly<Record<string, number>> = {},
): OperationCost | null {
  const operation = getOperationAST(document, operationName);
  if (!operation) return null;
  const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], variables ?? {}, { maxErrors: 1 });
  if (coerced.errors) return null;
  const vars = coerced.coerced;
  const root = schema.getRootType(operation.operation);
  if (!root) return null;

  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  let visited = 0;

  /** Fragments spread at the level of `set` (through inline fragments), not inside its fields. */
  const directSpreads = (set: SelectionSetNode, into: string[] = []): string[] => {
    for (const selection of set.selections) {
      visited++;
      if (selection.kind === Kind.FRAGMENT_SPREAD) into.push(selection.name.value);
      else if (selection.kind === Kind.INLINE_FRAGMENT) directSpreads(selection.selectionSet, into);
    }
    return into;
  };

  /** A fragment and every fragment it brings to the same level, transitively (memoised; cycles stop). */
  const closures = new Map<string, ReadonlySet<string>>();
  const closureOf = (name: string): ReadonlySet<string> => {
    const known = closures.get(name);
    if (known) return known;
    const closure = new Set<string>([name]);
    closures.set(name, closure); // in progress: a cycle (refused by validation anyway) ends here
    const fragment = fragments.get(name);
    if (fragment) for (const spread of directSpreads(fragment.selectionSet)) for (const n of closureOf(spread)) closure.add(n);
    return closure;
  };

  const firstOf = (field: GraphQLField<unknown, unknown>, node: FieldNode): number | undefined => {
    const arg = field.args.find((a) => a.name === 'first');
    if (!arg) return undefined;
    let value: unknown;
    try {
      value = getArgumentValues(field, node, vars).first;
    } catch {
      value = undefined; // an invalid argument fails execution before any resolver runs
    }
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) value = arg.defaultValue;
    return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
  };

  /** The fields written directly in `set` (and its inline fragments), each with its subtree. */
  const ownFieldsCost = (set: SelectionSetNode, parent: GraphQLNamedType | undefined, handedFirst: number | undefined): number => {
    let cost = 0;
    for (const selection of set.selections) {
      visited++;
      if (selection.kind === Kind.FIELD) {
        const name = selection.name.value;
        const fields = parent && (isObjectType(parent) || isInterfaceType(parent)) ? parent.getFields() : undefined;
        const field = fields?.[name];
        if (!selection.selectionSet || !field || name.startsWith('__')) {
          const bytes = field && parent ? byteWeights[`${parent.name}.${name}`] : undefined;
          cost += 1 + (bytes ? Math.floor(bytes / BYTES_PER_COST_UNIT) : 0);
          continue;
        }
        const first = firstOf(field, selection);
        const isList = isListType(getNullableType(field.type));
        const multiplier = isList ? (first ?? handedFirst ?? defaultListSize) : 1;
        const handDown = !isList && first !== undefined ? first : undefined;
        cost += 1 + multiplier * levelCost(selection.selectionSet, getNamedType(field.type), handDown);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const type = selection.typeCondition ? schema.getType(selection.typeCondition.name.value) : parent;
        cost += ownFieldsCost(selection.selectionSet, type ?? undefined, handedFirst);
      }
    }
    return cost;
  };

  const fragmentCosts = new Map<string, number>();
  const fragmentOwnCost = (name: string, handedFirst: number | undefined): number => {
    const key = `${name}|${handedFirst ?? ''}`;
    const known = fragmentCosts.get(key);
    if (known !== undefined) return known;
    fragmentCosts.set(key, 0); // in progress (cycles)
    const fragment = fragments.get(name);
    const cost = fragment
      ? ownFieldsCost(fragment.selectionSet, schema.getType(fragment.typeCondition.name.value) ?? undefined, handedFirst)
      : 0;
    fragmentCosts.set(key, cost);
    return cost;
  };

  /** One selection set as execution collects it: its own fields plus every fragment reachable at this level, once. */
  const levelCost = (set: SelectionSetNode, parent: GraphQLNamedType | undefined, handedFirst: number | undefined): number => {
    const reachable = new Set<string>();
    for (const spread of directSpreads(set)) for (const name of closureOf(spread)) reachable.add(name);
    let cost = ownFieldsCost(set, parent, handedFirst);
    for (const name of reachable) cost += fragmentOwnCost(name, handedFirst);
    return cost;
  };

  return { cost: levelCost(operation.selectionSet, root, undefined), visited };
}
